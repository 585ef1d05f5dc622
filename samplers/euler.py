"""Flow-matching Euler (diffusers' FlowMatchEulerDiscreteScheduler as Ovi's `euler` uses it)."""

from __future__ import annotations

import torch

from .schedules import FlowSolver, Schedule, euler_schedule


class EulerSolver(FlowSolver):
    """x_{i+1} = x_i + (sigma_{i+1} - sigma_i) * v_i on the diffusers schedule (float timesteps)."""

    name = "euler"

    def __init__(self, steps: int = 50, shift: float = 5.0, schedule: Schedule | None = None):
        super().__init__(schedule if schedule is not None else euler_schedule(steps, shift))

    def _advance(self, velocity: torch.Tensor, i: int, x: torch.Tensor) -> torch.Tensor:
        return x + (self.sigma(i + 1) - self.sigma(i)) * velocity
