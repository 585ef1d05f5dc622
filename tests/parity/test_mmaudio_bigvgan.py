"""MMAudio VAE decoder + BigVGAN vocoder against the Ovi reference fixture, and the loaders on files made from it."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import save_file

from jointav.audio.alias_free import kaiser_sinc_filter
from jointav.audio.bigvgan import BigVGANConfig, fold_weight_norm
from jointav.audio.mmaudio_vae import MEL_MEAN_80, MEL_STD_80, MMAudioVAEConfig, decode_audio_latent
from jointav.errors import CheckpointKeyError, CheckpointKindError
from jointav.model_loader.audio_files import (infer_bigvgan_config, infer_vae_config, load_bigvgan, load_mmaudio_vae,
                                              vae_weight_form)
from jointav.parity.mmaudio_vae_bigvgan import run

from conftest import fixture_dir, load_tensors

COMPONENT = "mmaudio_vae_bigvgan"


@pytest.fixture(scope="module")
def folder():
    return fixture_dir(COMPONENT)


@pytest.fixture(scope="module")
def config(folder):
    return json.loads((folder / "config.json").read_text())["mmaudio"]


def _legacy_names(sd: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The same weight-norm tensors under the old weight_g / weight_v names (as in older best_netG.pt files)."""
    return {k.replace(".parametrizations.weight.original0", ".weight_g")
             .replace(".parametrizations.weight.original1", ".weight_v"): v for k, v in sd.items()}


def test_every_fixture_output_matches_from_both_weight_forms(folder):
    outputs = load_tensors(folder / "outputs.safetensors")
    results = run(folder)
    failures = [r.line() for r in results if not r.passed]
    assert not failures, "\n".join(failures)
    cases = {r.case for r in results}
    for form in ("raw", "effective"):
        assert {f"{form}.{name}" for name in outputs} <= cases
    assert {"raw.vae_weights_vs_effective", "raw.bigvgan_weights_vs_effective"} <= cases


def test_raw_and_effective_vae_files_differ_only_in_normalised_mpconv_weights(folder):
    raw = load_tensors(folder / "vae_weights_raw.safetensors")
    eff = load_tensors(folder / "vae_weights_effective.safetensors")
    assert raw.keys() == eff.keys()
    changed = {k for k in raw if not torch.equal(raw[k], eff[k])}
    assert changed == {k for k in raw if k.endswith(".weight") and raw[k].ndim == 3}
    assert vae_weight_form(raw) == "raw" and vae_weight_form(eff) == "effective"


def test_built_in_mel_statistics_are_the_checkpoint_ones(folder, config):
    if config["vae"]["constructor"]["data_dim"] != len(MEL_MEAN_80):
        pytest.skip("fixture VAE is not 80-band")
    raw = load_tensors(folder / "vae_weights_raw.safetensors")
    torch.testing.assert_close(raw["data_mean"].flatten(), torch.tensor(MEL_MEAN_80), atol=1e-6, rtol=0)
    torch.testing.assert_close(raw["data_std"].flatten(), torch.tensor(MEL_STD_80), atol=1e-6, rtol=0)


def test_computed_antialias_filters_equal_the_stored_buffers(folder):
    raw = load_tensors(folder / "bigvgan_weights_raw.safetensors")
    stored = {k: v for k, v in raw.items() if k.endswith(".filter")}
    assert stored
    expected = kaiser_sinc_filter(0.25, 0.3, next(iter(stored.values())).shape[-1])
    for key, value in stored.items():
        torch.testing.assert_close(value, expected, atol=1e-7, rtol=0, msg=key)


def test_conv_post_calibration_lives_in_the_stored_gain(folder):
    """The fixture scaled conv_post's g by the calibration factor before saving; folding alone reproduces the
    effective weight, so no extra factor may be applied at load or run time."""
    raw = load_tensors(folder / "bigvgan_weights_raw.safetensors")
    eff = load_tensors(folder / "bigvgan_weights_effective.safetensors")
    g = raw["conv_post.parametrizations.weight.original0"].flatten()
    folded = fold_weight_norm(raw)["conv_post.weight"]
    torch.testing.assert_close(folded, eff["conv_post.weight"])
    torch.testing.assert_close(folded.flatten(1).norm(dim=1), g)


@pytest.mark.parametrize("form", ["raw", "effective"])
def test_published_formats_load_with_config_from_shapes(folder, config, tmp_path, form):
    vae_sd = load_tensors(folder / f"vae_weights_{form}.safetensors")
    voc_sd = load_tensors(folder / f"bigvgan_weights_{form}.safetensors")
    if form == "raw":
        voc_sd = _legacy_names(voc_sd)
    torch.save(vae_sd, tmp_path / "v1-16.pth")
    torch.save({"generator": voc_sd}, tmp_path / "best_netG.pt")
    save_file(vae_sd, str(tmp_path / "vae.safetensors"))
    save_file(voc_sd, str(tmp_path / "vocoder.safetensors"))

    expected_vae = MMAudioVAEConfig.from_dict(config["vae"]["constructor"])
    expected_voc = BigVGANConfig.from_dict(config["bigvgan"]["config"])
    assert infer_vae_config(vae_sd) == expected_vae
    # Shapes fix the widths and kernels; strides (kernel = 2·stride) and dilations ((1, 3, 5)) are conventions,
    # so a config that departs from them is handed to the loader instead of being inferred.
    conventional = (expected_voc.upsample_rates == tuple(k // 2 for k in expected_voc.upsample_kernel_sizes)
                    and all(tuple(d) == (1, 3, 5) for d in expected_voc.resblock_dilation_sizes))
    voc_config = None if conventional else expected_voc
    if conventional:
        assert infer_bigvgan_config(voc_sd) == expected_voc

    z = load_tensors(folder / "inputs.safetensors")[next(iter(config["inputs"]), "z")]
    wav = load_tensors(folder / "outputs.safetensors")["wav"]
    for vae_name, voc_name in (("v1-16.pth", "best_netG.pt"), ("vae.safetensors", "vocoder.safetensors")):
        vae = load_mmaudio_vae(tmp_path / vae_name)
        vocoder = load_bigvgan(tmp_path / voc_name, config=voc_config)
        assert vae.config == expected_vae and vocoder.config == expected_voc
        got = decode_audio_latent(vae, vocoder, z.transpose(1, 2))
        torch.testing.assert_close(got, wav, atol=1e-4, rtol=1e-4, msg=f"{vae_name} + {voc_name}")


def test_other_models_files_are_refused_by_kind():
    wan = fixture_dir("wan22_vae") / "decoder_weights.safetensors"
    dit = fixture_dir("fusion_dit") / "weights.safetensors"
    with pytest.raises(CheckpointKindError, match="found a Wan video VAE.*expected a MMAudio VAE"):
        load_mmaudio_vae(wan)
    with pytest.raises(CheckpointKindError, match=r"found a diffusion transformer \(DiT\).*expected a BigVGAN"):
        load_bigvgan(dit)


def test_damaged_fixture_files_name_the_bad_key(folder, tmp_path):
    vae_sd = load_tensors(folder / "vae_weights_raw.safetensors")
    vae_sd["decoder.up.1.upsample.conv.weight"] = vae_sd["decoder.up.1.upsample.conv.weight"][:, :, :1].contiguous()
    save_file(vae_sd, str(tmp_path / "vae.safetensors"))
    with pytest.raises(CheckpointKeyError, match=r"decoder.up.1.upsample.conv.weight.* has shape"):
        load_mmaudio_vae(tmp_path / "vae.safetensors")

    voc_sd = load_tensors(folder / "bigvgan_weights_effective.safetensors")
    victim = sorted(k for k in voc_sd if k.startswith("resblocks.") and k.endswith(".act.beta"))[-1]
    del voc_sd[victim]
    save_file(voc_sd, str(tmp_path / "voc.safetensors"))
    with pytest.raises(CheckpointKeyError, match=victim.replace(".", r"\.")):
        load_bigvgan(tmp_path / "voc.safetensors")
