"""Cameo on the native path without ComfyUI: reference tokens in a CONDITIONING (comfy_native/references.py), and
the native Apply Cameo's core (comfy_native/cameo.py) on the embedded default model, checked against the
library's apply_cameo: the same held first frame and reference tokens, the consent record on the LATENT, the
library's refusals, nothing changed on a refusal. Sampling with them inside ComfyUI is
tests/integration/test_native_cameo.py."""

from __future__ import annotations

import datetime as dt
import importlib.util
import re
from fractions import Fraction
from pathlib import Path

import pytest
import torch

from jointav.cameo.consent import ConsentMissingError
from jointav.cameo.consent_gate import consent_check_for, grant_for_profile
from jointav.cameo.keys import generate_key, operator_key
from jointav.comfy_native.cameo import apply_cameo_native
from jointav.comfy_native.latents import PROVENANCE_KEY, to_core_latent
from jointav.comfy_native.references import (AUDIO_REFERENCE_KEY, VIDEO_REFERENCE_KEY, attach_references,
                                             references_of, strip_references)
from jointav.errors import InputShapeError, InputValueError
from jointav.pipeline import api
from jointav.pipeline.cameo import apply_cameo, create_profile
from jointav.pipeline.packed_latent import PackedLayout
from jointav.samplers.guidance import ReferenceTokens
from jointav.toyworld import SceneSpec, render_clip

REPO = Path(__file__).resolve().parents[2]
NODE = "JointAV Apply Cameo (native)"


def _text(rows: int = 3) -> torch.Tensor:
    return torch.randn(1, rows, 64, generator=torch.Generator().manual_seed(rows))


def _conditioning():
    return [[_text(3), {"pooled_output": None}], [_text(4), {"area": (8, 8, 0, 0)}]]


# ------------------------------------------------------------------------------------ references.py

def test_references_ride_on_every_entry_and_come_back_unchanged():
    video, audio = torch.randn(1, 16, 2, 8, 8), torch.randn(1, 30, 20)
    positive = _conditioning()
    attached = attach_references(positive, ReferenceTokens(video, audio))
    assert all(e[1][VIDEO_REFERENCE_KEY] is video and e[1][AUDIO_REFERENCE_KEY] is audio for e in attached)
    assert attached[1][1]["area"] == (8, 8, 0, 0) and attached[0][0] is positive[0][0]
    assert all(VIDEO_REFERENCE_KEY not in e[1] for e in positive), "the input conditioning was changed"
    back = references_of(attached, guided=True)
    assert back.video is video and back.audio is audio and back.guided is True
    assert references_of(positive) is None and references_of(strip_references(attached)) is None


def test_a_voice_only_reference_leaves_the_face_key_out():
    audio = torch.randn(1, 30, 20)
    attached = attach_references(_conditioning(), ReferenceTokens(None, audio))
    assert VIDEO_REFERENCE_KEY not in attached[0][1] and references_of(attached).video is None


def test_bad_references_and_conditionings_are_named():
    with pytest.raises(InputShapeError, match=r"jointav_video_reference: got \(16, 2, 8, 8\), expected a non-empty"):
        attach_references(_conditioning(), ReferenceTokens(torch.randn(16, 2, 8, 8), None))
    with pytest.raises(InputValueError, match=r"positive: got dict, expected a CONDITIONING"):
        attach_references({"samples": 1}, None)


# ------------------------------------------------------------------------------------ cameo.py

@pytest.fixture(scope="module")
def model():
    return api.load_joint_model(None)


@pytest.fixture(scope="module")
def decoders():
    return api.load_decoders()


@pytest.fixture(scope="module")
def layout(model):
    cfg = model.dit.config
    return PackedLayout(cfg.video.in_dim, cfg.audio.in_dim, Fraction(model.spec.audio_per_video_frame))


@pytest.fixture(autouse=True)
def machine(tmp_path, monkeypatch):
    """Each test on a machine of its own: consent history and usage log (the operator key is the session's)."""
    monkeypatch.setenv("JOINTAV_CAMEO_STATE", str(tmp_path / "machine" / "consent-state.json"))
    monkeypatch.setenv("JOINTAV_CAMEO_LOG", str(tmp_path / "machine" / "usage.jsonl"))


@pytest.fixture
def profile(decoders, tmp_path):
    clip = render_clip(SceneSpec(kind="speak", colour="green", shape="character", count=2, background="black",
                                 voice="low"), seed=4)
    voice = {"waveform": torch.as_tensor(clip.audio).float().reshape(1, 1, -1), "sample_rate": clip.sample_rate}
    return create_profile(decoders, image=clip.frames[len(clip.frames) // 2], voice=voice, name="Green",
                          out_dir=tmp_path / "cameos")


def _grant(profile):
    return grant_for_profile(profile, generate_key(), subject_id="green", operators=[operator_key().public_key()],
                             valid_until=dt.datetime.now(dt.timezone.utc) + dt.timedelta(days=1))


@pytest.mark.parametrize("mode", ["both", "first_frame", "reference_tokens"])
def test_native_cameo_holds_what_the_library_holds(model, decoders, layout, profile, mode):
    record, profile = _grant(profile)
    empty = api.empty_latent(model, "1s", 64, 64)
    core = to_core_latent(empty, layout)
    positive = _conditioning()
    out_positive, out_latent = apply_cameo_native(model, decoders, positive, core, profile, mode=mode,
                                                  consent_check=consent_check_for())
    library = apply_cameo(model, decoders, empty, profile, mode=mode, consent_check=consent_check_for())
    expected = to_core_latent(library, layout)
    assert torch.equal(out_latent["samples"], expected["samples"])
    if mode == "reference_tokens":
        assert "noise_mask" not in out_latent and out_latent["samples"] is core["samples"]
    else:
        assert torch.equal(out_latent["noise_mask"], expected["noise_mask"])
    held = [c for c in library.conditionings if hasattr(c, "reference_tokens")]
    tokens = references_of(out_positive)
    if mode == "first_frame":
        assert not held and tokens is None and out_positive is positive
    else:
        assert torch.equal(tokens.video, held[0].video) and torch.equal(tokens.audio, held[0].audio)
    provenance = out_latent[PROVENANCE_KEY]
    assert (provenance["consent_sha256"], provenance["cameo_profile_id"], provenance["cameo_mode"]) == (
        record.record_sha256, profile.id, mode)
    assert provenance == library.provenance
    assert PROVENANCE_KEY not in core and all(VIDEO_REFERENCE_KEY not in e[1] for e in positive)


def test_reference_tokens_keep_an_image_latents_held_first_frame(model, decoders, layout, profile):
    """Image-to-AV then a cameo's tokens only: the image's frame stays held, as the noise_mask had it."""
    _, profile = _grant(profile)
    image = torch.rand(1, 64, 64, 3, generator=torch.Generator().manual_seed(2))
    core = to_core_latent(api.image_to_av_latent(model, decoders, image, "1s", 64, 64), layout)
    _, out = apply_cameo_native(model, decoders, _conditioning(), core, profile, mode="reference_tokens",
                                consent_check=consent_check_for())
    assert torch.equal(out["samples"], core["samples"]) and torch.equal(out["noise_mask"], core["noise_mask"])
    # the cameo's first frame replaces the image's, and frame 0 stays the only held one
    _, out = apply_cameo_native(model, decoders, _conditioning(), core, profile, mode="first_frame",
                                consent_check=consent_check_for())
    video_clean, audio_clean = layout.keep_masks(out["noise_mask"], tuple(out["samples"].shape))
    assert video_clean[0].tolist() == [True] + [False] * (video_clean.shape[1] - 1) and audio_clean is None
    assert not torch.equal(layout.unpack(out["samples"])[0][:, :, :1], layout.unpack(core["samples"])[0][:, :, :1])


def test_refused_consent_raises_the_librarys_message_and_changes_nothing(model, decoders, layout, profile):
    empty = api.empty_latent(model, "1s", 64, 64)
    core = to_core_latent(empty, layout)
    positive = _conditioning()
    with pytest.raises(ConsentMissingError) as library:
        apply_cameo(model, decoders, empty, profile, mode="both", consent_check=consent_check_for())
    with pytest.raises(ConsentMissingError) as native:
        apply_cameo_native(model, decoders, positive, core, profile, mode="both", consent_check=consent_check_for())
    assert str(native.value) == str(library.value) and "refused (no consent record)" in str(native.value)
    assert PROVENANCE_KEY not in core and "noise_mask" not in core
    assert all(VIDEO_REFERENCE_KEY not in e[1] for e in positive)


def test_one_cameo_per_clip_on_the_native_path_too(model, decoders, layout, profile):
    _, profile = _grant(profile)
    core = to_core_latent(api.empty_latent(model, "1s", 64, 64), layout)
    positive, latent = apply_cameo_native(model, decoders, _conditioning(), core, profile, mode="first_frame",
                                          consent_check=consent_check_for())
    with pytest.raises(InputValueError, match=r"latent: already made with cameo .*one cameo per clip"):
        apply_cameo_native(model, decoders, positive, latent, profile, mode="first_frame",
                           consent_check=consent_check_for())
    tokens, _ = apply_cameo_native(model, decoders, _conditioning(), core, profile, mode="reference_tokens",
                                   consent_check=consent_check_for())
    with pytest.raises(InputValueError, match=r"latent: already carries reference tokens"):
        apply_cameo_native(model, decoders, tokens, core, profile, mode="reference_tokens",
                           consent_check=consent_check_for())


def test_not_a_joint_latent_is_named(model, decoders, profile):
    with pytest.raises(InputValueError, match=re.escape(f"{NODE}: latent has no 'jointav_layout' entry")):
        apply_cameo_native(model, decoders, _conditioning(), {"samples": torch.zeros(1, 4, 8, 8)}, profile)


# ------------------------------------------------------------------------------------ graph_provenance.py

def _graph_provenance():
    # by path: importing the `nodes` package would import ComfyUI
    spec = importlib.util.spec_from_file_location("jointav_graph_provenance", REPO / "nodes" / "graph_provenance.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_record_finds_the_prompt_behind_apply_cameo_native():
    workflow = {
        "3": {"class_type": "CLIPTextEncode", "inputs": {"text": "a green character speaks", "clip": ["1", 2]}},
        "21": {"class_type": "JointAVApplyCameoNative", "inputs": {"positive": ["3", 0], "mode": "both"}},
        "7": {"class_type": "JointAVGuider", "inputs": {"positive": ["21", 0], "video_cfg": 4.0,
                                                        "reference_guidance": "off"}},
        "8": {"class_type": "JointAVNoise", "inputs": {"noise_seed": 9}},
    }
    record = _graph_provenance().provenance_from_workflow(workflow)
    assert record["prompt"] == "a green character speaks" and record["seed"] == 9
    assert record["sampler"]["reference_guidance"] == "off"
    workflow["3"] = {"class_type": "CLIPTextEncode", "inputs": {"clip": ["1", 2], "positive": ["21", 0]}}  # a loop
    assert _graph_provenance().provenance_from_workflow(workflow)["prompt"] == ""


def test_the_record_drops_comfyuis_run_time_fingerprints():
    """ComfyUI writes each node's fingerprint into the prompt as `is_changed` while running it (NaN for a node
    re-run every time, as Apply Cameo is); the record keeps the graph as posted, so the manifest can hold it."""
    import json

    workflow = {"21": {"class_type": "JointAVApplyCameoNative", "inputs": {"mode": "both"}, "is_changed": float("nan"),
                       "_meta": {"title": "cameo"}}}
    record = _graph_provenance().provenance_from_workflow(workflow)
    assert record["workflow"] == {"21": {"class_type": "JointAVApplyCameoNative", "inputs": {"mode": "both"},
                                         "_meta": {"title": "cameo"}}}
    json.dumps(record, allow_nan=False)


def test_the_nested_latent_of_newer_core_gets_the_same_cameo(model, decoders, layout, profile):
    """ComfyUI 0.38+ form (a stand-in with NestedTensor's interface; not run against a real newer core)."""
    from .test_packed_latent import StandInNestedTensor

    _, profile = _grant(profile)
    image = torch.rand(1, 64, 64, 3, generator=torch.Generator().manual_seed(3))
    joint = api.image_to_av_latent(model, decoders, image, "1s", 64, 64)
    packed, nested = to_core_latent(joint, layout), to_core_latent(joint, layout, StandInNestedTensor)
    _, from_packed = apply_cameo_native(model, decoders, _conditioning(), packed, profile, mode="both",
                                        consent_check=consent_check_for())
    _, from_nested = apply_cameo_native(model, decoders, _conditioning(), nested, profile, mode="both",
                                        consent_check=consent_check_for())
    assert isinstance(from_nested["samples"], StandInNestedTensor)
    video, audio = layout.unpack(from_packed["samples"])
    nested_video, nested_audio = from_nested["samples"].tensors
    assert torch.equal(nested_video, video) and torch.equal(nested_audio, audio)
    video_clean, audio_clean = layout.keep_masks(from_packed["noise_mask"], tuple(from_packed["samples"].shape))
    v_mask, a_mask = from_nested["noise_mask"].tensors
    assert torch.equal(v_mask.amax(dim=(1, 3, 4)) <= 0, video_clean) and audio_clean is None and bool(a_mask.min() > 0)
    assert from_nested[PROVENANCE_KEY] == from_packed[PROVENANCE_KEY]
