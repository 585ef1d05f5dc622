"""Sequence parallel for the fusion DiT over `torch.distributed` (Ulysses: all-to-all over heads).

Every rank holds the same weights and runs the same forward on 1/N of each tower's tokens. Per-token work
(projections, norms, modulation, FFN, head) needs no communication; each attention swaps the layout with
an all-to-all before and after it: tokens split across ranks with all heads -> all tokens with H/N heads,
attention, and back. This is the scheme of the reference's xDiT sequence parallel. It applies to all three
attentions of a block: self-attention, text cross-attention (the text rows are split like the tokens) and
the cross-modal attention (queries from one tower, keys and values from the other, both split).

How it hooks in (the model code is unchanged): inside `sequence_parallel(model, group)` each tower's
`prepare` pads the sequence to a multiple of N (padding tokens are masked as keys, exactly as the model's
own `seq_len` padding) and keeps this rank's slice of every per-token tensor; the attention function the
model calls is replaced by the all-to-all wrapper around it; and `unpatchify` gathers the head's output of
all ranks first. So the forward's result is the single-process one on every rank, up to float rounding.

Limits, said up front: heads and each tower's text_len must be divisible by N (Ovi: 24 heads and 512 text
rows: N = 2, 3, 4, 8); intermediates are not recorded (they would be per-rank slices). Launch with
`torchrun --nproc-per-node N` (NCCL on GPUs, gloo on CPUs); `jointav parity --world-size N DIR` checks it.
"""

from __future__ import annotations

import contextlib
import dataclasses
from typing import Iterator

import torch
import torch.distributed as dist
from torch import nn

from ..errors import InputValueError
from . import fusion_dit as fusion_module


def _all_to_all(chunks: list[torch.Tensor], group) -> list[torch.Tensor]:
    out = [torch.empty_like(c) for c in chunks]
    dist.all_to_all(out, [c.contiguous() for c in chunks], group=group)
    return out


def seq_to_heads(x: torch.Tensor, group, n: int) -> torch.Tensor:
    """`[B, L/n, H, D]` (this rank's tokens, all heads) -> `[B, L, H/n, D]` (all tokens, this rank's heads)."""
    return torch.cat(_all_to_all(list(x.chunk(n, dim=2)), group), dim=1)


def heads_to_seq(x: torch.Tensor, group, n: int) -> torch.Tensor:
    """The inverse of `seq_to_heads`."""
    return torch.cat(_all_to_all(list(x.chunk(n, dim=1)), group), dim=2)


def _shard(t: torch.Tensor, rank: int, n: int, dim: int = 1) -> torch.Tensor:
    return t.chunk(n, dim=dim)[rank].contiguous() if t.shape[dim] > 1 else t


def _gather(t: torch.Tensor, group, n: int, dim: int = 1) -> torch.Tensor:
    parts = [torch.empty_like(t) for _ in range(n)]
    dist.all_gather(parts, t.contiguous(), group=group)
    return torch.cat(parts, dim=dim)


def _check(model: nn.Module, n: int) -> None:
    for name, cfg in (("video", model.config.video), ("audio", model.config.audio)):
        if cfg.num_heads % n:
            raise InputValueError(f"sequence parallel: the {name} tower's {cfg.num_heads} heads do not split over "
                                  f"{n} processes; use a world size that divides {cfg.num_heads}")
        if cfg.text_len % n:
            raise InputValueError(f"sequence parallel: the {name} tower's text_len {cfg.text_len} does not split "
                                  f"over {n} processes; use a world size that divides {cfg.text_len}")


@contextlib.contextmanager
def sequence_parallel(model: nn.Module, group=None) -> Iterator[nn.Module]:
    """Run `model`'s forwards split over the processes of `group` (default: the whole world) while active."""
    n = dist.get_world_size(group)
    rank = dist.get_rank(group)
    _check(model, n)
    towers = (model.video_model, model.audio_model)

    def sharded_prepare(tower):
        original = tower.prepare

        def prepare(items, t, clean, contexts, seq_len, dtype, seq_len_name, references=None):
            # pad to a multiple of n first: the model's own padding, masked as keys
            needed = max(seq_len or 0, _tokens(tower, items))
            padded = -(-needed // n) * n
            if references is not None:
                extra = max(_reference_tokens(tower, references), 0)
                padded = -(-(needed + extra) // n) * n - extra
            state = original(items, t, clean, contexts, padded, dtype, seq_len_name, references)
            per_token = dataclasses.replace(state.per_token, index=_shard(state.per_token.index, rank, n))
            return dataclasses.replace(state, x=_shard(state.x, rank, n), rope=_shard(state.rope, rank, n),
                                       per_token=per_token, context=_shard(state.context, rank, n))

        return original, prepare

    def gathered_unpatchify(tower):
        original = tower.unpatchify

        def unpatchify(out, grids):
            return original(_gather(out, group, n), grids)

        return original, unpatchify

    inner_attention = fusion_module.attention

    def ulysses(q, k, v, key_lens=None, backend="sdpa"):
        out = inner_attention(seq_to_heads(q, group, n), seq_to_heads(k, group, n), seq_to_heads(v, group, n),
                              key_lens, backend)
        return heads_to_seq(out, group, n)

    saved = []
    try:
        for tower in towers:
            for attr, (original, replacement) in (("prepare", sharded_prepare(tower)),
                                                  ("unpatchify", gathered_unpatchify(tower))):
                saved.append((tower, attr))
                setattr(tower, attr, replacement)
        fusion_module.attention = ulysses
        yield model
    finally:
        fusion_module.attention = inner_attention
        for tower, attr in saved:
            delattr(tower, attr)  # back to the class's method


def split_over_processes(model: nn.Module):
    """`sequence_parallel(model)` when this process is one of several in an initialised process group (a
    `torchrun --nproc-per-node N` launch), else a no-op context: the single-process path is unchanged."""
    if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
        return sequence_parallel(model)
    return contextlib.nullcontext(model)


def init_from_environment() -> tuple[int, int]:
    """Join the process group torchrun describes (WORLD_SIZE, RANK, LOCAL_RANK, MASTER_ADDR/PORT in the
    environment): NCCL with one GPU per process when there are enough GPUs, else gloo. Returns (rank, world
    size); (0, 1) without torchrun."""
    import os

    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return 0, 1
    if not dist.is_initialized():
        local = int(os.environ.get("LOCAL_RANK", "0"))
        use_cuda = torch.cuda.is_available() and torch.cuda.device_count() > local
        if use_cuda:
            torch.cuda.set_device(local)
        dist.init_process_group("nccl" if use_cuda else "gloo")
    return dist.get_rank(), dist.get_world_size()


def _tokens(tower, items) -> int:
    """The longest sample's clip token count (what the tower's own seq_len check needs)."""
    cfg = tower.cfg
    if cfg.is_video:
        return max(u.shape[1] // cfg.patch_size[0] * (u.shape[2] // cfg.patch_size[1]) * (u.shape[3] // cfg.patch_size[2])
                   for u in items)
    return max(u.shape[0] for u in items)


def _reference_tokens(tower, references) -> int:
    present = [u for u in references.items if u is not None]
    if not present:
        return 0
    return _tokens(tower, present)
