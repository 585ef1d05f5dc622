"""Cameo profiles: reference frames and voice from a recording or an image + voice clip, storage, checks, use."""

from __future__ import annotations

import dataclasses
import json

import cv2
import numpy as np
import pytest
import soundfile as sf
import torch
from safetensors.torch import load_file, save_file

from jointav.audio.mp4 import write_mp4
from jointav.cameo import reference_media
from jointav.cameo.conditioning import CameoReference
from jointav.cameo.profile import MANIFEST_NAME, TENSORS_NAME, read_profile, save_profile, set_consent_record
from jointav.errors import CheckpointFileError, CheckpointKeyError, CheckpointKindError, InputValueError
from jointav.models.wan_vae import WanVAE
from jointav.pipeline import api
from jointav.pipeline import cameo as cameo_pipeline
from jointav.pipeline.cameo import apply_cameo, create_profile, load_profile
from jointav.samplers import FirstFrame
from jointav.toyworld import SceneSpec, render_clip

SHARP_FRAMES = (4, 18)  # every other frame of the recording is blurred on purpose


@pytest.fixture(scope="module")
def model():
    return api.load_joint_model(device="cpu")


@pytest.fixture(scope="module")
def decoders():
    return api.load_decoders(device="cpu")


@pytest.fixture(scope="module")
def toy_clip():
    spec = SceneSpec(kind="speak", colour="blue", shape="character", count=3, background="black", voice="high")
    return render_clip(spec, seed=3)


@pytest.fixture(scope="module")
def recording(tmp_path_factory, toy_clip):
    frames = toy_clip.frames.copy()
    for i in range(len(frames)):
        if i not in SHARP_FRAMES:
            frames[i] = cv2.GaussianBlur(frames[i], (0, 0), 1.2)
    return write_mp4(tmp_path_factory.mktemp("rec") / "character.mp4", frames, toy_clip.fps, toy_clip.audio,
                     toy_clip.sample_rate)


@pytest.fixture(scope="module")
def profile(tmp_path_factory, decoders, model, recording):
    return create_profile(decoders, recording=recording, name="Blue Character",
                          out_dir=tmp_path_factory.mktemp("cameos"), family=model.spec.family)


def test_a_recording_gives_the_sharpest_frames_and_the_voiced_part(profile, toy_clip, decoders, model):
    assert {f["source_index"] for f in profile.manifest["frames"]} == set(SHARP_FRAMES)
    assert all(f["detector"] == "subject" for f in profile.manifest["frames"])  # a drawn character: no face

    sr = toy_clip.sample_rate
    first_on, last_off = toy_clip.truth.tone_samples[0][0] / sr, toy_clip.truth.tone_samples[-1][1] / sr
    voice = profile.manifest["voice"]
    # AAC delays the sound by its 1024-sample priming (64 ms at 16 kHz), the cut pads 50 ms: 0.12 s slack.
    assert abs(voice["start_s"] - first_on) < 0.12 and last_off - 0.05 < voice["end_s"] < last_off + 0.2
    assert profile.voice.shape[0] == round((voice["end_s"] - voice["start_s"]) * voice["sample_rate"])
    assert profile.voice.shape[0] / voice["sample_rate"] < (last_off - first_on) + 0.25  # the silence is cut

    vae, per_latent = decoders.video_vae, model.spec.audio_samples_per_latent
    k, crop = len(SHARP_FRAMES), profile.manifest["frames"][0]["crop_size"] // vae.config.spatial_factor
    assert profile.video_latents.shape == (vae.config.z_dim, k, crop, crop)
    assert profile.audio_latents.shape == (-(-profile.voice.shape[0] // per_latent), decoders.audio_vae.config.embed_dim)
    assert profile.frames.shape == (k, *toy_clip.frames.shape[1:])
    assert (profile.path / MANIFEST_NAME).is_file() and (profile.path / TENSORS_NAME).is_file()


def test_an_image_and_a_wav_make_a_profile_with_the_voice_cut_out_of_silence(tmp_path, decoders, toy_clip):
    image = tmp_path / "face.png"
    cv2.imwrite(str(image), cv2.cvtColor(toy_clip.frames[0], cv2.COLOR_RGB2BGR))
    rate, onset, length = 44100, 0.5, 1.2
    t = np.arange(int(length * rate)) / rate
    tone = 0.4 * np.sin(2 * np.pi * 220 * t) * np.minimum(1, np.minimum(t, length - t) / 0.01)
    wave = np.concatenate([np.zeros(int(onset * rate)), tone, np.zeros(int(0.8 * rate))])
    sf.write(tmp_path / "voice.wav", np.stack([wave, wave], 1), rate)

    profile = create_profile(decoders, image=image, voice=tmp_path / "voice.wav", name="Image Person")
    assert profile.path is None and profile.frames.shape[0] == 1
    assert np.array_equal(profile.frames[0].numpy(), toy_clip.frames[0])
    voice = profile.manifest["voice"]
    assert abs(voice["start_s"] - (onset - 0.05)) < 0.015 and abs(voice["end_s"] - (onset + length + 0.05)) < 0.03
    assert [s["kind"] for s in profile.manifest["source"]["inputs"]] == ["image", "voice"]

    # The same inputs as ComfyUI hands them over (IMAGE in 0..1, AUDIO dict) give the same face latents.
    audio = {"waveform": torch.from_numpy(np.stack([wave, wave])[None]).float(), "sample_rate": rate}
    in_memory = create_profile(decoders, image=torch.from_numpy(toy_clip.frames[:1]).float() / 255, voice=audio,
                               name="Image Person")
    assert torch.equal(in_memory.video_latents, profile.video_latents)
    assert abs(in_memory.manifest["voice"]["start_s"] - voice["start_s"]) < 0.015


def test_a_modified_tensor_or_manifest_is_caught_on_load(tmp_path, profile):
    copy = save_profile(dataclasses.replace(profile, path=None), tmp_path)
    assert read_profile(copy.path).id == profile.id  # an untouched copy loads

    tensors = load_file(str(copy.path / TENSORS_NAME))
    tensors["video_latents"][0, 0, 0, 0] += 1e-3
    save_file(tensors, str(copy.path / TENSORS_NAME))
    with pytest.raises(CheckpointFileError, match="modified or damaged"):
        read_profile(copy.path)

    manifest = json.loads((copy.path / MANIFEST_NAME).read_text())
    manifest["tensors"]["entries"]["voice"]["shape"] = [1]
    (copy.path / MANIFEST_NAME).write_text(json.dumps(manifest))
    with pytest.raises(CheckpointKeyError, match="voice"):
        read_profile(copy.path / MANIFEST_NAME)


def test_a_profile_made_with_other_encoders_is_refused(profile, model, decoders):
    assert load_profile(profile.path, model, decoders).id == profile.id
    torch.manual_seed(123)
    other = dataclasses.replace(decoders, video_vae=WanVAE(decoders.video_vae.config))
    with pytest.raises(CheckpointKindError, match="video_vae"):
        load_profile(profile.path, model, other)


def test_consent_is_checked_before_anything_is_conditioned(profile, model, decoders, monkeypatch):
    built = []
    monkeypatch.setattr(cameo_pipeline, "first_frame_conditioning", lambda *a, **k: built.append(a))
    latent = api.empty_latent(model, model.spec.durations[0].name, *model.spec.resolutions[0])

    def refuse(p):
        raise PermissionError(f"no consent for {p.name}")

    with pytest.raises(PermissionError, match="Blue Character"):
        apply_cameo(model, decoders, latent, profile, consent_check=refuse)
    with pytest.raises(InputValueError, match="consent check refused"):
        apply_cameo(model, decoders, latent, profile, consent_check=lambda p: False)
    assert built == [] and latent.conditionings == []
    seen = []
    apply_cameo(model, decoders, latent, profile, consent_check=seen.append)
    assert seen == [profile] and len(built) == 1


def test_apply_cameo_adds_the_first_frame_and_reference_tokens(profile, model, decoders):
    latent = api.empty_latent(model, model.spec.durations[0].name, *model.spec.resolutions[0])
    first = apply_cameo(model, decoders, latent, profile, mode="first_frame")
    (held,) = first.conditionings
    assert isinstance(held, FirstFrame) and held.latent.shape == (1, *latent.video.shape[1:2], 1,
                                                                   *latent.video.shape[3:])
    tokens = apply_cameo(model, decoders, latent, profile, mode="reference_tokens")
    (ref,) = tokens.conditionings
    assert isinstance(ref, CameoReference) and ref.profile_id == profile.id
    assert torch.equal(ref.video[0], profile.video_latents) and torch.equal(ref.audio[0], profile.audio_latents)
    both = apply_cameo(model, decoders, latent, profile, mode="both")
    assert [type(c) for c in both.conditionings] == [FirstFrame, CameoReference]
    with pytest.raises(InputValueError, match="one cameo"):
        apply_cameo(model, decoders, both, profile, mode="reference_tokens")
    with pytest.raises(InputValueError, match="mode"):
        apply_cameo(model, decoders, latent, profile, mode="face")
    # auto: the model's own choice, both for the default model (trained with reference tokens), the first
    # frame alone for a family whose weights never saw reference tokens (Ovi's setting)
    assert [type(c) for c in apply_cameo(model, decoders, latent, profile).conditionings] == [FirstFrame,
                                                                                           CameoReference]
    ovi_like = dataclasses.replace(model, spec=dataclasses.replace(model.spec, cameo_mode="first_frame"))
    assert [type(c) for c in apply_cameo(ovi_like, decoders, latent, profile).conditionings] == [FirstFrame]


def test_a_cameo_clip_samples_with_its_frame_held_and_differs_from_one_without(profile, model, decoders):
    conditioning = api.encode_prompt(model, "a blue character speaks three syllables in a high voice")
    latent = api.empty_latent(model, model.spec.durations[0].name, *model.spec.resolutions[0])
    cameo = apply_cameo(model, decoders, latent, profile, mode="both")
    with_cameo = api.sample(model, conditioning, cameo, steps=2)
    without = api.sample(model, conditioning, latent, steps=2)
    assert torch.equal(with_cameo.video[:, :, :1], cameo.conditionings[0].latent)
    assert not torch.allclose(with_cameo.video[:, :, 1:], without.video[:, :, 1:], atol=1e-3)


def test_frontal_face_frames_win_over_sharper_frames_without_one(toy_clip):
    frames, times = toy_clip.frames, np.arange(len(toy_clip.frames)) / toy_clip.fps
    blurred = frames.copy()
    blurred[10] = cv2.GaussianBlur(frames[10], (0, 0), 1.5)
    face = (20, 16, 24, 24)
    picks = reference_media.pick_frames(blurred, times, 1, detector=lambda f: [face] if np.array_equal(f, blurred[10]) else [])
    assert [(p.index, p.detector, p.box) for p in picks] == [(10, "face", face)]


def test_the_pinned_opencv_ships_the_frontal_face_detector():
    assert reference_media._face_cascade() is not None
    assert reference_media.detect_faces(np.zeros((64, 64, 3), np.uint8)) == []


def test_long_recordings_are_thinned_to_evenly_spread_candidates(recording, toy_clip):
    media = reference_media.read_recording(recording, max_frames=5)
    assert 3 <= len(media.frames) <= 5 and np.all(np.diff(media.times) > 0)
    assert media.times[0] == 0 and media.times[-1] >= 0.75 * (len(toy_clip.frames) - 1) / toy_clip.fps
    assert media.voice is not None and abs(len(media.voice) / reference_media.VOICE_RATE
                                           - len(toy_clip.audio) / toy_clip.sample_rate) < 0.2


def test_media_without_a_subject_or_a_voice_is_refused_clearly(decoders, tmp_path):
    (tmp_path / "broken.mp4").write_bytes(b"not a video at all")
    with pytest.raises(CheckpointFileError, match="broken.mp4"):
        reference_media.read_recording(tmp_path / "broken.mp4")
    flat = np.full((4, 64, 64, 3), 90, np.uint8)
    with pytest.raises(InputValueError, match="frontal face or a centred"):
        reference_media.pick_frames(flat, np.arange(4.0), 1)
    with pytest.raises(InputValueError, match="dBFS"):
        reference_media.voiced_segment(np.zeros(16000, np.float32))
    with pytest.raises(InputValueError, match="either recording"):
        create_profile(decoders, name="nobody")


def test_the_consent_slot_records_the_file_and_keeps_the_profile_valid(tmp_path, profile):
    copy = save_profile(dataclasses.replace(profile, path=None), tmp_path)
    record = copy.path / "consent.json"
    record.write_text('{"subject": "Blue Character"}')
    updated = set_consent_record(copy, record)
    reread = read_profile(copy.path)
    assert reread.consent["file"] == "consent.json" and len(reread.consent["sha256"]) == 64
    assert reread.id == updated.id == profile.id
    assert save_profile(dataclasses.replace(profile, path=None), tmp_path).consent == reread.consent  # kept
