"""The prepared GPU check's dry run: the same code as on the GPU box, on a tiny config on the CPU."""

from __future__ import annotations

import json

import pytest

from jointav.bench.gpu_check import markdown, run_check


@pytest.fixture(scope="module")
def dry_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("gpu_check")
    run_check(dry_run=True, out=out, budget_s=600)
    return out, json.loads((out / "gpu_check.json").read_text())


def test_dry_run_measures_every_item_and_fails_none(dry_run):
    out, data = dry_run
    rows = data["rows"]
    assert not [r for r in rows if r.get("note", "").startswith(("FAILED", "skipped:"))]
    items = {(r["item"], r.get("dtype")) for r in rows}
    assert items >= {("bf16 vs float32", "bf16"), ("guided step", "bf16"), ("50-step run", "bf16"),
                     ("guided step (compiled)", "bf16"), ("fp8 vs bf16", "fp8"), ("guided step", "fp8"),
                     ("24 GB cap, offload cpu", "fp8"), ("block swap vs plain forward", "fp8")}
    clips = {r["clip"] for r in rows if r["item"] == "guided step"}
    assert len(clips) == 2  # the 5 s and the 10 s shape
    assert all(r["s_per_step"] > 0 for r in rows if "s_per_step" in r)
    assert data["meta"]["configs_equal"]  # Ovi 1.0 and 1.1 share the architecture
    assert data["meta"]["swap_vs_plain_max_abs"] == 0.0  # streamed blocks give the plain forward's bits
    assert (out / "gpu_check.md").read_text() == markdown(data)


def test_dry_run_precision_rows_are_small_and_finite(dry_run):
    _, data = dry_run
    errors = {r["item"]: r["errors"] for r in data["rows"] if "errors" in r}
    assert max(errors["bf16 vs float32"].values()) < 0.05
    assert 1e-3 < max(errors["fp8 vs bf16"].values()) < 0.15  # quantised, and not broken
    cached = [r for r in data["rows"] if r["item"] == "50-step run, step cache"]
    assert cached and set(cached[0]["errors_vs_bf16_run"]) == {"video", "audio"}


def test_an_exhausted_budget_skips_items_and_says_so(tmp_path):
    data = run_check(dry_run=True, out=tmp_path, budget_s=0)
    assert data["rows"] and all(r["note"].startswith("skipped:") for r in data["rows"])
    assert "skipped" in (tmp_path / "gpu_check.md").read_text()


def test_the_shell_command_finds_a_python_and_runs_the_module(tmp_path):
    import subprocess
    from pathlib import Path

    script = Path(__file__).resolve().parents[2] / "scripts" / "gpu_check.sh"
    proc = subprocess.run(["bash", str(script), str(tmp_path / "out"), "--dry-run", "--budget-s", "0"],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert json.loads((tmp_path / "out" / "gpu_check.json").read_text())["meta"]["dry_run"] is True
