"""The pack's example workflows as test inputs, and what a user expects of the clip each one makes."""

from __future__ import annotations

import copy
import json
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
UI_DIR = REPO / "example_workflows"
API_DIR = UI_DIR / "api"
EMBEDDED = "(embedded default)"
SAVE_NODES = ("JointAVSaveVideo", "SaveVideo")  # the examples' signed save; core's in graphs built to test it


def api_workflow(name: str) -> dict:
    return json.loads((API_DIR / f"{name}.json").read_text())


def ui_workflow(name: str) -> dict:
    return json.loads((UI_DIR / f"{name}.json").read_text())


def default_model_workflows() -> list[str]:
    """The workflows that run on the embedded default model (the ones a CPU can run)."""
    names = []
    for path in sorted(API_DIR.glob("*.json")):
        prompt = json.loads(path.read_text())
        if any(n["class_type"] == "JointAVLoadModel" and n["inputs"]["model_name"] == EMBEDDED
               for n in prompt.values()):
            names.append(path.stem)
    return names


def inputs_of(prompt: dict, class_type: str) -> dict:
    found = [n["inputs"] for n in prompt.values() if n["class_type"] == class_type]
    assert len(found) == 1, f"expected one {class_type} node, found {len(found)}"
    return found[0]


def node_id_of(prompt: dict, class_type: str) -> str:
    return next(k for k, n in prompt.items() if n["class_type"] == class_type)


def save_node_of(prompt: dict) -> dict:
    """The inputs of the graph's one save node (JointAV Save Video, or core Save Video)."""
    found = [n["inputs"] for n in prompt.values() if n["class_type"] in SAVE_NODES]
    assert len(found) == 1, f"expected one save node, found {len(found)}"
    return found[0]


def with_core_save(prompt: dict, prefix: str) -> dict:
    """A copy that saves through JointAV To Video and core Save Video (unsigned) instead of JointAV Save Video."""
    prompt = copy.deepcopy(prompt)
    save_id = node_id_of(prompt, "JointAVSaveVideo")
    signed = prompt[save_id]["inputs"]
    prompt["80"] = {"class_type": "JointAVToVideo", "inputs": {k: signed[k] for k in ("latent", "images", "audio")
                                                               if k in signed}}
    prompt[save_id] = {"class_type": "SaveVideo", "inputs": {"video": ["80", 0], "filename_prefix": prefix,
                                                             "format": "auto", "codec": "auto"}}
    return prompt


def variant(prompt: dict, *, seed: int | None = None, prefix: str | None = None, **changes: dict) -> dict:
    """A copy with another seed / output prefix, and `changes` as {class_type: {input: value}}."""
    prompt = copy.deepcopy(prompt)
    if seed is not None:
        if any(n["class_type"] == "JointAVNoise" for n in prompt.values()):  # the native path seeds its NOISE
            inputs_of(prompt, "JointAVNoise")["noise_seed"] = seed
        elif any(n["class_type"] == "JointAVShotList" for n in prompt.values()):  # a film seeds its shot list
            inputs_of(prompt, "JointAVShotList")["seed"] = seed
        else:
            inputs_of(prompt, "JointAVSampler")["seed"] = seed
    if prefix is not None:
        save_node_of(prompt)["filename_prefix"] = prefix
    for class_type, values in changes.items():
        inputs_of(prompt, class_type).update(values)
    return prompt


def ui_variant(workflow: dict, *, seed: int, prefix: str) -> dict:
    """The same change in the UI form: widgets are stored by position (seed first, prefix first)."""
    workflow = copy.deepcopy(workflow)
    for node in workflow["nodes"]:
        if node["type"] in ("JointAVSampler", "JointAVNoise"):
            node["widgets_values"][0] = seed
        if node["type"] == "JointAVShotList":  # shots, carry, seed, ...
            node["widgets_values"][2] = seed
        if node["type"] in SAVE_NODES:
            node["widgets_values"][0] = prefix
    return workflow


def expected_clip(prompt: dict, spec) -> dict:
    """The clip facts the workflow asks for: the model's fps and preset length, the size and the audio format."""
    shot_list = next((n["inputs"] for n in prompt.values() if n["class_type"] == "JointAVShotList"), None)
    if shot_list is not None:  # a film: its shots' frames in a row, its sound at the audio VAE's 16 kHz mono
        from jointav.pipeline.long_form import parse_shot_list

        frames = sum(max(1, round(s.seconds * spec.fps)) for s in parse_shot_list(shot_list["shots"]))
        return {"fps": spec.fps, "frames": frames, "width": shot_list["width"], "height": shot_list["height"],
                "sample_rate": 16000, "channels": 1}
    foley = next((n["inputs"] for n in prompt.values() if n["class_type"] == "JointAVVideoToAudioLatent"), None)
    if foley is not None:  # the given video's frames (conftest's 64x64 moving disc) with their made sound
        audio = inputs_of(prompt, "JointAVDecodeAudio")
        return {"fps": spec.fps, "frames": spec.duration_preset(foley["duration"]).frames, "width": 64, "height": 64,
                "sample_rate": int(audio["sample_rate"]), "channels": 2 if audio["stereo"] else 1}
    latent = next(n["inputs"] for n in prompt.values()
                  if n["class_type"] in ("JointAVEmptyLatent", "JointAVImageToAVLatent", "JointAVEmptyAVLatent",
                                         "JointAVImageToAVLatentNative"))
    audio = inputs_of(prompt, "JointAVDecodeAudio")
    return {
        "fps": spec.fps,
        "frames": spec.duration_preset(latent["duration"]).frames * latent.get("batch", 1),
        "width": latent["width"], "height": latent["height"],
        "sample_rate": int(audio["sample_rate"]), "channels": 2 if audio["stereo"] else 1,
    }
