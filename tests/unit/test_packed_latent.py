"""The joint latent in one core LATENT: the packed layout of ComfyUI 0.3.x and the NestedTensor form of newer core.

The nested path runs against a stand-in with the interface of core's `comfy.nested_tensor.NestedTensor`
(constructed from a tuple, `.tensors`, `.is_nested`, element-wise arithmetic); it has NOT been run against a
real ComfyUI 0.38+, which cannot run here.
"""

from __future__ import annotations

from fractions import Fraction

import pytest
import torch

from jointav.comfy_native.latents import (LAYOUT_KEY, from_core_latent, is_nested, split_samples, to_core_latent)
from jointav.errors import InputShapeError
from jointav.pipeline.packed_latent import PackedLayout
from jointav.pipeline.specs import DEFAULT_SPEC, OVI_720_5S
from jointav.pipeline.types import JointLatent
from jointav.samplers import FirstFrame, audio_latent_length

OVI = PackedLayout(48, 20, Fraction(OVI_720_5S.audio_per_video_frame))
DEFAULT = PackedLayout(16, 20, Fraction(DEFAULT_SPEC.audio_per_video_frame))


class StandInNestedTensor:
    """The parts of core's NestedTensor our code relies on."""

    def __init__(self, tensors):
        self.tensors = list(tensors)
        self.is_nested = True

    def _apply(self, other, op):
        others = other.tensors if isinstance(other, StandInNestedTensor) else [other] * len(self.tensors)
        return StandInNestedTensor([op(a, b) for a, b in zip(self.tensors, others)])

    def __add__(self, other):
        return self._apply(other, lambda a, b: a + b)

    def __sub__(self, other):
        return self._apply(other, lambda a, b: a - b)

    def __mul__(self, other):
        return self._apply(other, lambda a, b: a * b)


def _streams(layout: PackedLayout, batch=2, frames=31, h=4, w=6, seed=0):
    g = torch.Generator().manual_seed(seed)
    video = torch.randn(batch, layout.video_channels, frames, h, w, generator=g)
    audio = torch.randn(batch, layout.audio_length(frames), layout.audio_channels, generator=g)
    return video, audio


@pytest.mark.parametrize("layout,frames,h,w", [(OVI, 31, 44, 62), (OVI, 61, 60, 60), (OVI, 31, 4, 6),
                                               (DEFAULT, 7, 8, 8), (DEFAULT, 13, 8, 12), (DEFAULT, 4, 2, 2)])
def test_pack_unpack_round_trip_is_exact(layout, frames, h, w):
    video, audio = _streams(layout, batch=1 if h > 8 else 2, frames=frames, h=h, w=w)
    packed = layout.pack(video, audio)
    extra = layout.audio_frames(audio.shape[1], h, w)
    assert tuple(packed.shape) == (video.shape[0], layout.video_channels, frames + extra, h, w)
    assert layout.split(tuple(packed.shape)) == (frames, audio.shape[1], extra)
    v, a = layout.unpack(packed)
    assert torch.equal(v, video) and torch.equal(a, audio)


def test_ovi_five_seconds_is_one_audio_frame_and_padding_is_zero():
    video, audio = _streams(OVI, batch=1, frames=31, h=44, w=62)
    assert audio.shape[1] == 157 == audio_latent_length(31)
    packed = OVI.pack(video, audio)
    assert packed.shape[2] == 32  # 157·20 values fit in one 48·44·62 frame
    tail = packed[:, :, 31:].reshape(1, -1)[:, 157 * 20:]
    assert tail.abs().sum() == 0


def test_a_shape_no_video_length_fits_is_refused():
    with pytest.raises(InputShapeError, match="hold no video length"):
        OVI.split((1, 48, 1, 4, 6))
    with pytest.raises(InputShapeError, match=r"\[B, 48, F \+ Fa, H, W\]"):
        OVI.split((1, 16, 32, 4, 6))


def test_keep_masks_round_trip_through_a_core_noise_mask():
    video, audio = _streams(DEFAULT, frames=7, h=8, w=8)
    packed_shape = tuple(DEFAULT.pack(video, audio).shape)
    video_clean = torch.zeros(2, 7, dtype=torch.bool)
    video_clean[:, 0] = True
    audio_clean = torch.zeros(2, audio.shape[1], dtype=torch.bool)
    audio_clean[1, 5:9] = True
    mask = DEFAULT.pack_keep_masks(video_clean, audio_clean, packed_shape)
    v, a = DEFAULT.keep_masks(mask, packed_shape)
    assert torch.equal(v, video_clean) and torch.equal(a, audio_clean)
    assert DEFAULT.keep_masks(torch.ones(packed_shape), packed_shape) == (None, None)


def test_stream_mask_marks_video_frames_only():
    video, audio = _streams(DEFAULT, frames=7, h=8, w=8)
    packed = DEFAULT.pack(video, audio)
    mask = DEFAULT.stream_mask(tuple(packed.shape))
    assert mask.flatten().tolist() == [1.0] * 7 + [0.0] * (packed.shape[2] - 7)


def _joint(layout: PackedLayout, conditionings=()):
    video, audio = _streams(layout, batch=1, frames=7, h=8, w=8, seed=3)
    return JointLatent(video=video, audio=audio, fps=12.0, audio_sample_rate=16000, audio_samples_per_latent=512,
                       conditionings=list(conditionings), sampled=True, provenance={"seed": 3})


@pytest.mark.parametrize("nested", [None, StandInNestedTensor], ids=["packed (0.3.x)", "nested (0.38+ stand-in)"])
def test_core_latent_carries_both_streams_and_timing(nested):
    joint = _joint(DEFAULT)
    latent = to_core_latent(joint, DEFAULT, nested)
    assert latent["frame_rate"] == 12.0 and latent["sample_rate"] == 16000
    assert latent[LAYOUT_KEY]["video_frames"] == 7 and latent[LAYOUT_KEY]["audio_length"] == joint.audio.shape[1]
    assert is_nested(latent["samples"]) == (nested is not None)
    if nested is not None:
        video, audio = latent["samples"].tensors
        assert torch.equal(video, joint.video) and torch.equal(audio, joint.audio)
    back = from_core_latent(latent, "test")
    assert torch.equal(back.video, joint.video) and torch.equal(back.audio, joint.audio)
    assert back.fps == 12.0 and back.provenance == {"seed": 3}


@pytest.mark.parametrize("nested", [None, StandInNestedTensor], ids=["packed (0.3.x)", "nested (0.38+ stand-in)"])
def test_first_frame_becomes_held_values_and_a_noise_mask(nested):
    first = torch.full((1, 16, 1, 8, 8), 0.5)
    joint = _joint(DEFAULT, [FirstFrame(first)])
    latent = to_core_latent(joint, DEFAULT, nested)
    video, audio = split_samples(latent, "test")
    assert torch.equal(video[:, :, :1], first) and torch.equal(video[:, :, 1:], joint.video[:, :, 1:])
    mask = latent["noise_mask"]
    if nested is not None:
        v_mask, a_mask = mask.tensors
    else:
        v_mask, a_mask = DEFAULT.unpack(mask)
    assert v_mask[:, :, 0].abs().sum() == 0 and bool((v_mask[:, :, 1:] == 1).all()) and bool((a_mask == 1).all())


def test_stand_in_arithmetic_keeps_streams_apart():
    """What a sampler step does to a nested latent (x + d·dt) acts on each stream with its own shape."""
    joint = _joint(DEFAULT)
    x = to_core_latent(joint, DEFAULT, StandInNestedTensor)["samples"]
    step = x + x * 0.5 - x
    assert [tuple(t.shape) for t in step.tensors] == [tuple(joint.video.shape), tuple(joint.audio.shape)]
    assert torch.allclose(step.tensors[1], joint.audio * 0.5)


def test_a_latent_without_the_layout_names_the_node():
    with pytest.raises(ValueError, match="JointAV Decode Video: latent has no 'jointav_layout'"):
        from_core_latent({"samples": torch.zeros(1, 16, 3, 8, 8), "frame_rate": 12, "sample_rate": 16000},
                         "JointAV Decode Video")
