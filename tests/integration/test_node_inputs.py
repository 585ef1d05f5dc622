"""Every input checked at the node before the prompt runs, defaults that work with the loaded model, Verify kept to
ComfyUI's own folders, and API workflows saved with the Sampler's old input name still running."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from .comfy_server import status_message
from .workflows import api_workflow, inputs_of, node_id_of, variant

BASE = "jointav_default_text_to_av"
SAVED_WITH_OLD_NAME = Path(__file__).resolve().parents[1] / "unit" / "data" / "sampler_saved_with_slg_layer.json"


def _refusal(comfy, prompt: dict, class_type: str) -> list[str]:
    """The details of every validation error of the node of `class_type` (the prompt must be refused)."""
    status, reply = comfy.submit(prompt)
    assert status == 400, f"expected /prompt to refuse the workflow, got {status}: {json.dumps(reply)[:2000]}"
    node = node_id_of(prompt, class_type)
    assert node in reply["node_errors"], json.dumps(reply)[:3000]
    return [e["details"] for e in reply["node_errors"][node]["errors"]]


def _still_serving(comfy, seed: int) -> None:
    entry = comfy.run(variant(api_workflow(BASE), seed=seed, prefix="it_inputs/after"))
    assert entry["status"]["status_str"] == "success", "the server did not run a good prompt after a bad one"


@pytest.mark.parametrize("class_type,node_name,name,value,allowed", [
    ("JointAVLoadModel", "JointAV Load Model", "family", "ovi-9", "'ovi-1.1-960x960-10s'"),
    ("JointAVLoadModel", "JointAV Load Model", "weight_dtype", "int4", "'fp8_e4m3fn'"),
    ("JointAVDecodeAudio", "JointAV Decode Audio", "sample_rate", 22050, "16000, 44100, 48000"),
    ("JointAVSampler", "JointAV Sampler", "solver", "foo", "'unipc', 'euler', 'dpm++'"),
])
def test_a_combo_value_not_offered_is_refused_before_the_run(comfy, class_type, node_name, name, value, allowed):
    prompt = variant(api_workflow(BASE), **{class_type: {name: value}})
    details = _refusal(comfy, prompt, class_type)
    expected = f"{node_name}: {name}={value!r} is not one of the allowed values: "
    assert any(expected in d and allowed in d for d in details), details
    print(f"/prompt 400: {details[0]}")


@pytest.mark.parametrize("class_type,node_name,name,value,expected", [
    ("JointAVEmptyLatent", "JointAV Empty Latent", "width", "abc", "width='abc' is not a whole number"),
    ("JointAVSampler", "JointAV Sampler", "shift", "fast", "shift='fast' is not a number"),
    ("JointAVSampler", "JointAV Sampler", "steps", -1, "steps=-1 is outside the allowed range 0 to 1000"),
])
def test_a_value_of_the_wrong_type_names_the_node_and_the_input(comfy, class_type, node_name, name, value, expected):
    prompt = variant(api_workflow(BASE), **{class_type: {name: value}})
    details = _refusal(comfy, prompt, class_type)
    assert any(f"{node_name}: {expected}" in d for d in details), details
    assert not any("not supported between" in d for d in details), details
    _still_serving(comfy, 920)


def test_every_missing_decoder_file_is_named_with_its_folder_and_where_it_is_published(comfy):
    files = {"video_vae": "wan2.2_vae.safetensors", "audio_vae": "v1-16.pth", "vocoder": "best_netG.pt"}
    prompt = variant(api_workflow(BASE), JointAVLoadDecoders=files)
    details = _refusal(comfy, prompt, "JointAVLoadDecoders")
    message = next(d for d in details if "3 files are missing" in d)
    for name, file in files.items():
        assert f"{name}='{file}' is not a file in " in message, message
    assert str(comfy.base / "models" / "vae") in message and str(comfy.base / "models" / "jointav_audio") in message
    assert "Comfy-Org/Wan_2.2_ComfyUI_Repackaged" in message and message.count("hkchengrex/MMAudio") == 2, message
    print(f"/prompt 400: {message}")


@pytest.mark.parametrize("path,reason", [("/etc/passwd", "not absolute paths"),
                                         ("../user/default/comfy.settings.json", "'..' is not allowed")])
def test_verify_refuses_paths_outside_comfyuis_folders(comfy, path, reason):
    prompt = {"1": {"class_type": "JointAVVerify", "inputs": {"path": path}}}
    details = _refusal(comfy, prompt, "JointAVVerify")
    assert any("JointAV Verify: " in d and reason in d and "output, input and temp folders" in d for d in details)


def test_verify_does_not_follow_a_link_out_of_the_output_folder(comfy, tmp_path):
    outside = tmp_path / "server_secret.mp4"
    outside.write_bytes(b"not for workflows")
    link = comfy.base / "output" / "it_inputs_link.mp4"
    link.symlink_to(outside)
    try:
        entry = comfy.run({"1": {"class_type": "JointAVVerify", "inputs": {"path": link.name}}})
    finally:
        link.unlink()
    error = status_message(entry, "execution_error")
    assert error is not None and error["node_type"] == "JointAVVerify", json.dumps(entry["status"])[:2000]
    assert "leads outside the output folder" in error["exception_message"] and "JointAV Verify" in \
        error["exception_message"]


def test_a_frame_larger_than_the_model_takes_is_refused_before_any_work(comfy, default_spec):
    prompt = variant(api_workflow(BASE), seed=921, JointAVEmptyLatent={"width": 4096, "height": 4096})
    entry = comfy.run(prompt, timeout=120)
    error = status_message(entry, "execution_error")
    assert error is not None and error["node_type"] == "JointAVEmptyLatent", json.dumps(entry["status"])[:2000]
    message = error["exception_message"]
    assert "JointAV Empty Latent" in message and "width=4096, height=4096" in message, message
    assert f"at most {default_spec.max_area} pixels" in message and "presets (width x height)" in message, message
    print(f"/history error: {message.strip()}")
    _still_serving(comfy, 922)


def test_the_nodes_defaults_run_with_the_default_model(comfy, default_spec):
    """Empty Latent and Sampler exactly as the editor drops them (every widget at its default) make a clip."""
    prompt = variant(api_workflow(BASE), seed=923, prefix="it_inputs/defaults")
    for class_type in ("JointAVEmptyLatent", "JointAVSampler"):
        _, info = comfy.get(f"/object_info/{class_type}")
        declared = info[class_type]["input"]["required"]
        inputs = prompt[node_id_of(prompt, class_type)]["inputs"]
        for name, (_, options) in declared.items():
            if name in inputs and not isinstance(inputs[name], list) and name != "seed":
                inputs[name] = options["default"]
    print(f"defaults: {json.dumps({k: v['inputs'] for k, v in prompt.items() if v['class_type'] in ('JointAVEmptyLatent', 'JointAVSampler')})}")
    entry = comfy.run(prompt, timeout=600)
    assert entry["status"]["status_str"] == "success", json.dumps(entry["status"])[:3000]


def test_an_api_workflow_saved_with_the_old_slg_layer_name_still_runs(comfy):
    saved = json.loads(SAVED_WITH_OLD_NAME.read_text())
    sampler = node_id_of(saved, "JointAVSampler")
    assert "slg_layer" in saved[sampler]["inputs"] and "skip_layer" not in saved[sampler]["inputs"]
    entry = comfy.run(saved)
    assert entry["status"]["status_str"] == "success", json.dumps(entry["status"])[:3000]
    saved[sampler]["inputs"]["slg_layer"] = 7  # the value reaches the sampler under its new name
    entry = comfy.run(saved)
    error = status_message(entry, "execution_error")
    assert error is not None and "skip_layer=7" in error["exception_message"], json.dumps(entry["status"])[:2000]


def _image_latent_prompt(class_type: str) -> dict:
    """A workflow with an image-to-AV latent node: the shipped example, or for the native twin the native example
    with its empty latent replaced by the twin fed from core's EmptyImage."""
    if class_type == "JointAVImageToAVLatent":
        return api_workflow("jointav_default_image_to_av")
    prompt = api_workflow("jointav_default_native_text_to_av")
    empty = node_id_of(prompt, "JointAVEmptyAVLatent")
    model = prompt[empty]["inputs"]["model"]
    prompt["91"] = {"class_type": "EmptyImage", "inputs": {"width": 64, "height": 64, "batch_size": 1, "color": 0}}
    prompt[empty] = {"class_type": class_type, "inputs": {
        "model": model, "decoders": [node_id_of(prompt, "JointAVLoadDecoders"), 0], "image": ["91", 0],
        "duration": "2s", "width": 64, "height": 64}}
    return prompt


@pytest.mark.parametrize("class_type,node_name", [("JointAVImageToAVLatent", "JointAV Image To AV Latent"),
                                                  ("JointAVImageToAVLatentNative",
                                                   "JointAV Image To AV Latent (native)")])
@pytest.mark.parametrize("width,height,expected", [
    (48, 0, "width=48, height=0: give both sizes, or 0 for both"),
    (72, 64, "width=72 must be 0 (the model's default) or a multiple of 16"),
])
def test_both_image_to_av_latent_nodes_refuse_a_size_before_the_run(comfy, class_type, node_name, width, height,
                                                                    expected):
    prompt = _image_latent_prompt(class_type)
    inputs_of(prompt, class_type).update(width=width, height=height)
    details = _refusal(comfy, prompt, class_type)
    assert any(node_name + ": " + expected in d for d in details), details
