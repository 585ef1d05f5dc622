"""Building blocks of the Wan2.2 video VAE, written as causal *streams* over time.

Every layer that looks at more than one frame is causal: output frame t depends on input frames <= t.
A clip can therefore be pushed through in temporal chunks of any size, provided each temporal layer
keeps the few frames it needs from the previous chunk. `StreamCache` holds that per-layer history,
keyed by the layer object itself, and knows whether the current chunk starts the stream (frame 0 is
special in Wan2.2: it is the "image" frame that is never temporally resampled).

Attribute names and `nn.Sequential` indices follow the reference modules exactly, because the
published checkpoints are addressed by those names (e.g. `residual.6.weight`, `resample.1.bias`).
"""

from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F

from .attention import attention


class StreamCache:
    """Causal state of one stream (one clip, or one spatial tile of a clip) through one encoder/decoder."""

    def __init__(self) -> None:
        self._history: dict[nn.Module, torch.Tensor] = {}
        # True while the chunk being processed begins with frame 0 of the stream.
        self.at_start = True

    def history(self, layer: nn.Module) -> torch.Tensor | None:
        return self._history.get(layer)

    def keep(self, layer: nn.Module, frames: torch.Tensor) -> None:
        # clone() so the cache does not pin the whole chunk tensor the frames were sliced from.
        self._history[layer] = frames.clone()

    def end_chunk(self) -> None:
        self.at_start = False


def _per_frame(fn, x: torch.Tensor) -> torch.Tensor:
    """Apply a 2-D image op to every frame of `[B, C, T, H, W]`."""
    b, _, t = x.shape[:3]
    y = fn(x.transpose(1, 2).flatten(0, 1))
    return y.unflatten(0, (b, t)).transpose(1, 2)


class CausalConv3d(nn.Conv3d):
    """3-D convolution, zero-padded symmetrically in space and only in the past in time.

    A temporal kernel of k frames needs k-1 earlier frames: zeros at the start of the stream,
    otherwise the last k-1 input frames of the previous chunk (kept in the `StreamCache`).
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size, padding=0, stride=1) -> None:
        pad_t, pad_h, pad_w = (padding,) * 3 if isinstance(padding, int) else padding
        super().__init__(in_channels, out_channels, kernel_size, stride=stride, padding=(0, pad_h, pad_w))
        # The reference pads 2*pad_t frames in front and none behind, so the output keeps T frames.
        self.past_frames = 2 * pad_t

    def forward(self, x: torch.Tensor, cache: StreamCache | None = None) -> torch.Tensor:
        if self.past_frames:
            past = cache.history(self) if cache is not None else None
            if past is None:
                past = x.new_zeros(*x.shape[:2], self.past_frames, *x.shape[3:])
            x = torch.cat([past.to(x), x], dim=2)
            if cache is not None:
                cache.keep(self, x[:, :, -self.past_frames :])
        if x.device.type == "cpu" and x.dtype == torch.float32 and torch.backends.mkldnn.is_available():
            # PyTorch routes small batch-1 CPU conv3d inputs (a one-frame chunk of a narrow model) to an im2col
            # kernel that is several times slower than oneDNN and allocates a 27x column buffer per call.
            return torch.mkldnn_convolution(x, self.weight, self.bias, self.padding, self.stride, self.dilation, self.groups)
        return super().forward(x)


class RMSNorm(nn.Module):
    """L2-normalise over channels (dim 1), rescale by sqrt(C) and a learned per-channel gain."""

    def __init__(self, dim: int, spatial_dims: int) -> None:
        super().__init__()
        self.scale = math.sqrt(dim)
        self.gamma = nn.Parameter(torch.ones(dim, *(1,) * spatial_dims))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.normalize(x, dim=1) * self.scale * self.gamma.to(x)


class ResidualBlock(nn.Module):
    """x + [RMS, SiLU, conv3, RMS, SiLU, conv3](x), with a 1x1x1 conv shortcut when widths differ."""

    def __init__(self, in_dim: int, out_dim: int) -> None:
        super().__init__()
        self.residual = nn.Sequential(
            RMSNorm(in_dim, 3),
            nn.SiLU(),
            CausalConv3d(in_dim, out_dim, 3, padding=1),
            RMSNorm(out_dim, 3),
            nn.SiLU(),
            nn.Identity(),  # the reference's dropout slot (inactive at inference); keeps index 6 for the conv
            CausalConv3d(out_dim, out_dim, 3, padding=1),
        )
        self.shortcut = CausalConv3d(in_dim, out_dim, 1) if in_dim != out_dim else nn.Identity()

    def forward(self, x: torch.Tensor, cache: StreamCache) -> torch.Tensor:
        norm1, act1, conv1, norm2, act2, _, conv2 = self.residual
        h = conv1(act1(norm1(x)), cache)
        h = conv2(act2(norm2(h)), cache)
        return h + self.shortcut(x)


class AttentionBlock(nn.Module):
    """Single-head self-attention over the h*w positions of each frame (no attention across time)."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.norm = RMSNorm(dim, 2)
        self.to_qkv = nn.Conv2d(dim, dim * 3, 1)
        self.proj = nn.Conv2d(dim, dim, 1)

    def _frame_attention(self, x: torch.Tensor) -> torch.Tensor:
        n, c, h, w = x.shape
        q, k, v = self.to_qkv(self.norm(x)).chunk(3, dim=1)
        # [N, C, h, w] -> [N, h*w, 1 head, C]
        q, k, v = (t.flatten(2).transpose(1, 2).unsqueeze(2) for t in (q, k, v))
        y = attention(q, k, v).squeeze(2).transpose(1, 2).reshape(n, c, h, w)
        return self.proj(y)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + _per_frame(self._frame_attention, x)


class Resample(nn.Module):
    """Spatial 2x up/down-sampling, optionally with 2x temporal up/down-sampling.

    Frame 0 of a stream is never resampled in time. Temporal upsampling turns every later frame into
    two (a causal 3x1x1 conv doubles the channels; the halves become consecutive frames). Temporal
    downsampling merges later frames in pairs with a stride-2 3x1x1 conv whose window reaches one
    frame back (frame 0 for the first pair).
    """

    def __init__(self, dim: int, mode: str) -> None:
        super().__init__()
        self.mode = mode
        if mode in ("upsample2d", "upsample3d"):
            self.resample = nn.Sequential(nn.Upsample(scale_factor=(2.0, 2.0), mode="nearest-exact"),
                                          nn.Conv2d(dim, dim, 3, padding=1))
        elif mode in ("downsample2d", "downsample3d"):
            # Pad right/bottom only, then a stride-2 conv: output position i sees inputs 2i..2i+2.
            self.resample = nn.Sequential(nn.ZeroPad2d((0, 1, 0, 1)), nn.Conv2d(dim, dim, 3, stride=(2, 2)))
        else:
            raise ValueError(f"Resample: unknown mode {mode!r}")
        if mode == "upsample3d":
            self.time_conv = CausalConv3d(dim, dim * 2, (3, 1, 1), padding=(1, 0, 0))
        elif mode == "downsample3d":
            self.time_conv = CausalConv3d(dim, dim, (3, 1, 1), stride=(2, 1, 1), padding=(0, 0, 0))

    def forward(self, x: torch.Tensor, cache: StreamCache) -> torch.Tensor:
        if self.mode == "upsample3d":
            x = self._upsample_time(x, cache)
        x = _per_frame(self.resample, x)
        if self.mode == "downsample3d":
            x = self._downsample_time(x, cache)
        return x

    def _upsample_time(self, x: torch.Tensor, cache: StreamCache) -> torch.Tensor:
        first, rest = _split_first_frame(x, cache)
        if rest.shape[2]:
            b, c, t, h, w = rest.shape
            y = self.time_conv(rest, cache).view(b, 2, c, t, h, w)
            # channels [0:c] become frame 2i, channels [c:2c] frame 2i+1
            rest = y.permute(0, 2, 3, 1, 4, 5).reshape(b, c, 2 * t, h, w)
        return rest if first is None else torch.cat([first, rest], dim=2)

    def _downsample_time(self, x: torch.Tensor, cache: StreamCache) -> torch.Tensor:
        first, rest = _split_first_frame(x, cache)
        past = first if first is not None else cache.history(self)
        frames = torch.cat([past.to(rest), rest], dim=2)
        cache.keep(self, frames[:, :, -1:])
        if rest.shape[2]:
            rest = self.time_conv(frames)
        return rest if first is None else torch.cat([first, rest], dim=2)


def _split_first_frame(x: torch.Tensor, cache: StreamCache) -> tuple[torch.Tensor | None, torch.Tensor]:
    """(frame 0, the frames after it) when the chunk starts the stream, else (None, all frames)."""
    if cache.at_start:
        return x[:, :, :1], x[:, :, 1:]
    return None, x


class AvgDown3D(nn.Module):
    """Parameter-free shortcut of a down stage: fold (time, h, w) sub-positions into channels, then average groups.

    An odd frame count gets one zero frame in front, so frame 0 of a stream is averaged with zeros.
    """

    def __init__(self, in_channels: int, out_channels: int, factor_t: int, factor_s: int) -> None:
        super().__init__()
        self.out_channels = out_channels
        self.factor_t, self.factor_s = factor_t, factor_s
        self.group = in_channels * factor_t * factor_s * factor_s // out_channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        ft, fs = self.factor_t, self.factor_s
        x = F.pad(x, (0, 0, 0, 0, (ft - x.shape[2] % ft) % ft, 0))
        b, c, t, h, w = x.shape
        x = x.view(b, c, t // ft, ft, h // fs, fs, w // fs, fs).permute(0, 1, 3, 5, 7, 2, 4, 6)
        x = x.reshape(b, self.out_channels, self.group, t // ft, h // fs, w // fs)
        return x.mean(dim=2)


class DupUp3D(nn.Module):
    """Parameter-free shortcut of an up stage: repeat channels and unfold them into (time, h, w) sub-positions.

    Frame 0 of a stream yields one frame, not factor_t, to match the main path.
    """

    def __init__(self, in_channels: int, out_channels: int, factor_t: int, factor_s: int) -> None:
        super().__init__()
        self.out_channels = out_channels
        self.factor_t, self.factor_s = factor_t, factor_s
        self.repeats = out_channels * factor_t * factor_s * factor_s // in_channels

    def forward(self, x: torch.Tensor, at_start: bool) -> torch.Tensor:
        ft, fs = self.factor_t, self.factor_s
        b, _, t, h, w = x.shape
        x = x.repeat_interleave(self.repeats, dim=1)
        x = x.view(b, self.out_channels, ft, fs, fs, t, h, w).permute(0, 1, 5, 2, 6, 3, 7, 4)
        x = x.reshape(b, self.out_channels, t * ft, h * fs, w * fs)
        return x[:, :, ft - 1 :] if at_start else x


class DownStage(nn.Module):
    """Encoder stage: residual blocks, then an optional 2x (spatial, maybe temporal) downsample, plus AvgDown3D."""

    def __init__(self, in_dim: int, out_dim: int, num_blocks: int, down_time: bool, down_space: bool) -> None:
        super().__init__()
        self.avg_shortcut = AvgDown3D(in_dim, out_dim, 2 if down_time else 1, 2 if down_space else 1)
        layers: list[nn.Module] = [ResidualBlock(in_dim if i == 0 else out_dim, out_dim) for i in range(num_blocks)]
        if down_space:
            layers.append(Resample(out_dim, "downsample3d" if down_time else "downsample2d"))
        self.downsamples = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor, cache: StreamCache) -> torch.Tensor:
        h = x
        for layer in self.downsamples:
            h = layer(h, cache)
        return h + self.avg_shortcut(x)


class UpStage(nn.Module):
    """Decoder stage: residual blocks, then an optional 2x (spatial, maybe temporal) upsample plus DupUp3D."""

    def __init__(self, in_dim: int, out_dim: int, num_blocks: int, up_time: bool, up_space: bool) -> None:
        super().__init__()
        self.avg_shortcut = DupUp3D(in_dim, out_dim, 2 if up_time else 1, 2) if up_space else None
        layers: list[nn.Module] = [ResidualBlock(in_dim if i == 0 else out_dim, out_dim) for i in range(num_blocks)]
        if up_space:
            layers.append(Resample(out_dim, "upsample3d" if up_time else "upsample2d"))
        self.upsamples = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor, cache: StreamCache) -> torch.Tensor:
        h = x
        for layer in self.upsamples:
            h = layer(h, cache)
        if self.avg_shortcut is None:
            return h
        return h + self.avg_shortcut(x, cache.at_start)


def _middle(width: int) -> nn.Sequential:
    return nn.Sequential(ResidualBlock(width, width), AttentionBlock(width), ResidualBlock(width, width))


def _head(width: int, out_channels: int) -> nn.Sequential:
    return nn.Sequential(RMSNorm(width, 3), nn.SiLU(), CausalConv3d(width, out_channels, 3, padding=1))


def _run(layers: nn.Sequential, x: torch.Tensor, cache: StreamCache) -> torch.Tensor:
    for layer in layers:
        x = layer(x, cache) if isinstance(layer, (ResidualBlock, CausalConv3d)) else layer(x)
    return x


# RGB is folded into 2x2 pixel patches before the encoder and unfolded after the decoder.
PATCH = 2
PATCHED_CHANNELS = 3 * PATCH * PATCH


class Encoder3d(nn.Module):
    """Pixels (patchified, 12 channels) -> 2*z_dim channels at 1/8 of the patch grid, 1 + (T-1)/4 frames."""

    def __init__(self, dim: int, out_channels: int, dim_mult: tuple[int, ...], num_res_blocks: int,
                 temperal_downsample: tuple[bool, ...]) -> None:
        super().__init__()
        dims = [dim] + [dim * m for m in dim_mult]
        self.conv1 = CausalConv3d(PATCHED_CHANNELS, dims[0], 3, padding=1)
        last = len(dim_mult) - 1
        self.downsamples = nn.Sequential(*(
            DownStage(dims[i], dims[i + 1], num_res_blocks,
                      down_time=i < len(temperal_downsample) and temperal_downsample[i], down_space=i != last)
            for i in range(len(dim_mult))
        ))
        self.middle = _middle(dims[-1])
        self.head = _head(dims[-1], out_channels)

    def forward(self, x: torch.Tensor, cache: StreamCache) -> torch.Tensor:
        x = self.conv1(x, cache)
        for stage in self.downsamples:
            x = stage(x, cache)
        return _run(self.head, _run(self.middle, x, cache), cache)


class Decoder3d(nn.Module):
    """z_dim channels -> patchified pixels (12 channels) at 8x the grid, 1 + 4(T-1) frames."""

    def __init__(self, dim: int, z_dim: int, dim_mult: tuple[int, ...], num_res_blocks: int,
                 temperal_upsample: tuple[bool, ...]) -> None:
        super().__init__()
        dims = [dim * dim_mult[-1]] + [dim * m for m in reversed(dim_mult)]
        self.conv1 = CausalConv3d(z_dim, dims[0], 3, padding=1)
        self.middle = _middle(dims[0])
        last = len(dim_mult) - 1
        self.upsamples = nn.Sequential(*(
            UpStage(dims[i], dims[i + 1], num_res_blocks + 1,
                    up_time=i < len(temperal_upsample) and temperal_upsample[i], up_space=i != last)
            for i in range(len(dim_mult))
        ))
        self.head = _head(dims[-1], PATCHED_CHANNELS)

    def forward(self, x: torch.Tensor, cache: StreamCache) -> torch.Tensor:
        x = _run(self.middle, self.conv1(x, cache), cache)
        for stage in self.upsamples:
            x = stage(x, cache)
        return _run(self.head, x, cache)


def patchify(x: torch.Tensor) -> torch.Tensor:
    """[B, C, T, H, W] -> [B, C*4, T, H/2, W/2]; channel c*4 + r*2 + q holds pixel (2i+q, 2j+r)."""
    b, c, t, h, w = x.shape
    x = x.view(b, c, t, h // PATCH, PATCH, w // PATCH, PATCH)
    return x.permute(0, 1, 6, 4, 2, 3, 5).reshape(b, c * PATCH * PATCH, t, h // PATCH, w // PATCH)


def unpatchify(x: torch.Tensor) -> torch.Tensor:
    """Inverse of `patchify`: [B, C*4, T, h, w] -> [B, C, T, 2h, 2w]."""
    b, cp, t, h, w = x.shape
    c = cp // (PATCH * PATCH)
    x = x.view(b, c, PATCH, PATCH, t, h, w)  # (c, r, q)
    return x.permute(0, 1, 4, 5, 3, 6, 2).reshape(b, c, t, h * PATCH, w * PATCH)
