"""Running one check of a native-path check script (native_checks.py, native_cameo_checks.py) inside its own
ComfyUI process, with the ComfyUI python of conftest's `comfy_python` fixture, and reading its `RESULT <json>`."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path


def run_check_script(script: Path, python, name: str, *comfy_args: str, timeout: float = 900) -> dict:
    """Check `name` of `script` in a fresh ComfyUI process (core reads its command line once, at import); a failed
    run shows the tail of its output."""
    done = subprocess.run([str(python), str(script), name, *comfy_args], capture_output=True, text=True,
                          timeout=timeout)
    lines = [line for line in done.stdout.splitlines() if line.startswith("RESULT ")]
    assert done.returncode == 0 and lines, f"check {name} failed ({done.returncode}):\n{done.stdout[-3000:]}\n" \
                                           f"{done.stderr[-6000:]}"
    result = json.loads(lines[-1][len("RESULT "):])
    print(f"{name}: {json.dumps(result)}")
    return result
