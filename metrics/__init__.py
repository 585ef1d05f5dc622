"""Measures that judge generated toy-world clips from their pixels and waveform (never from ground truth).

`evaluate(clips, captions)` runs everything: per-clip video and audio event detection, audio-video sync
against a shuffled baseline, caption adherence against shuffled and chance baselines, and coherence (one
subject region per frame, no centre jump outside a bounce; metrics.coherence) against a double-exposure and a
time-shuffled baseline. `evaluate(..., truth=renders)` adds the same figures for the toy world's own renders of
the captions (the ground truth: what a perfect model would score on these measures).
"""

from __future__ import annotations

import math
from typing import Protocol, Sequence

import numpy as np

from ..errors import InputValueError
from ..toyworld.scenes import parse_caption
from .adherence import measure_adherence
from .audio_events import AudioEvents, detect_audio_events
from .coherence import MAX_IMPACT_JUMP, MAX_JUMP, double_exposure, measure_coherence, time_shuffled
from .sync import clip_offset, measure_sync
from .video_events import VideoEvents, detect_video_events


class ClipLike(Protocol):
    """A generated or rendered clip: frames `[T, H, W, 3]` (uint8, or float 0..1), audio `[S]` or `[C, S]`."""

    frames: np.ndarray
    audio: np.ndarray
    fps: float
    sample_rate: int


def evaluate(clips: Sequence[ClipLike], captions: Sequence[str], truth: Sequence[ClipLike] | None = None) -> dict:
    """All figures for clips generated from `captions` (one caption per clip, in the toy-world vocabulary).

    Returns {"n_clips", "sync": measure_sync(...), "adherence": measure_adherence(...), "coherence":
    coherence_figures(...), "per_clip": [...], "summary": printable text}, and with `truth` (renders of the same
    captions) "ground_truth": the same dict for them."""
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
    coherence = [measure_coherence(c.frames, v) for c, v in zip(clips, video)]
    per_clip = [_clip_row(cap, v, a, r, co) for cap, v, a, r, co in zip(captions, video, audio, fps, coherence)]
    result = {"n_clips": len(clips), "sync": sync, "adherence": adherence,
              "coherence": coherence_figures(clips, specs, coherence), "per_clip": per_clip}
    if truth is not None:
        result["ground_truth"] = evaluate(truth, captions)
    result["summary"] = summarise(result)
    return result


def coherence_figures(clips: Sequence[ClipLike], specs, coherence) -> dict:
    """one_region: share of frames with exactly one subject region (every toy-world caption has one subject);
    smooth: share of clips with no centre jump over MAX_JUMP outside a bounce; each beside its baseline: the same
    clips double-exposed (regions) and time-shuffled (jumps), which a viewer would call incoherent."""
    doubled = [measure_coherence(double_exposure(c.frames), detect_video_events(double_exposure(c.frames), s.kind))
               for c, s in zip(clips, specs)]
    shuffled = []
    for i, (c, s) in enumerate(zip(clips, specs)):
        frames = time_shuffled(c.frames, seed=i)
        shuffled.append(measure_coherence(frames, detect_video_events(frames, s.kind)))

    def one_region(rows):
        return float(np.mean([r == 1 for co in rows for r in co.regions]))

    def smooth(rows):
        return float(np.mean([co.smooth for co in rows]))

    return {"one_region": one_region(coherence), "one_region_double_exposure": one_region(doubled),
            "smooth": smooth(coherence), "smooth_time_shuffled": smooth(shuffled),
            "largest_jump": max(co.max_jump for co in coherence),
            "largest_impact_jump": max(co.impact_jump for co in coherence), "n": len(coherence)}


def _clip_row(caption: str, v: VideoEvents, a: AudioEvents, fps: float, co=None) -> dict:
    onsets = a.onset_frames(fps)
    return {
        "regions": "".join(str(min(r, 9)) for r in co.regions) if co is not None else None,
        "max_jump": round(co.max_jump, 3) if co is not None else None,
        "impact_jump": round(co.impact_jump, 3) if co is not None else None,
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
    truth = result.get("ground_truth")
    for name, a in result["adherence"].items():
        lines.append(
            f"  {name:<10} {num(a['accuracy'], '6.1%')} of {a['n']:>3}   "
            f"shuffled {num(a['shuffled'], '6.1%')}   chance {a['chance']:.1%}"
            + (f"   ground truth {num(truth['adherence'][name]['accuracy'], '.0%')}" if truth else "")
        )
    co = result.get("coherence")
    if co:
        gt = truth["coherence"] if truth else None
        lines += [
            f"  one subject region in {co['one_region']:6.1%} of frames   double exposure {co['one_region_double_exposure']:6.1%}"
            + (f"   ground truth {gt['one_region']:.0%}" if gt else ""),
            f"  no centre jump > {MAX_JUMP:g} frame outside a bounce (> {MAX_IMPACT_JUMP:g} at one) in {co['smooth']:6.1%} of {co['n']} clips   "
            f"time-shuffled {co['smooth_time_shuffled']:6.1%}   largest {co['largest_jump']:.2f} "
            f"(at impacts {co['largest_impact_jump']:.2f})"
            + (f"   ground truth {gt['smooth']:.0%} (largest {gt['largest_jump']:.2f}, at impacts "
               f"{gt['largest_impact_jump']:.2f})" if gt else ""),
        ]
    if truth:
        ts = truth["sync"]
        lines.append(f"  ground truth sync: median |offset| {num(ts['median_abs_offset'], '.2f')} frames, "
                     f"in sync {num(ts['in_sync_fraction'], '.0%')}")
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
