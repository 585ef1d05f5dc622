"""Rotary position embedding and the timestep sinusoid, computed in float64 as the reference does.

RoPE layout: per head, the head_dim channels form head_dim/2 complex numbers from consecutive channel
pairs (2k = real, 2k+1 = imaginary); rotation is a complex multiply. Tables are complex128
`[max_pos, pairs]`, one row per position.

- Video (3-D grid f, h, w): the head's pairs are split into a time part and two spatial parts
  (`video_pair_split`); a token rotates each part by its own coordinate.
- Audio (1-D grid): only the time part is rotated, with positions scaled by the tower's
  `temporal_rope_scaling_factor` (0.19676 for Ovi, so audio token i sits at video frame ~0.19676·i);
  the remaining pairs pass through unrotated.
- Positions past a sample's true token count (padding) are left unrotated.
"""

from __future__ import annotations

import math
from typing import Sequence

import torch

from ..errors import InputShapeError

ROPE_MAX_POSITIONS = 1024


def rope_params(max_pos: int, dim: int, theta: float = 10000.0, scale: float = 1.0) -> torch.Tensor:
    """complex128 `[max_pos, dim/2]`: exp(i · pos · scale · theta^(−2k/dim))."""
    if dim % 2:
        raise InputShapeError(f"rope_params: dim must be even, found {dim}")
    inv_freq = 1.0 / torch.pow(theta, torch.arange(0, dim, 2, dtype=torch.float64) / dim)
    # Scale the frequencies (not the positions), in float64: the reference's order of operations.
    angles = torch.outer(torch.arange(max_pos, dtype=torch.float64), scale * inv_freq)
    return torch.polar(torch.ones_like(angles), angles)


def time_rope_dim(head_dim: int) -> int:
    """Channels of the time part (head_dim − 4⌊head_dim/6⌋; 44 for head_dim 128)."""
    return head_dim - 4 * (head_dim // 6)


def video_pair_split(pairs: int) -> list[int]:
    """How the complex pairs of a head divide into (time, height, width): 64 → [22, 21, 21]."""
    return [pairs - 2 * (pairs // 3), pairs // 3, pairs // 3]


def video_rope_table(head_dim: int, max_pos: int = ROPE_MAX_POSITIONS) -> torch.Tensor:
    """complex128 `[max_pos, head_dim/2]`: time, height and width tables side by side."""
    _check_head_dim(head_dim)
    spatial = 2 * (head_dim // 6)
    return torch.cat(
        [rope_params(max_pos, time_rope_dim(head_dim)), rope_params(max_pos, spatial), rope_params(max_pos, spatial)],
        dim=1,
    )


def audio_rope_table(head_dim: int, scale: float, max_pos: int = ROPE_MAX_POSITIONS) -> torch.Tensor:
    """complex128 `[max_pos, time pairs]`: only the time part, positions scaled by `scale`."""
    _check_head_dim(head_dim)
    return rope_params(max_pos, time_rope_dim(head_dim), scale=scale)


def _check_head_dim(head_dim: int) -> None:
    if head_dim % 2:
        raise InputShapeError(f"RoPE: head_dim must be even, found {head_dim}")


def _grid_list(grid_sizes: torch.Tensor | Sequence[Sequence[int]]) -> list[tuple[int, ...]]:
    if isinstance(grid_sizes, torch.Tensor):
        return [tuple(int(v) for v in row) for row in grid_sizes.tolist()]
    return [tuple(int(v) for v in row) for row in grid_sizes]


def _sample_multipliers(grid: tuple[int, ...], freqs: torch.Tensor, head_dim: int) -> torch.Tensor:
    """`[tokens, table columns]` multipliers of one sample, tokens in (f, h, w) row-major order."""
    max_pos = freqs.shape[0]
    if max(grid) > max_pos:
        raise InputShapeError(f"RoPE: grid {grid} exceeds the table's {max_pos} positions per axis")
    if len(grid) == 1:
        return freqs[: grid[0]]
    if len(grid) != 3:
        raise InputShapeError(f"RoPE: grid sizes must have 1 (audio) or 3 (video) entries, found {grid}")
    pairs = head_dim // 2
    if freqs.shape[1] != pairs:
        raise InputShapeError(f"RoPE: a video table needs head_dim/2 = {pairs} columns, found {freqs.shape[1]}")
    f, h, w = grid
    ft, fh, fw = freqs.split(video_pair_split(pairs), dim=1)
    table = torch.cat(
        [
            ft[:f].view(f, 1, 1, -1).expand(f, h, w, -1),
            fh[:h].view(1, h, 1, -1).expand(f, h, w, -1),
            fw[:w].view(1, 1, w, -1).expand(f, h, w, -1),
        ],
        dim=-1,
    )
    return table.reshape(f * h * w, pairs)


def rope_multipliers(
    grid_sizes: torch.Tensor | Sequence[Sequence[int]], freqs: torch.Tensor, seq_len: int, head_dim: int
) -> torch.Tensor:
    """complex128 `[B, seq_len, 1, table columns]` per-token rotations (1 on padding), on `freqs`'s device.

    Built once per forward and reused by every block (self- and cross-attention).
    """
    grids = _grid_list(grid_sizes)
    out = torch.ones(len(grids), seq_len, freqs.shape[1], dtype=freqs.dtype, device=freqs.device)
    if len(set(grids)) == 1 and math.prod(grids[0]) <= seq_len:  # (one copy for a batch of one shape)
        out[:, : math.prod(grids[0])] = _sample_multipliers(grids[0], freqs, head_dim)
        return out.unsqueeze(2)
    cache: dict[tuple[int, ...], torch.Tensor] = {}
    for b, grid in enumerate(grids):
        tokens = math.prod(grid)
        if tokens > seq_len:
            raise InputShapeError(f"RoPE: grid {grid} has {tokens} tokens, more than the sequence length {seq_len}")
        if grid not in cache:
            cache[grid] = _sample_multipliers(grid, freqs, head_dim)
        out[b, :tokens] = cache[grid]
    return out.unsqueeze(2)


def rotate(x: torch.Tensor, multipliers: torch.Tensor) -> torch.Tensor:
    """Rotate the leading pairs of `x` `[B, L, H, D]` by `multipliers` `[B, L, 1, P]` in float64.

    The first P pairs are rotated; any further pairs pass through bit-exactly. Returns x's dtype.
    """
    b, l, h, d = x.shape
    pairs = multipliers.shape[-1]
    n = 2 * pairs
    rotated = torch.view_as_complex(x[..., :n].to(torch.float64).reshape(b, l, h, pairs, 2)) * multipliers
    rotated = torch.view_as_real(rotated).flatten(3).to(x.dtype)
    if n == d:
        return rotated
    return torch.cat([rotated, x[..., n:]], dim=-1)


def apply_rope(
    x: torch.Tensor, grid_sizes: torch.Tensor | Sequence[Sequence[int]], freqs: torch.Tensor
) -> torch.Tensor:
    """RoPE on `x` `[B, L, H, D]` with per-sample grids `[B, 1]` (audio) or `[B, 3]` (video).

    `freqs` is `video_rope_table` or `audio_rope_table` (moved to x's device here if needed).
    """
    if x.dim() != 4:
        raise InputShapeError(f"apply_rope: x must be [B, L, H, D], found shape {tuple(x.shape)}")
    if 2 * freqs.shape[1] > x.shape[3]:
        raise InputShapeError(
            f"apply_rope: table has {freqs.shape[1]} pairs, more than head_dim/2 = {x.shape[3] // 2}"
        )
    mult = rope_multipliers(grid_sizes, freqs.to(x.device), x.shape[1], x.shape[3])
    return rotate(x, mult)


def sinusoidal_embedding(dim: int, t: torch.Tensor) -> torch.Tensor:
    """float64 `[N, dim]` timestep embedding [cos(t·ω) | sin(t·ω)] (cos first), ω_j = 10000^(−j/(dim/2))."""
    if dim % 2:
        raise InputShapeError(f"sinusoidal_embedding: dim must be even, found {dim}")
    half = dim // 2
    pos = t.reshape(-1).to(torch.float64)
    omega = torch.pow(10000.0, -torch.arange(half, dtype=torch.float64, device=pos.device) / half)
    angles = torch.outer(pos, omega)
    return torch.cat([torch.cos(angles), torch.sin(angles)], dim=1)
