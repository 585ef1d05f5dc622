"""The toy world's sounds: impact bursts and the character's voice, each starting on its first sample.

Every sound is non-zero on its very first sample (a phase offset or a cosine start), so "the sound starts at
sample s" holds exactly: silence before s, sound at s. That is what the sync tests check, to one sample.
"""

from __future__ import annotations

import numpy as np

IMPACT_PEAK = 0.8
VOICE_PEAK = 0.5
VOICE_HARMONICS = (1.0, 0.5, 0.25)  # fundamental + 2 harmonics: a clear, buzzy pitch
THUD_HZ_RANGE = (90.0, 130.0)
THUD_DECAY_S = 0.03
CLICK_DECAY_S = 0.008
FADE_S = 0.003  # voice on/off ramps, inside the voiced interval, so no click at the edges


def thud(hz: float, rng: np.random.Generator, sample_rate: int) -> np.ndarray:
    """A low damped sine of `hz` with a faint noise transient."""
    t = np.arange(int(0.15 * sample_rate)) / sample_rate
    tone = np.sin(2 * np.pi * hz * t + np.pi / 4) * np.exp(-t / THUD_DECAY_S)
    transient = 0.15 * rng.standard_normal(t.size) * np.exp(-t / 0.004)
    return _peak(tone + transient, IMPACT_PEAK)


def click(rng: np.random.Generator, sample_rate: int) -> np.ndarray:
    """A short, bright noise burst (differenced white noise, fast exponential decay)."""
    n = int(0.06 * sample_rate)
    noise = np.diff(rng.standard_normal(n + 1))  # first difference tilts the spectrum up: a "high" click
    burst = noise * np.exp(-np.arange(n) / (CLICK_DECAY_S * sample_rate))
    burst[0] = burst[0] if abs(burst[0]) > 0.1 else 0.5  # audible from the first sample
    return _peak(burst, IMPACT_PEAK)


def voice(f0: float, n_samples: int, sample_rate: int) -> np.ndarray:
    """A harmonic tone of `n_samples`, cosine phase and raised-cosine ramps that stay non-zero at both ends."""
    t = np.arange(n_samples) / sample_rate
    tone = sum(a * np.cos(2 * np.pi * (h + 1) * f0 * t) for h, a in enumerate(VOICE_HARMONICS))
    ramp_len = min(int(FADE_S * sample_rate), n_samples // 2)
    ramp = 0.5 * (1 - np.cos(np.pi * np.arange(1, ramp_len + 1) / (ramp_len + 1)))
    env = np.ones(n_samples)
    env[:ramp_len] = ramp
    env[n_samples - ramp_len :] = ramp[::-1]
    return _peak(tone * env, VOICE_PEAK)


def place(track: np.ndarray, sound: np.ndarray, start: int) -> None:
    """Add `sound` into `track` from sample `start`, cut at the track's end."""
    n = max(0, min(sound.size, track.size - start))
    track[start : start + n] += sound[:n]


def _peak(x: np.ndarray, peak: float) -> np.ndarray:
    return (x * (peak / np.abs(x).max())).astype(np.float32)
