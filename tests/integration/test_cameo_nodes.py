"""Cameo nodes in a real ComfyUI: a profile made in the graph is refused until the person grants this server's
operator key; then the clip samples, JointAV Save Video signs it with the consent record's hash and the profile
id, and the use is logged. A revocation stops the next prompt, and so does copying the earlier record back.

The server inherits this test session's $JOINTAV_OPERATOR_KEY, $JOINTAV_CAMEO_LOG and $JOINTAV_CAMEO_STATE
(tests/conftest.py), so the operator key read here is the server's, the log written there is the one checked
here, and both see one consent history.
"""

from __future__ import annotations

import datetime as dt
import json
import os

import pytest

from .comfy_server import saved_files, status_message
from .workflows import api_workflow, inputs_of, node_id_of, variant, with_core_save

NAME = "Blue Character"
RECORDING = "cameo_character.mp4"
PROMPT = "a blue character speaks three syllables in a high voice."


@pytest.fixture(scope="module")
def recording(comfy):
    """The person's recording (a toy-world character speaking, MP4 with sound) in the server's input folder."""
    from jointav.audio.mp4 import write_mp4
    from jointav.toyworld import SceneSpec, render_clip

    clip = render_clip(SceneSpec(kind="speak", colour="blue", shape="character", count=3, background="black",
                                 voice="high"), seed=3)
    return write_mp4(comfy.base / "input" / RECORDING, clip.frames, clip.fps, clip.audio, clip.sample_rate)


def cameo_graph(seed: int, source: dict, prefix: str, mode: str = "first_frame") -> dict:
    """The default text-to-AV graph at 1 s and 2 steps, with `source` (a cameo node) applied to the empty latent
    in `mode` and JointAV Save Video writing the clip."""
    prompt = variant(api_workflow("jointav_default_text_to_av"), seed=seed, JointAVEmptyLatent={"duration": "1s"},
                     JointAVSampler={"steps": 2}, JointAVEncodePrompt={"video_prompt": PROMPT})
    model, decoders = node_id_of(prompt, "JointAVLoadModel"), node_id_of(prompt, "JointAVLoadDecoders")
    sampler = inputs_of(prompt, "JointAVSampler")
    prompt["20"] = {"class_type": source["class_type"], "inputs": {**source["inputs"], "decoders": [decoders, 0]}}
    if source["class_type"] == "JointAVCameoLoadProfile":
        prompt["20"]["inputs"]["model"] = [model, 0]
    prompt["21"] = {"class_type": "JointAVApplyCameo",
                    "inputs": {"model": [model, 0], "decoders": [decoders, 0], "latent": sampler["latent"],
                               "cameo": ["20", 0], "mode": mode}}
    sampler["latent"] = ["21", 0]
    inputs_of(prompt, "JointAVSaveVideo")["filename_prefix"] = prefix  # the example saves signed already
    return prompt


def create_source() -> dict:
    return {"class_type": "JointAVCameoCreateProfile", "inputs": {"name": NAME, "recording": RECORDING,
                                                                  "max_frames": 2}}


PERSONS: dict = {}  # profile folder -> the person's key: a profile keeps the key that first granted it


def grant(folder):
    """The person grants the server's operator key (what `jointav cameo grant --profile` does)."""
    from jointav.cameo.consent_gate import grant_for_profile
    from jointav.cameo.keys import generate_key, operator_key
    from jointav.cameo.profile import read_profile

    subject = PERSONS.setdefault(str(folder), generate_key())
    record, _ = grant_for_profile(read_profile(folder), subject, subject_id="blue",
                                  operators=[operator_key(os.environ["JOINTAV_OPERATOR_KEY"]).public_key()],
                                  valid_until=dt.datetime.now(dt.timezone.utc) + dt.timedelta(days=1))
    return record, subject


def refusal(entry: dict) -> dict:
    assert entry["status"]["status_str"] == "error", json.dumps(entry["status"])[:3000]
    error = status_message(entry, "execution_error")
    assert error is not None and error["node_type"] == "JointAVApplyCameo", error
    assert error["exception_message"].startswith("JointAV Apply Cameo: cameo 'Blue Character'"), error
    assert "Traceback" not in error["exception_message"]
    print(f"/history error: {error['exception_message'].strip()}")
    return error


def profile_folders(comfy) -> list:
    folder = comfy.base / "models" / "cameos"
    return sorted(p for p in folder.iterdir() if (p / "manifest.json").is_file()) if folder.is_dir() else []


def test_cameo_nodes_offer_their_choices(comfy, recording):
    _, info = comfy.get("/object_info/JointAVApplyCameo")
    mode = info["JointAVApplyCameo"]["input"]["required"]["mode"]
    assert mode[1]["options"] == ["auto", "first_frame", "reference_tokens", "both"] and mode[1]["default"] == "auto"
    assert "EXPERIMENTAL with Ovi weights" in mode[1]["tooltip"]
    guidance = info["JointAVApplyCameo"]["input"]["optional"]["reference_guidance"]
    assert guidance[1]["options"] == ["auto", "on", "off"] and guidance[1]["default"] == "auto"
    _, info = comfy.get("/object_info/JointAVCameoCreateProfile")
    recording_input = info["JointAVCameoCreateProfile"]["input"]["required"]["recording"][1]
    assert RECORDING in recording_input["options"] and recording_input.get("video_upload") is True
    status, folders = comfy.get("/models")
    assert status == 200 and "cameos" in folders


def test_refused_without_consent_then_signed_and_logged_once_granted(comfy, recording):
    from jointav.cameo.usage_log import sha256_file, verify_chain
    from jointav.provenance import verify_file

    before = set(profile_folders(comfy))
    error = refusal(comfy.run(cameo_graph(1, create_source(), "it_cameo/refused")))
    assert "refused (no consent record)" in error["exception_message"], error["exception_message"]
    assert error["exception_type"].endswith("ConsentMissingError")
    (folder,) = set(profile_folders(comfy)) - before  # Create Profile saved it before Apply Cameo refused
    assert folder.name.startswith("blue-character-")

    record, _ = grant(folder)
    log = os.environ["JOINTAV_CAMEO_LOG"]
    logged = verify_chain(log).entries
    entry = comfy.run(cameo_graph(2, create_source(), "it_cameo/granted"))  # the server runs the next prompt
    assert entry["status"]["status_str"] == "success", json.dumps(entry["status"], indent=1)[:4000]
    (clip,) = saved_files(entry, comfy.base)
    report = verify_file(clip)
    assert report.valid, report.text()
    cameo = report.generation["cameo"]
    assert (cameo["profile_id"], cameo["consent_sha256"], cameo["record_version"]) == (
        record.grant.profile_id, record.record_sha256, record.version)
    assert cameo["usage_log"]["entries"] == logged  # the log's length before this clip's use
    assert record.grant.profile_id in entry["outputs"]["20"]["text"][0]

    assert verify_chain(log).entries == logged + 1
    with open(log) as f:
        last = json.loads(f.read().splitlines()[-1])
    assert (last["profile_id"], last["consent_sha256"], last["output_sha256"]) == (
        record.grant.profile_id, record.record_sha256, sha256_file(clip))


def test_a_loaded_profile_is_refused_on_the_prompt_after_a_revocation(comfy, recording):
    from jointav.cameo.consent import load_consent, revoke, save_consent
    from jointav.provenance import verify_file

    if not profile_folders(comfy):
        comfy.run(cameo_graph(3, create_source(), "it_cameo/create"))
    folder = profile_folders(comfy)[0]
    record, subject = grant(folder)
    load = {"class_type": "JointAVCameoLoadProfile", "inputs": {"profile": folder.name}}
    entry = comfy.run(cameo_graph(4, load, "it_cameo/loaded", mode="both"))  # first frame and reference tokens
    assert entry["status"]["status_str"] == "success", json.dumps(entry["status"], indent=1)[:4000]
    assert "consent: allowed" in entry["outputs"]["20"]["text"][0]
    (clip,) = saved_files(entry, comfy.base)
    assert verify_file(clip).generation["cameo"]["consent_sha256"] == record.record_sha256

    path = folder / "consent.json"
    before = path.read_bytes()
    save_consent(revoke(load_consent(path), subject, reason="withdrawn"), path)
    error = refusal(comfy.run(cameo_graph(5, load, "it_cameo/revoked")))
    assert "refused (consent revoked)" in error["exception_message"] and "withdrawn" in error["exception_message"]

    # JointAV Verify on the clip made before the revocation says so (the server has seen the revocation)
    name = clip.relative_to(comfy.base / "output").as_posix()  # Verify reads names inside ComfyUI's folders only
    entry = comfy.run({"1": {"class_type": "JointAVVerify", "inputs": {"path": name}}})
    assert entry["status"]["status_str"] == "success", json.dumps(entry["status"])[:3000]
    text = entry["outputs"]["1"]["text"][0]
    assert "REVOKED since: the person revoked the whole grant" in text and "(withdrawn)" in text, text
    assert "the clip was made before it" in text and "result:      VALID" in text

    path.write_bytes(before)  # the record from before the revocation, copied back
    error = refusal(comfy.run(cameo_graph(6, load, "it_cameo/rolled_back")))
    message = error["exception_message"]
    assert "refused (consent record rolled back)" in message and "so a revocation was rolled back" in message, message
    assert error["exception_type"].endswith("ConsentRolledBackError")


def test_an_unknown_profile_is_refused_at_validation(comfy):
    load = {"class_type": "JointAVCameoLoadProfile", "inputs": {"profile": "nobody-000000000000"}}
    status, reply = comfy.submit(cameo_graph(6, load, "it_cameo/unknown"))
    assert status == 400, reply
    details = json.dumps(reply["node_errors"]["20"])
    assert "JointAV Cameo Load Profile" in details and "nobody-000000000000" in details


def test_a_cameo_clip_cannot_leave_through_the_unsigned_path(comfy, recording):
    """Core Save Video would write a cameo clip without its consent record or a usage-log entry: To Video refuses."""
    before = set(profile_folders(comfy))
    comfy.run(cameo_graph(5, create_source(), "it_cameo/unsigned_setup"))  # creates the profile (refused: no grant)
    created = set(profile_folders(comfy)) - before
    folder = created.pop() if created else profile_folders(comfy)[-1]
    grant(folder)
    source = {"class_type": "JointAVCameoLoadProfile", "inputs": {"profile": folder.name}}
    prompt = with_core_save(variant(api_workflow("jointav_default_text_to_av"), seed=6,
                                    JointAVEmptyLatent={"duration": "1s"}, JointAVSampler={"steps": 2}),
                            "it_cameo/unsigned")
    model, decoders = node_id_of(prompt, "JointAVLoadModel"), node_id_of(prompt, "JointAVLoadDecoders")
    sampler = inputs_of(prompt, "JointAVSampler")
    prompt["20"] = {"class_type": "JointAVCameoLoadProfile",
                    "inputs": {**source["inputs"], "model": [model, 0], "decoders": [decoders, 0]}}
    prompt["21"] = {"class_type": "JointAVApplyCameo", "inputs": {"model": [model, 0], "decoders": [decoders, 0],
                                                                  "latent": sampler["latent"], "cameo": ["20", 0],
                                                                  "mode": "first_frame"}}
    sampler["latent"] = ["21", 0]
    entry = comfy.run(prompt)
    assert entry["status"]["status_str"] == "error"
    error = status_message(entry, "execution_error")
    assert error["node_type"] == "JointAVToVideo", error
    assert "save it with JointAV Save Video" in error["exception_message"]
