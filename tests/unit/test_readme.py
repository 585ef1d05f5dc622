"""What the README tells a new user to type: the requirements it installs and where its first clip lands."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
README = (REPO / "README.md").read_text(encoding="utf-8")


def _requirement_names(lines) -> list[str]:
    return [re.split(r"[<>=!~\[; ]", line.strip(), maxsplit=1)[0].lower()
            for line in lines if line.strip() and not line.lstrip().startswith("#")]


def test_readme_installs_the_requirements_file_without_restating_its_list():
    names = _requirement_names((REPO / "requirements.txt").read_text().splitlines())
    pip_lines = [line for line in README.splitlines() if "pip install" in line and "requirements" in line]
    assert pip_lines, "the README no longer says how to install the pack's requirements"
    for line in pip_lines:
        assert re.search(r"-r \S*requirements\.txt", line), line
        restated = [n for n in names if re.search(rf"\b{re.escape(n)}\b", line)]
        assert not restated, f"README restates requirements {restated} (they drift): {line}"


def test_requirements_file_and_package_metadata_list_the_same_packages():
    """requirements.txt (what ComfyUI installs) is pyproject's dependency list without torch (ComfyUI's own)."""
    tomllib = pytest.importorskip("tomllib", reason="REQUIREMENTS CHECK NOT RUN: Python < 3.11 has no tomllib")
    pyproject = tomllib.loads((REPO / "pyproject.toml").read_text())
    declared = sorted(_requirement_names(pyproject["project"]["dependencies"]))
    listed = sorted(_requirement_names((REPO / "requirements.txt").read_text().splitlines()))
    assert sorted(listed + ["torch"]) == declared


def test_the_first_commands_clip_lands_where_git_ignores_it():
    command = next(line for line in README.splitlines() if "jointav generate" in line and "--out" in line)
    out = Path(re.search(r"--out (\S+)", command).group(1))
    if shutil.which("git") is None or not (REPO / ".git").exists():
        pytest.skip(f"README OUTPUT CHECK NOT RUN: no git or no checkout at {REPO}")
    for path in (out, out.with_suffix(".wav")):
        ignored = subprocess.run(["git", "-C", str(REPO), "check-ignore", "-q", "--no-index", str(path)])
        assert ignored.returncode == 0, f"{path} (from the README's first command) is not git-ignored"
