"""fp8 weights that also compute in fp8 where the hardware has fp8 matmuls.

`FP8Linear` holds an e4m3 weight with one float32 scale per output channel (amax / 448). Two ways to run:
- `scaled_mm`: the input is quantised to e4m3 per token (amax / 448) and multiplied with
  `torch._scaled_mm` (fp8 tensor cores on Ada / Hopper and later, compute capability >= 8.9); the two
  scales are applied to the bf16/fp16 product afterwards, then the bias. Unit scales inside the kernel keep
  it to the tensor-wise form every fp8-capable GPU supports.
- `dequant`: the weight is cast to the input's dtype and scaled, then an ordinary matmul (what fp8
  *storage* does elsewhere, and the reference's fp8: it saves memory, not time).
`auto` picks `scaled_mm` for CUDA inputs on a capable GPU and `dequant` otherwise. Matrices whose sizes are
not multiples of 16 (tiny test models only; every real Ovi width is) are zero-padded for `_scaled_mm`.

`quantize_blocks_fp8` swaps the Linear layers of every DiT block (attention projections, FFN,
cross-modal projections: ~all of the FLOPs and bytes) for FP8Linear; embeddings, modulation and heads keep
their dtype. Accuracy against bf16 weights is stated and tested in tests/unit/test_fp8.py.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import InputValueError

E4M3_MAX = 448.0  # largest finite float8_e4m3fn
FP8_COMPUTE = ("auto", "scaled_mm", "dequant")
_ALIGN = 16  # _scaled_mm wants both matrix dimensions divisible by 16


def fp8_matmul_available(device: torch.device | str) -> bool:
    """Whether `torch._scaled_mm` runs fp8 on tensor cores on `device` (CUDA, compute capability >= 8.9)."""
    device = torch.device(device)
    if device.type != "cuda" or not hasattr(torch, "_scaled_mm") or not torch.cuda.is_available():
        return False
    return torch.cuda.get_device_capability(device) >= (8, 9)


def _quantize_rows(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """x `[R, K]` -> (e4m3 `[R, K]`, float32 scale `[R, 1]`) with x ≈ q · scale, each row using the e4m3 range.

    A bf16/fp16 x is divided in its own dtype (8+ mantissa bits before rounding to e4m3's 3): no float32
    copy of an activation that can be gigabytes at 55k tokens."""
    scale = x.abs().amax(dim=1, keepdim=True).float().clamp(min=1e-12) / E4M3_MAX
    work = x if x.dtype in (torch.bfloat16, torch.float16) else x.float()
    q = (work / scale.to(work.dtype)).clamp_(-E4M3_MAX, E4M3_MAX).to(torch.float8_e4m3fn)
    return q, scale


def _pad_to(x: torch.Tensor, rows: int, cols: int) -> torch.Tensor:
    pr, pc = (-rows) % _ALIGN, (-cols) % _ALIGN
    if not (pr or pc):
        return x
    # F.pad has no fp8 kernel on every device: pad through a uint8 view (zero bits are +0.0 in e4m3)
    return F.pad(x.view(torch.uint8), (0, pc, 0, pr)).view(x.dtype)


class FP8Linear(nn.Module):
    """Linear layer with an e4m3 weight `[out, in]`, a per-output-channel scale and an optional bias."""

    def __init__(self, weight: torch.Tensor, bias: torch.Tensor | None, compute: str = "auto",
                 stored_scale: torch.Tensor | None = None):
        """`weight` in any float dtype is quantised per output channel; an e4m3 `weight` with `stored_scale`
        (a scalar or one per output channel: what an fp8 checkpoint holds) is kept as it is, bit for bit."""
        super().__init__()
        if compute not in FP8_COMPUTE:
            raise InputValueError(f"fp8 compute: got {compute!r}, expected one of {', '.join(FP8_COMPUTE)}")
        if stored_scale is not None:
            q = weight.detach()
            scale = stored_scale.detach().float().reshape(-1).expand(weight.shape[0]).clone()
        else:
            q, scale = _quantize_rows(weight.detach())
        self.weight = nn.Parameter(q, requires_grad=False)
        self.register_buffer("weight_scale", scale.flatten())
        self.bias = None if bias is None else nn.Parameter(bias.detach().clone(), requires_grad=False)
        self.compute = compute
        self.in_features, self.out_features = weight.shape[1], weight.shape[0]

    @classmethod
    def from_linear(cls, linear: nn.Linear, compute: str = "auto") -> "FP8Linear":
        if linear.weight.dtype == torch.float8_e4m3fn:  # an fp8 file's weight: reuse it, no second rounding
            scale = getattr(linear, "weight_scale", None)
            scale = torch.ones((), device=linear.weight.device) if scale is None else scale
            return cls(linear.weight, linear.bias, compute, stored_scale=scale)
        cast = getattr(linear, "cast_params", None)  # CastLinear: honours a stored scale
        weight, bias = cast(torch.float32) if cast else (linear.weight.float(), linear.bias)
        return cls(weight, bias, compute)

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, compute={self.compute}"

    def uses_scaled_mm(self, x: torch.Tensor) -> bool:
        if self.compute == "auto":
            return fp8_matmul_available(x.device)
        return self.compute == "scaled_mm"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.uses_scaled_mm(x):
            return self._scaled_mm(x)
        w = self.weight.to(x.dtype) * self.weight_scale.to(x.dtype)[:, None]
        return F.linear(x, w, None if self.bias is None else self.bias.to(x.dtype))

    def _scaled_mm(self, x: torch.Tensor) -> torch.Tensor:
        lead, k = x.shape[:-1], x.shape[-1]
        rows = x.reshape(-1, k)
        xq, x_scale = _quantize_rows(rows)
        m, n = rows.shape[0], self.out_features
        a = _pad_to(xq, m, k)
        b = _pad_to(self.weight, n, k)
        out_dtype = x.dtype if x.dtype in (torch.bfloat16, torch.float16) else torch.bfloat16
        one = torch.ones((), device=x.device, dtype=torch.float32)
        y = torch._scaled_mm(a, b.t(), scale_a=one, scale_b=one, out_dtype=out_dtype)[:m, :n]
        y = y.to(x.dtype).mul_(x_scale.to(x.dtype)).mul_(self.weight_scale.to(x.dtype))
        if self.bias is not None:
            y = y.add_(self.bias.to(x.dtype))
        return y.reshape(*lead, n)


def quantize_blocks_fp8(dit: nn.Module, compute: str = "auto") -> int:
    """Replace every nn.Linear inside the DiT's blocks by an FP8Linear (in place); returns how many."""
    if compute not in FP8_COMPUTE:
        raise InputValueError(f"fp8 compute: got {compute!r}, expected one of {', '.join(FP8_COMPUTE)}")
    count = 0
    for tower in (dit.video_model, dit.audio_model):
        for block in tower.blocks._modules.values():
            for parent in list(block.modules()):
                for name, child in list(parent.named_children()):
                    if isinstance(child, nn.Linear):
                        setattr(parent, name, FP8Linear.from_linear(child, compute))
                        count += 1
    return count
