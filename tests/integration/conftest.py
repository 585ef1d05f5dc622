"""The integration tier's server: a real ComfyUI on the CPU with this pack in a temporary custom_nodes.

Session-scoped: started once (it takes ~30-60 s to import torch and the core nodes on a small machine),
stopped at the end whatever happens. Every test skips LOUDLY, naming the reason, when ComfyUI is absent.
"""

from __future__ import annotations

import struct
import subprocess
import sys
import zlib
from pathlib import Path

import pytest

from .comfy_server import ComfyServer, find_comfyui
from .dependencies import importable_modules, install_missing, installed_packages, module_of, plan, read_requirements

REPO = Path(__file__).resolve().parents[2]
PACK_NAME = "ComfyUI-JointAV"
FOLEY_INPUT = "jointav_moving_disc.mp4"  # tools/make_workflows.py FOLEY_INPUT: the foley example loads it
EXAMPLE_IMAGE = "example.png"  # the name core ComfyUI ships in input/, which the image workflow loads
WRONG_KIND = "not_a_dit.safetensors"  # a valid safetensors file of another model, in diffusion_models


def _write_foley_input(path: Path) -> None:
    """The silent moving-disc clip the foley example loads (the frames its thumbnail shows)."""
    import importlib.util

    from jointav.audio.mp4 import write_mp4

    spec = importlib.util.spec_from_file_location("make_thumbnails", REPO / "tools" / "make_thumbnails.py")
    tool = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(tool)
    write_mp4(path, tool.foley_input_frames(), 12.0)


def _write_png(path: Path, width: int = 96, height: int = 80) -> None:
    """A colourful RGB test picture, written without an imaging library."""
    rows = bytearray()
    for y in range(height):
        rows.append(0)  # filter: none
        for x in range(width):
            rows += bytes(((x * 255) // width, (y * 255) // height, 255 - (x * 255) // width))
    chunk = lambda kind, data: (struct.pack(">I", len(data)) + kind + data  # noqa: E731
                                + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF))
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(bytes(rows)))
                     + chunk(b"IEND", b""))


def _write_wrong_kind(path: Path) -> None:
    import torch
    from safetensors.torch import save_file

    save_file({"conv_in.weight": torch.zeros(8, 3, 3, 3), "conv_in.bias": torch.zeros(8)}, str(path))


def _say(config, line: str) -> None:
    """A line in the test output itself (not captured), so a run's log tells what was done to ComfyUI's python."""
    capture = config.pluginmanager.get_plugin("capturemanager")
    reporter = config.pluginmanager.get_plugin("terminalreporter")
    if capture is None or reporter is None:
        print(line)
        return
    with capture.global_and_fixture_disabled():
        reporter.write_line(line)


def _ensure_dependencies(python: Path, say) -> None:
    """The pack's runtime requirements in ComfyUI's python: the missing ones installed, nothing else touched
    (see dependencies.py); what is done is said in the test output."""
    requirements = read_requirements(REPO / "requirements.txt")
    before = installed_packages(python)
    the_plan = plan(requirements, before, importable_modules(python, [module_of(r) for r in requirements]))
    for req, version in the_plan.unsatisfied:
        say(f"integration: {python} has {req.name} {version}, not {req}; left as it is (never up- or downgraded)")
    if not the_plan.missing:
        say(f"integration: {python} has every requirement of requirements.txt; nothing installed")
        return
    names = ", ".join(str(r) for r in the_plan.missing)
    say(f"integration: installing into {python} the requirements it lacks: {names} "
        f"(its {len(before)} installed packages pinned to their versions)")
    install = install_missing(python, the_plan)
    if install.returncode != 0:
        pytest.fail(f"could not install {names} into {python} without changing its installed packages:\n"
                    f"{install.stdout}\n{install.stderr}")
    after = installed_packages(python)
    changed = {name: (version, after.get(name)) for name, version in before.items() if after.get(name) != version}
    if changed:
        pytest.fail(f"installing {names} changed packages already in {python}: {changed}")
    modules = [module_of(r) for r in requirements]
    check = [str(python), "-c", "import " + ", ".join(modules)]
    if subprocess.run(check, capture_output=True).returncode != 0:
        pytest.fail(f"after installing {names}, {python} still cannot import {', '.join(modules)}")


@pytest.fixture(scope="session")
def comfy(tmp_path_factory, request):
    found = find_comfyui()
    if isinstance(found, str):
        pytest.skip(f"INTEGRATION TIER NOT RUN: {found}")
    root, python = found
    _ensure_dependencies(python, say=lambda line: _say(request.config, line))
    base = tmp_path_factory.mktemp("comfy_base")
    (base / "custom_nodes").mkdir()
    (base / "custom_nodes" / PACK_NAME).symlink_to(REPO, target_is_directory=True)
    (base / "input").mkdir()
    _write_png(base / "input" / EXAMPLE_IMAGE)
    _write_foley_input(base / "input" / FOLEY_INPUT)
    models = base / "models" / "diffusion_models"
    models.mkdir(parents=True)
    _write_wrong_kind(models / WRONG_KIND)

    server = ComfyServer(root, python, base)
    failed_before = request.session.testsfailed
    try:
        server.start()
        yield server
    finally:
        server.stop()
        if request.session.testsfailed > failed_before:
            sys.stderr.write(f"\n----- ComfyUI server log (tail) -----\n{server.log_tail()}\n")


@pytest.fixture(scope="module")
def comfy_python(request):
    """The python of ComfyUI's venv, its requirements in place, for checks that run in a ComfyUI process of their
    own (native_runner.py)."""
    found = find_comfyui()
    if isinstance(found, str):
        pytest.skip(f"INTEGRATION TIER NOT RUN: {found}")
    _ensure_dependencies(found[1], say=lambda line: _say(request.config, line))
    return found[1]


@pytest.fixture(scope="session")
def default_spec():
    """Timing and presets of the embedded default model, read from the model itself."""
    from jointav.pipeline.api import load_joint_model

    return load_joint_model(None).spec
