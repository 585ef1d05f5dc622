"""Ovi's own solvers (UniPC, DPM++, Euler as the reference steps them) as core SAMPLERs.

Core's `uni_pc` and `dpmpp_2m` are other algorithms on another parametrisation (they step the k-diffusion ODE in
sigma and start from sigma_max·noise), so with Ovi weights they give other clips than Ovi. These samplers run
the library's solvers (samplers/unipc.py, dpmpp.py, euler.py) inside core's sampling: core's guider, model
management, noise mask and callbacks stay; the step rule is the reference's.

What the reference does that a plain k-diffusion sampler does not:
- UniPC and DPM++ call the model at truncated integer timesteps; given the reference's sigma table (JointAV
  Scheduler, or `guidance.reference_sigmas`) the sampler recovers them (`schedule_for_sigmas`) and calls core's
  model at sigma = timestep / 1000. Any other table is stepped as given.
- UniPC's table starts at sigma 0.999 but the reference starts from the unscaled noise; core scales the noise by
  sigma_max first, so on a reference table the sampler starts from core's unscaled noise instead.
Velocity from core's denoised output: for a flow model denoised = x − sigma·v, so v = (x − denoised) / sigma.
"""

from __future__ import annotations

import comfy.model_management
import comfy.samplers
import torch

from ..samplers.loop import SOLVERS
from ..samplers.schedules import schedule_for_sigmas

SAMPLER_NAMES = {"unipc": "jointav_unipc", "dpm++": "jointav_dpmpp", "euler": "jointav_euler"}


def _start(model, x: torch.Tensor, sigmas: torch.Tensor, reference_table: bool) -> torch.Tensor:
    """The sample the first step sees: the reference starts every full schedule from the plain noise."""
    noise = getattr(model, "noise", None)  # core's KSamplerX0Inpaint keeps the unscaled noise here
    if reference_table and isinstance(noise, torch.Tensor) and noise.shape == x.shape and float(sigmas[0]) < 1.0:
        return noise.to(x.dtype)
    return x


def _holder(model, denoise_mask):
    """x with its held entries (noise mask 0) set to the clean latent: the reference's keep mask acts on the
    solver's own sample before every step and after the last, not only on what the model sees (core's
    inpainting wrapper does the latter), and multistep solvers would otherwise carry drift in the held entries."""
    latent = getattr(model, "latent_image", None)
    if denoise_mask is None or not isinstance(latent, torch.Tensor):
        return lambda x: x
    return lambda x: x * denoise_mask + latent.to(x.dtype) * (1.0 - denoise_mask)


def solver_function(name: str):
    """A core sampler function `(model, x, sigmas, extra_args, callback, disable)` stepping with solver `name`."""
    solver_class = SOLVERS[name]

    @torch.no_grad()  # as core's own samplers: outside ComfyUI's executor (scripts, tests) grad mode may be on
    def sample(model, x, sigmas, extra_args=None, callback=None, disable=None):
        extra_args = {} if extra_args is None else extra_args
        schedule, reference_table = schedule_for_sigmas(name, sigmas)
        solver = solver_class(schedule=schedule)
        x = _start(model, x, sigmas, reference_table)
        hold = _holder(model, extra_args.get("denoise_mask"))
        ones = x.new_ones([x.shape[0]])
        for i in range(solver.steps):
            comfy.model_management.throw_exception_if_processing_interrupted()
            x = hold(x)
            # a table long enough to reach timestep 0 before its end: call the model at the table's own sigma
            sigma_model = float(schedule.timesteps[i]) / 1000.0 or float(sigmas[i])
            denoised = model(x, ones * sigma_model, **extra_args)
            velocity = (x - denoised) / sigma_model if sigma_model > 0 else torch.zeros_like(x)
            if callback is not None:
                callback({"x": x, "i": i, "sigma": sigmas[i], "sigma_hat": sigmas[i], "denoised": denoised})
            x = solver.step(velocity, i, x)
        return hold(x)

    sample.__name__ = f"sample_{SAMPLER_NAMES[name]}"
    return sample


def jointav_sampler(name: str) -> comfy.samplers.KSAMPLER:
    """The core SAMPLER for solver `name` ("unipc", "dpm++" or "euler")."""
    return comfy.samplers.KSAMPLER(solver_function(name))
