"""The default-model example workflows run headless: through POST /prompt and through `comfy run`."""

from __future__ import annotations

import json
import os
import subprocess

import pytest

from .comfy_server import saved_files
from .mp4_checks import check_clip
from .workflows import (api_workflow, default_model_workflows, expected_clip, inputs_of, node_id_of, ui_variant,
                        ui_workflow, variant)

WORKFLOWS = default_model_workflows()


def test_default_model_workflows_exist():
    assert {"jointav_default_text_to_av", "jointav_default_image_to_av"} <= set(WORKFLOWS)


@pytest.mark.parametrize("name", WORKFLOWS)
def test_workflow_through_prompt_endpoint(comfy, default_spec, name):
    prompt = variant(api_workflow(name), prefix=f"it_prompt/{name}")
    entry = comfy.run(prompt)
    assert entry["status"]["status_str"] == "success", json.dumps(entry["status"], indent=1)[:4000]
    files = saved_files(entry, comfy.base)
    assert len(files) == 1 and files[0].suffix == ".mp4" and files[0].is_file(), files
    facts = check_clip(files[0], **expected_clip(prompt, default_spec))
    print(f"{name}: {facts}")
    from jointav.provenance import verify_file

    report = verify_file(files[0])  # the shipped example signs what it writes
    assert report.valid and report.watermark.present, report.text()


def _comfy_cli(comfy, workflow: dict, path) -> subprocess.CompletedProcess:
    path.write_text(json.dumps(workflow))
    cli = comfy.python.parent / "comfy"
    if not cli.is_file():
        pytest.skip(f"COMFY-CLI TEST NOT RUN: no `comfy` command beside {comfy.python}")
    env = {**os.environ, "DO_NOT_TRACK": "1", "HOME": str(path.parent), "XDG_CONFIG_HOME": str(path.parent)}
    return subprocess.run([str(cli), "--skip-prompt", "run", "--workflow", str(path), "--host", "127.0.0.1",
                           "--port", str(comfy.port), "--wait", "--timeout", "60"],
                          capture_output=True, text=True, env=env, timeout=600)


def _newest_mp4(comfy, subfolder: str, name: str):
    found = sorted((comfy.base / "output" / subfolder).glob(f"{name}_*.mp4"), key=lambda p: p.stat().st_mtime)
    assert found, f"nothing was written to output/{subfolder}"
    return found[-1]


@pytest.mark.parametrize("form", ["api", "ui"])
@pytest.mark.parametrize("name", WORKFLOWS)
def test_workflow_through_comfy_cli(comfy, default_spec, tmp_path, name, form):
    """comfy-cli submits the API twin as is, and converts the UI form itself from /object_info."""
    subfolder = f"it_cli_{form}"
    seed = 1000 + (1 if form == "ui" else 0)
    if form == "api":
        workflow = variant(api_workflow(name), seed=seed, prefix=f"{subfolder}/{name}")
    else:
        workflow = ui_variant(ui_workflow(name), seed=seed, prefix=f"{subfolder}/{name}")
    done = _comfy_cli(comfy, workflow, tmp_path / f"{name}.json")
    assert done.returncode == 0, f"comfy run failed ({done.returncode}):\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    clip = _newest_mp4(comfy, subfolder, name)
    check_clip(clip, **expected_clip(api_workflow(name), default_spec))


def test_speech_lines_reach_the_model_in_its_markup(comfy, default_spec):
    """Each speech line becomes <S>line<E> and the sound description <AUDCAP>...<ENDAUDCAP> (the default model's
    style, Ovi 1.0's), in the text the Encode Prompt node reports."""
    from jointav.text.ovi_prompt import AudioCaptionStyle, speech_lines_in

    assert default_spec.caption_style == AudioCaptionStyle.TAGS
    lines = ["la la", "  la  "]
    fields = {"video_prompt": "a green character says hi on a brown background.",
              "speech_lines": "\n".join(lines) + "\n\n", "audio_description": "a high voice"}
    prompt = variant(api_workflow("jointav_default_text_to_av"), seed=31, prefix="it_speech/clip",
                     JointAVEncodePrompt=fields)
    entry = comfy.run(prompt)
    assert entry["status"]["status_str"] == "success"
    text = entry["outputs"][node_id_of(prompt, "JointAVEncodePrompt")]["text"][0]
    assert text == ("a green character says hi on a brown background. <S>la la<E> <S>la<E> "
                    "<AUDCAP>a high voice<ENDAUDCAP>")
    assert speech_lines_in(text) == ["la la", "la"]


def test_encode_prompt_shows_the_words_the_default_model_ignores(comfy):
    fields = {"video_prompt": "a purple dragon sings opera in the rain", "speech_lines": "hello there",
              "audio_description": "low thuds, room tone"}
    prompt = variant(api_workflow("jointav_default_text_to_av"), seed=33, prefix="it_vocab/clip",
                     JointAVEncodePrompt=fields)
    entry = comfy.run(prompt)
    assert entry["status"]["status_str"] == "success"
    text = entry["outputs"][node_id_of(prompt, "JointAVEncodePrompt")]["text"]
    notes = "\n".join(text[1:])
    assert all(word in notes for word in ("dragon", "sings", "opera", "rain", "room")), text
    assert "speech line 'hello there' is ignored" in notes and "the words this model knows" in notes


def test_split_latent_hands_the_video_half_to_core_nodes(comfy, default_spec):
    """The video latent leaves as a core LATENT: core Save Latent writes it with the Wan2.2 layout."""
    from safetensors.torch import load_file

    prompt = variant(api_workflow("jointav_default_text_to_av"), seed=32, prefix="it_split/clip")
    sampler = node_id_of(prompt, "JointAVSampler")
    prompt["90"] = {"class_type": "JointAVSplitLatent", "inputs": {"latent": [sampler, 0]}}
    prompt["91"] = {"class_type": "SaveLatent", "inputs": {"samples": ["90", 0], "filename_prefix": "it_split/latent"}}
    entry = comfy.run(prompt)
    assert entry["status"]["status_str"] == "success", json.dumps(entry["status"])[:2000]
    saved = entry["outputs"]["91"]["latents"][0]
    latent = load_file(str(comfy.base / "output" / saved["subfolder"] / saved["filename"]))["latent_tensor"]
    latent_inputs = inputs_of(prompt, "JointAVEmptyLatent")
    frames = default_spec.duration_preset(latent_inputs["duration"]).frames
    assert tuple(latent.shape) == (1, default_spec.video_latent_channels,
                                   (frames - 1) // default_spec.vae_time_factor + 1,
                                   latent_inputs["height"] // default_spec.vae_space_factor,
                                   latent_inputs["width"] // default_spec.vae_space_factor)
    assert latent.std() > 0
