"""Anti-aliased activation of BigVGAN: upsample, apply a periodic nonlinearity, low-pass and downsample.

Snake-type activations create harmonics far above the signal band; running them at twice the sample
rate and low-passing back keeps those harmonics from folding into the audible band. The low-pass is a
Kaiser-windowed sinc whose values are fixed by (cutoff, half_width, kernel_size), so the filters are
computed here rather than read from checkpoints.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from .chunking import Edges


def kaiser_sinc_filter(cutoff: float, half_width: float, kernel_size: int) -> torch.Tensor:
    """Low-pass FIR taps `[1, 1, kernel_size]` summing to 1.

    `cutoff` and `half_width` are in cycles per sample (0.5 = Nyquist). The Kaiser beta follows the
    standard attenuation rule for a transition band of 4*half_width.
    """
    if not 0.0 < cutoff <= 0.5:
        raise ValueError(f"kaiser_sinc_filter: cutoff={cutoff}, expected 0 < cutoff <= 0.5")
    half = kernel_size // 2
    attenuation = 2.285 * (half - 1) * math.pi * (4 * half_width) + 7.95
    if attenuation > 50.0:
        beta = 0.1102 * (attenuation - 8.7)
    elif attenuation >= 21.0:
        beta = 0.5842 * (attenuation - 21.0) ** 0.4 + 0.07886 * (attenuation - 21.0)
    else:
        beta = 0.0
    window = torch.kaiser_window(kernel_size, periodic=False, beta=beta)
    if kernel_size % 2 == 0:
        # Even length: taps sit half-way between samples, symmetric about the centre.
        t = torch.arange(-half, half) + 0.5
    else:
        t = torch.arange(kernel_size) - half
    taps = 2 * cutoff * window * torch.sinc(2 * cutoff * t)
    taps = taps / taps.sum()  # unit DC gain, so a constant passes through unchanged
    return taps.view(1, 1, kernel_size)


class UpSample1d(nn.Module):
    """Integer-ratio upsampling by zero-stuffing (transposed conv) followed by the sinc low-pass."""

    def __init__(self, ratio: int = 2, kernel_size: int = 12):
        super().__init__()
        self.ratio = ratio
        self.pad = kernel_size // ratio - 1
        self.crop_left = self.pad * ratio + (kernel_size - ratio) // 2
        self.crop_right = self.pad * ratio + (kernel_size - ratio + 1) // 2
        # Non-persistent: the taps are a deterministic function of the ratio, never a trained value.
        self.register_buffer("filter", kaiser_sinc_filter(0.5 / ratio, 0.6 / ratio, kernel_size), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        channels = x.shape[1]
        x = F.pad(x, (self.pad, self.pad), mode="replicate")
        taps = self.filter.to(x.dtype).expand(channels, -1, -1)
        # Zero-stuffing divides the signal energy by the ratio; multiply back.
        x = self.ratio * F.conv_transpose1d(x, taps, stride=self.ratio, groups=channels)
        return x[..., self.crop_left:x.shape[-1] - self.crop_right]


class DownSample1d(nn.Module):
    """Integer-ratio downsampling: the sinc low-pass evaluated at every `ratio`-th sample."""

    def __init__(self, ratio: int = 2, kernel_size: int = 12):
        super().__init__()
        self.ratio = ratio
        self.pad_left = kernel_size // 2 - (1 if kernel_size % 2 == 0 else 0)
        self.pad_right = kernel_size // 2
        self.register_buffer("filter", kaiser_sinc_filter(0.5 / ratio, 0.6 / ratio, kernel_size), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        channels = x.shape[1]
        x = F.pad(x, (self.pad_left, self.pad_right), mode="replicate")
        taps = self.filter.to(x.dtype).expand(channels, -1, -1)
        return F.conv1d(x, taps, stride=self.ratio, groups=channels)


class SnakeBeta(nn.Module):
    """x + sin²(a·x)/b per channel, with a = exp(alpha) and b = exp(beta) (BigVGAN's log-scale form)."""

    def __init__(self, channels: int, log_scale: bool = True):
        super().__init__()
        self.log_scale = log_scale
        init = 0.0 if log_scale else 1.0
        self.alpha = nn.Parameter(torch.full((channels,), init))
        self.beta = nn.Parameter(torch.full((channels,), init))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        alpha = self.alpha.view(1, -1, 1)
        beta = self.beta.view(1, -1, 1)
        if self.log_scale:
            alpha = alpha.exp()
            beta = beta.exp()
        # 1e-9 keeps the reference's guard against a zero magnitude parameter.
        return x + (1.0 / (beta + 1e-9)) * torch.sin(x * alpha).pow(2)


class Activation1d(nn.Module):
    """upsample x`ratio` -> activation -> low-pass and downsample x`ratio`; length is preserved.

    Attribute names (`act`) follow the checkpoint keys (`...activations.N.act.alpha`).
    """

    def __init__(self, act: nn.Module, ratio: int = 2, kernel_size: int = 12):
        super().__init__()
        self.act = act
        self.upsample = UpSample1d(ratio, kernel_size)
        self.downsample = DownSample1d(ratio, kernel_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.downsample(self.act(self.upsample(x)))

    def edges(self, e: Edges) -> Edges:
        """Wrong positions after this activation given `e` before it (see audio.chunking)."""
        up, down = self.upsample, self.downsample
        e = e.pad(up.pad, up.pad).conv_transpose(up.filter.shape[-1], up.ratio).crop(up.crop_left, up.crop_right)
        return e.strided_conv(down.filter.shape[-1], down.ratio, down.pad_left, down.pad_right)
