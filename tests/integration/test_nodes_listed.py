"""Every node of the pack is registered in a real ComfyUI with its documented inputs and outputs, and the
example workflows appear in the template browser."""

from __future__ import annotations

import json
import re
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
PACK_NAME = "ComfyUI-JointAV"

# The node contract the README documents: inputs (required, then optional) and output types.
EXPECTED = {
    "JointAVLoadModel": (["model_name", "weight_dtype", "attention_backend", "offload", "family"], [],
                         ["JOINTAV_MODEL", "MODEL", "CLIP"]),
    "JointAVLoadDecoders": (["video_vae", "audio_vae", "vocoder"], ["model"], ["JOINTAV_DECODERS"]),
    "JointAVEncodePrompt": (["model", "video_prompt", "speech_lines", "audio_description", "video_negative",
                             "audio_negative"], ["clip"], ["JOINTAV_CONDITIONING"]),
    "JointAVEmptyLatent": (["model", "duration", "width", "height", "batch"], [], ["JOINTAV_LATENT"]),
    "JointAVImageToAVLatent": (["model", "decoders", "image", "duration"], ["width", "height"], ["JOINTAV_LATENT"]),
    "JointAVSampler": (["model", "conditioning", "latent", "seed", "steps", "solver", "shift", "video_guidance",
                        "audio_guidance", "skip_layer"], [], ["JOINTAV_LATENT"]),
    "JointAVDecodeVideo": (["decoders", "latent"], [], ["IMAGE"]),
    "JointAVDecodeAudio": (["decoders", "latent", "sample_rate", "stereo"], [], ["AUDIO"]),
    "JointAVToVideo": (["latent", "images"], ["audio"], ["VIDEO"]),
    "JointAVSplitLatent": (["latent"], [], ["LATENT", "FLOAT"]),
    "JointAVSaveVideo": (["latent", "images", "filename_prefix"], ["audio"], []),
    "JointAVVerify": (["path"], [], ["BOOLEAN", "STRING"]),
    "JointAVCameoCreateProfile": (["decoders", "name", "recording", "max_frames"], ["image", "voice"],
                                  ["JOINTAV_CAMEO", "IMAGE", "AUDIO"]),
    "JointAVCameoLoadProfile": (["profile", "model", "decoders"], [], ["JOINTAV_CAMEO", "IMAGE", "STRING"]),
    "JointAVApplyCameo": (["model", "decoders", "latent", "cameo", "mode"], ["reference_guidance"], ["JOINTAV_LATENT"]),
    # beyond one clip (latents that hold a given sound, given frames, or a clip's tail)
    "JointAVAudioToVideoLatent": (["model", "decoders", "audio", "duration", "width", "height"], [],
                                  ["JOINTAV_LATENT"]),
    "JointAVVideoToAudioLatent": (["model", "decoders", "images", "duration"], [], ["JOINTAV_LATENT"]),
    "JointAVExtendLatent": (["model", "decoders", "images", "audio", "hold"], [], ["JOINTAV_LATENT", "INT", "INT"]),
    "JointAVShotList": (["model", "decoders", "shots", "carry", "seed", "steps", "solver", "width", "height"], [],
                        ["IMAGE", "AUDIO", "FLOAT", "JOINTAV_FILM"]),
    # the native path
    "JointAVEmptyAVLatent": (["model", "duration", "width", "height", "batch"], [], ["LATENT"]),
    "JointAVImageToAVLatentNative": (["model", "decoders", "image", "duration"], ["width", "height"], ["LATENT"]),
    "JointAVGuider": (["model", "positive", "video_negative", "audio_negative", "video_cfg", "audio_cfg",
                       "skip_layer"], ["reference_guidance"], ["GUIDER"]),
    "JointAVNoise": (["noise_seed", "device"], [], ["NOISE"]),
    "JointAVScheduler": (["solver", "steps", "shift"], [], ["SIGMAS"]),
    "JointAVSolver": (["solver"], [], ["SAMPLER"]),
    "JointAVPromptMarkup": (["video_prompt", "speech_lines", "audio_description", "style"], [], ["STRING"]),
    "JointAVToCoreLatent": (["model", "latent"], [], ["LATENT"]),
    "JointAVApplyCameoNative": (["model", "decoders", "positive", "latent", "cameo", "mode"], [],
                                ["CONDITIONING", "LATENT"]),
}


def test_every_node_is_registered_with_its_inputs(comfy):
    declared = set(re.findall(r'node_id="(JointAV\w+)"', "".join(p.read_text() for p in (REPO / "nodes").glob("*.py"))))
    assert declared == set(EXPECTED), f"nodes/ declares {sorted(declared)}; the contract lists {sorted(EXPECTED)}"
    status, info = comfy.get("/object_info")
    assert status == 200
    for node_id, (required, optional, outputs) in EXPECTED.items():
        assert node_id in info, f"{node_id} is missing from /object_info (did the pack fail to import?)"
        node = info[node_id]
        assert node["category"] == "JointAV"
        assert node["display_name"].startswith("JointAV ")
        assert node["input_order"].get("required", []) == required, f"{node_id}: {node['input_order']}"
        assert node["input_order"].get("optional", []) == optional, f"{node_id}: {node['input_order']}"
        assert node["output"] == outputs, f"{node_id}: outputs {node['output']}"
        assert node["python_module"] == f"custom_nodes.{PACK_NAME}"


def test_model_dropdowns_offer_the_embedded_default_and_the_folders(comfy):
    _, info = comfy.get("/object_info/JointAVLoadModel")
    options = info["JointAVLoadModel"]["input"]["required"]["model_name"][1]["options"]
    assert options[0] == "(embedded default)"
    assert "not_a_dit.safetensors" in options, "files in models/diffusion_models must be listed"
    _, info = comfy.get("/object_info/JointAVLoadDecoders")
    for name in ("video_vae", "audio_vae", "vocoder"):
        assert info["JointAVLoadDecoders"]["input"]["required"][name][1]["options"][0] == "(embedded default)"
    status, folders = comfy.get("/models")
    assert status == 200 and "jointav_audio" in folders, "the pack's audio model folder is registered"


def test_example_workflows_are_in_the_template_browser(comfy):
    status, templates = comfy.get("/api/workflow_templates")
    assert status == 200
    files = sorted(p.stem for p in (REPO / "example_workflows").glob("*.json"))
    assert files, "example_workflows/ holds no workflow"
    assert sorted(templates.get(PACK_NAME, [])) == files
    for stem in files:
        status, served = comfy.get(f"/api/workflow_templates/{PACK_NAME}/{stem}.json")
        assert status == 200
        assert served == json.loads((REPO / "example_workflows" / f"{stem}.json").read_text())
        status, thumbnail = comfy.get_bytes(f"/api/workflow_templates/{PACK_NAME}/{stem}.jpg")
        assert status == 200 and thumbnail[:3] == b"\xff\xd8\xff", f"{stem}.jpg: the template browser shows no picture"
