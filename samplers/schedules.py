"""Flow-matching noise schedules: the sigma and timestep tables each solver steps through.

Convention (as in Ovi / Wan): x_sigma = (1 - sigma) * x0 + sigma * noise, sigma runs from ~1 down to 0,
and the model is called with timestep = sigma * 1000. Each table below reproduces, value for value, how the
reference builds it, because the model sees the timesteps (UniPC and DPM++ hand it *truncated integers*).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

from ..errors import InputShapeError, InputValueError

NUM_TRAIN_TIMESTEPS = 1000


@dataclass(frozen=True)
class Schedule:
    """timesteps `[N]` (what the model is called with) and sigmas `[N+1]` float32 ending in 0."""

    timesteps: torch.Tensor
    sigmas: torch.Tensor

    @property
    def steps(self) -> int:
        return int(self.timesteps.shape[0])


def shift_sigmas(sigmas, shift: float):
    """The resolution shift s*sigma / (1 + (s - 1)*sigma): keeps sigma=0 and sigma=1 fixed, spends more steps near 1."""
    return shift * sigmas / (1 + (shift - 1) * sigmas)


def check_steps_and_shift(steps: int, shift: float) -> None:
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
        raise InputValueError(f"steps: got {steps!r}, expected an integer >= 1")
    if isinstance(shift, bool) or not isinstance(shift, (int, float)) or not math.isfinite(shift) or shift <= 0:
        raise InputValueError(f"shift: got {shift!r}, expected a finite number > 0")


def _integer_schedule(first_sigma: float, steps: int, shift: float) -> Schedule:
    # float64 linspace without its end point (sigma=0 is appended separately), shifted in float64; the
    # timesteps are the float64 sigmas times 1000 truncated towards zero, the sigmas are stored as float32.
    sigmas = shift_sigmas(np.linspace(first_sigma, 0.0, steps + 1)[:-1], float(shift))
    timesteps = torch.from_numpy(sigmas * NUM_TRAIN_TIMESTEPS).to(torch.int64)
    table = torch.from_numpy(np.concatenate([sigmas, [0.0]]).astype(np.float32))
    return Schedule(timesteps=timesteps, sigmas=table)


def unipc_schedule(steps: int, shift: float) -> Schedule:
    """Ovi's FlowUniPCMultistepScheduler(shift=1).set_timesteps(steps, shift=shift).

    Its training table is 1 - linspace(1, 1/1000, 1000) stored as float32, so the schedule starts at
    float32(0.999), not 1: the first timestep is 999 at shift 5.
    """
    check_steps_and_shift(steps, shift)
    sigma_max = float(np.float32(1.0 - 1.0 / NUM_TRAIN_TIMESTEPS))
    return _integer_schedule(sigma_max, steps, shift)


def dpmpp_schedule(steps: int, shift: float) -> Schedule:
    """Ovi's get_sampling_sigmas(steps, shift) handed to FlowDPMSolverMultistepScheduler(shift=1): starts at exactly 1."""
    check_steps_and_shift(steps, shift)
    return _integer_schedule(1.0, steps, shift)


def euler_schedule(steps: int, shift: float) -> Schedule:
    """diffusers FlowMatchEulerDiscreteScheduler(shift=shift).set_timesteps(steps) (checked against diffusers 0.42.1).

    diffusers shifts twice: its float32 training table is already shifted, so the last training sigma is
    shift(1/1000); set_timesteps spaces timesteps linearly between 1000 and 1000*that value (float64) and then
    applies the shift again. Timesteps are float32 (sigma*1000 computed in float32), not integers.
    """
    check_steps_and_shift(steps, shift)
    # the smallest training sigma, computed in float32 like the scheduler's torch table
    smallest = torch.tensor(1.0, dtype=torch.float32) / NUM_TRAIN_TIMESTEPS
    sigma_min = float(shift * smallest / (1 + (shift - 1) * smallest))
    sigma_max = 1.0  # shift(1) == 1
    t = np.linspace(sigma_max * NUM_TRAIN_TIMESTEPS, sigma_min * NUM_TRAIN_TIMESTEPS, steps)
    sigmas = torch.from_numpy(shift_sigmas(t / NUM_TRAIN_TIMESTEPS, float(shift))).to(torch.float32)
    timesteps = sigmas * NUM_TRAIN_TIMESTEPS
    return Schedule(timesteps=timesteps, sigmas=torch.cat([sigmas, torch.zeros(1)]))


def log_snr(sigma: float) -> float:
    """lambda = ln(alpha) - ln(sigma) with alpha = 1 - sigma; +inf at sigma=0 and -inf at sigma=1 (as torch.log gives)."""
    if sigma <= 0.0:
        return math.inf
    if sigma >= 1.0:
        return -math.inf
    return math.log1p(-sigma) - math.log(sigma)


class FlowSolver:
    """A solver bound to one schedule. Call `step(velocity, i, x)` for i = 0, 1, ..., steps-1 in order.

    The model is called with `timesteps[i]` at the sample x_i, and `step` returns x_{i+1}; the last step returns
    the clean-sample prediction. Multistep solvers keep history, so each generation needs its own instance (one for
    the video latent and one for the audio latent, advanced with the same timesteps, as the reference does).
    Arithmetic runs in float32 (float64 if x is float64) and the result comes back in x's dtype.
    """

    name: str = ""

    def __init__(self, schedule: Schedule):
        self.timesteps = schedule.timesteps
        self.sigmas = schedule.sigmas
        self._sigmas = [float(s) for s in schedule.sigmas]  # python floats: cheap scalar maths per step
        self._next_step = 0

    @property
    def steps(self) -> int:
        return int(self.timesteps.shape[0])

    def sigma(self, i: int) -> float:
        return self._sigmas[i]

    def step(self, velocity: torch.Tensor, i: int, x: torch.Tensor) -> torch.Tensor:
        if i != self._next_step or i >= self.steps:
            expected = f"step {self._next_step}" if self._next_step < self.steps else "no further step (all done)"
            raise InputValueError(
                f"{self.name} solver: step index {i} called out of order; expected {expected} "
                f"(steps run 0..{self.steps - 1}, once each, in order)"
            )
        if tuple(velocity.shape) != tuple(x.shape):
            raise InputShapeError(
                f"{self.name} solver step {i}: velocity has shape {tuple(velocity.shape)}, expected the sample's "
                f"shape {tuple(x.shape)}"
            )
        work = torch.float64 if x.dtype == torch.float64 else torch.float32
        out = self._advance(velocity.to(work), i, x.to(work))
        self._next_step = i + 1
        return out.to(x.dtype)

    def _advance(self, velocity: torch.Tensor, i: int, x: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError


# The integer-timestep schedules. Euler needs none: its reference calls the model at sigma·1000 in float32, which
# is what any table gives.
_SCHEDULES = {"unipc": unipc_schedule, "dpm++": dpmpp_schedule}
_SOLVER_NAMES = ("unipc", "dpm++", "euler")


def _shift_candidates(name: str, sigmas: torch.Tensor) -> list[float]:
    steps = sigmas.shape[0] - 1
    unshifted_table = _SCHEDULES[name](steps, 1.0).sigmas.double()
    # the sigma nearest 1/2 before shifting pins the shift down best (near 1 or 0 the inversion is ill-conditioned)
    index = int((unshifted_table[:-1] - 0.5).abs().argmin())
    unshifted = unshifted_table[index].item()
    if unshifted >= 1.0:
        return [1.0]  # one step from sigma 1: every shift gives the same table
    sigma = sigmas.double()[index].item()
    if not (0.0 < unshifted < 1.0 and 0.0 < sigma < 1.0):
        return []
    shift = sigma * (1.0 - unshifted) / (unshifted * (1.0 - sigma))  # inverts shift_sigmas at that point
    # the shifts people type (5, 7.5, 3.25) first; the raw estimate can miss the float32 table by one ulp
    return [round(shift, 2), round(shift, 4), round(shift, 6), shift]


def schedule_for_sigmas(name: str, sigmas: torch.Tensor) -> tuple[Schedule, bool]:
    """The schedule `name` steps through for a sigma table handed in from outside (a ComfyUI SIGMAS).

    For UniPC and DPM++: when `sigmas` is exactly (float32) the table the solver builds for some shift, that
    schedule comes back with the reference's own timesteps (the model is called at truncated integer timesteps)
    and True. Any other table (a core scheduler's, a split one), and every Euler table, is stepped as given with
    the model called at sigma·1000, and False.
    """
    if name not in _SOLVER_NAMES:
        raise InputValueError(f"solver: got {name!r}, expected one of {', '.join(repr(n) for n in _SOLVER_NAMES)}")
    if not isinstance(sigmas, torch.Tensor) or sigmas.ndim != 1 or sigmas.shape[0] < 2:
        shape = tuple(sigmas.shape) if isinstance(sigmas, torch.Tensor) else type(sigmas).__name__
        raise InputShapeError(f"{name} solver: sigmas {shape}, expected a 1-D table of at least 2 values")
    table = sigmas.detach().float().cpu()
    build = _SCHEDULES.get(name)
    for shift in _shift_candidates(name, table) if build is not None else []:
        if shift > 0 and math.isfinite(shift):
            schedule = build(table.shape[0] - 1, shift)
            if torch.equal(schedule.sigmas, table):
                return schedule, True
    return Schedule(timesteps=table[:-1] * NUM_TRAIN_TIMESTEPS, sigmas=table), False
