"""The one place where attention is computed, so every backend is chosen and checked in one spot.

Layout everywhere: q `[B, Lq, H, D]`, k and v `[B, Lk, H, D]` (the layout of the reference's flash call).
`key_lens[b]` limits the keys batch item b may attend to (padding never leaks); every query row,
padding included, gets an output, as in the reference.
"""

from __future__ import annotations

import importlib.util
import math
from typing import Callable

import torch
import torch.nn.functional as F

from ..errors import BackendUnavailableError, InputValueError

BACKENDS = ("auto", "sdpa", "math", "xformers", "flash", "sage")


def _installed(module: str) -> bool:
    return importlib.util.find_spec(module) is not None


def available_backends(device: torch.device | str = "cpu") -> list[str]:
    """Backends that can run on `device` in this environment ("auto" excluded)."""
    device = torch.device(device)
    names = ["sdpa", "math"]
    if device.type == "cuda":
        if _installed("xformers"):
            names.append("xformers")
        if _installed("flash_attn"):
            names.append("flash")
        if _installed("sageattention"):
            names.append("sage")
    return names


def _key_mask(key_lens: torch.Tensor, lk: int, device) -> torch.Tensor:
    # [B, 1, 1, Lk] boolean, True where the key may be attended to.
    return (torch.arange(lk, device=device)[None, :] < key_lens.to(device)[:, None])[:, None, None, :]


def _sdpa(q, k, v, key_lens):
    mask = None if key_lens is None else _key_mask(key_lens, k.shape[1], q.device)
    out = F.scaled_dot_product_attention(q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2), attn_mask=mask)
    return out.transpose(1, 2)


def _math(q, k, v, key_lens):
    # Plain softmax in float32: the slow, obviously-correct baseline the fast backends are checked against.
    dtype = q.dtype
    q, k, v = (t.float().transpose(1, 2) for t in (q, k, v))
    scores = q @ k.transpose(-1, -2) / math.sqrt(q.shape[-1])
    if key_lens is not None:
        scores = scores.masked_fill(~_key_mask(key_lens, k.shape[2], q.device), float("-inf"))
    return (scores.softmax(-1) @ v).transpose(1, 2).to(dtype)


def _per_item(kernel: Callable, q, k, v, key_lens):
    # For kernels without a key mask: slice each item's keys to its true length.
    if key_lens is None or bool((key_lens == k.shape[1]).all()):
        return kernel(q, k, v)
    outs = [kernel(q[b : b + 1], k[b : b + 1, : int(n)], v[b : b + 1, : int(n)]) for b, n in enumerate(key_lens.tolist())]
    return torch.cat(outs, 0)


def _half(t: torch.Tensor) -> torch.Tensor:
    return t if t.dtype in (torch.float16, torch.bfloat16) else t.to(torch.bfloat16)


def _xformers(q, k, v, key_lens):
    import xformers.ops as xops

    dtype = q.dtype
    return _per_item(lambda a, b, c: xops.memory_efficient_attention(a, b, c), q, k, v, key_lens).to(dtype)


def _flash(q, k, v, key_lens):
    from flash_attn import flash_attn_func

    dtype = q.dtype
    return _per_item(lambda a, b, c: flash_attn_func(_half(a), _half(b), _half(c)), q, k, v, key_lens).to(dtype)


def _sage(q, k, v, key_lens):
    from sageattention import sageattn

    dtype = q.dtype
    return _per_item(
        lambda a, b, c: sageattn(_half(a), _half(b), _half(c), tensor_layout="NHD", is_causal=False), q, k, v, key_lens
    ).to(dtype)


_KERNELS = {"sdpa": _sdpa, "math": _math, "xformers": _xformers, "flash": _flash, "sage": _sage}


def resolve_backend(name: str, device: torch.device | str) -> str:
    """Turn a user's choice into a runnable backend, or say clearly why it cannot run."""
    if name not in BACKENDS:
        raise InputValueError(f"attention backend: unknown value {name!r}; expected one of {', '.join(BACKENDS)}")
    if name == "auto":
        return "sdpa"
    usable = available_backends(device)
    if name not in usable:
        raise BackendUnavailableError(
            f"attention backend {name!r} cannot run on device {torch.device(device)}: "
            f"it needs CUDA and its package installed; usable here: {', '.join(usable)}"
        )
    return name


def attention(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, key_lens: torch.Tensor | None = None, backend: str = "sdpa"
) -> torch.Tensor:
    """softmax(q kᵀ/√d) v per head, keys of item b limited to `key_lens[b]`. Returns `[B, Lq, H, D]`."""
    return _KERNELS[backend](q, k, v, key_lens)
