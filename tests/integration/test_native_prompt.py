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


def _variant(sampler: str, prefix: str, seed: int = 42) -> dict:
    prompt = copy.deepcopy(api_workflow(NATIVE))
    inputs_of(prompt, "KSamplerSelect")["sampler_name"] = sampler
    inputs_of(prompt, "JointAVNoise")["noise_seed"] = seed
    inputs_of(prompt, "SaveVideo")["filename_prefix"] = prefix
    return prompt


@pytest.mark.parametrize("sampler", ["euler", "uni_pc", "dpmpp_2m"])
def test_core_sampler_graph_writes_an_mp4_with_sound(comfy, default_spec, sampler):
    prompt = _variant(sampler, f"it_native/{sampler}")
    assert sum(n["class_type"] == "CLIPTextEncode" for n in prompt.values()) == 3
    entry = comfy.run(prompt)
    assert entry["status"]["status_str"] == "success", json.dumps(entry["status"], indent=1)[:4000]
    files = saved_files(entry, comfy.base)
    assert len(files) == 1 and files[0].suffix == ".mp4", files
    latent = inputs_of(prompt, "JointAVEmptyAVLatent")
    facts = check_clip(files[0], fps=default_spec.fps, frames=default_spec.duration_preset(latent["duration"]).frames,
                       sample_rate=44100, channels=2, width=latent["width"], height=latent["height"])
    print(f"{sampler}: {facts}")


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
