"""What happens in a toy-world video, read from its pixels alone: subject colour, impacts, an opening mouth.

Works on any frames `[T, H, W, 3]` (uint8 0..255 or float 0..1), generated ones included: the background is
the clip's median colour, the subject is what is far from it, and its colour is voted by nearest name.
Impacts are the frames where the subject's centre turns round sharply (lowest point of a bounce, the
extreme reached against a wall); speech is a dark mouth region opening inside the head.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..errors import InputShapeError, InputValueError
from ..toyworld.vocabulary import BACKGROUND_COLOURS, OBJECT_COLOURS, nearest_colour

FOREGROUND_DISTANCE = 70.0  # RGB distance from the background beyond which a pixel belongs to the subject
COLOUR_VOTE_DISTANCE = 110.0  # a subject pixel votes for a colour name only when this close to it
TURN_PROMINENCE = 0.04  # an impact's turn must move the centre by this fraction of the frame, both sides
MOUTH_CONTRAST = 0.15  # an open mouth fills at least this much more of the mouth region than a shut one
MODES = ("bounce", "slide", "speak")

_NAMES = tuple(OBJECT_COLOURS)
_PALETTE = np.array([OBJECT_COLOURS[n] for n in _NAMES], np.float32)


@dataclass(frozen=True, eq=False)  # holds an array: compare fields
class VideoEvents:
    """mode: which kind of event was looked for; event_frames: impact frames, or the first frame of each
    mouth opening; count: impacts or syllables; colour: the subject's colour name (None if no subject);
    centres: the subject's centre (x, y) per frame, NaN where it is not seen."""

    mode: str
    event_frames: tuple[int, ...]
    mouth_open: tuple[bool, ...]
    count: int
    colour: str | None
    colour_rgb: tuple[float, float, float] | None
    background: str
    centres: np.ndarray


def as_frames(frames) -> np.ndarray:
    """float32 `[T, H, W, 3]` in 0..255 from uint8 0..255 or float 0..1 (numpy, or a CPU torch tensor).

    A decoder's small overshoot past 0..1 is clipped; values far outside (a -1..1 or 0..255 float clip) are
    refused, since reading them as 0..1 would silently give wrong colours."""
    arr = np.asarray(frames)
    if arr.ndim != 4 or arr.shape[-1] != 3 or arr.shape[0] < 3:
        raise InputShapeError(f"frames: shape {arr.shape}; expected [T>=3, H, W, 3]")
    if arr.dtype == np.uint8:
        return arr.astype(np.float32)
    arr = arr.astype(np.float32)
    if not np.isfinite(arr).all() or arr.min() < -0.1 or arr.max() > 1.1:
        raise InputValueError(f"frames: float values in [{arr.min():g}, {arr.max():g}]; expected finite values in 0..1")
    return np.clip(arr, 0.0, 1.0) * 255.0


def detect_video_events(frames, kind: str | None = None) -> VideoEvents:
    """Events of one clip. `kind` ("bounce", "slide", "speak") says which event to look for; None guesses it
    from the motion (a still subject speaks, a mostly vertical path bounces, a horizontal one slides)."""
    if kind is not None and kind not in MODES:
        raise InputValueError(f"detect_video_events: kind {kind!r}; expected one of {MODES} or None")
    f = as_frames(frames)
    t, h, w, _ = f.shape
    bg, colour, rgb, subject = subject_pixels(f)
    background = nearest_colour(bg, BACKGROUND_COLOURS)
    no_mouth = (False,) * t
    if colour is None:
        centres = np.full((t, 2), np.nan)
        return VideoEvents(kind or "bounce", (), no_mouth, 0, None, None, background, centres)
    centres = _centres(f, subject, bg, rgb)

    mode = kind or _guess_mode(centres, w)
    if mode == "speak":
        mouth = _mouth_open(f, subject, np.asarray(rgb))
        starts = tuple(i for i in range(t) if mouth[i] and (i == 0 or not mouth[i - 1]))
        return VideoEvents(mode, starts, tuple(bool(m) for m in mouth), len(starts), colour, rgb, background, centres)
    axis = 1 if mode == "bounce" else 0
    size = h if mode == "bounce" else w
    turns = _sharp_turns(centres[:, axis], TURN_PROMINENCE * size, both_ways=mode == "slide")
    return VideoEvents(mode, turns, no_mouth, len(turns), colour, rgb, background, centres)


def subject_pixels(f: np.ndarray):
    """(background RGB, subject colour name or None, its mean RGB, per-pixel subject mask `[T, H, W]`) of frames
    already in 0..255 (as_frames): the background is the clip's median colour, the subject the pixels far from it
    that vote for the winning colour name."""
    bg = np.median(f[:, ::2, ::2].reshape(-1, 3), axis=0)
    foreground = _sq_dist(f, bg) > FOREGROUND_DISTANCE**2
    colour, rgb, subject = _subject(f, foreground)
    return bg, colour, rgb, subject


def _sq_dist(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Squared RGB distance over the last axis (broadcasting)."""
    d = a - b
    return np.einsum("...c,...c->...", d, d)


def _subject(f: np.ndarray, foreground: np.ndarray):
    """Colour name by majority vote of the foreground pixels, its mean RGB, and the per-pixel subject mask."""
    pix = f[foreground]
    if pix.shape[0] == 0:
        return None, None, np.zeros(foreground.shape, bool)
    dist = _sq_dist(pix[:, None, :], _PALETTE[None])
    nearest = dist.argmin(1)
    close = dist[np.arange(pix.shape[0]), nearest] < COLOUR_VOTE_DISTANCE**2
    votes = np.bincount(nearest[close], minlength=len(_NAMES))
    if votes.sum() == 0:
        return None, None, np.zeros(foreground.shape, bool)
    winner = int(votes.argmax())
    mine = close & (nearest == winner)
    rgb = tuple(float(c) for c in pix[mine].mean(0))
    subject = np.zeros(foreground.shape, bool)
    subject[foreground] = mine
    return _NAMES[winner], rgb, subject


def _centres(f: np.ndarray, subject: np.ndarray, bg: np.ndarray, rgb) -> np.ndarray:
    """Sub-pixel centre (x, y) per frame: pixels on and next to the subject, each weighted by how far its
    colour has gone from the background toward the subject's (its coverage, for soft edges). NaN where the
    subject is missing (under 4 pixels)."""
    t, h, w = subject.shape
    near = subject.copy()
    for axis in (1, 2):  # grow the mask by one pixel, to take in the partly covered edge
        near |= np.roll(subject, 1, axis) | np.roll(subject, -1, axis)
    direction = np.asarray(rgb, np.float32) - bg
    cover = np.clip(((f - bg) @ direction) / max(float(direction @ direction), 1e-6), 0.0, 1.0) * near
    mass = cover.sum((1, 2)).astype(np.float64)
    ys, xs = np.arange(h) + 0.5, np.arange(w) + 0.5
    with np.errstate(invalid="ignore", divide="ignore"):
        cx = (cover.sum(1) * xs).sum(1) / mass
        cy = (cover.sum(2) * ys).sum(1) / mass
    missing = subject.sum((1, 2)) < 4
    cx[missing] = np.nan
    cy[missing] = np.nan
    return np.stack([cx, cy], 1)


def _guess_mode(centres: np.ndarray, width: int) -> str:
    valid = centres[~np.isnan(centres).any(1)]
    if valid.shape[0] < 3:
        return "bounce"
    span_x, span_y = np.ptp(valid[:, 0]), np.ptp(valid[:, 1])
    if max(span_x, span_y) < TURN_PROMINENCE * width:
        return "speak"
    return "bounce" if span_y >= span_x else "slide"


def _sharp_turns(pos: np.ndarray, prominence: float, both_ways: bool) -> tuple[int, ...]:
    """Frames where `pos` peaks (and, if both_ways, dips) by at least `prominence`.

    For a bounce `pos` is the image row of the centre, so a peak is the lowest point. A peak's prominence is
    how far the signal falls on each side before it rises above the peak again (the smaller of the two
    falls), so a one-pixel wobble on the way to the wall is no impact. A flat top counts once, at its first
    frame (the moment of contact)."""
    valid = ~np.isnan(pos)
    if valid.sum() < 3:
        return ()
    idx = np.arange(pos.size)
    p = np.interp(idx, idx[valid], pos[valid])
    found = set()
    for q in (p, -p) if both_ways else (p,):
        for i in range(1, q.size - 1):
            if not (q[i] > q[i - 1] and q[i] >= q[i + 1]):
                continue
            j = i + 1
            while j < q.size and q[j] == q[i]:
                j += 1
            if j < q.size and min(_fall(q[i::-1]), _fall(q[j - 1 :])) >= prominence:
                found.add(i)
    return tuple(sorted(found))


def _fall(side: np.ndarray) -> float:
    """How far `side` (starting at a peak) drops below its first value before it first rises above it."""
    higher = np.flatnonzero(side > side[0])
    stretch = side[: higher[0]] if higher.size else side
    return float(side[0] - stretch.min())


def _mouth_open(f: np.ndarray, subject: np.ndarray, head_rgb: np.ndarray) -> np.ndarray:
    """Per frame: is the mouth region (lower middle of the head) mostly not head-coloured?"""
    head = subject.mean(0) >= 0.5  # pixels that are head-coloured most of the time: eyes and mouth excluded
    rows, cols = np.nonzero(head.any(1))[0], np.nonzero(head.any(0))[0]
    if rows.size < 4 or cols.size < 4:
        return np.zeros(f.shape[0], bool)
    cy, cx = (rows[0] + rows[-1] + 1) / 2, (cols[0] + cols[-1] + 1) / 2
    r = max(rows[-1] - rows[0] + 1, cols[-1] - cols[0] + 1) / 2
    y0, y1 = int(round(cy + 0.15 * r)), int(round(cy + 0.7 * r))
    x0, x1 = int(round(cx - 0.45 * r)), int(round(cx + 0.45 * r))
    region = f[:, y0:y1, x0:x1]
    if region.size == 0:
        return np.zeros(f.shape[0], bool)
    # Share of the region that is not head-coloured; open frames are those nearer the clip's widest mouth than
    # its narrowest (a shut mouth is a line, which fills a good part of the region in a small head).
    fill = (_sq_dist(region, head_rgb) > COLOUR_VOTE_DISTANCE**2).mean((1, 2))
    lo, hi = fill.min(), fill.max()
    return fill > (lo + hi) / 2 if hi - lo >= MOUTH_CONTRAST else np.zeros(f.shape[0], bool)
