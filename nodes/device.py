"""ComfyUI's device choice, memory management and interruption, as the plain values and callables the core takes."""

from __future__ import annotations

import torch

import comfy.model_management as mm
import comfy.utils


def torch_device() -> torch.device:
    """The device ComfyUI computes on (honours --cpu, --directml, ...)."""
    return mm.get_torch_device()


def make_room(nbytes: int, device: torch.device) -> None:
    """Ask ComfyUI to unload its own models (text encoders, other diffusion models) so `nbytes` of ours fit.

    Our models are not ComfyUI ModelPatchers, so ComfyUI would not unload anything for them by itself.
    """
    device = torch.device(device)
    if device.type == "cpu" or nbytes <= 0:
        return
    mm.free_memory(nbytes + mm.minimum_inference_memory(), device)


def release_cache() -> None:
    """Return cached allocator blocks before a memory-hungry step (decoding) so it does not run out."""
    mm.soft_empty_cache()


def raise_if_interrupted() -> bool:
    """The core's `cancel` callable: raises ComfyUI's own interrupt exception, so the run ends as "interrupted"."""
    mm.throw_exception_if_processing_interrupted()
    return False


def interrupted_exception() -> Exception:
    return mm.InterruptProcessingException()


class StepProgress:
    """The core's `progress(step, total)` callable, shown as the node's progress bar in the editor."""

    def __init__(self, total: int):
        self._bar = comfy.utils.ProgressBar(total)

    def __call__(self, step: int, total: int) -> None:
        # The hook behind update_absolute also checks for interruption, so a stop request lands after the step.
        self._bar.update_absolute(step, total)


class SegmentProgress:
    """The long-form functions' `progress(segment, segments, step, steps)`, as one bar over all segments' steps."""

    def __init__(self):
        self._bar = None

    def __call__(self, segment: int, segments: int, step: int, steps: int) -> None:
        total = max(1, segments) * steps
        if self._bar is None:
            self._bar = comfy.utils.ProgressBar(total)
        self._bar.update_absolute((segment - 1) * steps + step, total)
