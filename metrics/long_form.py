"""Measures of long-form clips (issue 18), from pixels and waveform only.

- `seam_figures`: a film cut into its segments at the reported seams; per segment the subject's colour and event
  count (metrics.video_events) and the sync offset (metrics.sync.clip_offset); the frame-to-frame change across
  each seam against the changes inside segments.
- `kept_across`: whether later shots keep the first shot's colour / voice pitch class.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from .audio_events import detect_audio_events
from .sync import clip_offset
from .video_events import as_frames, detect_video_events


MIN_WINDOW = 3  # frames the event detectors need


def frame_changes(frames) -> np.ndarray:
    """Mean absolute RGB change (0..255) between each frame and the next: `[T - 1]`."""
    f = as_frames(frames)
    return np.abs(np.diff(f, axis=0)).mean(axis=(1, 2, 3))


def windows(total: int, cuts: Sequence[int]) -> list[tuple[int, int]]:
    """[start, end) frame ranges between cuts (seams or shot cuts)."""
    edges = [0, *[c for c in cuts if 0 < c < total], total]
    return [(a, b) for a, b in zip(edges[:-1], edges[1:]) if b > a]


def seam_figures(frames, sound, fps: float, sample_rate: int, seams: Sequence[int], kind: str | None = None) -> dict:
    """Figures of one extended film. frames `[T, H, W, 3]`, sound `[S]` mono; seams: first frame of each new segment.

    colour_kept: share of later segments whose detected colour is the first segment's; offsets: per segment;
    seam_changes / inside_changes: frame change at each seam pair (s-1, s) and at every other pair;
    seams_within_range: share of seam changes not above the largest change inside segments; audio_seam_jumps: the
    sample step where the sound switches segments, against audio_step_p99 (99th percentile of all other steps)."""
    raw, f = np.asarray(frames), as_frames(frames)
    x = np.asarray(sound, np.float64).reshape(-1)
    rows = []
    for a, b in windows(len(f), seams):
        if b - a < MIN_WINDOW:  # a last segment cut to a frame or two by the asked length: nothing to judge
            continue
        video = detect_video_events(raw[a:b], kind=kind)
        part = x[round(a * sample_rate / fps):round(b * sample_rate / fps)]
        audio = detect_audio_events(part, sample_rate) if part.size and np.abs(part).max() > 0 else None
        onsets = audio.onset_frames(fps) if audio is not None else np.zeros(0)
        rows.append({"frames": (a, b), "colour": video.colour, "count": video.count,
                     "offset": clip_offset(video.event_frames, onsets)})
    changes = frame_changes(raw)
    seam_pairs = [s - 1 for s in seams if 0 < s < len(f)]
    inside = np.delete(changes, seam_pairs)
    seam_changes = changes[seam_pairs]
    # the sound switches from one segment to the next at a sample; a click there is a jump larger than the
    # sample-to-sample steps elsewhere
    steps = np.abs(np.diff(x))
    switch = [round(s * sample_rate / fps) - 1 for s in seams if 0 < round(s * sample_rate / fps) - 1 < steps.size]
    audio_jumps = steps[switch] if switch else np.zeros(0)
    audio_p99 = float(np.percentile(np.delete(steps, switch), 99)) if steps.size > len(switch) else math.nan
    first = rows[0]["colour"]
    later = rows[1:]
    limit = float(inside.max()) if inside.size else math.nan
    return {
        "segments": rows,
        "colour_kept": float(np.mean([r["colour"] == first for r in later])) if later else math.nan,
        "seam_changes": seam_changes.tolist(),
        "inside_changes_median": float(np.median(inside)) if inside.size else math.nan,
        "inside_changes_max": limit,
        "seams_within_range": float(np.mean(seam_changes <= limit)) if seam_changes.size else math.nan,
        "audio_seam_jumps": audio_jumps.tolist(),
        "audio_step_p99": audio_p99,
        "first_abs_offset": abs(rows[0]["offset"]),
        "extended_median_abs_offset": _nanmedian([abs(r["offset"]) for r in later]),
    }


def _nanmedian(values) -> float:
    v = np.asarray([x for x in values if not math.isnan(x)], np.float64)
    return float(np.median(v)) if v.size else math.nan


def shot_traits(frames, sound, fps: float, sample_rate: int, cuts: Sequence[int], kind: str | None = None) -> list[dict]:
    """Colour and voice pitch class of each shot of a film cut at `cuts`."""
    raw = np.asarray(frames)
    x = np.asarray(sound, np.float64).reshape(-1)
    out = []
    for a, b in windows(len(raw), cuts):
        if b - a < MIN_WINDOW:
            continue
        part = x[round(a * sample_rate / fps):round(b * sample_rate / fps)]
        pitch = detect_audio_events(part, sample_rate).pitch_class if part.size and np.abs(part).max() > 0 else None
        out.append({"colour": detect_video_events(raw[a:b], kind=kind).colour, "pitch_class": pitch})
    return out


def kept_across(traits: list[dict], key: str) -> bool | None:
    """Whether every later shot has the first shot's `key` (None when the first shot shows none)."""
    first = traits[0][key]
    if first is None:
        return None
    return all(t[key] == first for t in traits[1:])
