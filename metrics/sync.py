"""Audio-video synchrony in video frames: does each sound start on the frame where its picture happens?

Per clip, each visual event (impact, mouth opening) is matched to the nearest audio onset and the median
audio-minus-video offset is reported (positive: sound late). Plain nearest matching breaks as soon as the
lag exceeds half the spacing of the events (a 3-frame lag on syllables 5 frames apart would pair each
mouth with the previous syllable), so the matching is done after one common lag is chosen for the clip:
the lag, among all audio-minus-video differences, that leaves the fewest events without an onset within
TOLERANCE frames (then the smallest residuals, then the smallest lag). With no lag at all it reduces to
nearest matching.

The shuffled baseline pairs clip i's video with clip i+1's audio (a derangement), so any real dependence
between picture and sound is removed while the statistics of each stay the same: a sync measure that
scores the shuffled pairs as well as the real ones measures nothing.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from .audio_events import AudioEvents
from .video_events import VideoEvents

TOLERANCE = 1.5  # frames: an onset this close to (event + lag) counts as that event's sound
IN_SYNC = 1.0  # frames: a clip whose |median offset| is within this is "in sync"


def clip_offset(video_frames: Sequence[float], audio_frames: Sequence[float], tolerance: float = TOLERANCE) -> float:
    """Median audio-minus-video offset (frames) of one clip after a common lag is chosen; NaN if either is empty."""
    v = np.asarray(video_frames, np.float64)
    a = np.asarray(audio_frames, np.float64)
    if v.size == 0 or a.size == 0:
        return float("nan")
    diffs = a[None, :] - v[:, None]  # [events, onsets]
    best = None
    for lag in np.unique(diffs):
        resid = np.abs(diffs - lag).min(1)
        key = (int((resid > tolerance).sum()), float(np.minimum(resid, tolerance).sum()), abs(float(lag)))
        if best is None or key < best[0]:
            best = (key, lag)
    lag = best[1]
    nearest = diffs[np.arange(v.size), np.abs(diffs - lag).argmin(1)]
    inliers = nearest[np.abs(nearest - lag) <= tolerance]
    return float(np.median(inliers))


def derangement(n: int) -> list[int]:
    """i -> i+1 (mod n): a fixed permutation with no fixed point, for n >= 2."""
    return [(i + 1) % n for i in range(n)]


def hit_rate(video_frames: Sequence[float], audio_frames: Sequence[float], within: float = IN_SYNC) -> tuple[int, int]:
    """(events with an onset within `within` frames, events) — no lag allowed."""
    v, a = np.asarray(video_frames, np.float64), np.asarray(audio_frames, np.float64)
    if v.size == 0:
        return 0, 0
    if a.size == 0:
        return 0, int(v.size)
    return int((np.abs(a[None, :] - v[:, None]).min(1) <= within).sum()), int(v.size)


def _figures(pairs: list[tuple[Sequence[float], Sequence[float]]]) -> dict:
    offsets = [clip_offset(v, a) for v, a in pairs]
    hits = [hit_rate(v, a) for v, a in pairs]
    defined = np.array([o for o in offsets if not np.isnan(o)])
    n_events = sum(n for _, n in hits)
    return {
        "offsets": offsets,
        "n_defined": int(defined.size),
        "median_offset": float(np.median(defined)) if defined.size else float("nan"),
        "median_abs_offset": float(np.median(np.abs(defined))) if defined.size else float("nan"),
        "mean_abs_offset": float(np.mean(np.abs(defined))) if defined.size else float("nan"),
        "in_sync_fraction": float((np.abs(defined) <= IN_SYNC).sum() / len(pairs)) if pairs else float("nan"),
        "event_hit_rate": sum(h for h, _ in hits) / n_events if n_events else float("nan"),
    }


def measure_sync(video: Sequence[VideoEvents], audio: Sequence[AudioEvents], fps: Sequence[float]) -> dict:
    """Sync figures of a set of clips, and the same figures for the shuffled pairing under "shuffled".

    offsets: per clip (NaN where a clip has no visual event or no onset); median_abs_offset: median over
    clips of |offset|; in_sync_fraction: share of ALL clips with |offset| <= 1 frame (undefined counts as out);
    event_hit_rate: share of visual events with an onset within 1 frame, no lag allowed."""
    vid = [ev.event_frames for ev in video]
    aud = [au.onset_frames(rate) for au, rate in zip(audio, fps)]
    real = _figures(list(zip(vid, aud)))
    if len(vid) >= 2:
        real["shuffled"] = _figures([(vid[i], aud[j]) for i, j in enumerate(derangement(len(vid)))])
    return real
