"""The embedded default model: every part of the pipeline at toy size in one safetensors bundle.

The bundle holds the DiT, its text encoder and the three decoders under the prefixes `dit.`,
`text_encoder.`, `video_vae.`, `audio_vae.` and `vocoder.`, with their configs as JSON in the file's
metadata. When no trained bundle ships in `default_model/`, a seeded random model of the same classes
and sizes stands in, so the whole pipeline still runs end to end (its clips are noise-like, not scenes).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import save_file

from ..audio.bigvgan import BigVGANConfig, BigVGANVocoder
from ..audio.mmaudio_vae import MMAudioVAE, MMAudioVAEConfig
from ..errors import CheckpointFileError, CheckpointKindError
from ..model_loader.audio_files import apply_vae_weights
from ..models.config import FusionConfig, TowerConfig
from ..models.fusion_dit import FusionDiT
from ..models.toy_text_encoder import ToyTextEncoder, ToyTextEncoderConfig
from ..models.wan_vae import WanVAE, WanVAEConfig
from .specs import DEFAULT_SPEC

BUNDLE_METADATA_KEY = "jointav_bundle"
BUNDLE_DIR = Path(__file__).resolve().parents[1] / "default_model"
BUNDLE_NAME = "jointav-default.safetensors"
PARTS = ("dit", "text_encoder", "video_vae", "audio_vae", "vocoder")


@dataclass
class DefaultParts:
    dit: FusionDiT
    text_encoder: ToyTextEncoder
    video_vae: WanVAE
    audio_vae: MMAudioVAE
    vocoder: BigVGANVocoder
    name: str


def default_configs(dit_layers: int = 4) -> dict:
    """Sizes of the embedded model (the random stand-in and the training script both start here); `dit_layers`:
    blocks per DiT tower (a bundle records its own, so a deeper trained DiT loads by its configs)."""
    text = ToyTextEncoderConfig()
    audio_rope = float(1 / DEFAULT_SPEC.audio_per_video_frame)  # audio latent i sits at video latent frame i*this
    z = DEFAULT_SPEC.video_latent_channels
    # Patch 1x2x2 over the 8x8 latent (16 tokens a frame, as Ovi's 2x2 patch): at 4x4 a whole frame was four
    # tokens, and a small subject's colour and place had to survive being averaged over a quarter of it.
    patch = DEFAULT_SPEC.spatial_patch
    video = TowerConfig(patch_size=(1, patch, patch), in_dim=z, out_dim=z, dim=128, ffn_dim=256, num_heads=4,
                        num_layers=dit_layers,
                        text_len=text.max_tokens, text_dim=text.text_dim)
    audio = TowerConfig(patch_size=(1,), in_dim=20, out_dim=20, dim=128, ffn_dim=256, num_heads=4,
                        num_layers=dit_layers,
                        text_len=text.max_tokens, text_dim=text.text_dim, temporal_rope_scaling_factor=audio_rope)
    # Wan2.2 blocks at toy width, one stage fewer (8x space, 4x time): at 16x a VAE this narrow could not learn
    # to place a 12-pixel object in the training budget; at widths 8/16 it still blurred it (61% of round trips
    # kept the colour). The trained bundle carries its own latent statistics.
    video_vae = WanVAEConfig(dim=16, dec_dim=32, z_dim=z, dim_mult=(1, 2, 2), num_res_blocks=1,
                             temperal_downsample=(True, True), latent_mean=(0.0,) * z, latent_std=(1.0,) * z)
    # 256 samples per mel frame in four upsampling stages instead of six, so the last stage keeps 8 channels.
    vocoder = BigVGANConfig(upsample_initial_channel=128, upsample_rates=(8, 4, 4, 2),
                            upsample_kernel_sizes=(16, 8, 8, 4), resblock_kernel_sizes=(3,),
                            resblock_dilation_sizes=((1, 3, 5),))
    return {
        "dit": FusionConfig(video=video, audio=audio).to_dict(),
        "text_encoder": text.to_dict(),
        "video_vae": video_vae.to_dict(),
        "audio_vae": MMAudioVAEConfig(hidden_dim=16).to_dict(),
        "vocoder": vocoder.to_dict(),
    }


def _build(configs: dict) -> DefaultParts:
    return DefaultParts(
        dit=FusionDiT(FusionConfig.from_dict(configs["dit"])),
        text_encoder=ToyTextEncoder(ToyTextEncoderConfig.from_dict(configs["text_encoder"])),
        video_vae=WanVAE(WanVAEConfig.from_dict(configs["video_vae"])),
        audio_vae=MMAudioVAE(MMAudioVAEConfig.from_dict(configs["audio_vae"])),
        vocoder=BigVGANVocoder(BigVGANConfig.from_dict(configs["vocoder"])),
        name="",
    )


def random_default(seed: int = 0) -> DefaultParts:
    """A seeded random model of the default's classes and sizes (the stand-in until a trained bundle ships)."""
    configs = default_configs()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        parts = _build(configs)
        # MMAudio keeps its conv weights normalised; a fresh init must pass through the same step as a file.
        apply_vae_weights(parts.audio_vae, parts.audio_vae.state_dict(), source="random init", weight_form="raw")
        for module in (parts.dit.video_model.head.head, parts.dit.audio_model.head.head):
            # A random head would dominate the velocity; keep the stand-in's outputs at unit scale.
            torch.nn.init.normal_(module.weight, std=0.02)
    for module in _modules(parts):
        module.eval().requires_grad_(False)
    parts.name = f"jointav-default (random stand-in, seed {seed})"
    return parts


def _modules(parts: DefaultParts) -> list[torch.nn.Module]:
    return [getattr(parts, p) for p in PARTS]


def save_bundle(parts: DefaultParts, path: str | os.PathLike, configs: dict, extra: dict | None = None) -> Path:
    """Write every part into one safetensors file (temporary name, then renamed into place)."""
    path = Path(path)
    tensors = {}
    for prefix in PARTS:
        for key, value in getattr(parts, prefix).state_dict().items():
            tensors[f"{prefix}.{key}"] = value.detach().contiguous().cpu()
    meta = {BUNDLE_METADATA_KEY: json.dumps({"configs": configs, "spec": DEFAULT_SPEC.family, **(extra or {})})}
    tmp = path.with_name(f".{path.name}.tmp")
    save_file(tensors, str(tmp), metadata=meta)
    os.replace(tmp, path)
    return path


def is_bundle(path: str | os.PathLike) -> bool:
    try:
        with safe_open(str(path), framework="pt") as f:
            return BUNDLE_METADATA_KEY in (f.metadata() or {})
    except Exception:
        return False


def load_bundle(path: str | os.PathLike) -> DefaultParts:
    path = Path(path)
    try:
        handle = safe_open(str(path), framework="pt")
    except Exception as e:
        raise CheckpointFileError(f"{path}: cannot be read as a safetensors bundle ({e})") from e
    with handle as f:
        meta = f.metadata() or {}
        if BUNDLE_METADATA_KEY not in meta:
            raise CheckpointKindError(f"{path}: no '{BUNDLE_METADATA_KEY}' metadata; expected a JointAV model bundle")
        info = json.loads(meta[BUNDLE_METADATA_KEY])
        parts = _build(info["configs"])
        for prefix in PARTS:
            module = getattr(parts, prefix)
            state = {k[len(prefix) + 1:]: f.get_tensor(k) for k in f.keys() if k.startswith(prefix + ".")}
            if prefix == "audio_vae":
                apply_vae_weights(module, state, source=f"{path} [{prefix}]", weight_form="effective")
            else:
                module.load_state_dict(state, strict=True)
    for module in _modules(parts):
        module.eval().requires_grad_(False)
    parts.name = info.get("name", path.stem)
    return parts


_CACHE: dict[str, DefaultParts] = {}


def default_parts() -> DefaultParts:
    """The shipped bundle when present, else the random stand-in; built once per process."""
    bundle = BUNDLE_DIR / BUNDLE_NAME
    key = str(bundle) if bundle.is_file() else "random"
    if key not in _CACHE:
        _CACHE[key] = load_bundle(bundle) if bundle.is_file() else random_default()
    return _CACHE[key]
