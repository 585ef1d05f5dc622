"""Wan2.2 VAE against the Ovi reference fixtures, directly and through the checkpoint loader."""

from __future__ import annotations

import pytest
import torch
from safetensors.torch import save_file

from jointav.model_loader.wan_vae_files import load_wan_vae
from jointav.parity import TOLERANCE
from jointav.parity.wan22_vae import run

from conftest import fixture_dir, load_tensors


def test_every_wan22_vae_case_matches_the_reference():
    folder = fixture_dir("wan22_vae")
    results = run(folder)
    report = "\n".join(r.line() for r in results)
    assert all(r.passed for r in results), report
    names = {r.case for r in results}
    assert set(load_tensors(folder / "outputs.safetensors")) <= names, report


@pytest.fixture(scope="module")
def fixture():
    folder = fixture_dir("wan22_vae")
    weights = {}
    for name in ("decoder_weights.safetensors", "encoder_weights.safetensors"):
        weights.update(load_tensors(folder / name))
    return weights, load_tensors(folder / "inputs.safetensors"), load_tensors(folder / "outputs.safetensors")


@pytest.mark.parametrize("layout", ["Wan2.2_VAE.pth", "wan2.2_vae.safetensors"])
def test_reference_weights_load_from_published_file_layouts(tmp_path, fixture, layout):
    weights, inputs, outputs = fixture
    path = tmp_path / layout
    if layout.endswith(".pth"):
        torch.save(weights, path)
    else:
        save_file(weights, str(path))  # ComfyUI's repackaged file keeps the reference key names
    decoder = load_wan_vae(path, parts="decoder")
    torch.testing.assert_close(decoder.decode(inputs["z"], clamp=True), outputs["decoded_clamped"],
                               atol=TOLERANCE, rtol=TOLERANCE)
    encoder = load_wan_vae(path, parts="encoder")
    torch.testing.assert_close(encoder.encode(inputs["video"]), outputs["encoded_mu"], atol=TOLERANCE, rtol=TOLERANCE)
