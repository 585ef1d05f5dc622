"""Block swap for the fusion DiT outside ComfyUI: weights live on a storage device (CPU RAM), the blocks
are copied to the compute device just ahead of use and dropped after it.

Policies (`parse_offload`): `none` (everything on the compute device, nothing here is used), `cpu` (every
block is streamed; the small non-block weights, embeddings and heads, are copied to the compute device for
the duration of a sampling session) and `blocks N` (the last N blocks of each tower are streamed, the others
are placed with the non-block weights). A "block" is block i of both towers: they run together.

How it hooks in without touching the model code: each tower's `blocks` ModuleList is swapped for a
`_StreamedBlocks` (same children, same state-dict keys) whose iteration, during a forward, makes sure block
i is on the compute device before handing it out, starts copying the next streamed block, and releases
block i-1 (the forward loop only asks for block i once block i-1 is done). On CUDA the copies run on a side
stream from pinned memory and the compute stream waits on an event per block, so transfer overlaps the
previous block's compute; released copies are recorded on the compute stream so the allocator cannot
reuse their memory before the kernels that read them finish. Copies are exact, so a forward with any
policy is bit-identical to the plain one.

Inside ComfyUI, a DiT that is a core MODEL (the native path) is placed by ComfyUI's own model management
(partial loading streams the weights that do not fit); block swap is never attached to such a model, and
the pack's Load Model node (which makes the pack's own JOINTAV_MODEL, not a core MODEL) is the only place
its `offload` input applies. The two must not both manage one model.
"""

from __future__ import annotations

import contextlib
import re
from dataclasses import dataclass
from typing import Callable, Iterator

import torch
from torch import nn

from ..errors import InputValueError


@dataclass(frozen=True)
class OffloadPolicy:
    """`streamed`: blocks per tower kept on the storage device and streamed (None: every block)."""

    mode: str  # "none" | "cpu" | "blocks"
    streamed: int | None = None

    def __str__(self) -> str:
        return f"blocks {self.streamed}" if self.mode == "blocks" else self.mode

    def streamed_blocks(self, num_layers: int) -> range:
        """Indices of the streamed blocks: the last ones, so the first resident blocks hide the first copy."""
        if self.mode == "none":
            return range(0)
        n = num_layers if self.mode == "cpu" else self.streamed
        if n > num_layers:
            raise InputValueError(f"offload: 'blocks {n}' streams more blocks than the model's {num_layers}; "
                                  f"expected 1..{num_layers} (or 'cpu' for all)")
        return range(num_layers - n, num_layers)


_BLOCKS = re.compile(r"^blocks\s+(\d+)$")


def parse_offload(text: str | OffloadPolicy) -> OffloadPolicy:
    """'none', 'cpu' or 'blocks N' (N >= 1) -> OffloadPolicy; anything else is an error naming the value."""
    if isinstance(text, OffloadPolicy):
        return text
    value = str(text).strip().lower()
    if value in ("none", "cpu"):
        return OffloadPolicy(value)
    m = _BLOCKS.match(value)
    if m and int(m.group(1)) >= 1:
        return OffloadPolicy("blocks", int(m.group(1)))
    raise InputValueError(f"offload: got {text!r}, expected 'none', 'cpu' or 'blocks N' with N >= 1")


def _tensors(module: nn.Module, recurse: bool = True) -> Iterator[torch.Tensor]:
    yield from module.parameters(recurse=recurse)
    yield from module.buffers(recurse=recurse)


def _nbytes(t: torch.Tensor) -> int:
    return t.numel() * t.element_size()


class BlockSwap:
    """Streams a FusionDiT's blocks from `storage` to `compute` (see the module docstring).

    Bookkeeping for the bench and tests: `resident_bytes` (weight bytes now on the compute device, counting
    every copy this object made there), `peak_resident_bytes`, and `log` (optional callable receiving
    ("load" | "ready" | "release", tower, block) in order).
    """

    def __init__(self, dit: nn.Module, policy: OffloadPolicy | str, compute: torch.device | str,
                 storage: torch.device | str = "cpu", prefetch: int = 1,
                 log: Callable[[str, str, int], None] | None = None):
        self.policy = parse_offload(policy)
        if self.policy.mode == "none":
            raise InputValueError("BlockSwap: offload 'none' streams nothing; leave the model on its device instead")
        if prefetch < 1:
            raise InputValueError(f"BlockSwap: prefetch={prefetch}, expected >= 1 block ahead")
        self.dit = dit
        self.compute = torch.device(compute)
        self.storage = torch.device(storage)
        self.prefetch = prefetch
        self.log = log
        num_layers = len(dit.video_model.blocks)
        self.streamed = set(self.policy.streamed_blocks(num_layers))
        self._cuda = self.compute.type == "cuda"
        self._side = torch.cuda.Stream(self.compute) if self._cuda else None
        # storage copy of every weight, by tensor identity of the Parameter/buffer object
        self._store: dict[int, torch.Tensor] = {}
        self._towers = {"video": dit.video_model, "audio": dit.audio_model}
        for t in _tensors(dit):
            stored = t.data.to(self.storage)
            if self._cuda and self.storage.type == "cpu":
                stored = stored.pin_memory()  # pinned: the copy to the GPU can run asynchronously
            t.data = stored
            self._store[id(t)] = stored
        self.resident_bytes = 0
        self.peak_resident_bytes = 0
        self._placed = False
        self._active = False  # inside a forward: block iteration streams
        self._session_depth = 0
        self._in_flight: dict[tuple[str, int], torch.cuda.Event | None] = {}
        self._loaded: dict[tuple[str, int], list[torch.Tensor]] = {}
        for name, tower in self._towers.items():
            tower.blocks = _StreamedBlocks(tower.blocks, self, name)
        self._hooks = [dit.register_forward_pre_hook(self._before_forward),
                       dit.register_forward_hook(self._after_forward, always_call=True)]

    # ------------------------------------------------------------------ placement of the resident part

    def _resident_modules(self) -> Iterator[nn.Module]:
        """Every module whose own weights stay placed for a session: all but the streamed blocks."""
        streamed = {id(m) for name, tower in self._towers.items()
                    for i in self.streamed for m in tower.blocks[i].modules()}
        for m in self.dit.modules():
            if id(m) not in streamed:
                yield m

    def placement_bytes(self) -> int:
        """An upper bound of the weight bytes a sampling session places on the compute device: the resident part
        plus, per tower, its largest streamed block for each copy that can be there at once (the running block
        and `prefetch` ahead). What a host frees before sampling so the session fits."""
        resident = sum(_nbytes(t) for m in self._resident_modules() for t in _tensors(m, recurse=False))
        in_flight = sum(max((sum(_nbytes(t) for t in _tensors(tower.blocks[i])) for i in self.streamed), default=0)
                        for tower in self._towers.values())
        return resident + in_flight * min(self.prefetch + 1, len(self.streamed))

    def _count(self, delta: int) -> None:
        self.resident_bytes += delta
        self.peak_resident_bytes = max(self.peak_resident_bytes, self.resident_bytes)

    def _place_resident(self) -> None:
        for m in self._resident_modules():
            for t in _tensors(m, recurse=False):
                t.data = self._store[id(t)].to(self.compute, copy=True)
                self._count(_nbytes(t))
        self._placed = True

    def _unplace_all(self) -> None:
        for key in list(self._loaded):
            self._release(*key)
        self._in_flight.clear()
        for m in self._resident_modules():
            for t in _tensors(m, recurse=False):
                if t.data is not self._store[id(t)]:
                    self._count(-_nbytes(t))
                    t.data = self._store[id(t)]
        self._placed = False

    @contextlib.contextmanager
    def session(self):
        """Keep the non-streamed weights on the compute device across many forwards (a sampling loop)."""
        if self._session_depth == 0 and not self._placed:
            self._place_resident()
        self._session_depth += 1
        try:
            yield self
        finally:
            self._session_depth -= 1
            if self._session_depth == 0:
                self._unplace_all()
                if self._cuda:
                    torch.cuda.current_stream(self.compute).synchronize()

    def _before_forward(self, module, args) -> None:
        if self._loaded or self._in_flight:  # a forward that raised left blocks behind: start clean
            for key in list(self._loaded):
                self._release(*key)
            self._in_flight.clear()
        if not self._placed:
            self._place_resident()
        self._active = True

    def _after_forward(self, module, args, output) -> None:  # also after a forward that raised
        self._active = False
        for key in list(self._loaded):
            self._release(*key)
        self._in_flight.clear()
        if self._session_depth == 0:
            self._unplace_all()

    # ------------------------------------------------------------------ streaming of one block

    def _block(self, tower: str, i: int) -> nn.Module:
        return self._towers[tower].blocks._modules[str(i)]

    def _start_load(self, tower: str, i: int) -> None:
        if i not in self.streamed or (tower, i) in self._loaded:
            return
        tensors = list(_tensors(self._block(tower, i)))
        if self._cuda:
            with torch.cuda.stream(self._side):
                copies = [self._store[id(t)].to(self.compute, non_blocking=True) for t in tensors]
                event = torch.cuda.Event()
                event.record(self._side)
        else:
            copies = [self._store[id(t)].to(self.compute, copy=True) for t in tensors]
            event = None
        self._loaded[(tower, i)] = copies
        self._in_flight[(tower, i)] = event
        self._count(sum(_nbytes(c) for c in copies))
        if self.log:
            self.log("load", tower, i)

    def _ensure(self, tower: str, i: int) -> None:
        if i not in self.streamed:
            return
        self._start_load(tower, i)  # not prefetched (the first streamed block): load now
        if (tower, i) in self._in_flight:
            event = self._in_flight.pop((tower, i))
            if event is not None:
                torch.cuda.current_stream(self.compute).wait_event(event)
            for t, c in zip(_tensors(self._block(tower, i)), self._loaded[(tower, i)]):
                t.data = c
            if self.log:
                self.log("ready", tower, i)

    def _release(self, tower: str, i: int) -> None:
        copies = self._loaded.pop((tower, i), None)
        if copies is None:
            return
        self._in_flight.pop((tower, i), None)
        for t in _tensors(self._block(tower, i)):
            t.data = self._store[id(t)]
        if self._cuda:
            compute_stream = torch.cuda.current_stream(self.compute)
            for c in copies:
                c.record_stream(compute_stream)  # freed only after the kernels that read it
        self._count(-sum(_nbytes(c) for c in copies))
        if self.log:
            self.log("release", tower, i)

    def _iterate(self, tower: str, blocks: "_StreamedBlocks") -> Iterator[nn.Module]:
        n = len(blocks)
        for i in range(n):
            self._ensure(tower, i)
            for j in range(i + 1, min(n, i + 1 + self.prefetch)):
                self._start_load(tower, j)
            yield blocks._modules[str(i)]
            self._release(tower, i)  # asked for the next block: this one's work is queued

    def detach(self) -> None:
        """Back to a plain model on the compute device (the weights are copied there)."""
        for h in self._hooks:
            h.remove()
        self._unplace_all()
        for tower in self._towers.values():
            tower.blocks = nn.ModuleList(list(tower.blocks._modules.values()))
        self.dit.to(self.compute)


class _StreamedBlocks(nn.ModuleList):
    """The tower's block list with the same children (and state-dict keys); streamed while a forward runs."""

    def __init__(self, blocks: nn.ModuleList, swap: BlockSwap, tower: str):
        super().__init__(list(blocks))
        object.__setattr__(self, "_swap", swap)  # not a submodule: keep it out of state_dict and .to()
        object.__setattr__(self, "_tower", tower)

    def __iter__(self) -> Iterator[nn.Module]:
        swap = self._swap
        if not swap._active:  # outside a forward (inspection, state_dict, LoRA): plain iteration
            return iter(self._modules.values())
        return swap._iterate(self._tower, self)


def attach_offload(dit: nn.Module, policy: OffloadPolicy | str, compute: torch.device | str,
                   storage: torch.device | str = "cpu", **kwargs) -> BlockSwap | None:
    """Attach block swap for `policy` (None for 'none': the model is just moved to `compute`)."""
    policy = parse_offload(policy)
    if policy.mode == "none":
        dit.to(compute)
        return None
    return BlockSwap(dit, policy, compute, storage, **kwargs)


def offload_session(dit: nn.Module):
    """The model's block-swap session (a no-op context when no block swap is attached)."""
    swap = find_block_swap(dit)
    return swap.session() if swap is not None else contextlib.nullcontext()


def find_block_swap(dit: nn.Module) -> BlockSwap | None:
    blocks = getattr(getattr(dit, "video_model", None), "blocks", None)
    return blocks._swap if isinstance(blocks, _StreamedBlocks) else None
