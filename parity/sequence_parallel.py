"""`jointav parity --world-size N DIR`: the fusion DiT fixtures with the DiT split over N processes.

N worker processes (gloo on CPU, or NCCL when every worker has a GPU; a shared temporary file is the
rendezvous, so nothing listens on the network) each load the fixture model and run every case under
`models.sequence_parallel`. Rank 0 also runs the single-process forward and reports, per output tensor:
`<case>.<output>@sp<N>` against the single-process output (max abs <= SP_TOLERANCE) and against the
reference's output (the usual parity tolerance).
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Callable

import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from . import TOLERANCE, CaseResult, compare, component_folders

SP_TOLERANCE = 1e-5
COMPONENT = "fusion_dit"


def spawn(world_size: int, worker: Callable, *args) -> None:
    """Run `worker(rank, world_size, *args)` in `world_size` fresh processes joined in one process group."""
    with tempfile.TemporaryDirectory(prefix="jointav_sp_") as tmp:
        mp.spawn(_entry, args=(world_size, os.path.join(tmp, "rendezvous"), worker, args), nprocs=world_size,
                 join=True)


def _entry(rank: int, world_size: int, rendezvous: str, worker: Callable, args: tuple) -> None:
    torch.set_num_threads(1)  # N processes share the cores
    use_cuda = torch.cuda.is_available() and torch.cuda.device_count() >= world_size
    if use_cuda:
        torch.cuda.set_device(rank)
    dist.init_process_group("nccl" if use_cuda else "gloo", init_method=f"file://{rendezvous}", rank=rank,
                            world_size=world_size)
    try:
        worker(rank, world_size, *args)
    finally:
        dist.destroy_process_group()


def max_abs_result(case: str, got: torch.Tensor, expected: torch.Tensor, tol: float = SP_TOLERANCE) -> CaseResult:
    if tuple(got.shape) != tuple(expected.shape):
        return CaseResult(COMPONENT, case, float("inf"), float("inf"), False,
                          f"shape {tuple(got.shape)} != {tuple(expected.shape)}")
    diff = (got.double().cpu() - expected.double().cpu()).abs()
    worst = float(diff.max()) if diff.numel() else 0.0
    rel = float((diff / expected.double().cpu().abs().clamp_min(1e-12)).max()) if diff.numel() else 0.0
    return CaseResult(COMPONENT, case, worst, rel, worst <= tol, f"vs single process (max abs <= {tol:g})")


def _fixture_worker(rank: int, world_size: int, folder: str, result_path: str) -> None:
    from safetensors.torch import load_file

    from ..models.fusion_dit import FusionDiT
    from ..models.sequence_parallel import sequence_parallel
    from .fusion_dit import _OUTPUTS, _as_batch, case_arguments, fusion_config

    folder = Path(folder)
    config = json.loads((folder / "config.json").read_text())
    device = torch.device("cuda", rank) if dist.get_backend() == "nccl" else torch.device("cpu")
    model = FusionDiT(fusion_config(config))
    model.load_state_dict(load_file(str(folder / "weights.safetensors")), strict=True)
    model = model.eval().to(device)
    inputs = {k: v.to(device) for k, v in load_file(str(folder / "inputs.safetensors")).items()}
    expected = load_file(str(folder / "outputs.safetensors"))
    results = []
    for case, spec in config["cases"].items():
        kwargs = case_arguments(spec["forward_kwargs"], inputs)
        with torch.no_grad():
            with sequence_parallel(model):
                split = model(**kwargs)
            single = model(**kwargs) if rank == 0 else None
        if rank != 0:
            continue
        for name in spec.get("outputs", [k for k in expected if k.startswith(case + ".")]):
            index = _OUTPUTS[name[len(case) + 1:]]
            got = _as_batch(split[index])
            results.append(max_abs_result(f"{name}@sp{world_size}", got, _as_batch(single[index])))
            ref = compare(COMPONENT, f"{name}@sp{world_size} vs reference", got, expected[name])
            results.append(ref)
    if rank == 0:
        Path(result_path).write_text(json.dumps([r.__dict__ for r in results]))


def run_sequence_parallel(path: Path, world_size: int) -> list[CaseResult]:
    """The fusion DiT component(s) under `path` with the DiT split over `world_size` processes."""
    folders = [folder for component, folder in component_folders(Path(path)) if component == COMPONENT]
    if not folders:
        raise FileNotFoundError(f"parity --world-size: no fusion_dit fixture under {path} (sequence parallel "
                                f"splits the DiT only)")
    results: list[CaseResult] = []
    for folder in folders:
        with tempfile.TemporaryDirectory(prefix="jointav_sp_out_") as tmp:
            out = Path(tmp) / "results.json"
            spawn(world_size, _fixture_worker, str(folder), str(out))
            results.extend(CaseResult(**r) for r in json.loads(out.read_text()))
    return results


__all__ = ["SP_TOLERANCE", "TOLERANCE", "max_abs_result", "run_sequence_parallel", "spawn"]
