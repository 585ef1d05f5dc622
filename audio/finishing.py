"""Audio finishing: the vocoder's 16 kHz mono waveform -> ComfyUI `AUDIO` at a delivery rate and layout.

Order: resample (soxr) -> peak-safe gain -> channel layout. The gain comes after resampling because a
band-limited resampler can overshoot sample peaks slightly (Gibbs ringing).

Gain rule (`peak_safe_gain`): each clip of the batch is scaled by min(1, ceiling / peak), where peak is its
largest absolute sample over all channels and ceiling = 10^(ceiling_dbfs/20). Loud clips come down to the
ceiling; quiet clips and silence are left untouched, so noise is never amplified.
"""

from __future__ import annotations

import numpy as np
import soxr
import torch

from ..errors import InputShapeError, InputValueError

# ComfyUI's AUDIO type: {"waveform": Tensor[B, C, S] float32 on CPU, "sample_rate": int}.
AudioDict = dict


def _check_waveform(what: str, waveform: torch.Tensor) -> None:
    if not isinstance(waveform, torch.Tensor) or waveform.ndim != 3 or waveform.shape[-1] < 1:
        shape = tuple(waveform.shape) if isinstance(waveform, torch.Tensor) else type(waveform).__name__
        raise InputShapeError(f"{what}: waveform {shape}, expected a tensor [B, C, S] with S >= 1")
    bad = int((~torch.isfinite(waveform)).sum())
    if bad:
        raise InputValueError(f"{what}: waveform has {bad} non-finite values (NaN/inf); expected all finite")


def _check_rate(name: str, rate: int) -> int:
    if isinstance(rate, bool) or not isinstance(rate, (int, np.integer)) or rate <= 0:
        raise InputValueError(f"{name}={rate!r}, expected a positive integer sample rate in Hz")
    return int(rate)


def resampled_length(num_samples: int, rate_in: int, rate_out: int) -> int:
    """Length after resampling: round(S·rate_out/rate_in), so audio and video durations stay tied."""
    return int(round(num_samples * rate_out / rate_in))


def resample(waveform: torch.Tensor, rate_in: int, rate_out: int, quality: str = "HQ") -> torch.Tensor:
    """Band-limited resampling `[B, C, S]` -> `[B, C, resampled_length(S)]` with soxr (float32, on CPU).

    soxr may return one sample more or less than the rounded length; the result is trimmed or padded
    with its last sample to exactly that length.
    """
    _check_waveform("resample", waveform)
    rate_in, rate_out = _check_rate("rate_in", rate_in), _check_rate("rate_out", rate_out)
    if rate_in == rate_out:
        return waveform.to(device="cpu", dtype=torch.float32)
    target = resampled_length(waveform.shape[-1], rate_in, rate_out)
    data = waveform.detach().to(device="cpu", dtype=torch.float32).numpy()
    out = np.empty((data.shape[0], data.shape[1], target), dtype=np.float32)
    for b in range(data.shape[0]):
        # soxr takes [frames, channels] and keeps the channels in step.
        y = soxr.resample(np.ascontiguousarray(data[b].T), rate_in, rate_out, quality=quality).T
        n = min(target, y.shape[1])
        out[b, :, :n] = y[:, :n]
        out[b, :, n:] = y[:, n - 1:n] if n else 0.0
    return torch.from_numpy(out)


def peak_safe_gain(waveform: torch.Tensor, ceiling_dbfs: float = -1.0) -> torch.Tensor:
    """Scale each clip down so its peak is at most `ceiling_dbfs`; never scale up (see the module doc)."""
    _check_waveform("peak_safe_gain", waveform)
    if not ceiling_dbfs <= 0.0:
        raise InputValueError(f"peak_safe_gain: ceiling_dbfs={ceiling_dbfs}, expected <= 0 dBFS")
    ceiling = 10.0 ** (ceiling_dbfs / 20.0)
    peak = waveform.abs().amax(dim=(1, 2), keepdim=True)
    gain = (ceiling / peak.clamp_min(1e-12)).clamp(max=1.0)
    return waveform * gain


def to_channels(waveform: torch.Tensor, channels: int) -> torch.Tensor:
    """Mono <-> stereo: 1 -> 2 duplicates the channel (identical left and right), 2 -> 1 averages them."""
    _check_waveform("to_channels", waveform)
    have = waveform.shape[1]
    if channels not in (1, 2):
        raise InputValueError(f"to_channels: channels={channels}, expected 1 (mono) or 2 (stereo)")
    if have == channels:
        return waveform
    if have == 1:
        return waveform.expand(-1, channels, -1).contiguous()
    if have == 2 and channels == 1:
        return waveform.mean(dim=1, keepdim=True)
    raise InputShapeError(f"to_channels: waveform has {have} channels, expected 1 or 2")


def finish_audio(waveform: torch.Tensor, sample_rate: int = 16_000, *, target_rate: int = 48_000,
                 channels: int = 2, ceiling_dbfs: float = -1.0) -> AudioDict:
    """Vocoder output `[B, C, S]` at `sample_rate` -> ComfyUI AUDIO at `target_rate` with `channels` channels,
    peaks at most `ceiling_dbfs`."""
    x = resample(waveform, sample_rate, target_rate)
    x = peak_safe_gain(x, ceiling_dbfs)
    x = to_channels(x, channels)
    return {"waveform": x.to(torch.float32).contiguous(), "sample_rate": int(target_rate)}
