"""The fusion DiT's attention through ComfyUI's `optimized_attention`, so `--use-sage-attention`,
`--use-flash-attention`, `--use-pytorch-cross-attention` and friends choose the kernel inside ComfyUI.

The DiT's layout is q/k/v `[B, L, H, D]` with optional true key lengths; core's kernels take `[B, H, L, D]`
(`skip_reshape`) and an additive mask, which works with every core kernel (some add the mask to the scores).
"""

from __future__ import annotations

import torch
from comfy.ldm.modules import attention as core_attention


def _additive_key_mask(key_lens: torch.Tensor, keys: int, dtype: torch.dtype, device) -> torch.Tensor:
    allowed = torch.arange(keys, device=device)[None, :] < key_lens.to(device)[:, None]
    mask = torch.zeros(allowed.shape, dtype=dtype, device=device)
    return mask.masked_fill(~allowed, float("-inf"))[:, None, None, :]  # [B, 1, 1, Lk]


def optimized_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor,
                        key_lens: torch.Tensor | None = None) -> torch.Tensor:
    """softmax(q kᵀ/√d) v with core's kernel of the moment (looked up per call: flags are read at start-up)."""
    heads = q.shape[2]
    mask = None
    if key_lens is not None and not bool((key_lens == k.shape[1]).all()):
        mask = _additive_key_mask(key_lens, k.shape[1], q.dtype, q.device)
    kernel = core_attention.optimized_attention_masked if mask is not None else core_attention.optimized_attention
    out = kernel(q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2), heads, mask=mask, skip_reshape=True,
                 skip_output_reshape=True)
    return out.transpose(1, 2)
