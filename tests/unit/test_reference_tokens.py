"""Reference tokens (cameo face and voice) in the fusion DiT and the samplers, on a tiny random model."""

from __future__ import annotations

import re

import pytest
import torch

from jointav.errors import InputShapeError, InputValueError
from jointav.models import fusion_dit
from jointav.models.config import FusionConfig, TowerConfig
from jointav.models.fusion_dit import FusionDiT, audio_reference_start, reference_time_origin
from jointav.models.rope import audio_rope_table, video_pair_split, video_rope_table
from jointav.samplers import FirstFrame, PromptContexts, sample
from jointav.samplers.guidance import JointGuidance, ReferenceTokens, guided_velocity

TINY = FusionConfig(
    video=TowerConfig(patch_size=(1, 2, 2), in_dim=6, out_dim=6, dim=32, ffn_dim=48, freq_dim=32,
                      num_heads=2, num_layers=3, text_len=16, text_dim=24),
    audio=TowerConfig(patch_size=(1,), in_dim=5, out_dim=5, dim=32, ffn_dim=48, freq_dim=32,
                      num_heads=2, num_layers=3, text_len=16, text_dim=24, temporal_rope_scaling_factor=0.19676),
)
ATOL = 1e-5


def _randn(*shape, seed):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed))


@pytest.fixture(scope="module")
def model() -> FusionDiT:
    torch.manual_seed(0)
    model = FusionDiT(TINY).eval()
    with torch.no_grad():  # random biases and norm gains, so no path is trivially identity or zero
        for name, p in model.named_parameters():
            if p.dim() == 1:
                p.copy_(1 + 0.1 * torch.randn_like(p) if re.search(r"norm", name) else 0.05 * torch.randn_like(p))
    return model


def _inputs(b=2, f=3, h=4, w=6, length=11):
    cv, ca = TINY.video.in_dim, TINY.audio.in_dim
    return dict(video=_randn(b, cv, f, h, w, seed=1), audio=_randn(b, length, ca, seed=2),
                t=torch.tensor([900, 250][:b]), video_context=_randn(b, 7, TINY.video.text_dim, seed=3),
                audio_context=_randn(b, 5, TINY.audio.text_dim, seed=4))


def _refs(b=1, k=2, h=4, w=4, length=9, seed=10):
    return _randn(b, TINY.video.in_dim, k, h, w, seed=seed), _randn(b, length, TINY.audio.in_dim, seed=seed + 1)


@torch.no_grad()
def test_references_absent_for_every_sample_leave_the_forward_bit_identical(model):
    x = _inputs()
    base = model(**x)
    none_given = model(**x, video_reference=None, audio_reference=None)
    all_dropped = model(**x, video_reference=[None, None], audio_reference=[None, None])
    for out in (none_given, all_dropped):
        assert all(torch.equal(o, b) for o, b in zip(out, base))


@torch.no_grad()
def test_references_change_the_outputs_and_keep_the_clip_shapes(model):
    x = _inputs()
    base = model(**x)
    vref, aref = _refs()
    for kwargs in (dict(video_reference=vref), dict(audio_reference=aref),
                   dict(video_reference=vref, audio_reference=aref)):
        out = model(**x, **kwargs)
        assert out[0].shape == x["video"].shape and out[1].shape == x["audio"].shape
        # Both towers feel a reference of either kind (through cross-modal attention).
        assert not torch.allclose(out[0], base[0], atol=1e-3) and not torch.allclose(out[1], base[1], atol=1e-3)


@torch.no_grad()
def test_reference_tokens_never_reach_the_outputs(model):
    x = _inputs()
    vref, aref = _refs()
    inter: dict = {}
    v_out, a_out = model(**x, video_reference=vref, audio_reference=aref, intermediates=inter)
    b, _, f, h, w = x["video"].shape
    clip_tokens = f * (h // 2) * (w // 2)
    ref_tokens = vref.shape[2] * (vref.shape[3] // 2) * (vref.shape[4] // 2)
    assert inter["vid.head_out"].shape[1] == clip_tokens + ref_tokens  # the head saw the references ...
    assert inter["audio.head_out"].shape[1] == x["audio"].shape[1] + aref.shape[1]
    # ... and the outputs are exactly the clip's rows of it.
    assert torch.equal(a_out, inter["audio.head_out"][:, : x["audio"].shape[1]])
    clip_only = model.video_model.unpatchify(inter["vid.head_out"][:, :clip_tokens], [(f, h // 2, w // 2)] * b)
    assert torch.equal(v_out, torch.stack(clip_only))


@torch.no_grad()
def test_batched_padded_references_match_each_item_alone(model):
    videos = [_randn(6, 3, 4, 6, seed=1), _randn(6, 2, 4, 4, seed=2)]
    audios = [_randn(11, 5, seed=3), _randn(8, 5, seed=4)]
    ctx = [_randn(7, 24, seed=5), _randn(3, 24, seed=6)]
    vrefs = [_randn(6, 1, 4, 4, seed=7), None]  # the second sample has no face reference ...
    arefs = [_randn(9, 5, seed=8), _randn(4, 5, seed=9)]  # ... but a voice, shorter than the first's
    t = torch.tensor([700, 40])
    v_out, a_out = model(videos, audios, t, ctx, ctx, video_reference=vrefs, audio_reference=arefs,
                         video_seq_len=40, audio_seq_len=15)
    for i in range(2):
        v1, a1 = model([videos[i]], [audios[i]], t[i:i + 1], [ctx[i]], [ctx[i]],
                       video_reference=[vrefs[i]], audio_reference=[arefs[i]])
        assert v_out[i].shape == videos[i].shape and a_out[i].shape == audios[i].shape
        assert torch.allclose(v_out[i], v1[0], atol=ATOL) and torch.allclose(a_out[i], a1[0], atol=ATOL)


@torch.no_grad()
def test_one_reference_serves_every_sample_of_a_batch(model):
    x = _inputs()
    vref, aref = _refs(b=1)
    shared = model(**x, video_reference=vref, audio_reference=aref)
    repeated = model(**x, video_reference=vref.expand(2, -1, -1, -1, -1), audio_reference=aref.expand(2, -1, -1))
    assert all(torch.equal(s, r) for s, r in zip(shared, repeated))


@torch.no_grad()
def test_reference_tokens_are_clean_timestep_zero_and_clip_tokens_are_not(model):
    x = _inputs()
    vref, aref = _refs()
    inter, clean = {}, {}
    model(**x, video_reference=vref, audio_reference=aref, intermediates=inter)
    model(**dict(x, t=torch.zeros(2)), intermediates=clean)
    f, h, w = x["video"].shape[2:]
    clip_v, clip_a = f * (h // 2) * (w // 2), x["audio"].shape[1]
    for tower, n in (("vid", clip_v), ("audio", clip_a)):
        refs = inter[f"{tower}.time_e"][:, n:]
        t0 = clean[f"{tower}.time_e"][:, :1]
        assert torch.allclose(refs, t0.expand_as(refs), atol=1e-6)
        assert not torch.allclose(inter[f"{tower}.time_e"][:, :1], t0, atol=1e-3)


def _captured_rotations(model, monkeypatch, **kwargs) -> list[torch.Tensor]:
    seen = []
    real = fusion_dit.rotate

    def spy(x, multipliers):
        seen.append(multipliers)
        return real(x, multipliers)

    monkeypatch.setattr(fusion_dit, "rotate", spy)
    with torch.no_grad():
        model(**kwargs)
    return seen


def test_reference_rope_rows_lie_past_the_clip_with_voice_aligned_to_face(model, monkeypatch):
    x = _inputs(b=1)
    vref, aref = _refs(b=1, k=2, h=4, w=6)
    seen = _captured_rotations(model, monkeypatch, **x, video_reference=vref, audio_reference=aref)
    # Forward order: audio self-attention (q, k) first, then video self-attention (q, k).
    audio_rot, video_rot = seen[0][0, :, 0], seen[2][0, :, 0]
    f, h, w = (s // p for s, p in zip(x["video"].shape[2:], TINY.video.patch_size))
    length, scale = x["audio"].shape[1], TINY.audio.temporal_rope_scaling_factor
    origin = reference_time_origin(f, length, scale)
    assert origin > f - 1 and origin > (length - 1) * scale  # no clip token of either tower shares its time

    table = video_rope_table(TINY.video.head_dim)
    tp, hp, _ = video_pair_split(TINY.video.head_dim // 2)
    k, rh, rw = vref.shape[2], vref.shape[3] // 2, vref.shape[4] // 2
    expected = torch.stack([torch.cat([table[origin + j, :tp], table[y, tp:tp + hp], table[z, tp + hp:]])
                            for j in range(k) for y in range(rh) for z in range(rw)])
    assert torch.equal(video_rot[f * h * w:], expected)

    start = audio_reference_start(origin, scale)
    assert abs(start * scale - origin) <= scale / 2  # the voice starts where the face does
    audio_table = audio_rope_table(TINY.audio.head_dim, scale)
    assert torch.equal(audio_rot[length:], audio_table[start:start + aref.shape[1]])


def test_references_are_trainable(model):
    x = _inputs()
    vref, aref = (r.clone().requires_grad_(True) for r in _refs())
    model.zero_grad()
    v_out, a_out = model(**x, video_reference=vref, audio_reference=aref)
    (v_out.square().mean() + a_out.square().mean()).backward()
    assert vref.grad is not None and vref.grad.abs().sum() > 0
    assert aref.grad is not None and aref.grad.abs().sum() > 0
    assert model.video_model.patch_embedding.weight.grad.abs().sum() > 0
    model.zero_grad()


def _bad_references():
    vref, aref = _refs(b=1)
    return [
        ("video_reference", dict(video_reference=vref[:, :-1])),  # channels
        ("video_reference", dict(video_reference=vref[..., :3])),  # W not divisible by the patch
        ("video_reference", dict(video_reference=vref.expand(3, -1, -1, -1, -1))),  # batch 3 for 2 samples
        ("video_reference", dict(video_reference=[vref[0]])),  # a list must name every sample
        ("audio_reference", dict(audio_reference=aref[..., :-1])),
        ("audio_reference", dict(audio_reference=[aref[0], torch.zeros(3)])),
        ("audio_reference", dict(audio_reference=torch.zeros(1, 1024, TINY.audio.in_dim))),  # past the RoPE table
    ]


@pytest.mark.parametrize("argument, kwargs", _bad_references(), ids=lambda v: v if isinstance(v, str) else "")
def test_bad_references_raise_shape_errors_naming_the_argument(model, argument, kwargs):
    with pytest.raises(InputShapeError) as err:
        model(**_inputs(), **kwargs)
    assert str(err.value).startswith(argument), str(err.value)


# ------------------------------------------------------------------------------------------------ samplers

class Recorder:
    """A stand-in model that records the keyword arguments of every call and returns zero velocity."""

    def __init__(self):
        self.calls = []

    def __call__(self, video, audio, t, video_context, audio_context, **kwargs):
        self.calls.append(kwargs)
        return torch.zeros_like(video), torch.zeros_like(audio)


def _contexts(batch=1):
    return PromptContexts.shared(torch.zeros(batch, 3, 24)), PromptContexts.shared(torch.ones(batch, 3, 24))


def test_both_guidance_passes_get_the_same_references():
    model, (pos, neg) = Recorder(), _contexts()
    refs = ReferenceTokens(video=torch.randn(1, 6, 1, 2, 2), audio=torch.randn(1, 4, 5))
    guided_velocity(model, torch.zeros(1, 6, 2, 2, 2), torch.zeros(1, 3, 5), torch.tensor([500]), pos, neg,
                    JointGuidance(), references=refs)
    assert len(model.calls) == 2
    for call in model.calls:
        assert call["video_reference"] is refs.video and call["audio_reference"] is refs.audio


def test_guided_references_reach_the_positive_pass_only_and_are_amplified_by_the_scale():
    def shifted_by_references(video, audio, t, video_context, audio_context, *, video_reference=None,
                              audio_reference=None, **_):
        # velocity 1 with references, 0 without, whatever the prompt
        has = video_reference is not None
        return torch.full_like(video, float(has)), torch.full_like(audio, float(audio_reference is not None))

    pos, neg = _contexts()
    video, audio, t = torch.zeros(1, 6, 2, 2, 2), torch.zeros(1, 3, 5), torch.tensor([500])
    refs = dict(video=torch.randn(1, 6, 1, 2, 2), audio=torch.randn(1, 4, 5))
    recorder = Recorder()
    guided_velocity(recorder, video, audio, t, pos, neg, JointGuidance(), references=ReferenceTokens(**refs, guided=True))
    assert recorder.calls[0]["video_reference"] is refs["video"] and recorder.calls[0]["audio_reference"] is refs["audio"]
    assert "video_reference" not in recorder.calls[1] and "audio_reference" not in recorder.calls[1]
    # guided: neg (no refs, 0) + s * (pos (refs, 1) - 0) = s per modality; shared: 1 + s * 0 = 1
    for guided, expect_video, expect_audio in ((True, 4.0, 3.0), (False, 1.0, 1.0)):
        v, a = guided_velocity(shifted_by_references, video, audio, t, pos, neg, JointGuidance(4.0, 3.0, None),
                               references=ReferenceTokens(**refs, guided=guided))
        assert torch.all(v == expect_video) and torch.all(a == expect_audio), guided


def test_guided_survives_the_move_to_the_sampling_device():
    refs = ReferenceTokens(audio=torch.randn(1, 4, 5), guided=True)
    assert refs.to("cpu", torch.float64).guided is True
    assert ReferenceTokens(audio=torch.randn(1, 4, 5)).to("cpu", torch.float64).guided is False


def test_the_loop_hands_references_to_every_model_call_next_to_keep_masks():
    model, (pos, neg) = Recorder(), _contexts()
    refs = ReferenceTokens(video=torch.randn(1, 6, 1, 2, 2), audio=torch.randn(1, 4, 5))
    first = FirstFrame(torch.randn(1, 6, 1, 2, 2))
    sample(model, (2, 6, 2, 2, 2), (2, 3, 5), pos, neg, steps=3, conditioning=[refs, first],
           audio_per_video_frame=None)
    assert len(model.calls) == 2 * 3
    for call in model.calls:
        assert torch.equal(call["video_reference"], refs.video) and torch.equal(call["audio_reference"], refs.audio)
        assert call["video_clean"][:, 0].all() and not call["video_clean"][:, 1:].any()


def test_a_model_without_reference_arguments_still_samples_without_references():
    def plain(video, audio, t, video_context, audio_context, *, video_clean=None, audio_clean=None, skip_layer=None):
        return torch.zeros_like(video), torch.zeros_like(audio)

    pos, neg = _contexts()
    video, audio = sample(plain, (1, 6, 2, 2, 2), (1, 3, 5), pos, neg, steps=2, audio_per_video_frame=None)
    assert video.shape == (1, 6, 2, 2, 2) and audio.shape == (1, 3, 5)


def test_the_loop_refuses_two_reference_conditionings_and_mismatched_channels():
    pos, neg = _contexts()
    refs = ReferenceTokens(audio=torch.randn(1, 4, 5))
    with pytest.raises(InputValueError, match="at most one"):
        sample(Recorder(), (1, 6, 2, 2, 2), (1, 3, 5), pos, neg, steps=1, conditioning=[refs, refs],
               audio_per_video_frame=None)
    with pytest.raises(InputShapeError, match="ReferenceTokens.audio"):
        sample(Recorder(), (1, 6, 2, 2, 2), (1, 3, 5), pos, neg, steps=1,
               conditioning=ReferenceTokens(audio=torch.randn(1, 4, 7)), audio_per_video_frame=None)


def test_sampling_the_real_model_with_references_changes_the_clip(model):
    pos = PromptContexts.shared(_randn(1, 5, 24, seed=1))
    neg = PromptContexts.shared(_randn(1, 5, 24, seed=2))
    vref, aref = _refs()
    shapes = dict(video=(1, 6, 2, 4, 4), audio=(1, 6, 5))
    plain = sample(model, **shapes, positive=pos, negative=neg, steps=2, slg_layer=1, audio_per_video_frame=None)
    with_refs = sample(model, **shapes, positive=pos, negative=neg, steps=2, slg_layer=1, audio_per_video_frame=None,
                       conditioning=ReferenceTokens(video=vref, audio=aref))
    assert with_refs[0].shape == plain[0].shape and with_refs[1].shape == plain[1].shape
    assert not torch.allclose(with_refs[0], plain[0], atol=1e-3) and not torch.allclose(with_refs[1], plain[1], atol=1e-3)
