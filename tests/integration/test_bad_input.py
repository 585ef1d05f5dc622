"""Bad input through the nodes gives a message naming the node and the input, and the server keeps serving.

Literal widget values the pack can judge alone are refused at POST /prompt (HTTP 400, ComfyUI's validation
report); what needs the loaded model is refused when the node runs (the /history error report).
"""

from __future__ import annotations

import json

from .comfy_server import status_message
from .conftest import WRONG_KIND
from .workflows import api_workflow, node_id_of, variant

BASE = "jointav_default_text_to_av"


def _validation_errors(comfy, prompt: dict) -> tuple[str, dict]:
    status, reply = comfy.submit(prompt)
    assert status == 400, f"expected /prompt to refuse the workflow, got {status}: {json.dumps(reply)[:2000]}"
    return json.dumps(reply), reply["node_errors"]


def _execution_error(comfy, prompt: dict) -> dict:
    entry = comfy.run(prompt)
    assert entry["status"]["status_str"] == "error", json.dumps(entry["status"])[:2000]
    error = status_message(entry, "execution_error")
    assert error is not None, json.dumps(entry["status"])[:2000]
    return error


def _still_serving(comfy, seed: int) -> None:
    entry = comfy.run(variant(api_workflow(BASE), seed=seed, prefix="it_bad/after"))
    assert entry["status"]["status_str"] == "success", "the server did not run a good prompt after a bad one"


def _refused_at_validation(comfy, prompt, class_type, node_name, input_name, value_text):
    text, node_errors = _validation_errors(comfy, prompt)
    node = node_id_of(prompt, class_type)
    assert node in node_errors and node_errors[node]["class_type"] == class_type, text[:2000]
    details = [e["details"] for e in node_errors[node]["errors"] if e["extra_info"].get("input_name") == input_name]
    assert details, f"no error names the input {input_name}: {text[:2000]}"
    assert any(node_name in d and input_name in d and value_text in d for d in details), details
    print(f"/prompt 400: {details[0]}")


def _refused_on_execution(comfy, prompt, class_type, node_name, input_name):
    error = _execution_error(comfy, prompt)
    message = error["exception_message"]
    assert error["node_type"] == class_type and error["node_id"] == node_id_of(prompt, class_type), error
    assert node_name in message and input_name in message, message
    assert "Traceback" not in message
    print(f"/history error: {message.strip()}")


def test_missing_model_file(comfy):
    prompt = variant(api_workflow(BASE), JointAVLoadModel={"model_name": "ovi_missing.safetensors"})
    _refused_at_validation(comfy, prompt, "JointAVLoadModel", "JointAV Load Model", "model_name",
                           "ovi_missing.safetensors")
    _still_serving(comfy, 901)


def test_checkpoint_of_the_wrong_kind(comfy):
    prompt = variant(api_workflow(BASE), JointAVLoadModel={"model_name": WRONG_KIND})
    _refused_on_execution(comfy, prompt, "JointAVLoadModel", "JointAV Load Model", "model_name")
    _still_serving(comfy, 902)


def test_odd_resolution_refused_at_validation(comfy):
    prompt = variant(api_workflow(BASE), JointAVEmptyLatent={"width": 70})
    _refused_at_validation(comfy, prompt, "JointAVEmptyLatent", "JointAV Empty Latent", "width", "70")


def test_duration_beyond_the_model(comfy, default_spec):
    presets = {p.name for p in default_spec.durations}
    _, info = comfy.get("/object_info/JointAVEmptyLatent")
    offered = info["JointAVEmptyLatent"]["input"]["required"]["duration"][1]["options"]
    beyond = [d for d in offered if d not in presets and d != "auto"]  # auto: the model's own
    assert beyond, f"every offered duration {offered} is a preset of the default model"
    prompt = variant(api_workflow(BASE), JointAVEmptyLatent={"duration": beyond[-1]})
    _refused_on_execution(comfy, prompt, "JointAVEmptyLatent", "JointAV Empty Latent", "duration")
    _still_serving(comfy, 904)


def test_unknown_duration_refused_at_validation(comfy):
    prompt = variant(api_workflow(BASE), JointAVEmptyLatent={"duration": "7 minutes"})
    _refused_at_validation(comfy, prompt, "JointAVEmptyLatent", "JointAV Empty Latent", "duration", "7 minutes")


def test_empty_prompt(comfy):
    prompt = variant(api_workflow(BASE), JointAVEncodePrompt={"video_prompt": "  ", "speech_lines": "",
                                                              "audio_description": "\n"})
    _refused_at_validation(comfy, prompt, "JointAVEncodePrompt", "JointAV Encode Prompt", "video_prompt", "empty")
    _still_serving(comfy, 905)
