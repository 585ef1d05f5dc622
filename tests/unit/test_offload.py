"""Block swap / offload: bit-identical forwards for every policy, and the bookkeeping of what is resident."""

from __future__ import annotations

import copy

import pytest
import torch

from jointav.errors import InputValueError
from jointav.models.offload import BlockSwap, OffloadPolicy, attach_offload, find_block_swap, parse_offload

from .test_fusion_dit import TINY, _batch, _model


def _weight_bytes(module: torch.nn.Module) -> int:
    return sum(p.numel() * p.element_size() for p in module.parameters())


@pytest.fixture(scope="module")
def plain():
    return _model(seed=3)


@pytest.fixture(scope="module")
def inputs():
    return _batch()


def _forward(model, inputs, skip=None):
    video, audio, t, vctx, actx = inputs
    with torch.no_grad():
        return model(video, audio, t, vctx, actx, skip_layer=skip)


@pytest.mark.parametrize("policy", ["cpu", "blocks 1", "blocks 2", "blocks 3"])
@pytest.mark.parametrize("skip", [None, 1])
def test_swapped_forward_is_bit_identical_to_the_plain_one(plain, inputs, policy, skip):
    expected = _forward(plain, inputs, skip)
    model = copy.deepcopy(plain)
    attach_offload(model, policy, compute="cpu", storage="cpu")
    got = _forward(model, inputs, skip)
    with find_block_swap(model).session():  # and inside a sampling session, twice
        for _ in range(2):
            again = _forward(model, inputs, skip)
            assert all(torch.equal(a, b) for a, b in zip(again, expected))
    assert all(torch.equal(a, b) for a, b in zip(got, expected))


def test_blocks_are_loaded_ahead_and_released_after_use(plain, inputs):
    events = []
    model = copy.deepcopy(plain)
    swap = BlockSwap(model, "blocks 2", compute="cpu", log=lambda *e: events.append(e))
    _forward(model, inputs)
    video = [(kind, i) for kind, tower, i in events if tower == "video"]
    # block 0 is resident; block 1 is copied while block 0 runs, block 2 while block 1 runs
    assert video == [("load", 1), ("ready", 1), ("load", 2), ("release", 1), ("ready", 2), ("release", 2)]
    assert {i for _, tower, i in events if tower == "audio"} == {1, 2}
    assert swap.resident_bytes == 0  # nothing stays on the compute device after a forward outside a session


def test_peak_resident_bytes_are_the_placed_part_plus_two_streamed_blocks(plain, inputs):
    model = copy.deepcopy(plain)
    total = _weight_bytes(model)
    block = _weight_bytes(model.video_model.blocks[0]) + _weight_bytes(model.audio_model.blocks[0])
    swap = BlockSwap(model, "cpu", compute="cpu")
    _forward(model, inputs)
    non_block = total - TINY.num_layers * block
    # one block pair in use and the next one in flight, per tower: at most two pairs at once
    assert swap.peak_resident_bytes == non_block + 2 * block
    assert swap.peak_resident_bytes < total

    model = copy.deepcopy(plain)
    swap = BlockSwap(model, "blocks 1", compute="cpu")
    _forward(model, inputs)
    assert swap.peak_resident_bytes == total - TINY.num_layers * block + 3 * block


@pytest.mark.parametrize("policy", ["cpu", "blocks 1", "blocks 2"])
def test_placement_bytes_announce_the_peak_before_any_forward(plain, inputs, policy):
    # what the JointAV Sampler asks ComfyUI to free before a block-swap run: known before sampling, and what
    # the run then really peaks at (with every block streamed, less than the whole model)
    model = copy.deepcopy(plain)
    swap = BlockSwap(model, policy, compute="cpu")
    announced = swap.placement_bytes()
    with swap.session():
        _forward(model, inputs)
    assert announced == swap.peak_resident_bytes <= _weight_bytes(model)
    if policy == "cpu":
        assert announced < _weight_bytes(model)


def test_a_forward_that_raises_leaves_nothing_on_the_compute_device(plain, inputs):
    model = copy.deepcopy(plain)
    swap = BlockSwap(model, "cpu", compute="cpu")
    video, audio, t, vctx, actx = inputs
    with pytest.raises(InputValueError):
        model(video, audio, t, vctx, actx, skip_layer=99)
    assert swap.resident_bytes == 0
    assert all(torch.equal(a, b) for a, b in zip(_forward(model, inputs), _forward(plain, inputs)))


def test_state_dict_keys_and_plain_iteration_are_unchanged(plain):
    model = copy.deepcopy(plain)
    BlockSwap(model, "cpu", compute="cpu")
    assert list(model.state_dict()) == list(plain.state_dict())
    assert len(list(model.video_model.blocks)) == TINY.num_layers


@pytest.mark.parametrize("text, expected", [("none", OffloadPolicy("none")), ("cpu", OffloadPolicy("cpu")),
                                            (" Blocks 12 ", OffloadPolicy("blocks", 12))])
def test_offload_policies_parse(text, expected):
    assert parse_offload(text) == expected


@pytest.mark.parametrize("text", ["gpu", "blocks 0", "blocks -1", "blocks", "blocks 2.5"])
def test_bad_offload_values_are_named(text):
    with pytest.raises(InputValueError, match="offload: got .* expected 'none', 'cpu' or 'blocks N'"):
        parse_offload(text)


def test_more_streamed_blocks_than_the_model_has_is_an_error(plain):
    with pytest.raises(InputValueError, match=r"blocks 9.*model's 3"):
        BlockSwap(copy.deepcopy(plain), "blocks 9", compute="cpu")


def test_sampling_with_block_swap_gives_the_same_latents_and_leaves_the_shared_model_alone():
    from jointav.pipeline import api

    plain = api.load_joint_model(None, device="cpu")
    swapped = api.load_joint_model(None, device="cpu", offload="blocks 2")
    assert swapped.offload == "blocks 2" and find_block_swap(swapped.dit) is not None
    assert find_block_swap(plain.dit) is None  # the embedded model is shared: it was copied, not rewired
    conditioning = api.encode_prompt(plain, "a red ball bounces", "", "thud")
    latent = api.empty_latent(plain, "1s", 32, 32)
    a = api.sample(plain, conditioning, latent, seed=1, steps=2)
    b = api.sample(swapped, conditioning, latent, seed=1, steps=2)
    assert torch.equal(a.video, b.video) and torch.equal(a.audio, b.audio)
    assert find_block_swap(swapped.dit).resident_bytes == 0  # all copies dropped when sampling ends


def test_load_model_refuses_an_unknown_offload_naming_it():
    from jointav.pipeline import api

    with pytest.raises(InputValueError, match="offload: got 'gpu'"):
        api.load_joint_model(None, device="cpu", offload="gpu")
