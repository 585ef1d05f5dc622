"""Parity of the Wan2.2 VAE against the reference fixtures (`wan22_vae/`): decode, clamped decode, encode.

Everything is read from the folder: the constructor from `config.json["wan22_vae"]`, the weights from whichever
of `decoder_weights.safetensors` / `encoder_weights.safetensors` exist, the latent statistics from the inputs,
and the cases from the outputs present. Besides the reference's own schedule (one latent frame per decoder
step) the decode is also run in larger temporal chunks and in one pass, which must agree to the same tolerance.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import torch
from safetensors.torch import load_file

from ..model_loader.wan_vae_files import infer_wan_vae_config
from ..models.wan_vae import WAN22_LATENT_MEAN, WAN22_LATENT_STD, WanVAE, WanVAEConfig
from . import CaseResult, compare

COMPONENT = "wan22_vae"


def _config(spec: dict, inputs: dict[str, torch.Tensor]) -> WanVAEConfig:
    config = WanVAEConfig.from_dict(spec["constructor"])
    if "scale_mean" in inputs and "scale_inv_std" in inputs:
        # The fixture states the statistics it used; 1/(1/std) in float64 returns std to well below 1e-6.
        std = (1.0 / inputs["scale_inv_std"].double()).tolist()
        config = dataclasses.replace(config, latent_mean=tuple(inputs["scale_mean"].tolist()), latent_std=tuple(std))
    return config


def _statistics_cases(inputs: dict[str, torch.Tensor]) -> list[CaseResult]:
    """Our built-in Wan2.2 latent statistics against the ones the fixture used (when it has 48 channels)."""
    if "scale_mean" not in inputs or inputs["scale_mean"].numel() != len(WAN22_LATENT_MEAN):
        return []
    return [
        compare(COMPONENT, "latent_mean", torch.tensor(WAN22_LATENT_MEAN), inputs["scale_mean"]),
        compare(COMPONENT, "latent_inv_std", 1.0 / torch.tensor(WAN22_LATENT_STD), inputs["scale_inv_std"]),
    ]


def _config_case(weights: dict[str, torch.Tensor], config: WanVAEConfig) -> CaseResult:
    """The loader must read the constructor back off the tensor shapes."""
    inferred = infer_wan_vae_config(weights, "fixture weights")
    names = ("dim", "dec_dim", "z_dim", "dim_mult", "num_res_blocks", "temperal_downsample")
    off = [f"{n}: inferred {getattr(inferred, n)} vs {getattr(config, n)}"
           for n in names if getattr(inferred, n) != getattr(config, n)]
    return CaseResult(COMPONENT, "config_from_shapes", 0.0 if not off else float("inf"), 0.0 if not off else float("inf"),
                      not off, "; ".join(off))


def run(folder: Path) -> list[CaseResult]:
    folder = Path(folder)
    spec = json.loads((folder / "config.json").read_text())[COMPONENT]
    inputs = load_file(str(folder / "inputs.safetensors"))
    expected = load_file(str(folder / "outputs.safetensors"))
    weights: dict[str, torch.Tensor] = {}
    for name in ("decoder_weights.safetensors", "encoder_weights.safetensors"):
        if (folder / name).is_file():
            weights.update(load_file(str(folder / name)))
    has_dec, has_enc = "conv2.weight" in weights, "conv1.weight" in weights
    parts = "both" if has_dec and has_enc else ("decoder" if has_dec else "encoder")

    config = _config(spec, inputs)
    model = WanVAE(config, parts=parts).eval()
    model.load_state_dict(weights, strict=True)
    results = _statistics_cases(inputs) + [_config_case(weights, config)]

    z = inputs.get("z")
    cases = {
        "decoded_raw": lambda: model.decode(z),
        "decoded_clamped": lambda: model.decode(z, clamp=True),
        "encoded_mu": lambda: model.encode(inputs["video"]),
        "encoded_image_mu": lambda: model.encode_image(inputs["image"]),
    }
    needs = {"decoded_raw": "z", "decoded_clamped": "z", "encoded_mu": "video", "encoded_image_mu": "image"}
    for name, target in expected.items():
        if name not in cases:
            results.append(CaseResult(COMPONENT, name, float("inf"), float("inf"), False, "no runner for this output"))
            continue
        part_ok = has_dec if name.startswith("decoded") else has_enc
        if needs[name] not in inputs or not part_ok:
            results.append(CaseResult(COMPONENT, name, float("inf"), float("inf"), False,
                                      f"fixture lacks input '{needs[name]}' or the weights of that half"))
            continue
        results.append(compare(COMPONENT, name, cases[name](), target))
    if "decoded_raw" in expected and z is not None and has_dec:
        # Temporal chunking is exact: every chunk size, up to the whole clip in one pass, gives the same video.
        frames = z.shape[2]
        for chunk in sorted({2, 3, frames} - {1}):
            if chunk <= frames:
                label = "whole" if chunk == frames else str(chunk)
                results.append(compare(COMPONENT, f"decoded_raw[chunk_frames={label}]",
                                       model.decode(z, chunk_frames=chunk), expected["decoded_raw"]))
    return results
