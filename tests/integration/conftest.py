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

REPO = Path(__file__).resolve().parents[2]
PACK_NAME = "ComfyUI-JointAV"
EXAMPLE_IMAGE = "example.png"  # the name core ComfyUI ships in input/, which the image workflow loads
WRONG_KIND = "not_a_dit.safetensors"  # a valid safetensors file of another model, in diffusion_models
DEPENDENCY_IMPORTS = ["numpy", "safetensors", "av", "soundfile", "soxr", "tqdm", "cryptography", "c2pa", "cv2"]


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


def _ensure_dependencies(python: Path) -> None:
    """The pack's runtime deps in ComfyUI's python, installed from requirements.txt the way Manager would."""
    check = [str(python), "-c", "import " + ", ".join(DEPENDENCY_IMPORTS)]
    if subprocess.run(check, capture_output=True).returncode == 0:
        return
    install = subprocess.run([str(python), "-m", "pip", "install", "-q", "-r", str(REPO / "requirements.txt")],
                             capture_output=True, text=True)
    if install.returncode != 0 or subprocess.run(check, capture_output=True).returncode != 0:
        pytest.fail(f"could not install the pack's requirements into {python}:\n{install.stdout}\n{install.stderr}")


@pytest.fixture(scope="session")
def comfy(tmp_path_factory, request):
    found = find_comfyui()
    if isinstance(found, str):
        pytest.skip(f"INTEGRATION TIER NOT RUN: {found}")
    root, python = found
    _ensure_dependencies(python)
    base = tmp_path_factory.mktemp("comfy_base")
    (base / "custom_nodes").mkdir()
    (base / "custom_nodes" / PACK_NAME).symlink_to(REPO, target_is_directory=True)
    (base / "input").mkdir()
    _write_png(base / "input" / EXAMPLE_IMAGE)
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


@pytest.fixture(scope="session")
def default_spec():
    """Timing and presets of the embedded default model, read from the model itself."""
    from jointav.pipeline.api import load_joint_model

    return load_joint_model(None).spec
