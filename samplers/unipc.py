"""UniPC (bh2, predictor order up to 2, UniC corrector) for flow matching, stepped as Ovi's FlowUniPCMultistepScheduler.

Notation: sigma_i from the schedule, alpha = 1 - sigma, lambda = ln(alpha/sigma), m_i = x_i - sigma_i v_i
(the x0 prediction). Per step i, with the model evaluated at x_i:
1. corrector (i > 0): replace x_i by UniC of the previous predictor's order, built from x_{i-1}, m_{i-1}
   (and m_{i-2}) and the new m_i; the model is NOT re-evaluated (m_i stays the one computed at the uncorrected x_i);
2. predictor of order p_i = min(2, steps - i, i + 1) from the corrected x_i; on the last step sigma = 0 and the
   predictor returns m_i.
"""

from __future__ import annotations

import math

import torch

from .schedules import FlowSolver, Schedule, log_snr, unipc_schedule


class UniPCSolver(FlowSolver):
    name = "unipc"
    max_order = 2

    def __init__(self, steps: int = 50, shift: float = 5.0, schedule: Schedule | None = None):
        super().__init__(schedule if schedule is not None else unipc_schedule(steps, shift))
        self._x0_history: list[torch.Tensor] = []  # the last max_order x0 predictions, oldest first
        self._previous_sample: torch.Tensor | None = None  # the (corrected) sample the last predictor started from
        self._previous_order = 0

    def predictor_order(self, i: int) -> int:
        # warm-up (i + 1) and lower order at the final step (steps - i), as solver_order=2, lower_order_final=True
        return min(self.max_order, self.steps - i, i + 1)

    def _advance(self, velocity: torch.Tensor, i: int, x: torch.Tensor) -> torch.Tensor:
        x0 = x - self.sigma(i) * velocity
        if i > 0:
            x = self._correct(i, x0)
        self._x0_history = (self._x0_history + [x0])[-self.max_order:]
        order = self.predictor_order(i)
        self._previous_sample, self._previous_order = x, order
        return self._predict(i, order, x)

    def _predict(self, i: int, order: int, x: torch.Tensor) -> torch.Tensor:
        m0 = self._x0_history[-1]
        sigma_s, sigma_t = self.sigma(i), self.sigma(i + 1)
        if sigma_t == 0.0:
            # lambda_t = +inf: sigma_t/sigma_s * x vanishes and expm1(-h) = -1, leaving m0 exactly
            return m0
        lam_s = log_snr(sigma_s)
        h = log_snr(sigma_t) - lam_s
        phi = math.expm1(-h)  # also B(h) for bh2
        alpha_t = 1.0 - sigma_t
        out = (sigma_t / sigma_s) * x - (alpha_t * phi) * m0
        if order == 2:
            r = (log_snr(self.sigma(i - 1)) - lam_s) / h
            # rho = 0.5 for the second-order predictor; D1 = (m_{i-1} - m_i) / r
            out = out - (alpha_t * phi * 0.5 / r) * (self._x0_history[-2] - m0)
        return out

    def _correct(self, i: int, x0_new: torch.Tensor) -> torch.Tensor:
        """UniC: the corrected x_i from x_{i-1}, its x0 history and the fresh x0 prediction at step i."""
        order = self._previous_order
        m_prev = self._x0_history[-1]
        sigma_s, sigma_t = self.sigma(i - 1), self.sigma(i)
        lam_s = log_snr(sigma_s)
        h = log_snr(sigma_t) - lam_s
        hh = -h
        phi = math.expm1(hh)  # also B(h) for bh2
        alpha_t = 1.0 - sigma_t
        out = (sigma_t / sigma_s) * self._previous_sample - (alpha_t * phi) * m_prev
        d1_new = x0_new - m_prev
        if order == 1:
            return out - (alpha_t * phi * 0.5) * d1_new
        # order 2: solve [[1, 1], [r, 1]] rho = b with the bh2 right-hand side
        r = (log_snr(self.sigma(i - 2)) - lam_s) / h
        g1 = phi / hh - 1.0
        b1 = g1 / phi
        b2 = 2.0 * (g1 / hh - 0.5) / phi
        rho_old = (b1 - b2) / (1.0 - r)
        rho_new = b1 - rho_old
        d1_old = (self._x0_history[-2] - m_prev) / r
        return out - (alpha_t * phi) * (rho_old * d1_old + rho_new * d1_new)
