"""Measures that judge generated toy-world clips from their pixels and waveform (never from ground truth).

`evaluate(clips, captions)` runs everything: per-clip video and audio event detection, audio-video sync
against a shuffled baseline, and caption adherence against shuffled and chance baselines.
"""

from __future__ import annotations

import math
from typing import Protocol, Sequence

import numpy as np

from ..errors import InputValueError
from ..toyworld.scenes import parse_caption
from .adherence import measure_adherence
from .audio_events import AudioEvents, detect_audio_events
from .sync import clip_offset, measure_sync
from .video_events import VideoEvents, detect_video_events


class ClipLike(Protocol):
    """A generated or rendered clip: frames `[T, H, W, 3]` (uint8, or float 0..1), audio `[S]` or `[C, S]`."""

    frames: np.ndarray
    audio: np.ndarray
    fps: float
    sample_rate: int


def evaluate(clips: Sequence[ClipLike], captions: Sequence[str]) -> dict:
    """All figures for clips generated from `captions` (one caption per clip, in the toy-world vocabulary).

    Returns {"n_clips", "sync": measure_sync(...), "adherence": measure_adherence(...), "per_clip": [...],
    "summary": printable text}."""
    if len(clips) != len(captions) or not clips:
        raise InputValueError(
            f"evaluate: {len(clips)} clips and {len(captions)} captions; expected as many of each, at least one"
        )
    specs = [parse_caption(c) for c in captions]
    video = [detect_video_events(c.frames, kind=s.kind) for c, s in zip(clips, specs)]
    audio = [detect_audio_events(c.audio, c.sample_rate) for c in clips]
    fps = [float(c.fps) for c in clips]
    sync = measure_sync(video, audio, fps)
    adherence = measure_adherence(specs, video, audio)
    per_clip = [_clip_row(cap, v, a, r) for cap, v, a, r in zip(captions, video, audio, fps)]
    result = {"n_clips": len(clips), "sync": sync, "adherence": adherence, "per_clip": per_clip}
    result["summary"] = summarise(result)
    return result


def _clip_row(caption: str, v: VideoEvents, a: AudioEvents, fps: float) -> dict:
    onsets = a.onset_frames(fps)
    return {
        "caption": caption,
        "video_events": list(v.event_frames),
        "audio_onsets": [round(float(o), 2) for o in onsets],
        "offset": clip_offset(v.event_frames, onsets),
        "colour": v.colour,
        "count": v.count,
        "pitch_class": a.pitch_class,
        "f0_hz": a.f0_hz,
        "timbre": a.timbre,
    }


def summarise(result: dict) -> str:
    """The figures of `evaluate` as a few aligned lines of text."""
    s, sh = result["sync"], result["sync"].get("shuffled", {})

    def num(x, fmt):
        return "n/a" if x is None or (isinstance(x, float) and math.isnan(x)) else format(x, fmt)

    lines = [
        f"toy-world evaluation, {result['n_clips']} clips",
        f"  sync  median |offset| {num(s['median_abs_offset'], '.2f')} frames "
        f"(shuffled {num(sh.get('median_abs_offset'), '.2f')}), "
        f"in sync {num(s['in_sync_fraction'], '.0%')} (shuffled {num(sh.get('in_sync_fraction'), '.0%')}), "
        f"event hit rate {num(s['event_hit_rate'], '.0%')} (shuffled {num(sh.get('event_hit_rate'), '.0%')}), "
        f"defined for {s['n_defined']}",
    ]
    for name, a in result["adherence"].items():
        lines.append(
            f"  {name:<10} {num(a['accuracy'], '6.1%')} of {a['n']:>3}   "
            f"shuffled {num(a['shuffled'], '6.1%')}   chance {a['chance']:.1%}"
        )
    return "\n".join(lines)


__all__ = [
    "evaluate",
    "summarise",
    "detect_video_events",
    "detect_audio_events",
    "measure_sync",
    "measure_adherence",
    "clip_offset",
    "VideoEvents",
    "AudioEvents",
]
