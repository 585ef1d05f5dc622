"""The solvers replay every reference run of the scheduler fixture (timesteps, sigmas, full trajectory) within 1e-4."""

from __future__ import annotations

import json

from jointav.parity.scheduler import run

from conftest import fixture_dir


def test_every_scheduler_run_matches_the_reference():
    folder = fixture_dir("scheduler")
    runs = json.loads((folder / "config.json").read_text())["runs"]
    results = run(folder)
    failures = [r.line() for r in results if not r.passed]
    assert not failures, "\n".join(failures)
    # each listed run was compared on its schedule, its trajectory and its final sample
    for name in runs:
        compared = {r.case for r in results if r.case.startswith(f"{name}.")}
        assert {f"{name}.{part}" for part in ("timesteps", "sigmas", "trajectory", "final")} <= compared, name
