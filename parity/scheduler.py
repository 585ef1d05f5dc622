"""Parity of the flow-matching solvers with the reference fixture `scheduler/`.

Every run listed in config.json ("<solver>.steps<N>.shift<s>") is replayed: a fresh solver of that name, steps
and shift, the known velocity v(x, t) = a*x + b*(t/1000) + c*sin(x) with the config's constants, starting from
the stored x_init. Compared per run: timesteps (values and dtype), sigmas, the velocity fed to each step, the
whole trajectory and the final sample.
"""

from __future__ import annotations

import json
import math
import re
from pathlib import Path

import torch
from safetensors.torch import load_file

from . import CaseResult, compare
from ..samplers import make_solver
from ..samplers.unipc import UniPCSolver

COMPONENT = "scheduler"
_RUN_NAME = re.compile(r"^(?P<solver>[A-Za-z+]+)\.steps(?P<steps>\d+)\.shift(?P<shift>\d+(?:\.\d+)?)$")
# fixture spelling -> this package's solver name
_SOLVER_ALIASES = {"dpmpp": "dpm++"}


def _parse_run(name: str, run_config: dict) -> tuple[str, int, float]:
    """Solver, steps and shift from the run's own config entries where present, else from its name."""
    match = _RUN_NAME.match(name)
    solver = run_config.get("solver", match and match["solver"])
    steps = run_config.get("n_timesteps", run_config.get("steps", match and int(match["steps"])))
    shift = run_config.get("shift", match and float(match["shift"]))
    if solver is None or steps is None or shift is None:
        raise ValueError(f"scheduler fixture: run {name!r} names no solver/steps/shift (expected '<solver>.steps<N>.shift<s>')")
    if match and int(match["steps"]) != int(steps):
        raise ValueError(f"scheduler fixture: run {name!r} has n_timesteps={steps}, but its name says {match['steps']}")
    return _SOLVER_ALIASES.get(solver, solver), int(steps), float(shift)


def _velocity(constants: dict, x: torch.Tensor, timestep: torch.Tensor) -> torch.Tensor:
    t = float(timestep)
    a, b, c = (float(constants.get(k, 0.0)) for k in ("a", "b", "c"))
    return a * x + b * (t / 1000.0) + c * torch.sin(x)


def _compare_with_dtype(case: str, got: torch.Tensor, expected: torch.Tensor) -> CaseResult:
    result = compare(COMPONENT, case, got, expected)
    if got.dtype != expected.dtype:
        result.passed = False
        result.detail = f"dtype {got.dtype} != expected {expected.dtype}"
    return result


def _replay(name: str, run_config: dict, tensors: dict, x_init: torch.Tensor, constants: dict) -> list[CaseResult]:
    solver_name, steps, shift = _parse_run(name, run_config)
    solver = make_solver(solver_name, steps, shift)
    results = [
        _compare_with_dtype(f"{name}.timesteps", solver.timesteps, tensors[f"{name}.timesteps"]),
        _compare_with_dtype(f"{name}.sigmas", solver.sigmas, tensors[f"{name}.sigmas"]),
    ]
    expected_orders = run_config.get("unipc_predictor_order_per_step")
    if expected_orders is not None and isinstance(solver, UniPCSolver):
        orders = torch.tensor([solver.predictor_order(i) for i in range(steps)])
        results.append(compare(COMPONENT, f"{name}.predictor_order", orders, torch.tensor(expected_orders)))

    # the model is called with this solver's own timesteps, as the sampling loop does
    x = x_init.clone()
    trajectory, velocities = [x], []
    for i in range(steps):
        v = _velocity(constants, x, solver.timesteps[i])
        velocities.append(v)
        x = solver.step(v, i, x)
        trajectory.append(x)
    expected_trajectory = tensors[f"{name}.trajectory"]
    results.append(compare(COMPONENT, f"{name}.model_outputs", torch.stack(velocities), tensors[f"{name}.model_outputs"]))
    results.append(compare(COMPONENT, f"{name}.trajectory", torch.stack(trajectory), expected_trajectory))
    results.append(compare(COMPONENT, f"{name}.final", trajectory[-1], expected_trajectory[-1]))
    return results


def run(folder: Path) -> list[CaseResult]:
    folder = Path(folder)
    config = json.loads((folder / "config.json").read_text())
    tensors = load_file(str(folder / "scheduler.safetensors"))
    constants = config["velocity_constants"]
    sample_shape = tuple(config["sample_shape"])
    results: list[CaseResult] = []
    for name, run_config in config["runs"].items():
        x_init = tensors["x_init"] if "x_init" in tensors else tensors[f"{name}.trajectory"][0]
        if tuple(x_init.shape) != sample_shape:
            results.append(CaseResult(COMPONENT, f"{name}.x_init", math.inf, math.inf, False,
                                      f"x_init shape {tuple(x_init.shape)} != config sample_shape {sample_shape}"))
            continue
        results.extend(_replay(name, run_config, tensors, x_init, constants))
    return results
