"""Is the subject one solid thing that moves as a thing can? Two measures read from the pixels alone.

- Subject regions per frame: the connected regions (8-neighbour) of the subject's colour mask, ignoring specks
  under MIN_REGION_PIXELS. A clip a viewer calls coherent has exactly one in every frame; a doubled subject (two
  blobs at different heights) has two, a vanished one none.
- Largest centre jump outside a bounce: the distance the subject's centre moves between consecutive frames, as
  a fraction of the frame's larger side, over pairs of frames that do not touch an impact (the fastest moment of
  a toy-world bounce, where a real ball may move about a third of the frame in one frame; those pairs are held
  to MAX_IMPACT_JUMP instead). A ball that leaves the floor for the top of the frame between two frames jumps
  by far more than either.

The toy world's own renders are the ground truth these are checked against (tests/unit/test_coherence_metric.py).
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from .video_events import VideoEvents, as_frames, subject_pixels

MIN_REGION_PIXELS = 4  # a region smaller than this is a speck of decoder noise, not a second subject
MAX_JUMP = 0.25  # issue 19: no jump of the centre larger than a quarter of the frame outside a bounce
# At an impact a toy-world ball is at its fastest: at most 0.33 of the frame per frame over 150 rendered bounce
# clips (outside impacts at most 0.23). Beyond this a "bounce" is a leap (floor to top between two frames).
MAX_IMPACT_JUMP = 0.35


@dataclass(frozen=True)
class Coherence:
    """regions: connected subject regions per frame; max_jump: largest centre move between consecutive frames
    outside a bounce, impact_jump: at one (pairs touching an impact frame), as fractions of the frame (0 when
    there is no such pair)."""

    regions: tuple[int, ...]
    max_jump: float
    impact_jump: float = 0.0

    @property
    def smooth(self) -> bool:
        """No jump over MAX_JUMP outside a bounce, nor over MAX_IMPACT_JUMP at one (a detected 'impact' that is
        really a leap across the frame is no excuse)."""
        return self.max_jump <= MAX_JUMP and self.impact_jump <= MAX_IMPACT_JUMP

    @property
    def one_region_fraction(self) -> float:
        return float(np.mean([r == 1 for r in self.regions])) if self.regions else 0.0


def subject_regions(frames) -> tuple[int, ...]:
    """Per frame, the number of connected regions of the subject's colour (at least MIN_REGION_PIXELS each)."""
    f = as_frames(frames)
    _, colour, _, subject = subject_pixels(f)
    if colour is None:
        return (0,) * f.shape[0]
    counts = []
    for mask in subject.astype(np.uint8):
        n, _, stats, _ = cv2.connectedComponentsWithStats(mask, connectivity=8)
        counts.append(int((stats[1:n, cv2.CC_STAT_AREA] >= MIN_REGION_PIXELS).sum()))
    return tuple(counts)


def largest_jumps(events: VideoEvents, frame_size: int) -> tuple[float, float]:
    """(outside, at impacts): the largest move of the centre between consecutive frames where both see the
    subject, over `frame_size` pixels, for pairs that do not touch an impact frame and for pairs that do (a
    bounce's or a wall's). For speaking heads (no motion events) every pair is outside."""
    c = events.centres
    impacts = set(events.event_frames) if events.mode in ("bounce", "slide") else set()
    outside, at = [0.0], [0.0]
    for i in range(len(c) - 1):
        if not (np.isnan(c[i]).any() or np.isnan(c[i + 1]).any()):
            (at if {i, i + 1} & impacts else outside).append(float(np.hypot(*(c[i + 1] - c[i]))) / frame_size)
    return max(outside), max(at)


def largest_jump(events: VideoEvents, frame_size: int) -> float:
    """The largest centre move outside a bounce (see largest_jumps), as a fraction of the frame."""
    return largest_jumps(events, frame_size)[0]


def measure_coherence(frames, events: VideoEvents) -> Coherence:
    """Both measures for one clip whose events (detect_video_events) were read from the same frames."""
    f = np.asarray(frames)
    outside, at = largest_jumps(events, max(f.shape[1], f.shape[2]))
    return Coherence(regions=subject_regions(f), max_jump=outside, impact_jump=at)


def time_shuffled(frames, seed: int = 0) -> np.ndarray:
    """The clip's frames in a fixed random order: the baseline of the jump measure (a subject that teleports)."""
    f = np.asarray(frames)
    return f[np.random.default_rng(seed).permutation(f.shape[0])]


def double_exposure(frames) -> np.ndarray:
    """Every frame overlaid with the frame half the clip later (per pixel, whichever is farther from the clip's
    background): the baseline of the region measure (a doubled subject, as at two heights at once)."""
    f = as_frames(frames)
    other = np.roll(f, f.shape[0] // 2, axis=0)
    bg = np.median(f[:, ::2, ::2].reshape(-1, 3), axis=0)
    farther = ((other - bg) ** 2).sum(-1) > ((f - bg) ** 2).sum(-1)
    return np.where(farther[..., None], other, f).astype(np.uint8)
