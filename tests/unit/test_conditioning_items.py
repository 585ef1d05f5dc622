"""The conditioning-item protocol (issue 18): every way of holding part of the latent is one item that applies
itself to a latent; `resolve` gives the sampler one Held. Each held span equals its clean input after sampling."""

from __future__ import annotations

import pytest
import torch

from jointav.cameo.conditioning import CameoReference
from jointav.errors import InputShapeError, InputValueError
from jointav.samplers import (FirstFrame, KeepMask, ReferenceTokens, SegmentTail, WholeAudio, WholeVideo,
                              audio_positions_covering, resolve, sample)
from tests.unit.test_samplers import AUDIO_LEN, C_AUDIO, C_VIDEO, FRAMES, HEIGHT, WIDTH, FakeModel, contexts, shapes


def run(conditioning, steps=3):
    pos, neg = contexts()
    video_shape, audio_shape = shapes()
    model = FakeModel()
    video, audio = sample(model, video_shape, audio_shape, pos, neg, steps=steps, seed=3, conditioning=conditioning)
    return model, video, audio


def test_segment_tail_holds_the_video_frames_and_audio_span_it_was_given():
    tail_video, tail_audio = torch.randn(1, C_VIDEO, 2, HEIGHT, WIDTH), torch.randn(1, 5, C_AUDIO)
    model, video, audio = run(SegmentTail(tail_video, tail_audio))
    assert torch.equal(video[:, :, :2], tail_video) and torch.equal(audio[:, :5], tail_audio)
    assert model.calls[0]["video_clean"].tolist() == [[True, True, False]]
    assert model.calls[0]["audio_clean"][0].tolist() == [i < 5 for i in range(AUDIO_LEN)]
    assert not torch.equal(video[:, :, 2], model.calls[0]["video"][:, :, 2])  # the rest was generated


def test_segment_tail_refuses_audio_shorter_than_its_video():
    with pytest.raises(InputShapeError, match="at least 6 to cover the 2 held latent frames"):
        SegmentTail(torch.randn(1, C_VIDEO, 2, HEIGHT, WIDTH), torch.randn(1, 5, C_AUDIO), min_audio=6) \
            .keep_mask(*shapes())


def test_whole_video_is_held_and_only_the_audio_generated():
    clean = torch.randn(1, C_VIDEO, FRAMES, HEIGHT, WIDTH)
    model, video, audio = run(WholeVideo(clean))
    assert torch.equal(video, clean)
    assert model.calls[0]["video_clean"].all() and model.calls[0]["audio_clean"] is None


def test_whole_audio_is_held_and_only_the_video_generated():
    clean = torch.randn(AUDIO_LEN, C_AUDIO)
    model, video, audio = run(WholeAudio(clean))
    assert torch.equal(audio[0], clean)
    assert model.calls[0]["audio_clean"].all() and model.calls[0]["video_clean"] is None


@pytest.mark.parametrize("item, message", [
    (WholeVideo(torch.randn(1, C_VIDEO, FRAMES - 1, HEIGHT, WIDTH)), "expected all 3"),
    (WholeAudio(torch.randn(1, AUDIO_LEN + 1, C_AUDIO)), f"expected all {AUDIO_LEN}"),
])
def test_whole_modality_of_another_length_is_refused(item, message):
    with pytest.raises(InputShapeError, match=message):
        item.keep_mask(*shapes())


def test_resolve_gives_one_held_from_items_and_reference_tokens():
    references = CameoReference(video=torch.randn(1, C_VIDEO, 1, HEIGHT, WIDTH), profile_id="p")
    held = resolve([FirstFrame(torch.randn(C_VIDEO, 1, HEIGHT, WIDTH)), references], *shapes())
    assert held.references is references and held.keep.video_mask.tolist() == [[True, False, False]]
    assert references.keep_mask(*shapes()) == KeepMask()  # reference tokens hold nothing inside the clip
    assert resolve(None, *shapes()).keep is None


def test_resolve_refuses_two_reference_items():
    ref = ReferenceTokens(audio=torch.randn(1, 2, C_AUDIO))
    with pytest.raises(InputValueError, match="2 reference-token items"):
        resolve([ref, ref], *shapes())


def test_audio_positions_covering_the_default_models_frames():
    # default model: 12 fps, 4 frames per latent, 512/16000 s per audio latent
    assert audio_positions_covering(1, 4, 12.0, 0.032) == 3  # one frame = 83 ms -> 3 latents (96 ms)
    assert audio_positions_covering(2, 4, 12.0, 0.032) == 14  # five frames = 417 ms -> 14 latents


def test_noised_hold_replaces_held_entries_with_the_clean_value_at_each_sigma():
    from jointav.samplers import make_solver

    clean = torch.randn(1, AUDIO_LEN, C_AUDIO)
    pos, neg = contexts()
    video_shape, audio_shape = shapes()
    model = FakeModel()
    noise = torch.randn(audio_shape, generator=torch.Generator().manual_seed(9))
    video, audio = sample(model, video_shape, noise.clone(), pos, neg, steps=3, seed=3, conditioning=WholeAudio(clean),
                          hold_mode="noised")
    solver = make_solver("unipc", 3, 5.0)
    for i, call in enumerate(model.calls[::2]):  # positive passes, one per step
        sigma = float(solver.sigma(i))
        assert call["audio_clean"] is None and call["video_clean"] is None  # nothing flagged clean to the model
        assert torch.allclose(call["audio"], (1 - sigma) * clean + sigma * noise, atol=1e-6)
    assert torch.equal(audio, clean)


def test_an_unknown_hold_mode_is_refused():
    with pytest.raises(InputValueError, match="hold_mode: got 'soft'"):
        run_sample_with(hold_mode="soft")


def run_sample_with(**kwargs):
    pos, neg = contexts()
    return sample(FakeModel(), *shapes(), pos, neg, steps=1, conditioning=WholeAudio(torch.randn(AUDIO_LEN, C_AUDIO)),
                  **kwargs)
