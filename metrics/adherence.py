"""Does a clip show and sound what its caption says? One accuracy per caption attribute, with baselines.

Attributes and the clips they apply to:
  colour, background   every clip          (video: voted subject colour, median background)
  count                bounce and speak    (video: impacts / mouth openings; a slide always has one)
  bounces              bounce              (video: impacts; issue 19's "bounce count as captioned")
  timbre               bounce and slide    (audio: thud vs click from the spectral centroid)
  pitch                speak               (audio: voice class from the fundamental)
Each comes with `shuffled`: the same detections scored against the caption of another clip of the same
kind (i -> next clip of that kind), i.e. what a model that ignores the caption would score on this set,
and `chance`: one over the number of choices.
"""

from __future__ import annotations

from typing import Callable, Sequence

from ..toyworld.scenes import SceneSpec
from ..toyworld.vocabulary import BACKGROUND_COLOURS, COUNTS, OBJECT_COLOURS, SOUNDS, VOICES
from .audio_events import AudioEvents
from .video_events import VideoEvents

Check = Callable[[SceneSpec, VideoEvents, AudioEvents], bool]

ATTRIBUTES: dict[str, tuple[tuple[str, ...], int, Check]] = {
    # name: (kinds it applies to, number of choices, detection agrees with caption)
    "colour": (("bounce", "slide", "speak"), len(OBJECT_COLOURS), lambda s, v, a: v.colour == s.colour),
    "background": (("bounce", "slide", "speak"), len(BACKGROUND_COLOURS), lambda s, v, a: v.background == s.background),
    "count": (("bounce", "speak"), len(COUNTS), lambda s, v, a: v.count == s.count),
    "bounces": (("bounce",), len(COUNTS), lambda s, v, a: v.count == s.count),
    "timbre": (("bounce", "slide"), len(SOUNDS), lambda s, v, a: a.timbre == s.sound),
    "pitch": (("speak",), len(VOICES), lambda s, v, a: a.pitch_class == s.voice),
}


def _within_kind_shift(specs: Sequence[SceneSpec], kinds: tuple[str, ...]) -> list[tuple[int, int]]:
    """(clip, other clip) pairs: each clip of a kind with the next clip of the same kind, cyclically."""
    pairs = []
    for kind in kinds:
        group = [i for i, s in enumerate(specs) if s.kind == kind]
        if len(group) >= 2:
            pairs += [(i, group[(m + 1) % len(group)]) for m, i in enumerate(group)]
    return pairs


def measure_adherence(specs: Sequence[SceneSpec], video: Sequence[VideoEvents], audio: Sequence[AudioEvents]) -> dict:
    """{attribute: {"accuracy", "n", "shuffled", "chance"}}; accuracy is NaN where no clip has the attribute."""
    out = {}
    for name, (kinds, choices, agrees) in ATTRIBUTES.items():
        clips = [i for i, s in enumerate(specs) if s.kind in kinds]
        shifted = _within_kind_shift(specs, kinds)
        out[name] = {
            "accuracy": _mean([agrees(specs[i], video[i], audio[i]) for i in clips]),
            "n": len(clips),
            "shuffled": _mean([agrees(specs[j], video[i], audio[i]) for i, j in shifted]),
            "chance": 1.0 / choices,
        }
    return out


def _mean(flags: list[bool]) -> float:
    return sum(flags) / len(flags) if flags else float("nan")
