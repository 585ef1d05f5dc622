"""Shared test helpers: where the Ovi fixtures are, and loud skips when something a tier needs is absent."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

REPO = Path(__file__).resolve().parents[1]
FIXTURES = Path(os.environ.get("JOINTAV_FIXTURES", REPO.parent / "shared" / "fixtures" / "ovi"))


@pytest.fixture(autouse=True, scope="session")
def _private_identity(tmp_path_factory):
    """Keys, certificates, the cameo log and consent state made by tests live in a temporary folder, not the user's
    config."""
    home = tmp_path_factory.mktemp("jointav-config")
    patch = pytest.MonkeyPatch()
    patch.setenv("JOINTAV_PROVENANCE_DIR", str(home / "provenance"))
    patch.setenv("JOINTAV_OPERATOR_KEY", str(home / "keys" / "operator.key"))
    patch.setenv("JOINTAV_CAMEO_LOG", str(home / "cameo" / "usage.jsonl"))
    patch.setenv("JOINTAV_CAMEO_STATE", str(home / "cameo" / "consent-state.json"))
    yield
    patch.undo()


def fixture_dir(component: str) -> Path:
    """The fixture folder of one component, or a loud skip naming what is missing."""
    folder = FIXTURES / component
    if not (folder / "config.json").is_file():
        pytest.skip(f"PARITY TIER NOT RUN: fixture folder {folder} is absent (set JOINTAV_FIXTURES or put shared/ beside the repo)")
    return folder


def load_tensors(path: Path) -> dict[str, torch.Tensor]:
    return load_file(str(path))


def pytest_collection_modifyitems(config, items):
    for item in items:
        parts = Path(str(item.fspath)).parts
        if "parity" in parts:
            item.add_marker(pytest.mark.parity)
        if "integration" in parts:
            item.add_marker(pytest.mark.integration)
        if "quality" in parts:
            item.add_marker(pytest.mark.quality)


def pytest_report_header(config):
    ok = (FIXTURES / "fusion_dit" / "config.json").is_file()
    return f"jointav fixtures: {FIXTURES} ({'found' if ok else 'ABSENT: parity tier will skip'})"
