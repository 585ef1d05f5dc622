"""Issue 18's nodes in a real ComfyUI: one graph from a sound (core Load Audio) through JointAV Audio To Video
Latent, its decoded frames through Video To Audio Latent, and both through Extend Latent, each sampled and saved;
then a sound shorter than the asked duration is refused naming the node and the input."""

from __future__ import annotations

import json

import numpy as np
import pytest
import soundfile as sf

from .comfy_server import saved_files, status_message

PROMPT = "a red ball bounces twice in the centre, high clicks, on a gray background"
SOUND = "jointav_clicks.wav"


def _write_clicks(path, seconds: float) -> None:
    rate = 16000
    track = np.zeros(round(seconds * rate), np.float32)
    t = np.arange(480) / rate
    for start in (0.25, 1.25):
        i = round(start * rate)
        if i + 480 <= len(track):
            track[i:i + 480] += 0.6 * np.sin(2 * np.pi * 2500 * t) * np.exp(-t / 0.006)
    sf.write(str(path), track, rate)


def _graph(sound: str) -> dict:
    def node(class_type, **inputs):
        return {"class_type": class_type, "inputs": inputs}

    embedded = "(embedded default)"
    sampler = dict(seed=1, steps=2, solver="unipc", shift=5.0, video_guidance=4.0, audio_guidance=3.0, skip_layer=-1)
    return {
        "1": node("JointAVLoadModel", model_name=embedded, weight_dtype="auto", attention_backend="auto",
                  offload="none", family="auto"),
        "2": node("JointAVLoadDecoders", video_vae=embedded, audio_vae=embedded, vocoder=embedded, model=["1", 0]),
        "3": node("JointAVEncodePrompt", video_prompt=PROMPT, speech_lines="", audio_description="",
                  video_negative="", audio_negative="", model=["1", 0]),
        "4": node("LoadAudio", audio=sound),
        "5": node("JointAVAudioToVideoLatent", model=["1", 0], decoders=["2", 0], audio=["4", 0], duration="2s",
                  width=64, height=64),
        "6": node("JointAVSampler", model=["1", 0], conditioning=["3", 0], latent=["5", 0], **sampler),
        "7": node("JointAVDecodeVideo", decoders=["2", 0], latent=["6", 0]),
        "8": node("JointAVSaveVideo", latent=["6", 0], images=["7", 0], audio=["4", 0],
                  filename_prefix="it_long/a2v"),
        "9": node("JointAVVideoToAudioLatent", model=["1", 0], decoders=["2", 0], images=["7", 0], duration="2s"),
        "10": node("JointAVSampler", model=["1", 0], conditioning=["3", 0], latent=["9", 0], **sampler),
        "11": node("JointAVDecodeAudio", decoders=["2", 0], latent=["10", 0], sample_rate=16000, stereo=False),
        "12": node("JointAVSaveVideo", latent=["10", 0], images=["7", 0], audio=["11", 0],
                   filename_prefix="it_long/v2a"),
        "13": node("JointAVExtendLatent", model=["1", 0], decoders=["2", 0], images=["7", 0], audio=["11", 0],
                   hold=1),
        "14": node("JointAVSampler", model=["1", 0], conditioning=["3", 0], latent=["13", 0], **sampler),
        "15": node("JointAVDecodeVideo", decoders=["2", 0], latent=["14", 0]),
        "16": node("JointAVDecodeAudio", decoders=["2", 0], latent=["14", 0], sample_rate=16000, stereo=False),
        "17": node("JointAVSaveVideo", latent=["14", 0], images=["15", 0], audio=["16", 0],
                   filename_prefix="it_long/extend"),
    }


def test_audio_to_video_foley_and_extend_nodes_run(comfy):
    _write_clicks(comfy.base / "input" / SOUND, 2.2)
    entry = comfy.run(_graph(SOUND))
    assert entry["status"]["status_str"] == "success", json.dumps(entry["status"], indent=1)[:4000]
    files = saved_files(entry, comfy.base)
    assert len(files) == 3 and all(f.suffix == ".mp4" and f.is_file() for f in files), files


def test_a_sound_shorter_than_the_duration_is_refused_naming_the_node(comfy):
    _write_clicks(comfy.base / "input" / "jointav_short.wav", 0.5)
    entry = comfy.run(_graph("jointav_short.wav"))
    assert entry["status"]["status_str"] == "error"
    error = status_message(entry, "execution_error")
    assert error["node_type"] == "JointAVAudioToVideoLatent", error
    message = error["exception_message"]
    assert "JointAV Audio To Video Latent" in message and "audio" in message and "shorter than" in message, message


def _shot_list_graph(shots: str) -> dict:
    from .workflows import api_workflow, inputs_of, variant

    prompt = variant(api_workflow("jointav_default_shot_list"), prefix="it_long/bad_shots")
    inputs_of(prompt, "JointAVShotList")["shots"] = shots
    return prompt


@pytest.mark.parametrize("shots, wording", [
    ("a red ball bounces@1s\n@1s", "shots line 2 '@1s': the prompt is empty"),
    ("a red ball bounces@0s", "shots line 1 'a red ball bounces@0s': duration '0s' is not a duration above zero"),
    ("a red ball bounces@soon", "duration 'soon' is not a duration above zero"),
])
def test_a_bad_shot_list_is_refused_before_any_work(comfy, shots, wording):
    status, reply = comfy.submit(_shot_list_graph(shots))
    text = json.dumps(reply)
    assert status == 400, f"expected /prompt to refuse the shot list, got {status}: {text[:2000]}"
    assert "JointAV Shot List" in text and wording in text, text[:2000]
    assert not list((comfy.base / "output" / "it_long").glob("bad_shots*")), "a refused film wrote a file"


def test_a_shot_list_film_is_signed_with_its_shots_and_stops_when_asked(comfy):
    """The example film's manifest records each shot; a long film stopped after its first step ends as ComfyUI's
    own interruption at the Shot List, writes nothing, and the server keeps serving."""
    import time

    from jointav.provenance import verify_file

    from .comfy_server import EventStream
    from .workflows import api_workflow, inputs_of, node_id_of, variant

    prompt = variant(api_workflow("jointav_default_shot_list"), seed=5, prefix="it_long/film")
    entry = comfy.run(prompt)
    assert entry["status"]["status_str"] == "success", json.dumps(entry["status"], indent=1)[:4000]
    files = saved_files(entry, comfy.base)
    manifest = json.dumps(verify_file(files[0]).to_dict())
    for line in inputs_of(prompt, "JointAVShotList")["shots"].splitlines():
        prompt_text, _, seconds = line.rpartition("@")
        assert f"{prompt_text}@{seconds}" in manifest, manifest[:3000]

    long = variant(prompt, prefix="it_long/stopped", JointAVShotList={"steps": 1000})
    node = node_id_of(long, "JointAVShotList")
    stream = EventStream(comfy)
    try:
        status, reply = comfy.submit(long)
        assert status == 200, reply
        prompt_id = reply["prompt_id"]
        deadline = time.monotonic() + 300
        while not [d for _, d in stream.of("progress", prompt_id) if d.get("node") == node]:
            assert time.monotonic() < deadline, "the Shot List reported no progress within 300 s"
            time.sleep(0.01)
        assert comfy.post("/interrupt")[0] == 200
        entry = comfy.wait(prompt_id, timeout=300)
        progress = [d for _, d in stream.of("progress", prompt_id) if d.get("node") == node]
    finally:
        stream.close()
    interrupted = status_message(entry, "execution_interrupted")
    assert interrupted is not None and interrupted["node_type"] == "JointAVShotList", json.dumps(entry["status"])
    assert progress[0]["max"] == 2 * 1000, progress[0]  # one bar over both shots' steps
    assert max(d["value"] for d in progress) < 1000, "the film went on past its first shot"
    assert not list((comfy.base / "output" / "it_long").glob("stopped*")), "a stopped film wrote a file"
    assert comfy.run(variant(prompt, seed=6, prefix="it_long/after"))["status"]["status_str"] == "success"
