"""BigVGAN v1 vocoder (the 16 kHz one MMAudio and Ovi use): 80-band log-mel `[B, 80, T]` -> waveform `[B, 1, 256·T]`.

Layout: conv_pre -> per stage [transposed-conv upsampling, mean of AMPBlock1 residual blocks with
different kernels] -> anti-aliased SnakeBeta -> conv_post -> tanh. Module names follow the published
checkpoint keys so a state dict loads without renaming.

Checkpoints store weight-normed convolutions (g, v); the forward pass here uses plain convolutions, so
`fold_weight_norm` turns (g, v) into the effective weight once when the weights are loaded.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

import torch
from torch import nn

from ..errors import InputShapeError, InputValueError
from .alias_free import Activation1d, SnakeBeta
from .chunking import Edges, chunked_along_time


def _conv_edges(e: Edges, conv: nn.Conv1d) -> Edges:
    return e.conv(conv.kernel_size[0], conv.dilation[0], conv.padding[0])


@dataclass(frozen=True)
class BigVGANConfig:
    """Generator hyper-parameters (the generator part of BigVGAN's yml). Defaults: MMAudio's 16 kHz vocoder."""

    num_mels: int = 80
    upsample_rates: tuple[int, ...] = (4, 4, 2, 2, 2, 2)
    upsample_kernel_sizes: tuple[int, ...] = (8, 8, 4, 4, 4, 4)
    upsample_initial_channel: int = 1536
    resblock_kernel_sizes: tuple[int, ...] = (3, 7, 11)
    resblock_dilation_sizes: tuple[tuple[int, ...], ...] = ((1, 3, 5), (1, 3, 5), (1, 3, 5))
    resblock: str = "1"
    activation: str = "snakebeta"
    snake_logscale: bool = True

    def __post_init__(self) -> None:
        # Only the variant the 16 kHz vocoder uses is implemented; say so instead of computing something else.
        if str(self.resblock) != "1":
            raise InputValueError(f"BigVGANConfig.resblock={self.resblock!r}: only '1' (AMPBlock1) is supported")
        if self.activation != "snakebeta":
            raise InputValueError(f"BigVGANConfig.activation={self.activation!r}: only 'snakebeta' is supported")
        if len(self.upsample_rates) != len(self.upsample_kernel_sizes):
            raise InputValueError(
                f"BigVGANConfig: {len(self.upsample_rates)} upsample_rates but "
                f"{len(self.upsample_kernel_sizes)} upsample_kernel_sizes; expected the same count")
        if len(self.resblock_kernel_sizes) != len(self.resblock_dilation_sizes):
            raise InputValueError(
                f"BigVGANConfig: {len(self.resblock_kernel_sizes)} resblock_kernel_sizes but "
                f"{len(self.resblock_dilation_sizes)} resblock_dilation_sizes; expected the same count")

    @property
    def hop_length(self) -> int:
        """Waveform samples per mel frame (the product of the upsampling rates; 256 for the real model)."""
        return math.prod(self.upsample_rates)

    @classmethod
    def from_dict(cls, d: dict) -> "BigVGANConfig":
        """Build from a BigVGAN yml/json dict; training-only keys (learning rate, discriminators, ...) are ignored."""
        known = {f.name for f in dataclasses.fields(cls)}
        kw = {k: v for k, v in d.items() if k in known}
        for key in ("upsample_rates", "upsample_kernel_sizes", "resblock_kernel_sizes"):
            if key in kw:
                kw[key] = tuple(int(v) for v in kw[key])
        if "resblock_dilation_sizes" in kw:
            kw["resblock_dilation_sizes"] = tuple(tuple(int(v) for v in ds) for ds in kw["resblock_dilation_sizes"])
        if "resblock" in kw:
            kw["resblock"] = str(kw["resblock"])
        return cls(**kw)

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        d["upsample_rates"] = list(self.upsample_rates)
        d["upsample_kernel_sizes"] = list(self.upsample_kernel_sizes)
        d["resblock_kernel_sizes"] = list(self.resblock_kernel_sizes)
        d["resblock_dilation_sizes"] = [list(ds) for ds in self.resblock_dilation_sizes]
        return d


class AMPBlock1(nn.Module):
    """Residual block: for each dilation d, x += conv2(act(conv_d(act(x)))), with anti-aliased SnakeBeta."""

    def __init__(self, channels: int, kernel_size: int, dilations: tuple[int, ...], log_scale: bool):
        super().__init__()
        self.convs1 = nn.ModuleList(
            nn.Conv1d(channels, channels, kernel_size, dilation=d, padding=d * (kernel_size - 1) // 2)
            for d in dilations)
        self.convs2 = nn.ModuleList(
            nn.Conv1d(channels, channels, kernel_size, padding=(kernel_size - 1) // 2) for _ in dilations)
        # Checkpoint order interleaves them: activations[2i] precedes convs1[i], activations[2i+1] precedes convs2[i].
        self.activations = nn.ModuleList(
            Activation1d(SnakeBeta(channels, log_scale)) for _ in range(2 * len(dilations)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for i, (c1, c2) in enumerate(zip(self.convs1, self.convs2)):
            h = c1(self.activations[2 * i](x))
            h = c2(self.activations[2 * i + 1](h))
            x = x + h
        return x

    def edges(self, e: Edges) -> Edges:
        out = e
        for i, (c1, c2) in enumerate(zip(self.convs1, self.convs2)):
            h = _conv_edges(self.activations[2 * i].edges(out), c1)
            h = _conv_edges(self.activations[2 * i + 1].edges(h), c2)
            out = out.union(h)
        return out


class BigVGANVocoder(nn.Module):
    """Mel `[B, num_mels, T]` -> waveform `[B, 1, T·hop_length]` in [-1, 1]."""

    def __init__(self, config: BigVGANConfig | None = None):
        super().__init__()
        cfg = config or BigVGANConfig()
        self.config = cfg
        c0 = cfg.upsample_initial_channel
        self.conv_pre = nn.Conv1d(cfg.num_mels, c0, 7, padding=3)
        # `ups.i.0`: one transposed conv per stage, wrapped in a list as the checkpoint keys have it.
        self.ups = nn.ModuleList(
            nn.ModuleList([nn.ConvTranspose1d(c0 // 2**i, c0 // 2**(i + 1), k, u, padding=(k - u) // 2)])
            for i, (u, k) in enumerate(zip(cfg.upsample_rates, cfg.upsample_kernel_sizes)))
        self.resblocks = nn.ModuleList(
            AMPBlock1(c0 // 2**(i + 1), k, tuple(d), cfg.snake_logscale)
            for i in range(len(cfg.upsample_rates))
            for k, d in zip(cfg.resblock_kernel_sizes, cfg.resblock_dilation_sizes))
        ch_last = c0 // 2**len(cfg.upsample_rates)
        self.activation_post = Activation1d(SnakeBeta(ch_last, cfg.snake_logscale))
        self.conv_post = nn.Conv1d(ch_last, 1, 7, padding=3)

    def forward(self, mel: torch.Tensor) -> torch.Tensor:
        if mel.ndim != 3 or mel.shape[1] != self.config.num_mels:
            raise InputShapeError(
                f"BigVGAN input: mel of shape {tuple(mel.shape)}, expected [B, {self.config.num_mels}, T]")
        n_kernels = len(self.config.resblock_kernel_sizes)
        x = self.conv_pre(mel)
        for i, up in enumerate(self.ups):
            x = up[0](x)
            blocks = self.resblocks[i * n_kernels:(i + 1) * n_kernels]
            acc = blocks[0](x)
            for block in blocks[1:]:
                acc = acc + block(x)
            x = acc / n_kernels
        x = self.conv_post(self.activation_post(x))
        return torch.tanh(x)

    def time_context(self) -> tuple[int, int]:
        """Mel frames of context each side that make a chunk's waveform exact: the receptive field of the
        whole stack (conv_pre, every upsampler and residual block, the final activation and conv_post)."""
        n_kernels = len(self.config.resblock_kernel_sizes)
        e = _conv_edges(Edges(), self.conv_pre)
        for i, up in enumerate(self.ups):
            t = up[0]
            e = e.conv_transpose(t.kernel_size[0], t.stride[0], t.padding[0])
            branches = [block.edges(e) for block in self.resblocks[i * n_kernels:(i + 1) * n_kernels]]
            e = branches[0]
            for b in branches[1:]:
                e = e.union(b)
        e = _conv_edges(self.activation_post.edges(e), self.conv_post)
        return e.in_input_frames(self.config.hop_length)

    def chunked(self, mel: torch.Tensor, chunk_frames: int) -> torch.Tensor:
        """`self(mel)` computed `chunk_frames` mel frames at a time with `time_context()` frames of overlap:
        the same waveform up to float rounding, with peak memory set by the chunk, not the clip."""
        if mel.ndim != 3 or mel.shape[1] != self.config.num_mels:
            raise InputShapeError(
                f"BigVGAN input: mel of shape {tuple(mel.shape)}, expected [B, {self.config.num_mels}, T]")
        return chunked_along_time(self, mel, chunk_frames, self.time_context(), self.config.hop_length)


_WEIGHT_NORM_SUFFIXES = (
    (".weight_g", ".weight_v"),  # torch.nn.utils.weight_norm (legacy; what older BigVGAN checkpoints hold)
    (".parametrizations.weight.original0", ".parametrizations.weight.original1"),  # torch parametrizations
)


def fold_weight_norm(state_dict: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Replace each weight-norm pair (g, v) by the effective `.weight` = v · g/‖v‖.

    The norm runs over every dim but 0, per torch's weight_norm(dim=0): the output channel of a Conv1d,
    the input channel of a ConvTranspose1d. Computed in float32, returned in the stored dtype. Keys that
    are not weight-norm pairs pass through unchanged, so an already-folded state dict is returned as is.
    A lone g or v (its partner missing) is left as is, for the key check to report.
    """
    out: dict[str, torch.Tensor] = {}
    consumed: set[str] = set()
    for key, g in state_dict.items():
        dotted = "." + key  # so that a bare module's keys ("weight_g") match like nested ones
        for g_suffix, v_suffix in _WEIGHT_NORM_SUFFIXES:
            if not dotted.endswith(g_suffix):
                continue
            base = dotted[: -len(g_suffix)]
            v_key = (base + v_suffix)[1:]
            if v_key not in state_dict:
                continue
            v = state_dict[v_key]
            v32 = v.to(torch.float32)
            norm = v32.flatten(1).norm(dim=1).view(-1, *([1] * (v.ndim - 1)))
            out[(base + ".weight")[1:]] = (v32 * (g.to(torch.float32) / norm)).to(v.dtype)
            consumed.update((key, v_key))
    for key, value in state_dict.items():
        if key not in consumed:
            out.setdefault(key, value)
    return out
