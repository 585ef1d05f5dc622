"""DPM-Solver++ 2M (midpoint) for flow matching, stepped as Ovi's FlowDPMSolverMultistepScheduler (`dpm++`)."""

from __future__ import annotations

import math

import torch

from .schedules import FlowSolver, Schedule, dpmpp_schedule, log_snr


class DPMPPSolver(FlowSolver):
    """Second-order multistep in the data (x0) prediction, first order on the first and on the last step.

    With x0_i = x_i - sigma_i * v_i, lambda = ln((1 - sigma) / sigma), h = lambda_{i+1} - lambda_i:
    x_{i+1} = (sigma_{i+1}/sigma_i) x_i - alpha_{i+1} (e^{-h} - 1) (x0_i + 0.5 (x0_i - x0_{i-1}) / r),
    r = (lambda_i - lambda_{i-1}) / h. The schedule starts at sigma = 1 (lambda = -inf), so r is infinite on
    the second step and that step is effectively first order too, exactly as in the reference.
    """

    name = "dpm++"

    def __init__(self, steps: int = 50, shift: float = 5.0, schedule: Schedule | None = None):
        super().__init__(schedule if schedule is not None else dpmpp_schedule(steps, shift))
        self._previous_x0: torch.Tensor | None = None

    def _advance(self, velocity: torch.Tensor, i: int, x: torch.Tensor) -> torch.Tensor:
        sigma_s, sigma_t = self.sigma(i), self.sigma(i + 1)
        x0 = x - sigma_s * velocity
        previous, self._previous_x0 = self._previous_x0, x0
        if sigma_t == 0.0:
            # lambda_t = +inf: the first-order update collapses to the x0 prediction itself
            return x0
        lam_s, lam_t = log_snr(sigma_s), log_snr(sigma_t)
        h = lam_t - lam_s
        decay = math.exp(-h) - 1.0
        out = (sigma_t / sigma_s) * x - ((1.0 - sigma_t) * decay) * x0
        if previous is not None:  # (the last step, sigma_t = 0, returned above: first order)
            r = (lam_s - log_snr(self.sigma(i - 1))) / h
            out = out - (0.5 * (1.0 - sigma_t) * decay / r) * (x0 - previous)
        return out
