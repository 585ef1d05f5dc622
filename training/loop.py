"""A resumable training loop: time or step budget, progress bar, periodic checkpoints, a loss curve.

A checkpoint holds the model and optimizer states, the EMA copy (if any), the step and the curve; the data
of step k depends only on (seed, k) (see data.step_rng), so N steps in one run and N/2 + resume + N/2 give
the same weights. Checkpoints are written with torch.save and read back with weights_only=True.

On a GPU the model and its optimizer live on `LoopConfig.device`; a stage that renders its data on the fly
hands a picklable `batch_fn(step)` to `train`, which then builds the batches in `workers` processes ahead of
the step (still a function of the step alone, so resuming stays exact). `steps=None` with a time cap plans
the learning-rate schedule from the measured speed of the first steps, so a schedule always ends inside the
time it was given, whatever the machine.
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import torch
from tqdm import tqdm


@dataclass
class LoopConfig:
    name: str  # the stage: checkpoint file name and progress-bar label
    steps: int | None  # planned total steps (the schedule spans these); None: planned from `minutes` (see below)
    lr: float
    minutes: float | None = None  # wall-clock cap for this invocation; None: run to `steps`
    stop_at: int | None = None  # end this invocation at this step (the schedule still spans `steps`)
    warmup: int = 100
    final_lr_fraction: float = 0.1  # cosine decay from lr to lr * this at `steps`
    grad_clip: float = 1.0
    ema_decay: float | None = None  # keep an exponential moving average of the weights
    checkpoint_every_s: float = 180.0
    log_every: int = 25  # steps per curve row
    seed: int = 0
    device: str = "cpu"
    workers: int = 0  # processes that build batches ahead (with a batch_fn); 0: in the training process
    plan_after: int = 40  # steps=None: steps timed before the schedule's length is fixed


class Collective:
    """The processes of one data-parallel run over torch.distributed (gloo: it runs wherever torch does, and a
    flat gradient of a few million floats through host memory costs little beside a step). Built by the
    caller after `init_process_group`."""

    def __init__(self):
        import torch.distributed as dist

        self.dist = dist
        self.rank, self.world = dist.get_rank(), dist.get_world_size()

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def same_weights(self, model: torch.nn.Module) -> None:
        """Every process starts from process 0's weights."""
        for value in model.state_dict().values():
            host = value.detach().cpu()
            self.dist.broadcast(host, 0)
            value.copy_(host.to(value.device))

    def average_gradients(self, params: list[torch.nn.Parameter]) -> None:
        grads = [p.grad if p.grad is not None else torch.zeros_like(p) for p in params]
        flat = torch.cat([g.reshape(-1) for g in grads]).float().cpu()
        self.dist.all_reduce(flat)
        flat = flat.to(grads[0].device) / self.world
        offset = 0
        for p, g in zip(params, grads):
            n = g.numel()
            p.grad = flat[offset:offset + n].view_as(p).to(p.dtype)
            offset += n

    def agree(self, values: list[float]) -> list[float]:
        """Process 0's `values` on every process."""
        t = torch.tensor(values, dtype=torch.float64)
        self.dist.broadcast(t, 0)
        return t.tolist()


def steps_that_fit(minutes: float, seconds_per_step: float, margin: float = 0.95) -> int:
    """Steps that fit in `minutes` at the measured speed, with a margin for checkpoints and jitter."""
    return max(1, int(margin * 60 * minutes / max(seconds_per_step, 1e-9)))


class _StepBatches(torch.utils.data.Dataset):
    """Index k -> batch_fn(k): lets a DataLoader build the batches of steps k, k+1, ... in worker processes."""

    def __init__(self, batch_fn: Callable[[int], object]):
        self.batch_fn = batch_fn

    def __getitem__(self, k: int):
        return self.batch_fn(k)

    def __len__(self) -> int:  # only the sampler's indices are ever asked for
        return 2**31


def _batches(cfg: "LoopConfig", batch_fn, first: int, end: int):
    if batch_fn is None:
        return (None for _ in range(first, end))
    if cfg.workers <= 0:
        return (batch_fn(k) for k in range(first, end))
    loader = torch.utils.data.DataLoader(_StepBatches(batch_fn), batch_size=None, sampler=range(first, end),
                                         num_workers=cfg.workers, prefetch_factor=4,
                                         pin_memory=cfg.device.startswith("cuda"))
    return iter(loader)


@dataclass
class LoopState:
    step: int = 0
    planned: int | None = None  # the schedule's length, once fixed (LoopConfig.steps, or planned from speed)
    seconds: float = 0.0  # training time spent so far, over all invocations
    curve: list = field(default_factory=list)  # rows {"step", "seconds", "loss", ...}
    window: dict = field(default_factory=dict)  # values of the steps since the last curve row


def learning_rate(cfg: LoopConfig, step: int, planned: int | None = None) -> float:
    """Linear warm-up, then cosine decay to lr * final_lr_fraction at `planned` steps (cfg.steps by default;
    while an auto-planned schedule is still being timed, the rate stays at its peak)."""
    if step < cfg.warmup:
        return cfg.lr * (step + 1) / cfg.warmup
    total = planned if planned is not None else cfg.steps
    if total is None:
        return cfg.lr
    progress = min(1.0, (step - cfg.warmup) / max(1, total - cfg.warmup))
    low = cfg.lr * cfg.final_lr_fraction
    return low + (cfg.lr - low) * 0.5 * (1 + math.cos(math.pi * progress))


def checkpoint_path(workdir: Path, name: str) -> Path:
    return Path(workdir) / f"{name}.ckpt"


def train(cfg: LoopConfig, model: torch.nn.Module, step_fn: Callable, workdir: Path,
          resume: bool = True, show_progress: bool = True,
          batch_fn: Callable[[int], object] | None = None,
          clock: Callable[[], float] = time.monotonic, collective: Collective | None = None
          ) -> tuple[LoopState, torch.nn.Module | None]:
    """Run `step_fn(step) -> {"loss": tensor, **floats}` (or `step_fn(step, batch_fn(step))` when a batch_fn is
    given) from the last checkpoint (when `resume`) until `steps` or the time cap. Returns the state and the
    EMA model (None without EMA). Checkpoints every few minutes and at the end. `clock()` gives seconds: the
    time cap, the planned schedule, the curve's seconds and checkpoint spacing all read it (tests pass a fake)."""
    if cfg.steps is None and cfg.minutes is None:
        raise ValueError(f"{cfg.name}: steps=None plans the schedule from a time cap; give minutes too")
    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    model.to(cfg.device)
    main = collective is None or collective.is_main
    if collective is not None:
        collective.same_weights(model)
    params = [p for p in model.parameters() if p.requires_grad]
    frozen = frozenset(n for n, p in model.named_parameters() if not p.requires_grad)
    optimizer = torch.optim.AdamW(params, lr=cfg.lr, betas=(0.9, 0.99), weight_decay=0.0)
    ema = None
    if cfg.ema_decay is not None:
        ema = {k: v.detach().clone() for k, v in model.state_dict().items()}
    state = LoopState()
    path = checkpoint_path(workdir, cfg.name)
    if resume and path.is_file():
        saved = torch.load(path, weights_only=True, map_location="cpu")
        model.load_state_dict(saved["model"])
        optimizer.load_state_dict(saved["optimizer"])
        if ema is not None and saved["ema"] is not None:  # (a run may add an EMA when it resumes)
            ema = {k: v.to(cfg.device) for k, v in saved["ema"].items()}
        state = LoopState(step=saved["step"], planned=saved.get("planned"), seconds=saved["seconds"],
                          curve=saved["curve"], window=saved.get("window", {}))
    if state.planned is None and cfg.steps is not None:
        state.planned = cfg.steps

    def save() -> None:
        if not main:
            return
        tmp = path.with_name(path.name + ".tmp")
        torch.save({"model": model.state_dict(), "optimizer": optimizer.state_dict(), "ema": ema,
                    "step": state.step, "planned": state.planned, "seconds": state.seconds, "curve": state.curve,
                    "window": state.window}, tmp)
        os.replace(tmp, path)

    started = clock()
    last_save = started
    bar = tqdm(total=state.planned, initial=state.step, desc=cfg.name, disable=not (show_progress and main),
               mininterval=5)
    model.train()
    cap = state.planned if state.planned is not None else 2**62
    end = cap if cfg.stop_at is None else min(cap, cfg.stop_at)
    batches = _batches(cfg, batch_fn, state.step, end)
    timed_from = None
    while state.step < end:
        stop = cfg.minutes is not None and clock() - started >= 60 * cfg.minutes
        planned = state.planned
        if state.planned is None and state.step >= cfg.plan_after:
            if timed_from is None:  # the first steps (worker start-up, kernel selection) are not timed
                timed_from = (state.step, clock())
            elif state.step - timed_from[0] >= cfg.plan_after:
                per_step = (clock() - timed_from[1]) / (state.step - timed_from[0])
                left = cfg.minutes - (clock() - started) / 60
                planned = state.step + steps_that_fit(left, per_step)
        if collective is not None:  # (process 0's clock decides for all)
            stop, planned = collective.agree([float(stop), -1.0 if planned is None else float(planned)])
            planned = None if planned < 0 else int(planned)
        if stop:
            break
        if planned != state.planned:
            state.planned = planned
            end = state.planned if cfg.stop_at is None else min(state.planned, cfg.stop_at)
            bar.total = state.planned
            if state.step >= end:
                break
        t0 = clock()
        for group in optimizer.param_groups:
            group["lr"] = learning_rate(cfg, state.step, state.planned)
        batch = next(batches)
        out = step_fn(state.step) if batch_fn is None else step_fn(state.step, batch)
        optimizer.zero_grad(set_to_none=True)
        out["loss"].backward()
        if collective is not None:
            collective.average_gradients(params)
        if cfg.grad_clip:
            torch.nn.utils.clip_grad_norm_(params, cfg.grad_clip)
        optimizer.step()
        if ema is not None:
            _update_ema(ema, model.state_dict(), min(cfg.ema_decay, (1 + state.step) / (10 + state.step)), frozen)
        state.step += 1
        state.seconds += clock() - t0
        window = state.window
        for k, v in out.items():
            window.setdefault(k, []).append(float(v.detach()) if torch.is_tensor(v) else float(v))
        if state.step % cfg.log_every == 0 or state.step == state.planned:
            row = {"step": state.step, "seconds": round(state.seconds, 1)}
            row.update({k: sum(v) / len(v) for k, v in window.items()})
            state.curve.append(row)
            bar.set_postfix(loss=f"{row['loss']:.4f}")
            state.window = {}
        bar.update(1)
        if clock() - last_save >= cfg.checkpoint_every_s:
            save()
            last_save = clock()
    bar.close()
    save()
    model.eval()
    ema_model = None
    if ema is not None:
        import copy

        ema_model = copy.deepcopy(model)
        ema_model.load_state_dict(ema)
    return state, ema_model


def _update_ema(ema: dict, current: dict, decay: float, frozen: frozenset = frozenset()) -> None:
    """ema <- decay * ema + (1 - decay) * current for float tensors (copied otherwise, and for `frozen`
    parameters, whose average would drift from their value by rounding alone); one fused kernel per operation
    over all tensors, since per-tensor calls dominate a tiny model's step on a GPU."""
    with torch.no_grad():
        floats = [k for k, v in current.items() if v.is_floating_point() and k not in frozen]
        targets = [ema[k] for k in floats]
        torch._foreach_mul_(targets, decay)
        torch._foreach_add_(targets, [current[k].detach() for k in floats], alpha=1 - decay)
        for k, v in current.items():
            if not v.is_floating_point() or k in frozen:
                ema[k].copy_(v)


def load_checkpoint_weights(workdir: Path, name: str, ema: bool = False) -> dict:
    """Model weights of a stage's last checkpoint (the EMA copy when asked and present)."""
    saved = torch.load(checkpoint_path(workdir, name), weights_only=True, map_location="cpu")
    return saved["ema"] if ema and saved.get("ema") is not None else saved["model"]


def load_curve(workdir: Path, name: str) -> tuple[list, int, float]:
    return read_curve(checkpoint_path(workdir, name))


def read_curve(path: Path) -> tuple[list, int, float]:
    """(curve, step, seconds) of one checkpoint file."""
    saved = torch.load(path, weights_only=True, map_location="cpu")
    return saved["curve"], saved["step"], saved["seconds"]
