"""Every example workflow, Ovi ones included, against the live server's node definitions: the UI form
converts (by comfy-cli, from /object_info) to exactly its API twin, and the API twin passes ComfyUI's
validation except for the model files this test machine does not have."""

from __future__ import annotations

import json
import os
import re
import subprocess

import pytest

from .workflows import API_DIR, UI_DIR, api_workflow

ALL = sorted(p.stem for p in UI_DIR.glob("*.json"))
FILE_INPUTS = {"model_name", "clip_name", "unet_name", "video_vae", "audio_vae", "vocoder"}


def _inputs_only(prompt: dict) -> dict:
    return {k: {"class_type": n["class_type"], "inputs": n["inputs"]} for k, n in prompt.items()}


@pytest.mark.parametrize("name", ALL)
def test_ui_form_converts_to_its_api_twin(comfy, tmp_path, name):
    cli = comfy.python.parent / "comfy"
    if not cli.is_file():
        pytest.skip(f"COMFY-CLI TEST NOT RUN: no `comfy` command beside {comfy.python}")
    env = {**os.environ, "DO_NOT_TRACK": "1", "HOME": str(tmp_path), "XDG_CONFIG_HOME": str(tmp_path)}
    done = subprocess.run([str(cli), "--skip-prompt", "run", "--workflow", str(UI_DIR / f"{name}.json"),
                           "--host", "127.0.0.1", "--port", str(comfy.port), "--print-prompt"],
                          capture_output=True, text=True, env=env, timeout=300)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    envelope = json.loads(done.stdout.strip().splitlines()[-1])
    converted = envelope["data"]["prompt"]
    assert _inputs_only(converted) == _inputs_only(api_workflow(name))


@pytest.mark.parametrize("name", ALL)
def test_api_twin_is_valid_apart_from_absent_model_files(comfy, name):
    prompt = json.loads((API_DIR / f"{name}.json").read_text())
    status, reply = comfy.submit(prompt)
    if status == 200:  # runs here: only the default-model workflows can
        entry = comfy.wait(reply["prompt_id"])
        assert entry["status"]["status_str"] == "success", json.dumps(entry["status"])[:2000]
        return
    assert status == 400, reply
    problems = [(node, e["extra_info"].get("input_name"), e["details"])
                for node, errors in reply["node_errors"].items() for e in errors["errors"]]
    assert problems, reply
    # a node's own check reports one message under each of its inputs; it must speak only of the file inputs
    others = [p for p in problems if p[1] not in FILE_INPUTS and not _only_files(p[2])]
    assert not others, f"{name}: inputs other than model files are refused: {others}"


def _only_files(details: str) -> bool:
    """A node's message about missing files alone: "... missing: video_vae='...' is not a file in ..."."""
    named = re.findall(r"(\w+)=", details.split(" - ", 1)[-1])
    return "missing" in details and bool(named) and set(named) <= FILE_INPUTS
