"""A resumable training loop: time or step budget, progress bar, periodic checkpoints, a loss curve.

A checkpoint holds the model and optimizer states, the EMA copy (if any), the step and the curve; the data
of step k depends only on (seed, k) (see data.step_rng), so N steps in one run and N/2 + resume + N/2 give
the same weights. Checkpoints are written with torch.save and read back with weights_only=True.
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
    steps: int  # planned total steps (the learning-rate schedule spans these)
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


@dataclass
class LoopState:
    step: int = 0
    seconds: float = 0.0  # training time spent so far, over all invocations
    curve: list = field(default_factory=list)  # rows {"step", "seconds", "loss", ...}
    window: dict = field(default_factory=dict)  # values of the steps since the last curve row


def learning_rate(cfg: LoopConfig, step: int) -> float:
    if step < cfg.warmup:
        return cfg.lr * (step + 1) / cfg.warmup
    progress = min(1.0, (step - cfg.warmup) / max(1, cfg.steps - cfg.warmup))
    low = cfg.lr * cfg.final_lr_fraction
    return low + (cfg.lr - low) * 0.5 * (1 + math.cos(math.pi * progress))


def checkpoint_path(workdir: Path, name: str) -> Path:
    return Path(workdir) / f"{name}.ckpt"


def train(cfg: LoopConfig, model: torch.nn.Module, step_fn: Callable[[int], dict], workdir: Path,
          resume: bool = True, show_progress: bool = True) -> tuple[LoopState, torch.nn.Module | None]:
    """Run `step_fn(step) -> {"loss": tensor, **floats}` from the last checkpoint (when `resume`) until `steps`
    or the time cap. Returns the state and the EMA model (None without EMA). Checkpoints every few minutes
    and at the end."""
    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    params = [p for p in model.parameters() if p.requires_grad]
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
            ema = saved["ema"]
        state = LoopState(step=saved["step"], seconds=saved["seconds"], curve=saved["curve"],
                          window=saved.get("window", {}))

    def save() -> None:
        tmp = path.with_name(path.name + ".tmp")
        torch.save({"model": model.state_dict(), "optimizer": optimizer.state_dict(), "ema": ema,
                    "step": state.step, "seconds": state.seconds, "curve": state.curve,
                    "window": state.window}, tmp)
        os.replace(tmp, path)

    started = time.monotonic()
    last_save = started
    bar = tqdm(total=cfg.steps, initial=state.step, desc=cfg.name, disable=not show_progress, mininterval=5)
    model.train()
    end = cfg.steps if cfg.stop_at is None else min(cfg.steps, cfg.stop_at)
    while state.step < end:
        if cfg.minutes is not None and time.monotonic() - started >= 60 * cfg.minutes:
            break
        t0 = time.monotonic()
        for group in optimizer.param_groups:
            group["lr"] = learning_rate(cfg, state.step)
        out = step_fn(state.step)
        optimizer.zero_grad(set_to_none=True)
        out["loss"].backward()
        if cfg.grad_clip:
            torch.nn.utils.clip_grad_norm_(params, cfg.grad_clip)
        optimizer.step()
        if ema is not None:
            decay = min(cfg.ema_decay, (1 + state.step) / (10 + state.step))
            with torch.no_grad():
                for k, v in model.state_dict().items():
                    if v.is_floating_point():
                        ema[k].mul_(decay).add_(v.detach(), alpha=1 - decay)
                    else:
                        ema[k].copy_(v)
        state.step += 1
        state.seconds += time.monotonic() - t0
        window = state.window
        for k, v in out.items():
            window.setdefault(k, []).append(float(v.detach()) if torch.is_tensor(v) else float(v))
        if state.step % cfg.log_every == 0 or state.step == cfg.steps:
            row = {"step": state.step, "seconds": round(state.seconds, 1)}
            row.update({k: sum(v) / len(v) for k, v in window.items()})
            state.curve.append(row)
            bar.set_postfix(loss=f"{row['loss']:.4f}")
            state.window = {}
        bar.update(1)
        if time.monotonic() - last_save >= cfg.checkpoint_every_s:
            save()
            last_save = time.monotonic()
    bar.close()
    save()
    model.eval()
    ema_model = None
    if ema is not None:
        import copy

        ema_model = copy.deepcopy(model)
        ema_model.load_state_dict(ema)
    return state, ema_model


def load_checkpoint_weights(workdir: Path, name: str, ema: bool = False) -> dict:
    """Model weights of a stage's last checkpoint (the EMA copy when asked and present)."""
    saved = torch.load(checkpoint_path(workdir, name), weights_only=True, map_location="cpu")
    return saved["ema"] if ema and saved.get("ema") is not None else saved["model"]


def load_curve(workdir: Path, name: str) -> tuple[list, int, float]:
    saved = torch.load(checkpoint_path(workdir, name), weights_only=True, map_location="cpu")
    return saved["curve"], saved["step"], saved["seconds"]
