"""The pack's requirements in the ComfyUI python the integration tier runs: install only what is missing.

CI's ComfyUI venv may lack some of the pack's runtime requirements (ComfyUI Manager would install them from
requirements.txt). The tier installs the missing ones, and only those: every package already there is pinned
to its present version through a pip constraints file, so nothing in the user's ComfyUI is upgraded or
downgraded; a present package whose version does not satisfy the pack is reported, not replaced.
"""

from __future__ import annotations

import json
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

# The module each requirement provides, where the names differ (another distribution may provide the same
# module, e.g. opencv-python instead of the headless build: then nothing is installed for it).
MODULES = {"c2pa-python": "c2pa", "opencv-python-headless": "cv2"}

_LIST_INSTALLED = ("import json, importlib.metadata as m; "
                   "print(json.dumps({d.metadata['Name']: d.version for d in m.distributions() if d.metadata['Name']}))")


def read_requirements(path: Path) -> list[Requirement]:
    lines = (line.split("#", 1)[0].strip() for line in Path(path).read_text().splitlines())
    return [Requirement(line) for line in lines if line]


def installed_packages(python: Path) -> dict[str, str]:
    """{canonical name: version} of every distribution the given python can import."""
    out = subprocess.run([str(python), "-c", _LIST_INSTALLED], capture_output=True, text=True, check=True).stdout
    return {canonicalize_name(name): version for name, version in json.loads(out).items()}


def module_of(req: Requirement) -> str:
    return MODULES.get(canonicalize_name(req.name), req.name.replace("-", "_"))


def importable_modules(python: Path, modules: list[str]) -> set[str]:
    """Which of `modules` the given python can find (without importing them)."""
    script = ("import importlib.util, json, sys; "
              "print(json.dumps([m for m in sys.argv[1:] if importlib.util.find_spec(m) is not None]))")
    out = subprocess.run([str(python), "-c", script, *modules], capture_output=True, text=True, check=True).stdout
    return set(json.loads(out))


@dataclass
class Plan:
    missing: list[Requirement]  # to install
    unsatisfied: list[tuple[Requirement, str]]  # present in another version: left alone, reported
    pins: dict[str, str]  # every installed package, held at its version while installing

    def constraints(self) -> str:
        return "".join(f"{name}=={version}\n" for name, version in sorted(self.pins.items()))


def plan(requirements: list[Requirement], installed: dict[str, str], importable: set[str]) -> Plan:
    missing, unsatisfied = [], []
    for req in requirements:
        version = installed.get(canonicalize_name(req.name))
        if version is None:
            if module_of(req) not in importable:
                missing.append(req)
        elif req.specifier and not req.specifier.contains(version, prereleases=True):
            unsatisfied.append((req, version))
    return Plan(missing=missing, unsatisfied=unsatisfied, pins=dict(installed))


def pip_command(python: Path, the_plan: Plan, constraints_file: Path) -> list[str]:
    return [str(python), "-m", "pip", "install", "-q", "-c", str(constraints_file),
            *(str(req) for req in the_plan.missing)]


def install_missing(python: Path, the_plan: Plan) -> subprocess.CompletedProcess:
    with tempfile.TemporaryDirectory() as folder:
        constraints = Path(folder) / "installed-constraints.txt"
        constraints.write_text(the_plan.constraints())
        return subprocess.run(pip_command(python, the_plan, constraints), capture_output=True, text=True)
