"""Wan2.2 VAE on a tiny random-weight model: chunked decoding is exact, inputs are checked, files load or fail clearly."""

from __future__ import annotations

import argparse
import dataclasses

import pytest
import torch
from safetensors.torch import save_file

from jointav.errors import CheckpointFileError, CheckpointKeyError, CheckpointKindError, InputShapeError, InputValueError
from jointav.model_loader.wan_vae_files import infer_wan_vae_config, load_wan_vae
from jointav.models.wan_vae import SpatialTiling, WanVAE, WanVAEConfig, blend_weights

TINY = WanVAEConfig(dim=4, dec_dim=4)


def _randomize(model: WanVAE, seed: int) -> WanVAE:
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("gamma"):
                p.copy_(1 + 0.1 * torch.randn(p.shape, generator=g))
            elif name.endswith("bias"):
                p.copy_(0.05 * torch.randn(p.shape, generator=g))
            else:
                p.copy_(torch.randn(p.shape, generator=g) / (p[0].numel() ** 0.5))
    return model.eval()


@pytest.fixture(scope="module")
def vae() -> WanVAE:
    return _randomize(WanVAE(TINY), 0)


@pytest.fixture(scope="module")
def latent() -> torch.Tensor:
    return torch.randn(1, 48, 5, 2, 3, generator=torch.Generator().manual_seed(1))


@pytest.fixture(scope="module")
def whole(vae, latent) -> torch.Tensor:
    return vae.decode(latent, chunk_frames=latent.shape[2])


def test_decode_gives_one_plus_four_frames_per_latent_at_16x(vae, whole):
    assert whole.shape == (1, 3, 1 + 4 * 4, 32, 48)
    assert torch.isfinite(whole).all()


@pytest.mark.parametrize("chunk", [1, 2, 3, 5])
def test_chunked_decode_equals_whole_clip(vae, latent, whole, chunk):
    pieces = list(vae.iter_decode(latent, chunk_frames=chunk))
    # frame counts of the causal schedule: 1 + 4(n-1) for the first chunk, 4n after
    sizes = [min(chunk, 5 - s) for s in range(0, 5, chunk)]
    assert [p.shape[2] for p in pieces] == [1 + 4 * (sizes[0] - 1)] + [4 * n for n in sizes[1:]]
    video = torch.cat(pieces, dim=2)
    assert (video - whole).abs().max() < 1e-4


def test_decode_writes_into_a_preallocated_output(vae, latent, whole):
    out = torch.full(vae.output_shape(latent.shape), float("nan"))
    got = vae.decode(latent, chunk_frames=2, out=out)
    assert got is out
    assert (out - whole).abs().max() < 1e-4


def test_batch_items_decode_and_encode_independently(vae, latent):
    pair = torch.cat([latent[:, :, :2], -latent[:, :, :2]])
    video = vae.decode(pair, chunk_frames=2)
    assert (video[1:] - vae.decode(-latent[:, :, :2])).abs().max() < 1e-4
    mu = vae.encode(video.clamp(-1, 1))
    assert mu.shape == (2, 48, 2, 2, 3)
    assert (mu[:1] - vae.encode(video[:1].clamp(-1, 1))).abs().max() < 1e-4


def test_decode_clamp_limits_to_unit_range(vae, latent, whole):
    clamped = vae.decode(latent, clamp=True)
    assert clamped.min() >= -1 and clamped.max() <= 1
    assert torch.allclose(clamped, whole.clamp(-1, 1), atol=1e-4)


def test_decoding_is_causal_so_a_prefix_decodes_to_the_same_frames(vae, latent, whole):
    prefix = vae.decode(latent[:, :, :3])
    assert (prefix - whole[:, :, : prefix.shape[2]]).abs().max() < 1e-4


def test_raw_and_normalized_latents_decode_alike(vae, latent, whole):
    raw = vae.denormalize_latent(latent)
    assert torch.allclose(vae.normalize_latent(raw), latent, atol=1e-5)
    assert (vae.decode(raw, normalized=False, chunk_frames=5) - whole).abs().max() < 1e-4


def test_encode_shapes_and_first_frame_equals_image_encode(vae):
    video = torch.rand(1, 3, 9, 32, 48, generator=torch.Generator().manual_seed(2)) * 2 - 1
    mu = vae.encode(video)
    assert mu.shape == (1, 48, 3, 2, 3) and mu.dtype == torch.float32
    image_mu = vae.encode_image(video[:, :, 0])
    assert image_mu.shape == (1, 48, 1, 2, 3)
    assert (mu[:, :, :1] - image_mu).abs().max() < 1e-4


def test_single_tile_equals_untiled_decode(vae, latent, whole):
    tiled = vae.decode(latent, chunk_frames=5, tiling=SpatialTiling(tile=8, overlap=2))
    assert torch.equal(tiled, whole)


def test_tiled_decode_is_still_exact_across_temporal_chunks(vae, latent):
    tiling = SpatialTiling(tile=2, overlap=1)
    per_frame = vae.decode(latent, tiling=tiling)
    one_pass = vae.decode(latent, tiling=tiling, chunk_frames=5)
    assert per_frame.shape == (1, 3, 17, 32, 48)
    assert (per_frame - one_pass).abs().max() < 1e-4


@pytest.mark.parametrize("size,tile,overlap", [(3, 2, 1), (10, 4, 1), (11, 4, 2), (44, 16, 4), (80, 16, 4)])
def test_tiles_cover_the_frame_and_blend_weights_sum_to_one(size, tile, overlap):
    spans = SpatialTiling(tile, overlap).spans(size)
    assert spans[0][0] == 0 and spans[-1][1] == size
    assert all(b[0] <= a[1] - overlap for a, b in zip(spans, spans[1:]))  # neighbours share >= overlap
    weights = blend_weights(spans, 16)
    total = torch.zeros(size * 16, dtype=torch.float64)
    for (start, _), w in zip(spans, weights):
        assert (w > 0).all()
        total[start * 16 : start * 16 + len(w)] += w
    assert torch.allclose(total, torch.ones_like(total))


def test_tiling_rejects_overlap_not_smaller_than_tile():
    with pytest.raises(InputValueError, match="overlap"):
        SpatialTiling(tile=4, overlap=4)


# ---- input checks --------------------------------------------------------------------------------------------


def test_wan21_width_latent_is_refused_with_found_and_expected(vae):
    with pytest.raises(InputShapeError, match=r"16 latent channels.*expected 48"):
        vae.decode(torch.zeros(1, 16, 3, 2, 2))


def test_audio_latent_given_to_video_decoder_is_refused(vae):
    with pytest.raises(InputShapeError, match=r"audio latent.*\[B, 48, T"):
        vae.decode(torch.zeros(1, 157, 20))


@pytest.mark.parametrize("bad,word", [(float("nan"), "1 NaN"), (float("inf"), "1 inf")])
def test_non_finite_latent_is_refused(vae, latent, bad, word):
    z = latent.clone()
    z[0, 3, 1, 0, 0] = bad
    with pytest.raises(InputValueError, match=word):
        vae.decode(z)


def test_bad_chunk_size_and_out_shape_are_refused(vae, latent):
    with pytest.raises(InputValueError, match="chunk_frames"):
        vae.iter_decode(latent, chunk_frames=0)
    with pytest.raises(InputShapeError, match="out has shape"):
        vae.decode(latent, out=torch.empty(1, 3, 16, 32, 48))


def test_video_with_wrong_frame_count_or_size_is_refused(vae):
    with pytest.raises(InputShapeError, match=r"1\+4k"):
        vae.encode(torch.zeros(1, 3, 6, 32, 48))
    with pytest.raises(InputShapeError, match="multiples of 16"):
        vae.encode(torch.zeros(1, 3, 5, 30, 48))


def test_video_in_0_255_range_is_refused(vae):
    with pytest.raises(InputValueError, match=r"expected \[-1, 1\]"):
        vae.encode(torch.full((1, 3, 1, 32, 32), 200.0))


def test_half_built_model_says_which_half_is_missing():
    decoder_only = WanVAE(TINY, parts="decoder")
    assert not hasattr(decoder_only, "encoder")
    with pytest.raises(InputValueError, match="parts='decoder'"):
        decoder_only.encode(torch.zeros(1, 3, 1, 32, 32))


# ---- checkpoint files ----------------------------------------------------------------------------------------


def _state(model: WanVAE) -> dict[str, torch.Tensor]:
    return {k: v.clone() for k, v in model.state_dict().items()}


@pytest.mark.parametrize("layout", ["pth", "legacy_pth", "comfy_safetensors", "prefixed_safetensors"])
def test_published_layouts_load_and_decode_the_same(tmp_path, vae, latent, whole, layout):
    sd = _state(vae)
    if layout == "pth":
        path = tmp_path / "Wan2.2_VAE.pth"
        torch.save(sd, path)
    elif layout == "legacy_pth":
        path = tmp_path / "Wan2.2_VAE.pth"
        torch.save(sd, path, _use_new_zipfile_serialization=False)
    elif layout == "comfy_safetensors":
        path = tmp_path / "wan2.2_vae.safetensors"
        save_file(sd, str(path))
    else:
        path = tmp_path / "bundle.safetensors"
        save_file({"first_stage_model." + k: v for k, v in sd.items()} | {"model.other.weight": torch.zeros(1)}, str(path))
    loaded = load_wan_vae(path, parts="decoder")
    assert loaded.parts == "decoder" and loaded.config == TINY
    assert (loaded.decode(latent, chunk_frames=5) - whole).abs().max() < 1e-4
    both = load_wan_vae(path)
    image = torch.rand(1, 3, 16, 16, generator=torch.Generator().manual_seed(3)) * 2 - 1
    assert torch.allclose(both.encode_image(image), vae.encode_image(image), atol=1e-5)


def test_config_is_read_off_tensor_shapes_for_either_half():
    config = WanVAEConfig(dim=6, dec_dim=5, num_res_blocks=1, temperal_downsample=(True, False, True))
    sd = WanVAE(config).state_dict()
    assert infer_wan_vae_config(sd) == config
    decoder = infer_wan_vae_config({k: v for k, v in sd.items() if k.startswith(("decoder.", "conv2."))})
    assert (decoder.dec_dim, decoder.num_res_blocks, decoder.temperal_downsample) == (5, 1, (True, False, True))
    encoder = infer_wan_vae_config({k: v for k, v in sd.items() if k.startswith(("encoder.", "conv1."))})
    assert dataclasses.replace(encoder, dec_dim=5) == config


def test_decoder_only_file_cannot_give_an_encoder(tmp_path, vae):
    path = tmp_path / "decoder.safetensors"
    save_file({k: v for k, v in _state(vae).items() if k.startswith(("decoder.", "conv2."))}, str(path))
    assert load_wan_vae(path, parts="decoder").parts == "decoder"
    with pytest.raises(CheckpointKeyError, match="holds only the decoder"):
        load_wan_vae(path, parts="both")


def _wan21_fake() -> dict[str, torch.Tensor]:
    # The Wan2.1 layout: 16 latent channels, flat `decoder.upsamples.N` stages.
    return {
        "conv1.weight": torch.zeros(32, 32, 1, 1, 1),
        "conv2.weight": torch.zeros(16, 16, 1, 1, 1),
        "decoder.conv1.weight": torch.zeros(384, 16, 3, 3, 3),
        "decoder.middle.0.residual.0.gamma": torch.ones(384, 1, 1, 1),
        "decoder.upsamples.0.residual.0.gamma": torch.ones(384, 1, 1, 1),
        "encoder.conv1.weight": torch.zeros(96, 3, 3, 3, 3),
    }


def test_wan21_vae_file_is_refused_as_another_kind(tmp_path):
    path = tmp_path / "wan_2.1_vae.safetensors"
    save_file(_wan21_fake(), str(path))
    with pytest.raises(CheckpointKindError, match=r"Wan2\.1 VAE \(16 latent channels.*expected a Wan2\.2 VAE"):
        load_wan_vae(path)


def test_dit_checkpoint_is_refused_as_another_kind(tmp_path):
    path = tmp_path / "model.safetensors"
    dit = {"blocks.0.self_attn.q.weight": torch.zeros(4, 4), "patch_embedding.weight": torch.zeros(4, 48, 1, 2, 2)}
    save_file(dit, str(path))
    with pytest.raises(CheckpointKindError, match="diffusion transformer"):
        load_wan_vae(path)


def test_missing_and_misshaped_tensors_are_named(tmp_path, vae):
    sd = _state(vae)
    key = "decoder.upsamples.1.upsamples.2.residual.6.weight"
    missing = {k: v for k, v in sd.items() if k != key}
    save_file(missing, str(tmp_path / "missing.safetensors"))
    with pytest.raises(CheckpointKeyError, match=f"missing tensor '{key}'"):
        load_wan_vae(tmp_path / "missing.safetensors")
    bad = dict(sd, **{"decoder.middle.1.proj.bias": torch.zeros(7)})
    save_file(bad, str(tmp_path / "bad.safetensors"))
    with pytest.raises(CheckpointKeyError, match=r"'decoder.middle.1.proj.bias' has shape \(7,\), expected \(16,\)"):
        load_wan_vae(tmp_path / "bad.safetensors")


def test_unreadable_missing_and_unsafe_files_are_file_errors(tmp_path):
    with pytest.raises(CheckpointFileError, match="absent.safetensors: checkpoint file not found"):
        load_wan_vae(tmp_path / "absent.safetensors")
    junk = tmp_path / "junk.safetensors"
    junk.write_bytes(b"\x00not a checkpoint at all")
    with pytest.raises(CheckpointFileError, match=r"junk.safetensors: not a checkpoint.*expected a safetensors file"):
        load_wan_vae(junk)
    unsafe = tmp_path / "unsafe.pth"
    torch.save({"weights": torch.zeros(1), "config": argparse.Namespace(dim=4)}, unsafe)  # needs a non-tensor class
    with pytest.raises(CheckpointFileError, match="weights-only"):
        load_wan_vae(unsafe)


def test_outputs_are_ordinary_tensors_that_callers_may_edit_in_place(vae, latent):
    mu = vae.encode_image(torch.zeros(1, 3, 16, 16))
    mu[:, :, :1] = 0  # e.g. masked first-frame conditioning edits the latent in place
    chunk = next(iter(vae.iter_decode(latent)))
    chunk.clamp_(-1, 1)
    assert not mu.requires_grad and not chunk.requires_grad
