"""The native path through a real headless ComfyUI's /prompt: core CLIP Text Encode x3, SamplerCustomAdvanced,
KSamplerSelect (euler, uni_pc, dpmpp_2m in turn), BasicScheduler, the JointAV guider, noise and decoders, and
core Create Video + Save Video write an MP4 with picture and sound."""

from __future__ import annotations

import copy
import json
import time

import pytest

from .comfy_server import saved_files, status_message
from .mp4_checks import check_clip
from .workflows import api_workflow, inputs_of, node_id_of

NATIVE = "jointav_default_native_text_to_av"


def test_object_info_speaks_core_types(comfy):
    status, info = comfy.get("/object_info")
    assert status == 200
    assert info["JointAVLoadModel"]["output"][1:] == ["MODEL", "CLIP"]
    assert info["JointAVGuider"]["output"] == ["GUIDER"]
    assert info["JointAVNoise"]["output"] == ["NOISE"]
    assert info["JointAVEmptyAVLatent"]["output"] == ["LATENT"]
    assert info["JointAVImageToAVLatentNative"]["output"] == ["LATENT"]
    assert info["JointAVGuider"]["input"]["required"]["model"][0] == "MODEL"
    assert info["JointAVGuider"]["input"]["required"]["positive"][0] == "CONDITIONING"
    for decoder in ("JointAVDecodeVideo", "JointAVDecodeAudio", "JointAVSplitLatent"):
        accepted = info[decoder]["input"]["required"]["latent"][0]
        assert "LATENT" in accepted.split(",") and "JOINTAV_LATENT" in accepted.split(","), (decoder, accepted)


def _variant(sampler: str, prefix: str, seed: int = 42, core_save: bool = True, fps: float = 12.0) -> dict:
    """The shipped native example with another sampler and seed; `core_save` ends it with core Create Video +
    Save Video (the issue's all-core tail) instead of the example's signed JointAV Save Video."""
    prompt = copy.deepcopy(api_workflow(NATIVE))
    inputs_of(prompt, "KSamplerSelect")["sampler_name"] = sampler
    inputs_of(prompt, "JointAVNoise")["noise_seed"] = seed
    save = node_id_of(prompt, "JointAVSaveVideo")
    if not core_save:
        inputs_of(prompt, "JointAVSaveVideo")["filename_prefix"] = prefix
        return prompt
    signed = prompt[save]["inputs"]
    prompt["90"] = {"class_type": "CreateVideo", "inputs": {"images": signed["images"], "audio": signed["audio"],
                                                            "fps": fps}}
    prompt[save] = {"class_type": "SaveVideo", "inputs": {"video": ["90", 0], "filename_prefix": prefix,
                                                          "format": "auto", "codec": "auto"}}
    return prompt


@pytest.mark.parametrize("sampler", ["euler", "uni_pc", "dpmpp_2m"])
def test_core_sampler_graph_writes_an_mp4_with_sound(comfy, default_spec, sampler):
    prompt = _variant(sampler, f"it_native/{sampler}", fps=default_spec.fps)
    assert sum(n["class_type"] == "CLIPTextEncode" for n in prompt.values()) == 3
    entry = comfy.run(prompt)
    assert entry["status"]["status_str"] == "success", json.dumps(entry["status"], indent=1)[:4000]
    files = saved_files(entry, comfy.base)
    assert len(files) == 1 and files[0].suffix == ".mp4", files
    latent = inputs_of(prompt, "JointAVEmptyAVLatent")
    facts = check_clip(files[0], fps=default_spec.fps, frames=default_spec.duration_preset(latent["duration"]).frames,
                       sample_rate=44100, channels=2, width=latent["width"], height=latent["height"])
    print(f"{sampler}: {facts}")


def test_the_shipped_native_example_writes_a_clip_that_verifies(comfy):
    """JointAV Save Video on a core sampler's LATENT: watermarked, signed, and its record names the workflow's
    seed, positive text and sampler (read from the prompt ComfyUI ran)."""
    from jointav.provenance import verify_file

    prompt = _variant("euler", "it_native/signed", seed=4242, core_save=False)
    entry = comfy.run(prompt)
    assert entry["status"]["status_str"] == "success", json.dumps(entry["status"], indent=1)[:4000]
    (clip,) = saved_files(entry, comfy.base)
    report = verify_file(clip)
    assert report.valid, report
    assert report.generation["seed"] == 4242
    guider = inputs_of(prompt, "JointAVGuider")
    assert report.generation["prompt"] == prompt[str(guider["positive"][0])]["inputs"]["text"]


def test_second_prompt_does_not_reload_the_model(comfy):
    """Core's cache keeps the loaded MODEL: a second prompt with another seed runs the loader from cache."""
    timings = []
    entries = []
    for seed in (7, 8):
        t0 = time.monotonic()
        entries.append(comfy.run(_variant("euler", f"it_native/reuse_{seed}", seed=seed)))
        timings.append(time.monotonic() - t0)
    assert all(e["status"]["status_str"] == "success" for e in entries)
    loader = node_id_of(api_workflow(NATIVE), "JointAVLoadModel")
    cached = status_message(entries[1], "execution_cached")
    assert cached is not None and loader in cached["nodes"], cached
    print(f"first prompt {timings[0]:.1f} s, second {timings[1]:.1f} s (loader cached)")
