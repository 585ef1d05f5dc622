"""Cameo on the native path in a real ComfyUI 0.3.64: JointAV Apply Cameo (native) puts a consenting person's
reference tokens on the positive CONDITIONING and their first frame into the joint LATENT; the JointAV Guider's
reference_guidance decides whether the negative pass sees the tokens; the core path reproduces the library's
cameo clip; a refusal comes before any work; and JointAV Save Video's manifest records the consent.

Model-level checks run in their own ComfyUI process (native_cameo_checks.py, each with a consent history of its
own); the graph tests post to the session's headless server, which shares this test session's operator key,
consent state and usage log (tests/conftest.py).
"""

from __future__ import annotations

import datetime as dt
import json
import os
from pathlib import Path

import pytest

from .comfy_server import saved_files, status_message
from .native_runner import run_check_script
from .workflows import api_workflow, inputs_of, node_id_of

CHECKS = Path(__file__).with_name("native_cameo_checks.py")
# float32 rounding between the core path and the library loop (core steps x - sigma*v: one rounding more per step;
# seed 1 with reference guidance reached 3.09e-5 on 2026-12-06). A wrong weight or a stray adapter shows as ~1e-2.
PARITY_ATOL = 5e-5
NATIVE = "jointav_default_native_text_to_av"
NAME = "Native Character"
RECORDING = "native_cameo_character.mp4"


def run_check(python, name: str, *comfy_args: str, timeout: float = 900) -> dict:
    return run_check_script(CHECKS, python, name, *comfy_args, timeout=timeout)


def test_core_path_with_a_cameo_reproduces_the_library(comfy_python):
    """Apply Cameo (native) in mode both + JointAV Guider + JointAV Noise + core euler give the library's cameo clip
    (apply_cameo + JointAV Sampler, Euler) for reference_guidance on and off; on and off differ (so the guider's
    choice reaches the model), auto is the default model's own (on), and the tokens change the clip."""
    result = run_check(comfy_python, "cameo_parity", "--use-pytorch-cross-attention")
    assert {(r["seed"], r["reference_guidance"]) for r in result["rows"]} == {(0, "on"), (0, "off"), (1, "on"),
                                                                              (1, "off")}
    for row in result["rows"]:
        assert row["video"] <= PARITY_ATOL and row["audio"] <= PARITY_ATOL, row
        assert row["first_frame_held"] <= 1e-5, row
    assert result["on_vs_off"]["video"] > 0.1 and result["on_vs_off"]["audio"] > 0.1, result["on_vs_off"]
    assert result["model_reference_guidance"] is True
    assert result["auto_vs_on"] == {"video": 0.0, "audio": 0.0}
    assert result["tokens_vs_none"]["video"] > 0.1 and result["tokens_vs_none"]["audio"] > 0.1
    # the consent decision rides on the LATENT for Save Video's manifest
    assert result["provenance"] == {"consent_sha256": result["record_sha256"],
                                    "cameo_profile_id": result["profile_id"], "cameo_mode": "both"}


def test_native_cameo_refused_without_consent_before_any_work(comfy_python):
    result = run_check(comfy_python, "cameo_refused")
    assert result["native_type"] == result["library_type"] == "ConsentMissingError"
    assert result["native"] == f"JointAV Apply Cameo (native): {result['library']}"
    assert "refused (no consent record)" in result["native"]
    assert result["calls_after_native"] == {"encode": 0, "forward": 0}
    assert result["latent_unchanged"] and result["positive_unchanged"]
    assert result["to_latent_with_tokens"].startswith("JointAV To LATENT: latent: carries a cameo's reference tokens")


def test_reference_tokens_reach_the_dit_on_both_core_forms(comfy_python):
    result = run_check(comfy_python, "reference_forward")
    assert result["extra_conds"] == ["audio_reference", "video_reference"]
    assert result["extra_conds_batch2"] == [[2, 16, 2, 8, 8], [2, 30, 20]]  # a batch of 1 repeated to the latent's
    assert result["packed_vs_nested"] == [0.0, 0.0] and result["nested_vs_plain_dit"] == [0.0, 0.0]
    assert min(result["with_vs_without"]) > 1e-3, result


# ------------------------------------------------------------------------------------------ through /prompt

@pytest.fixture(scope="module")
def recording(comfy):
    """The person's recording (a toy-world character speaking, MP4 with sound) in the server's input folder; not
    the one test_cameo_nodes.py uses, so the two profiles (and their consent histories) are apart."""
    from jointav.audio.mp4 import write_mp4
    from jointav.toyworld import SceneSpec, render_clip

    clip = render_clip(SceneSpec(kind="speak", colour="green", shape="character", count=2, background="black",
                                 voice="low"), seed=6)
    return write_mp4(comfy.base / "input" / RECORDING, clip.frames, clip.fps, clip.audio, clip.sample_rate)


def native_cameo_graph(seed: int, prefix: str) -> dict:
    """The shipped native example at 1 s and 2 steps with a cameo made in the graph: Create Profile → Apply Cameo
    (native) between CLIP Text Encode / Empty AV Latent and the guider / SamplerCustomAdvanced."""
    prompt = json.loads(json.dumps(api_workflow(NATIVE)))
    model, decoders = node_id_of(prompt, "JointAVLoadModel"), node_id_of(prompt, "JointAVLoadDecoders")
    guider, sampler = inputs_of(prompt, "JointAVGuider"), inputs_of(prompt, "SamplerCustomAdvanced")
    inputs_of(prompt, "JointAVEmptyAVLatent")["duration"] = "1s"
    inputs_of(prompt, "BasicScheduler")["steps"] = 2
    inputs_of(prompt, "JointAVNoise")["noise_seed"] = seed
    inputs_of(prompt, "JointAVSaveVideo")["filename_prefix"] = prefix
    prompt["20"] = {"class_type": "JointAVCameoCreateProfile",
                    "inputs": {"decoders": [decoders, 0], "name": NAME, "recording": RECORDING, "max_frames": 1}}
    prompt["21"] = {"class_type": "JointAVApplyCameoNative",
                    "inputs": {"model": [model, 1], "decoders": [decoders, 0], "positive": guider["positive"],
                               "latent": sampler["latent_image"], "cameo": ["20", 0], "mode": "both"}}
    guider["positive"], sampler["latent_image"] = ["21", 0], ["21", 1]
    guider["reference_guidance"] = "on"
    return prompt


def test_native_cameo_node_speaks_core_types(comfy):
    _, info = comfy.get("/object_info/JointAVApplyCameoNative")
    node = info["JointAVApplyCameoNative"]
    assert node["output"] == ["CONDITIONING", "LATENT"]
    required = node["input"]["required"]
    assert [required[k][0] for k in ("model", "positive", "latent", "decoders", "cameo")] == [
        "MODEL", "CONDITIONING", "LATENT", "JOINTAV_DECODERS", "JOINTAV_CAMEO"]
    assert required["mode"][1]["options"] == ["auto", "first_frame", "reference_tokens", "both"]
    _, info = comfy.get("/object_info/JointAVGuider")
    guidance = info["JointAVGuider"]["input"]["optional"]["reference_guidance"]
    assert guidance[1]["options"] == ["auto", "on", "off"] and guidance[1]["default"] == "auto"


def test_native_cameo_refused_then_signed_with_the_consent_record(comfy, recording):
    """Refused at Apply Cameo (native) until the person grants the server's operator key; then the core sampler's
    clip is saved by JointAV Save Video with a manifest holding the consent record's hash and the profile id next
    to the workflow's prompt and seed, and the use is logged."""
    from jointav.cameo.consent_gate import grant_for_profile
    from jointav.cameo.keys import generate_key, operator_key
    from jointav.cameo.profile import read_profile
    from jointav.cameo.usage_log import sha256_file
    from jointav.provenance import verify_file

    cameos = comfy.base / "models" / "cameos"
    before = set(cameos.iterdir()) if cameos.is_dir() else set()
    entry = comfy.run(native_cameo_graph(11, "it_native_cameo/refused"))
    assert entry["status"]["status_str"] == "error", json.dumps(entry["status"])[:3000]
    error = status_message(entry, "execution_error")
    assert error["node_type"] == "JointAVApplyCameoNative", error
    assert error["exception_message"].startswith(f"JointAV Apply Cameo (native): cameo '{NAME}'"), error
    assert "refused (no consent record)" in error["exception_message"] and "Traceback" not in error["exception_message"]
    assert not saved_files(entry, comfy.base)

    (folder,) = {p for p in cameos.iterdir() if (p / "manifest.json").is_file()} - before
    record, _ = grant_for_profile(read_profile(folder), generate_key(), subject_id="native",
                                  operators=[operator_key(os.environ["JOINTAV_OPERATOR_KEY"]).public_key()],
                                  valid_until=dt.datetime.now(dt.timezone.utc) + dt.timedelta(days=1))
    prompt = native_cameo_graph(12, "it_native_cameo/granted")
    entry = comfy.run(prompt)
    assert entry["status"]["status_str"] == "success", json.dumps(entry["status"], indent=1)[:4000]
    (clip,) = saved_files(entry, comfy.base)
    report = verify_file(clip)
    assert report.valid, report.text()
    generation = report.generation
    assert (generation["cameo"]["profile_id"], generation["cameo"]["consent_sha256"]) == (
        record.grant.profile_id, record.record_sha256)
    # merged with what the workflow says: the positive text behind Apply Cameo (native), the noise seed
    assert generation["seed"] == 12
    text_node = inputs_of(api_workflow(NATIVE), "JointAVGuider")["positive"][0]
    assert generation["prompt"] == prompt[text_node]["inputs"]["text"] != ""
    assert generation["sampler"]["reference_guidance"] == "on"

    with open(os.environ["JOINTAV_CAMEO_LOG"]) as f:
        last = json.loads(f.read().splitlines()[-1])
    assert (last["profile_id"], last["consent_sha256"], last["output_sha256"]) == (
        record.grant.profile_id, record.record_sha256, sha256_file(clip))
