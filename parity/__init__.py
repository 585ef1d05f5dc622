"""Parity runs: feed a fixture set (the format of `shared/fixtures/ovi/`) through this project's code.

A fixture set is either one component folder (it holds a `config.json`) or a folder of such folders.
Each component module reads its own config and tensors, builds the models from that config (never from
hard-coded sizes), and returns one `CaseResult` per compared tensor. The CLI and the tests share this code.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from pathlib import Path

import torch

TOLERANCE = 1e-4

# component module -> a file whose presence identifies a folder of that component
_SIGNATURES = {
    "fusion_dit": "intermediates.safetensors",
    "primitives": "primitives.safetensors",
    "scheduler": "scheduler.safetensors",
    "wan22_vae": "decoder_weights.safetensors",
    "mmaudio_vae_bigvgan": "bigvgan_weights_raw.safetensors",
}


@dataclass
class CaseResult:
    component: str
    case: str
    max_abs: float
    max_rel: float
    passed: bool
    detail: str = ""

    def line(self) -> str:
        status = "ok  " if self.passed else "FAIL"
        extra = f"  {self.detail}" if self.detail else ""
        return f"{status} {self.component}/{self.case}: max_abs={self.max_abs:.3e} max_rel={self.max_rel:.3e}{extra}"


def compare(component: str, case: str, got: torch.Tensor, expected: torch.Tensor, tol: float = TOLERANCE) -> CaseResult:
    """Element-wise |got-expected| <= tol + tol*|expected| (allclose), reported as max abs and max relative error."""
    if tuple(got.shape) != tuple(expected.shape):
        return CaseResult(component, case, float("inf"), float("inf"), False,
                          f"shape {tuple(got.shape)} != expected {tuple(expected.shape)}")
    g = got.detach().to(torch.float64).cpu()
    e = expected.detach().to(torch.float64).cpu()
    if not torch.isfinite(g).all():
        return CaseResult(component, case, float("inf"), float("inf"), False, "non-finite values")
    diff = (g - e).abs()
    max_abs = float(diff.max()) if diff.numel() else 0.0
    max_rel = float((diff / e.abs().clamp_min(1e-12)).max()) if diff.numel() else 0.0
    passed = bool((diff <= tol + tol * e.abs()).all())
    return CaseResult(component, case, max_abs, max_rel, passed)


def detect_component(folder: Path) -> str | None:
    for name, signature in _SIGNATURES.items():
        if (folder / signature).is_file():
            return name
    return None


def component_folders(path: Path) -> list[tuple[str, Path]]:
    """(component, folder) pairs under `path`, which is one component folder or a set of them."""
    path = Path(path)
    if not path.is_dir():
        raise FileNotFoundError(f"parity: fixture path {path} is not a folder")
    own = detect_component(path)
    if own:
        return [(own, path)]
    found = [(c, p) for p in sorted(path.iterdir()) if p.is_dir() and (c := detect_component(p))]
    if not found:
        raise FileNotFoundError(
            f"parity: no fixture component found in {path}; expected a folder holding one of "
            f"{', '.join(sorted(_SIGNATURES.values()))} or sub-folders that do"
        )
    return found


def run_component(component: str, folder: Path) -> list[CaseResult]:
    module = importlib.import_module(f".{component}", __name__)
    return module.run(Path(folder))


def run_path(path: Path) -> list[CaseResult]:
    results: list[CaseResult] = []
    for component, folder in component_folders(path):
        results.extend(run_component(component, folder))
    return results
