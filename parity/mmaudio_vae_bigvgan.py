"""Parity of the MMAudio VAE decoder and BigVGAN vocoder with the reference fixture `mmaudio_vae_bigvgan/`.

The models are built from config.json (VAE constructor, BigVGAN config); each weight form the folder holds
(`*_weights_raw` as a checkpoint stores them, `*_weights_effective` after the reference's one-time
re-normalisation / weight-norm removal) is loaded through this package's loaders and run on the stored
input latent. Compared per form: every tensor of outputs.safetensors (mel = VAE decode; wav = the public
`decode_audio_latent` on the latent in the DiT layout), the vocoder alone on the reference mel, and the
weights our loader derives from the raw files against the effective files.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from safetensors.torch import load_file

from . import CaseResult, compare
from ..audio.bigvgan import BigVGANConfig, BigVGANVocoder
from ..audio.mmaudio_vae import MMAudioVAE, MMAudioVAEConfig, decode_audio_latent
from ..model_loader.audio_files import apply_bigvgan_weights, apply_vae_weights, vae_weight_form

COMPONENT = "mmaudio_vae_bigvgan"
FORMS = ("raw", "effective")


def _build(folder: Path, cfg: dict, form: str) -> tuple[MMAudioVAE, BigVGANVocoder, CaseResult]:
    """Models loaded with the form the file name states, and whether auto-detection agrees with it."""
    vae = MMAudioVAE(MMAudioVAEConfig.from_dict(cfg["vae"]["constructor"]))
    vocoder = BigVGANVocoder(BigVGANConfig.from_dict(cfg["bigvgan"]["config"]))
    vae_file = folder / f"vae_weights_{form}.safetensors"
    voc_file = folder / f"bigvgan_weights_{form}.safetensors"
    vae_sd = load_file(str(vae_file))
    detected = vae_weight_form(vae_sd, str(vae_file))
    detection = CaseResult(COMPONENT, f"{form}.vae_weight_form_detected", 0.0, 0.0, detected == form,
                           "" if detected == form else f"detected {detected!r}")
    apply_vae_weights(vae, vae_sd, source=str(vae_file), weight_form=form)
    apply_bigvgan_weights(vocoder, load_file(str(voc_file)), source=str(voc_file))
    return vae.eval(), vocoder.eval(), detection


def _flat(state: dict[str, torch.Tensor], keys: list[str]) -> torch.Tensor:
    return torch.cat([state[k].detach().reshape(-1).to(torch.float64) for k in keys])


def _weight_cases(folder: Path, models: dict[str, tuple[MMAudioVAE, BigVGANVocoder]]) -> list[CaseResult]:
    """The weights loaded from the raw files vs the reference's effective files, all tensors at once."""
    results = []
    for index, prefix in enumerate(("vae", "bigvgan")):
        expected = load_file(str(folder / f"{prefix}_weights_effective.safetensors"))
        got = models["raw"][index].state_dict()
        keys = sorted(k for k in got if k in expected)
        missing = sorted(k for k in got if k not in expected)
        result = compare(COMPONENT, f"raw.{prefix}_weights_vs_effective", _flat(got, keys), _flat(expected, keys))
        if missing:
            result.passed = False
            result.detail = f"{len(missing)} loaded tensors absent from the effective file, e.g. {missing[0]}"
        results.append(result)
    return results


def run(folder: Path) -> list[CaseResult]:
    folder = Path(folder)
    cfg = json.loads((folder / "config.json").read_text())["mmaudio"]
    inputs = load_file(str(folder / "inputs.safetensors"))
    outputs = load_file(str(folder / "outputs.safetensors"))
    z_name = next(iter(cfg.get("inputs", {})), "z")
    z = inputs[z_name]

    results: list[CaseResult] = []
    models = {}
    with torch.no_grad():
        for form in FORMS:
            vae, vocoder, detection = _build(folder, cfg, form)
            models[form] = (vae, vocoder)
            results.append(detection)
            # wav goes through the public entry point: the DiT layout [B, L, C], transposed inside
            produced = {"mel": vae.decode(z), "wav": decode_audio_latent(vae, vocoder, z.transpose(1, 2))}
            for name, expected in outputs.items():
                if name in produced:
                    results.append(compare(COMPONENT, f"{form}.{name}", produced[name], expected))
                else:
                    results.append(CaseResult(COMPONENT, f"{form}.{name}", float("inf"), float("inf"), False,
                                              f"no producer for fixture output {name!r}"))
            if "wav" in outputs and "mel" in outputs:
                # the vocoder alone, so a VAE error cannot hide or cause a vocoder result
                results.append(compare(COMPONENT, f"{form}.wav_from_reference_mel", vocoder(outputs["mel"]),
                                       outputs["wav"]))
    results.extend(_weight_cases(folder, models))
    return results
