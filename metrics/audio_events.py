"""What happens in a toy-world soundtrack, read from the waveform alone: onsets, tones and their pitch.

Onsets come from a short-time energy envelope crossing a threshold set relative to the clip's loudest
moment (so the measure does not depend on the output gain) and above its noise floor, with a minimum gap
between onsets; each onset
is then moved to the first sample that is loud compared with what follows, to sub-millisecond precision.
A segment lasts while the envelope stays above the threshold. Long segments get a fundamental frequency
(harmonic sum over the spectrum), mapped to the nearest voice class; every segment gets a spectral
centroid, which separates low thuds from high clicks.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from ..errors import InputShapeError, InputValueError
from ..toyworld.vocabulary import VOICE_HZ

REL_THRESHOLD_DB = -20.0  # envelope threshold, relative to the clip's loudest envelope frame
FLOOR_MARGIN_DB = 6.0  # ...and at least this far above the noise floor (generated audio hisses)
FLOOR_PERCENTILE = 10.0  # the noise floor: this percentile of the envelope (events fill far less of a clip)
MIN_GAP_S = 0.08  # two onsets closer than this are one event
HOP_S, WINDOW_S = 0.004, 0.016
ATTACK_FRACTION = 0.3  # an onset is the first sample reaching this share of the peak just after it
VOICED_MIN_S = 0.12  # segments at least this long get a pitch (impacts die out sooner)
F0_RANGE_HZ = (80.0, 1500.0)
HARMONIC_WEIGHTS = (1.0, 0.8, 0.6)
CENTROID_WINDOW_S = 0.02
TIMBRE_SPLIT_HZ = 1000.0  # spectral centroid below: thud, above: click


@dataclass(frozen=True)
class AudioSegment:
    start: int  # first sample
    end: int  # one past the last sample above threshold (to the envelope's resolution)
    f0_hz: float | None  # fundamental, for segments of at least VOICED_MIN_S
    centroid_hz: float  # spectral centroid of the first CENTROID_WINDOW_S


@dataclass(frozen=True)
class AudioEvents:
    sample_rate: int
    onsets: tuple[int, ...]  # first sample of each segment
    segments: tuple[AudioSegment, ...]
    f0_hz: float | None  # duration-weighted median over voiced segments
    pitch_class: str | None  # nearest of VOICE_HZ (in octaves)
    timbre: str | None  # "thud" | "click", from the median centroid

    def onset_frames(self, fps: float) -> np.ndarray:
        """Onsets in (fractional) video frames: sample * fps / sample_rate."""
        return np.asarray(self.onsets, np.float64) * fps / self.sample_rate


def as_mono(audio) -> np.ndarray:
    """float64 `[S]` from `[S]`, `[C, S]` or `[1, C, S]` (ComfyUI AUDIO waveform), channels averaged."""
    x = np.asarray(audio, dtype=np.float64)
    if x.ndim == 3 and x.shape[0] == 1:
        x = x[0]
    if x.ndim == 2:
        x = x.mean(0)
    if x.ndim != 1 or x.size == 0:
        raise InputShapeError(f"audio: shape {np.shape(audio)}; expected [S], [C, S] or [1, C, S] with S > 0")
    if not np.isfinite(x).all():
        raise InputValueError("audio: contains NaN or infinite samples; expected finite values")
    return x


def detect_audio_events(
    audio, sample_rate: int, rel_threshold_db: float = REL_THRESHOLD_DB, min_gap_s: float = MIN_GAP_S
) -> AudioEvents:
    """Onsets, segments, pitch and timbre of one soundtrack (`[S]`, `[C, S]` or `[1, C, S]`, any gain)."""
    x = as_mono(audio)
    hop, win = max(1, round(HOP_S * sample_rate)), max(2, round(WINDOW_S * sample_rate))
    env = _envelope(x, hop, win)
    if env.max() <= 0:
        return AudioEvents(sample_rate, (), (), None, None, None)
    floor = np.percentile(env, FLOOR_PERCENTILE) * 10 ** (FLOOR_MARGIN_DB / 10)
    above = env >= max(env.max() * 10 ** (rel_threshold_db / 10), floor)
    min_gap = min_gap_s * sample_rate

    spans: list[list[int]] = []  # [onset sample, end sample] of each event
    for k in np.flatnonzero(above & ~np.concatenate([[False], above[:-1]])):
        end = k + int(np.argmin(above[k:])) if not above[k:].all() else above.size
        start = _attack_sample(x, k, hop, win)
        if spans and start - spans[-1][0] < min_gap:
            spans[-1][1] = end * hop + win // 2  # too close: the same event goes on
        else:
            spans.append([start, end * hop + win // 2])
    head = max(16, round(CENTROID_WINDOW_S * sample_rate))
    noise = _noise_power(x, env <= np.percentile(env, FLOOR_PERCENTILE), hop, head)
    segments = tuple(_segment(x, a, min(b, x.size), sample_rate, noise) for a, b in spans)

    voiced = [s for s in segments if s.f0_hz is not None]
    f0 = _weighted_median([s.f0_hz for s in voiced], [s.end - s.start for s in voiced]) if voiced else None
    pitch = min(VOICE_HZ, key=lambda c: abs(math.log2(f0 / VOICE_HZ[c]))) if f0 else None
    timbre = None
    if segments:
        timbre = "thud" if np.median([s.centroid_hz for s in segments]) < TIMBRE_SPLIT_HZ else "click"
    return AudioEvents(sample_rate, tuple(s.start for s in segments), segments, f0, pitch, timbre)


def _envelope(x: np.ndarray, hop: int, win: int) -> np.ndarray:
    # Mean energy of x[k*hop : k*hop + win] for every k, from a cumulative sum (O(S)).
    c = np.concatenate([[0.0], np.cumsum(x * x)])
    starts = np.arange(0, x.size, hop)
    ends = np.minimum(starts + win, x.size)
    return (c[ends] - c[starts]) / win


def _attack_sample(x: np.ndarray, k: int, hop: int, win: int) -> int:
    """The first sample of the sound that lifted envelope frame k over the threshold.

    Window k ends at k*hop + win and window k-1 (below threshold) began at (k-1)*hop, so the sound started
    in between; take the first sample there that reaches ATTACK_FRACTION of the peak shortly after."""
    lo, hi = max(0, (k - 1) * hop), min(x.size, k * hop + win)
    peak = np.abs(x[lo : min(x.size, hi + win)]).max()
    loud = np.flatnonzero(np.abs(x[lo:hi]) >= ATTACK_FRACTION * peak)
    return lo + int(loud[0]) if loud.size else k * hop


def _power(x: np.ndarray, n: int) -> np.ndarray:
    """Hann-windowed power spectrum of x (last axis), zero-padded to n."""
    return np.abs(np.fft.rfft(x * np.hanning(x.shape[-1]), n)) ** 2


def _noise_power(x: np.ndarray, quiet: np.ndarray, hop: int, n: int) -> np.ndarray:
    """Mean power spectrum (length-n windows) of the quietest stretches: the background the events sit on."""
    starts = [k * hop for k in np.flatnonzero(quiet) if k * hop + n <= x.size][:64]
    if not starts:
        return np.zeros(n // 2 + 1)
    return _power(np.stack([x[s : s + n] for s in starts]), n).mean(0)


def _segment(x: np.ndarray, start: int, end: int, sample_rate: int, noise: np.ndarray) -> AudioSegment:
    n = (noise.size - 1) * 2
    # Centroid of what the event adds over the background, so hiss does not turn every thud into a click.
    power = np.maximum(_power(x[start : start + n], n) - noise, 0.0)
    freqs = np.fft.rfftfreq(n, 1 / sample_rate)
    centroid = float((freqs * power).sum() / max(power.sum(), 1e-20))
    f0 = None
    if end - start >= VOICED_MIN_S * sample_rate:
        trim = (end - start) // 6  # skip the on/off ramps
        f0 = estimate_f0(x[start + trim : end - trim], sample_rate)
    return AudioSegment(start, end, f0, centroid)


def estimate_f0(x: np.ndarray, sample_rate: int, f_range: tuple[float, float] = F0_RANGE_HZ) -> float:
    """Fundamental frequency by harmonic sum: the candidate whose first harmonics carry the most magnitude.

    Weights that fall with the harmonic number keep an octave-down candidate (which only collects the even
    harmonics) and an octave-up one (which misses the fundamental) below the true one."""
    n_fft = 1 << max(13, math.ceil(math.log2(x.size)))
    mag = np.abs(np.fft.rfft(x * np.hanning(x.size), n_fft))
    freqs = np.fft.rfftfreq(n_fft, 1 / sample_rate)
    candidates = np.geomspace(f_range[0], f_range[1], 600)
    score = sum(w * np.interp((h + 1) * candidates, freqs, mag) for h, w in enumerate(HARMONIC_WEIGHTS))
    return float(candidates[int(np.argmax(score))])


def _weighted_median(values: list[float], weights: list[int]) -> float:
    order = np.argsort(values)
    cum = np.cumsum(np.asarray(weights, np.float64)[order])
    return float(np.asarray(values)[order][np.searchsorted(cum, cum[-1] / 2)])
