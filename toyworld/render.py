"""Render a `SceneSpec` into frames and a waveform whose sounds happen exactly when the picture says so.

Time base: frame f shows time f / fps, and audio sample s plays at time s / sample_rate, so the sound of an
event on frame f starts at sample round(f * sample_rate / fps). A clip of `duration` seconds has
1 + duration * fps frames (the form 1 + 4k that a 4x-temporal video VAE needs) and duration * sample_rate
samples, the convention of Ovi (121 frames at 24 fps with 5 s of audio).

The seed decides what the caption leaves open: event timing, object size and exact place, small colour
jitter and the noise inside each sound. Same spec, seed and config: bit-identical clip.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from ..errors import InputValueError
from . import sound
from .scenes import SceneSpec, caption_for
from .vocabulary import BACKGROUND_COLOURS, OBJECT_COLOURS, POSITIONS, STRUCTURE_SHADE, VOICE_HZ

POSITION_X = dict(zip(POSITIONS, (0.22, 0.5, 0.78)))  # bounce column, as a fraction of the width
MOUTH_COLOUR = (45, 10, 15)
EYE_WHITE, PUPIL = (245, 245, 245), (20, 20, 30)


@dataclass(frozen=True)
class WorldConfig:
    width: int = 64
    height: int = 64
    fps: float = 12.0
    duration: float = 2.0
    sample_rate: int = 16000

    def __post_init__(self):
        steps = self.duration * self.fps
        if min(self.width, self.height) < 32:
            raise InputValueError(f"WorldConfig: width x height {self.width}x{self.height}; expected both >= 32")
        if self.duration <= 0 or abs(steps - round(steps)) > 1e-6 or round(steps) % 4 or round(steps) < 12:
            raise InputValueError(
                f"WorldConfig: duration*fps = {self.duration}*{self.fps} = {steps:g}; expected a multiple of 4, "
                f"at least 12, so that the clip has 1+4k frames"
            )

    @property
    def num_frames(self) -> int:
        return 1 + round(self.duration * self.fps)

    @property
    def num_samples(self) -> int:
        return round(self.duration * self.sample_rate)

    def frame_to_sample(self, frame: float) -> int:
        return round(frame * self.sample_rate / self.fps)

    def frames_for(self, seconds: float) -> int:
        """At least one frame; the number of whole frames that span `seconds` (rounded up)."""
        return max(1, math.ceil(seconds * self.fps - 1e-9))


@dataclass(frozen=True, eq=False)  # holds arrays: compare fields, not whole truths
class ClipTruth:
    """What really happens in a clip. Frame intervals are [start, end) and so are sample intervals.

    event_frames: impact frames (bounce, slide) or the first open-mouth frame of each syllable (speak);
    event_samples: the first sample of each event's sound; mouth_open_frames / tone_samples: the syllables;
    centres: the subject's centre (x, y) in pixels per frame; pitch_class / pitch_hz: the voice (speak),
    or "low"/"high" and the thud's sine frequency (None for a click) for impacts.
    """

    spec: SceneSpec
    caption: str
    event_frames: tuple[int, ...]
    event_samples: tuple[int, ...]
    mouth_open_frames: tuple[tuple[int, int], ...]
    tone_samples: tuple[tuple[int, int], ...]
    colour_name: str
    colour_rgb: tuple[int, int, int]
    background_name: str
    background_rgb: tuple[int, int, int]
    pitch_class: str
    pitch_hz: float | None
    count: int
    centres: np.ndarray


@dataclass(frozen=True, eq=False)
class Clip:
    frames: np.ndarray  # uint8 [T, H, W, 3]
    audio: np.ndarray  # float32 [S], mono
    fps: float
    sample_rate: int
    truth: ClipTruth


def render_clip(spec: SceneSpec, seed: int, config: WorldConfig = WorldConfig()) -> Clip:
    """Frames, waveform and ground truth of one scene; `seed` fixes everything the caption leaves open."""
    rng = np.random.default_rng(seed)
    cfg = config
    bg = _jitter(BACKGROUND_COLOURS[spec.background], 6, rng)
    fg = _jitter(OBJECT_COLOURS[spec.colour], 12, rng)
    canvas = np.empty((cfg.num_frames, cfg.height, cfg.width, 3), np.float32)
    canvas[:] = bg
    floor_top = cfg.height - max(2, round(0.06 * cfg.height))
    canvas[:, floor_top:] = _shade(bg)
    audio = np.zeros(cfg.num_samples, np.float32)
    mouth_frames: list[tuple[int, int]] = []
    tone_samples: list[tuple[int, int]] = []

    if spec.kind == "speak":
        mouth_frames = _syllables(spec.count, cfg, rng)
        open_mask = np.zeros(cfg.num_frames, bool)
        for a, b in mouth_frames:
            open_mask[a:b] = True
            start, end = cfg.frame_to_sample(a), cfg.frame_to_sample(b)
            sound.place(audio, sound.voice(VOICE_HZ[spec.voice], end - start, cfg.sample_rate), start)
            tone_samples.append((start, end))
        centre = _draw_face(canvas, fg, open_mask, cfg, rng)
        centres = np.tile(centre, (cfg.num_frames, 1))
        events = [a for a, _ in mouth_frames]
        pitch_class, pitch_hz = spec.voice, VOICE_HZ[spec.voice]
    else:
        half = rng.uniform(0.08, 0.10) * min(cfg.width, cfg.height)
        if spec.kind == "bounce":
            events = _spaced_frames(spec.count, cfg, rng)
            centres = _bounce_path(events, half, floor_top, cfg, rng, POSITION_X[spec.position])
        else:
            wall = max(2, round(0.06 * cfg.width))
            cols = slice(cfg.width - wall, None) if spec.direction == "right" else slice(0, wall)
            canvas[:, :floor_top, cols] = _shade(bg)
            events = [round(rng.uniform(0.35, 0.7) * (cfg.num_frames - 1))]
            centres = _slide_path(events[0], spec.direction, half, wall, floor_top, cfg)
        _draw_object(canvas, spec.shape, fg, centres, half)
        if spec.sound == "thud":
            pitch_class, pitch_hz = "low", float(rng.uniform(*sound.THUD_HZ_RANGE))
        else:
            pitch_class, pitch_hz = "high", None
        for f in events:
            burst = sound.thud(pitch_hz, rng, cfg.sample_rate) if pitch_hz else sound.click(rng, cfg.sample_rate)
            sound.place(audio, burst, cfg.frame_to_sample(f))

    truth = ClipTruth(
        spec=spec,
        caption=caption_for(spec),
        event_frames=tuple(int(f) for f in events),
        event_samples=tuple(cfg.frame_to_sample(f) for f in events),
        mouth_open_frames=tuple(mouth_frames),
        tone_samples=tuple(tone_samples),
        colour_name=spec.colour,
        colour_rgb=tuple(int(c) for c in fg),
        background_name=spec.background,
        background_rgb=tuple(int(c) for c in bg),
        pitch_class=pitch_class,
        pitch_hz=pitch_hz,
        count=len(events),
        centres=centres.astype(np.float32),
    )
    frames = np.rint(canvas).astype(np.uint8)  # every pixel is a blend of in-range colours
    return Clip(frames=frames, audio=audio, fps=cfg.fps, sample_rate=cfg.sample_rate, truth=truth)


def _jitter(rgb, amount: int, rng: np.random.Generator) -> np.ndarray:
    return np.clip(np.asarray(rgb, np.float32) + rng.integers(-amount, amount + 1, 3), 0, 255)


def _shade(bg: np.ndarray) -> np.ndarray:
    # Floor and walls: a little lighter than the background (under the metrics' foreground threshold).
    return np.minimum(bg + STRUCTURE_SHADE, 255)


def _spaced_frames(n: int, cfg: WorldConfig, rng: np.random.Generator) -> list[int]:
    """n impact frames: the first after a short fall, gaps of 1/3 to 2/3 s, the last well before the end."""
    first, gap_lo, gap_hi = cfg.frames_for(0.25), cfg.frames_for(1 / 3), cfg.frames_for(2 / 3)
    last_allowed = cfg.num_frames - 1 - cfg.frames_for(0.25)
    for _ in range(100):
        frames = [int(rng.integers(first, first + gap_lo + 1))]
        for _ in range(n - 1):
            frames.append(frames[-1] + int(rng.integers(gap_lo, gap_hi + 1)))
        if frames[-1] <= last_allowed:
            return frames
    # Short clips: fall back to evenly spread impacts.
    return [round(first + i * (last_allowed - first) / max(1, n - 1)) for i in range(n)]


def _bounce_path(impacts, half, floor_top, cfg, rng, x_frac) -> np.ndarray:
    """Centres of a bouncing object: parabolic arcs that touch the floor exactly on the impact frames."""
    top_room = floor_top - 2 * half - 2  # highest the bottom of the object may rise
    # Gravity in px/frame^2: an arc of half a second reaches 60% of the room; taller arcs are capped.
    g = 8 * 0.6 * top_room / (0.5 * cfg.fps) ** 2
    t = np.arange(cfg.num_frames, dtype=np.float64)
    height = np.zeros_like(t)
    first = impacts[0]
    pre = t <= first
    height[pre] = min(top_room, g * first**2 / 2) * (1 - (t[pre] / first) ** 2)  # dropped from rest at t=0
    spans = list(zip(impacts, impacts[1:]))
    last_span = max(cfg.num_frames - impacts[-1], impacts[-1] - impacts[-2] if len(impacts) > 1 else 0)
    spans.append((impacts[-1], impacts[-1] + last_span))  # the final arc lands after the clip's end
    for a, b in spans:
        inside = (t > a) & (t < b)
        s = (t[inside] - a) / (b - a)
        height[inside] = min(top_room, g * (b - a) ** 2 / 8) * 4 * s * (1 - s)
    x = x_frac * cfg.width + rng.uniform(-0.03, 0.03) * cfg.width
    return np.stack([np.full_like(t, x), floor_top - half - height], 1)


def _slide_path(contact: int, direction: str, half, wall, floor_top, cfg) -> np.ndarray:
    """Centres of a sliding object: steady speed into the wall on `contact`, then a slow rebound."""
    t = np.arange(cfg.num_frames, dtype=np.float64)
    hit_x = cfg.width - wall - half  # centre when touching a right-hand wall
    start_x = half + 1
    speed = (hit_x - start_x) / contact
    x = np.where(t <= contact, hit_x - speed * (contact - t), hit_x - 0.35 * speed * (t - contact))
    if direction == "left":
        x = cfg.width - x
    return np.stack([x, np.full_like(t, floor_top - half)], 1)


def _pixel_grid(shape: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """x and y of pixel centres, broadcastable to (height, width)."""
    h, w = shape
    return np.arange(w, dtype=np.float32)[None, :] + 0.5, np.arange(h, dtype=np.float32)[:, None] + 0.5


def _paint(canvas: np.ndarray, signed_dist: np.ndarray, rgb) -> None:
    # One-pixel soft edge: coverage from the signed distance (positive inside), so motion is sub-pixel smooth.
    cover = np.clip(signed_dist + 0.5, 0.0, 1.0)[..., None]
    canvas *= 1 - cover
    canvas += cover * np.asarray(rgb, np.float32)


def _draw_object(canvas: np.ndarray, shape: str, rgb, centres: np.ndarray, half: float) -> None:
    # Paint only the band the object ever covers (a column for a bounce, a row for a slide): 5x less work.
    reach = half + 2
    y0, x0 = (max(0, int(np.floor(centres[:, i].min() - reach))) for i in (1, 0))
    y1, x1 = (int(np.ceil(centres[:, i].max() + reach)) for i in (1, 0))
    band = canvas[:, y0:y1, x0:x1]
    xs, ys = _pixel_grid(band.shape[1:3])
    dx = xs[None] + x0 - centres[:, 0, None, None].astype(np.float32)
    dy = ys[None] + y0 - centres[:, 1, None, None].astype(np.float32)
    if shape == "ball":
        sd = half - np.hypot(dx, dy)
    elif shape == "square":
        sd = half - np.maximum(np.abs(dx), np.abs(dy))
    else:  # triangle, apex up, base on the bottom edge of the box: min over its three edges
        slant = np.sqrt(np.float32(5))
        sd = np.minimum(half - dy, np.minimum(half - 2 * dx + dy, half + 2 * dx + dy) / slant)
    _paint(band, sd, rgb)


def _draw_face(canvas: np.ndarray, rgb, open_mask: np.ndarray, cfg: WorldConfig, rng) -> np.ndarray:
    """A round head with eyes and a mouth that is a dark oval when open and a thin line when shut."""
    r = rng.uniform(0.20, 0.24) * min(cfg.width, cfg.height)
    cx = cfg.width / 2 + rng.uniform(-1.5, 1.5)
    cy = 0.47 * cfg.height + rng.uniform(-1.5, 1.5)
    xs, ys = _pixel_grid((cfg.height, cfg.width))
    face = canvas[0].copy()
    _paint(face, r - np.hypot(xs - cx, ys - cy), rgb)
    for side in (-1, 1):
        ex, ey = cx + side * 0.4 * r, cy - 0.25 * r
        _paint(face, 0.17 * r - np.hypot(xs - ex, ys - ey), EYE_WHITE)
        _paint(face, 0.08 * r - np.hypot(xs - ex, ys - ey), PUPIL)
    shut, wide = face.copy(), face.copy()
    mx, my, mw = cx, cy + 0.42 * r, 0.38 * r
    line = np.minimum(mw - np.abs(xs - mx), 0.5 - np.abs(ys - my))
    _paint(shut, line, MOUTH_COLOUR)
    oval = (1 - np.hypot((xs - mx) / mw, (ys - my) / (0.22 * r))) * 0.22 * r
    _paint(wide, oval, MOUTH_COLOUR)
    canvas[:] = np.where(open_mask[:, None, None, None], wide[None], shut[None])
    return np.array([cx, cy])


def _syllables(n: int, cfg: WorldConfig, rng: np.random.Generator) -> list[tuple[int, int]]:
    """n mouth-open intervals [start, end) in frames: 0.15-0.4 s long, separated by >= 0.15 s of silence."""
    len_lo, len_hi = cfg.frames_for(0.15), cfg.frames_for(0.4)
    gap_lo, gap_hi = cfg.frames_for(0.15), cfg.frames_for(0.35)
    first, last_end = cfg.frames_for(0.15), cfg.num_frames - 1
    for _ in range(100):
        start, out = int(rng.integers(first, first + gap_hi + 1)), []
        for _ in range(n):
            end = start + int(rng.integers(len_lo, len_hi + 1))
            out.append((start, end))
            start = end + int(rng.integers(gap_lo, gap_hi + 1))
        if out[-1][1] <= last_end:
            return out
    span = (last_end - first) / n  # short clips: even syllables
    return [(round(first + i * span), round(first + i * span) + max(1, round(span * 0.6))) for i in range(n)]
