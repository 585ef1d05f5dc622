"""Decode long 1-D signals in chunks whose overlap is the exact receptive field of the conv stack.

A chunk of the input, cut out of the whole signal, gives exactly the whole-signal output except near its
cut edges: there each layer reads positions the chunk does not hold (zero or replicate padding stands in
for them). `Edges` counts, for one layer after another, how many positions at each end of a chunk's
activations are "wrong" in that sense; walking a stack from (0, 0) at its input gives the number of wrong
output positions at each end, and dividing by the stack's upsampling factor (rounding up) gives the input
context a chunk needs on each side. Keeping only the output of the chunk's own span then reproduces the
whole-signal output up to float rounding, with peak memory set by the chunk size, not the clip length.

The counts are exact (not bounds): tests compare them with the gradient support of real modules.
Rate-changing layers are exact only when every chunk starts on the input grid (a whole input frame),
which `chunked_along_time` guarantees.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import torch


@dataclass(frozen=True)
class Edges:
    """Wrong positions at the left and right end of a chunk's activation (in that activation's own units)."""

    left: int = 0
    right: int = 0

    def conv(self, kernel: int, dilation: int = 1, padding: int | None = None) -> "Edges":
        """Stride-1 conv; `padding` on the left (default: 'same', span // 2)."""
        span = dilation * (kernel - 1)
        pad = span // 2 if padding is None else padding
        return Edges(self.left + pad, self.right + span - pad)

    def conv_transpose(self, kernel: int, stride: int, padding: int = 0) -> "Edges":
        """Transposed conv: output o reads inputs ceil((o + p - k + 1)/s) .. floor((o + p)/s)."""
        left = (self.left - 1) * stride + kernel - padding
        right = self.right * stride + kernel - stride - padding
        return Edges(max(0, left), max(0, right))

    def pad(self, left: int, right: int) -> "Edges":
        """Replicate/zero padding at the chunk's cut: the padded values stand in for unknown neighbours."""
        return Edges(self.left + left, self.right + right)

    def strided_conv(self, kernel: int, stride: int, pad_left: int = 0, pad_right: int = 0) -> "Edges":
        """Conv with a stride after (replicate or zero) padding; the unpadded length is a multiple of the
        stride (true for every chunk here, which starts and ends on whole input frames)."""
        left, right = self.left + pad_left, self.right + pad_right
        n = stride * (right + kernel + 1000) + pad_left + pad_right  # any long such length: the count does not depend on it
        out_len = (n - kernel) // stride + 1
        first_wrong = -(-(n - right - kernel + 1) // stride)  # output j reads padded inputs stride·j .. stride·j + kernel - 1
        return Edges(-(-left // stride), max(0, out_len - first_wrong))

    def repeat(self, factor: int) -> "Edges":
        """Nearest-neighbour upsampling by an integer factor."""
        return Edges(self.left * factor, self.right * factor)

    def crop(self, left: int, right: int) -> "Edges":
        return Edges(max(0, self.left - left), max(0, self.right - right))

    def union(self, other: "Edges") -> "Edges":
        """Two branches summed: a position is wrong if either branch is."""
        return Edges(max(self.left, other.left), max(self.right, other.right))

    def in_input_frames(self, scale: int) -> tuple[int, int]:
        """Input frames of context a chunk needs on each side when one input frame makes `scale` outputs."""
        return math.ceil(self.left / scale), math.ceil(self.right / scale)


def chunked_along_time(fn: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor, chunk: int,
                       context: tuple[int, int], scale: int) -> torch.Tensor:
    """`fn(x)` computed chunk by chunk along the last axis: `fn` maps `[..., n]` to `[..., n·scale]`.

    Each chunk of `chunk` input frames is run with `context` frames of its neighbours on each side and
    only its own span of the output is kept, written into one preallocated output. Equal to `fn(x)` up to
    float rounding when `context` is the stack's receptive field (see `Edges`).
    """
    if chunk < 1:
        raise ValueError(f"chunked_along_time: chunk={chunk}, expected >= 1")
    n = x.shape[-1]
    if chunk >= n:
        return fn(x)
    before, after = context
    out = None
    for start in range(0, n, chunk):
        stop = min(n, start + chunk)
        lo, hi = max(0, start - before), min(n, stop + after)
        y = fn(x[..., lo:hi])
        if out is None:
            out = y.new_empty(*y.shape[:-1], n * scale)
        out[..., start * scale:stop * scale] = y[..., (start - lo) * scale:(stop - lo) * scale]
        del y  # the chunk's activations go before the next chunk allocates its own
    return out
