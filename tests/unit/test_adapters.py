"""Hold adapters (pipeline/adapters.py): a weight difference added only while the model samples the hold it was
trained for. The file is a ComfyUI diff LoRA; adding it changes foley and nothing else; the base weights come
back bit for bit; an adapter made for other weights, or a malformed file, is refused or left out with a reason."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import save_file

from jointav.errors import CheckpointFileError, CheckpointKeyError, InputValueError
from jointav.pipeline import adapters, api, graph_latents
from jointav.pipeline.default_model import BUNDLE_DIR, BUNDLE_NAME
from jointav.samplers import ReferenceTokens, SegmentTail, WholeAudio, WholeVideo
from jointav.toyworld import parse_caption, render_clip

BOUNCE = "a red ball bounces twice on the left, low thuds, on a gray background"


@pytest.fixture(scope="module")
def parts():
    return api.load_joint_model(device="cpu"), api.load_decoders(device="cpu")


def audio_tower(dit) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in dit.state_dict().items() if k.startswith("audio_model.")}


def make_adapter(path: Path, dit, scale: float = 0.05, seed: int = 0, base=None) -> Path:
    base = audio_tower(dit) if base is None else base
    g = torch.Generator().manual_seed(seed)
    tuned = {k: v + scale * torch.randn(v.shape, generator=g) for k, v in base.items()}
    return adapters.save_adapter(path, base, tuned, name=path.stem, family="jointav-default", hold="whole_video",
                                 dtype=torch.float32)


@pytest.fixture
def registered(tmp_path, parts, monkeypatch):
    """A test adapter registered as the embedded default's foley adapter."""
    model, _ = parts
    path = make_adapter(tmp_path / "foley.safetensors", model.dit)
    monkeypatch.setitem(adapters.ADAPTERS, model.spec.family, {"whole_video": path})
    return path


def foley_latent(model, decoders):
    frames = torch.from_numpy(render_clip(parse_caption(BOUNCE), seed=5).frames).float() / 255
    return graph_latents.video_to_audio_latent(model, decoders, frames)


def test_an_adapter_file_is_a_comfyui_diff_lora_of_the_dit_names(tmp_path, parts):
    model, _ = parts
    path = make_adapter(tmp_path / "a.safetensors", model.dit)
    with safe_open(str(path), framework="pt") as f:
        keys = set(f.keys())
    assert "diffusion_model.audio_model.blocks.0.self_attn.q.diff" in keys  # a Linear's weight
    assert "diffusion_model.audio_model.blocks.0.self_attn.q.diff_b" in keys  # its bias
    assert "diffusion_model.audio_model.blocks.0.modulation.modulation.diff" in keys  # a bare parameter
    assert not any(".video_model." in k for k in keys)
    # core patches module by module and never the head's modulation (beside the head's own layers): left out
    assert "diffusion_model.audio_model.head.modulation.diff" not in keys
    read = adapters.read_adapter(path, model.dit)
    assert set(read.diffs) == set(audio_tower(model.dit)) - {"audio_model.head.modulation"}
    assert read.hold == "whole_video"
    assert adapters.matches_base(read, model.dit)


def test_applied_adds_the_difference_and_puts_the_weights_back_bit_for_bit(tmp_path, parts):
    model, _ = parts
    before = {k: v.clone() for k, v in model.dit.state_dict().items()}
    read = adapters.read_adapter(make_adapter(tmp_path / "a.safetensors", model.dit), model.dit)
    name = "audio_model.blocks.1.ffn.0.weight"
    with adapters.applied(model.dit, read):
        inside = model.dit.state_dict()
        assert torch.allclose(inside[name], before[name] + read.diffs[name], atol=1e-6)
        assert torch.equal(inside["video_model.blocks.1.ffn.0.weight"], before["video_model.blocks.1.ffn.0.weight"])
    after = model.dit.state_dict()
    assert all(torch.equal(after[k], v) for k, v in before.items())
    with pytest.raises(RuntimeError, match="boom"), adapters.applied(model.dit, read):
        raise RuntimeError("boom")  # an interrupted run puts them back too
    assert all(torch.equal(model.dit.state_dict()[k], v) for k, v in before.items())


def test_foley_samples_with_the_adapter_and_records_it_other_holds_without(registered, parts):
    model, decoders = parts
    cond = api.encode_prompt(model, BOUNCE)
    latent = foley_latent(model, decoders)
    assert any(isinstance(c, WholeVideo) for c in latent.conditionings)
    with_it = api.sample(model, cond, latent, seed=3, steps=2)
    without = api.sample(model, cond, latent, seed=3, steps=2, adapter="off")
    assert with_it.provenance["sampler"]["adapter"] == {"name": "foley", "hold": "whole_video",
                                                        "file": "foley.safetensors"}
    assert "adapter" not in without.provenance["sampler"]
    assert not torch.allclose(with_it.audio, without.audio, atol=1e-4)  # the sound is the adapted tower's
    assert torch.equal(with_it.video, without.video)  # the given picture is kept either way
    plain = api.empty_latent(model, "2s")  # text-to-AV: no hold, so no adapter
    a = api.sample(model, cond, plain, seed=3, steps=2)
    b = api.sample(model, cond, plain, seed=3, steps=2, adapter="off")
    assert torch.equal(a.video, b.video) and torch.equal(a.audio, b.audio) and "adapter" not in a.provenance["sampler"]
    noised = api.sample(model, cond, latent, seed=3, steps=2, hold_mode="noised")  # not the hold it was trained for
    assert "adapter" not in noised.provenance["sampler"]
    with pytest.raises(InputValueError, match="adapter='on': expected one of auto, off"):
        api.sample(model, cond, latent, seed=3, steps=1, adapter="on")


def test_a_carried_subject_samples_with_the_shots_adapter_a_cameos_references_without(tmp_path, parts, monkeypatch):
    """A film's later shot (the subject carried as reference tokens) adds the family's carried-subject adapter; the
    same references given as a cameo's sample with the base weights, exactly as with the adapter off."""
    import dataclasses

    from jointav.pipeline import long_form

    model, decoders = parts
    tower = {k: v.detach().clone() for k, v in model.dit.state_dict().items() if k.startswith("video_model.")}
    g = torch.Generator().manual_seed(1)
    path = adapters.save_adapter(tmp_path / "shots.safetensors", tower,
                                 {k: v + 0.05 * torch.randn(v.shape, generator=g) for k, v in tower.items()},
                                 name="shots", family="jointav-default", hold="carried_subject", dtype=torch.float32)
    monkeypatch.setitem(adapters.ADAPTERS, model.spec.family, {"carried_subject": path})
    clip = render_clip(parse_caption(BOUNCE), seed=5)
    carried = long_form.subject_reference(model, decoders, clip.frames, clip.audio)
    assert carried.carried and adapters.latent_hold([carried]) == "carried_subject"
    cameo = dataclasses.replace(carried, carried=False)
    cond = api.encode_prompt(model, "it bounces twice in the centre, low thuds, on a gray background")

    def shot(references, **kw):
        latent = api.empty_latent(model, "2s")
        latent.conditionings.append(references)
        return api.sample(model, cond, latent, seed=3, steps=2, **kw)

    with_it, as_cameo, off = shot(carried), shot(cameo), shot(carried, adapter="off")
    assert with_it.provenance["sampler"]["adapter"] == {"name": "shots", "hold": "carried_subject",
                                                        "file": "shots.safetensors"}
    assert "adapter" not in as_cameo.provenance["sampler"] and "adapter" not in off.provenance["sampler"]
    assert torch.equal(as_cameo.video, off.video) and torch.equal(as_cameo.audio, off.audio)
    assert not torch.allclose(with_it.video, off.video, atol=1e-4)  # the picture is the adapted tower's


def test_an_adapter_made_for_other_weights_is_left_out_with_a_warning(tmp_path, parts, monkeypatch, caplog):
    model, decoders = parts
    other = {k: 1.1 * v for k, v in audio_tower(model.dit).items()}  # another training run's weights
    path = make_adapter(tmp_path / "stale.safetensors", model.dit, base=other)
    monkeypatch.setitem(adapters.ADAPTERS, model.spec.family, {"whole_video": path})
    with caplog.at_level(logging.WARNING):
        out = api.sample(model, api.encode_prompt(model, BOUNCE), foley_latent(model, decoders), seed=1, steps=1)
    assert "adapter" not in out.provenance["sampler"]
    assert "stale.safetensors was made for other jointav-default weights" in caplog.text


def test_the_base_check_takes_bf16_storage_and_refuses_a_fine_tune_of_the_same_base(tmp_path, parts):
    model, _ = parts
    read = adapters.read_adapter(make_adapter(tmp_path / "a.safetensors", model.dit), model.dit)
    params = dict(model.dit.named_parameters())
    assert adapters.base_mismatch(read, model.dit, weight=lambda n: params[n].to(torch.bfloat16)) is None
    # the weights a 15% weight average with a fine-tune gives (the shipped bundle's own making): other weights
    g = torch.Generator().manual_seed(1)
    averaged = {n: p + 0.15 * 0.1 * p.abs().mean() * torch.randn(p.shape, generator=g) for n, p in params.items()}
    assert "where the adapter's base is" in adapters.base_mismatch(read, model.dit, weight=averaged.__getitem__)


@pytest.mark.parametrize("case, error, message", [
    ("missing", CheckpointFileError, "no such file"),
    ("garbage", CheckpointFileError, "unreadable as safetensors"),
    ("no metadata", CheckpointFileError, "no 'jointav_adapter' metadata"),
    ("unknown key", CheckpointKeyError, "key diffusion_model.audio_model.blocks.9.ffn.0.diff adds to no parameter"),
    ("shape", CheckpointKeyError, "has shape [3, 3], the DiT's audio_model.blocks.0.ffn.0.weight is [256, 128]"),
])
def test_a_bad_adapter_file_is_refused_naming_it(tmp_path, parts, case, error, message):
    model, _ = parts
    path = tmp_path / "bad.safetensors"
    meta = {adapters.METADATA_KEY: '{"name": "bad", "family": "jointav-default", "hold": "whole_video"}'}
    if case == "garbage":
        path.write_bytes(b"not a safetensors file at all")
    elif case == "no metadata":
        save_file({"diffusion_model.audio_model.blocks.0.ffn.0.diff": torch.zeros(256, 128)}, str(path))
    elif case == "unknown key":
        save_file({"diffusion_model.audio_model.blocks.9.ffn.0.diff": torch.zeros(256, 128)}, str(path), metadata=meta)
    elif case == "shape":
        save_file({"diffusion_model.audio_model.blocks.0.ffn.0.diff": torch.zeros(3, 3)}, str(path), metadata=meta)
    with pytest.raises(error) as e:
        adapters.read_adapter(path, model.dit)
    assert str(path) in str(e.value) and message in str(e.value)


def test_the_hold_an_adapter_is_chosen_by_is_the_segments_task():
    """An extension's tail picks the extend adapter, unless the segment's task is a given modality (a long
    audio-to-video or foley run is chained with tails too) or a film's carried subject (the shots adapter was
    trained with tails among its holds); a cameo's references pick nothing."""
    tail = SegmentTail(torch.zeros(1, 4, 2, 8, 8), torch.zeros(1, 6, 8))
    whole_audio, whole_video = WholeAudio(torch.zeros(1, 20, 8)), WholeVideo(torch.zeros(1, 4, 5, 8, 8))
    face, voice = torch.zeros(1, 4, 1, 8, 8), torch.zeros(1, 3, 8)
    carried, cameo = ReferenceTokens(face, voice, carried=True), ReferenceTokens(face, voice)
    assert adapters.latent_hold([tail]) == "segment_tail"
    assert adapters.latent_hold([cameo, tail]) == "segment_tail"
    assert adapters.latent_hold([tail, whole_audio]) == "whole_audio"
    assert adapters.latent_hold([tail, whole_video]) == "whole_video"
    assert adapters.latent_hold([tail, carried]) == "carried_subject"
    assert adapters.latent_hold([cameo]) is None and adapters.latent_hold([]) is None


@pytest.mark.parametrize("hold, tower", [("whole_video", "audio_model."), ("whole_audio", "video_model."),
                                         ("carried_subject", "video_model.")])
def test_the_shipped_adapters_are_made_for_the_shipped_bundle(parts, hold, tower):
    path = adapters.ADAPTERS["jointav-default"][hold]
    if not (BUNDLE_DIR / BUNDLE_NAME).is_file() or not path.is_file():
        pytest.skip(f"NO SHIPPED DEFAULT MODEL OR {hold} ADAPTER: {BUNDLE_DIR / BUNDLE_NAME}, {path}")
    model, _ = parts
    found = adapters.adapter_for(model, hold)
    names = [k for k in model.dit.state_dict() if k.startswith(tower)]
    assert found is not None and found.hold == hold and set(found.diffs) == set(adapters.patchable(names))
    assert adapters.adapter_for(model, None) is None
