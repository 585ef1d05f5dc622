"""Small building blocks of the fusion DiT: dtype-casting Linear/Conv layers and the two norms.

Storage dtype and compute dtype are independent: a checkpoint may hold weights in bf16, fp16 or fp8
(float8_e4m3fn), and every layer here casts its weights to the dtype of its INPUT when it runs. A loader
can therefore fill the model straight from an fp8 file (one copy of the weights, never a dequantised
second one). ComfyUI's "scaled fp8" files also store one scale per weight (`<layer>.scale_weight`);
a loader puts it into the `weight_scale` buffer and it is multiplied in after the cast.

The norms always compute in float32 (as the reference intends with its explicit casts) and return the
input's dtype.
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F


def _cast_weight(weight: torch.Tensor, scale: torch.Tensor | None, dtype: torch.dtype) -> torch.Tensor:
    w = weight.to(dtype)
    if scale is not None:
        w = w * scale.to(dtype)
    return w


def _cast_bias(bias: torch.Tensor | None, dtype: torch.dtype) -> torch.Tensor | None:
    return None if bias is None else bias.to(dtype)


class _CastWeight:
    """Mixin: the optional per-tensor `weight_scale` buffer (None: absent from the state dict)."""

    weight_scale: torch.Tensor | None

    def _init_scale(self) -> None:
        self.register_buffer("weight_scale", None)

    def reset_parameters(self) -> None:
        # torch's random init has no fp8 kernels: initialise in float32, then round to the storage dtype.
        if self.weight.dtype.itemsize > 1 or self.weight.is_meta:
            return super().reset_parameters()
        params = [p for p in (self.weight, self.bias) if p is not None]
        dtypes = [p.dtype for p in params]
        for p in params:
            p.data = p.data.float()
        super().reset_parameters()
        for p, dtype in zip(params, dtypes):
            p.data = p.data.to(dtype)

    def cast_params(self, dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor | None]:
        return _cast_weight(self.weight, self.weight_scale, dtype), _cast_bias(self.bias, dtype)


class CastLinear(_CastWeight, nn.Linear):
    """nn.Linear whose stored weight (any float dtype, fp8 included) is cast to the input's dtype."""

    def __init__(self, in_features: int, out_features: int, bias: bool = True, device=None, dtype=None):
        super().__init__(in_features, out_features, bias=bias, device=device, dtype=dtype)
        self._init_scale()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        w, b = self.cast_params(x.dtype)
        return F.linear(x, w, b)


class _CastConv(_CastWeight):
    """Mixin for torch's ConvNd: the same weight casting as `CastLinear`, through `_conv_forward`."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._init_scale()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        w, b = self.cast_params(x.dtype)
        return self._conv_forward(x, w, b)


class CastConv1d(_CastConv, nn.Conv1d):
    """nn.Conv1d with the same weight casting as `CastLinear`."""


class _ChannelLast:
    """Mixin: a Conv1d over the token axis of a `[B, L, C]` tensor (the audio tower's layout)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(x.transpose(1, 2)).transpose(1, 2)


class ChannelLastConv1d(_ChannelLast, CastConv1d):
    """CastConv1d over the token axis of a `[B, L, C]` tensor."""


_CHANNEL_LAST: dict[type, type] = {CastConv1d: ChannelLastConv1d}


def channel_last(conv1d: type[nn.Conv1d]) -> type[nn.Conv1d]:
    """The channel-last form of an operations namespace's Conv1d (one class per Conv1d, so state dicts and
    isinstance checks stay stable)."""
    if conv1d not in _CHANNEL_LAST:
        _CHANNEL_LAST[conv1d] = type(f"ChannelLast{conv1d.__name__}", (_ChannelLast, conv1d), {})
    return _CHANNEL_LAST[conv1d]


class CastConv3d(_CastConv, nn.Conv3d):
    """nn.Conv3d with the same weight casting as `CastLinear` (the video patch embedding)."""


class CastOps:
    """The library's operations namespace: the layer classes the fusion DiT builds its weights from.

    The model classes take any namespace with `Linear`, `Conv1d` and `Conv3d` (torch.nn constructor
    signatures, `device=`/`dtype=` included), as ComfyUI's ldm models take `operations=`; inside ComfyUI
    the registration layer passes `comfy.ops.disable_weight_init` / `manual_cast` / scaled-fp8 ops, so
    ComfyUI's model management can stream, cast and patch the weights. This default casts stored
    weights to the input's dtype (fp8 storage included) and needs nothing outside torch.
    """

    Linear = CastLinear
    Conv1d = CastConv1d
    Conv3d = CastConv3d


class LayerNorm(nn.Module):
    """LayerNorm over the last axis in float32; `affine=False` has no parameters (and no state-dict keys)."""

    def __init__(self, dim: int, eps: float = 1e-6, affine: bool = False, device=None, dtype=None):
        super().__init__()
        self.dim = dim
        self.eps = eps
        if affine:
            self.weight = nn.Parameter(torch.ones(dim, device=device, dtype=dtype))
            self.bias = nn.Parameter(torch.zeros(dim, device=device, dtype=dtype))
        else:
            self.register_parameter("weight", None)
            self.register_parameter("bias", None)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        w = None if self.weight is None else self.weight.float()
        b = None if self.bias is None else self.bias.float()
        return F.layer_norm(x.float(), (self.dim,), w, b, self.eps).to(x.dtype)


class RMSNorm(nn.Module):
    """x · rsqrt(mean(x²) + eps) · weight over the last axis (the full model width), in float32."""

    def __init__(self, dim: int, eps: float = 1e-6, device=None, dtype=None):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim, device=device, dtype=dtype))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x32 = x.float()
        normed = x32 * torch.rsqrt(x32.pow(2).mean(dim=-1, keepdim=True) + self.eps)
        return (normed * self.weight.float()).to(x.dtype)


class ConvMLP(nn.Module):
    """Gated conv MLP of the audio patch embedding: w2(silu(w1(x)) · w3(x)), bias-free convs along tokens.

    The hidden width is 2/3 of `hidden_dim`, rounded up to a multiple of `multiple_of` (Ovi: 4·3072 → 8192).
    """

    def __init__(self, dim: int, hidden_dim: int, kernel_size: int, padding: int, multiple_of: int = 256,
                 device=None, dtype=None, operations=CastOps):
        super().__init__()
        hidden = int(2 * hidden_dim / 3)
        hidden = multiple_of * ((hidden + multiple_of - 1) // multiple_of)
        conv = dict(kernel_size=kernel_size, padding=padding, bias=False, device=device, dtype=dtype)
        conv1d = channel_last(operations.Conv1d)
        self.w1 = conv1d(dim, hidden, **conv)
        self.w2 = conv1d(hidden, dim, **conv)
        self.w3 = conv1d(dim, hidden, **conv)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.w2(F.silu(self.w1(x)) * self.w3(x))
