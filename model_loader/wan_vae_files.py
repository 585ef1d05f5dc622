"""Load the published Wan2.2 VAE files into `WanVAE`, with the config read off the tensor shapes.

Two layouts exist and both use the reference key names (`encoder.*`, `conv1.*`, `conv2.*`, `decoder.*`):
- `Wan2.2_VAE.pth` (Wan-Video / Ovi): a pickled state dict, read with `torch.load(weights_only=True, mmap=True)`;
- `wan2.2_vae.safetensors` (ComfyUI repackaged, `models/vae/`): the same keys; ComfyUI's `comfy/sd.py`
  recognises it by `decoder.upsamples.0.upsamples.0.residual.2.weight` and builds `comfy.ldm.wan.vae2_2.WanVAE`
  with the state dict unchanged. Inside a combined checkpoint the VAE may sit under a prefix
  (`first_stage_model.`, `vae.`), which is stripped.

The model is built on the meta device and the file's tensors are assigned into it, so no second copy of the
weights is ever made (safetensors stay memory-mapped until moved to another device or dtype).
"""

from __future__ import annotations

import re
from pathlib import Path

import torch

from ..errors import CheckpointKeyError, CheckpointKindError
from ..models.wan_vae import WAN22_LATENT_MEAN, Parts, WanVAE, WanVAEConfig
from .checkpoint import load_state_dict

# Keys only the Wan2.2 VAE has (nested stages: `upsamples.<stage>.upsamples.<block>`).
_WAN22_DECODER = "decoder.upsamples.0.upsamples.0.residual.0.gamma"
_WAN22_ENCODER = "encoder.downsamples.0.downsamples.0.residual.0.gamma"
# Keys any Wan VAE (2.1 or 2.2) has; used to find a prefix and to recognise a Wan2.1 file.
_WAN_ANCHORS = ("decoder.middle.0.residual.0.gamma", "encoder.middle.0.residual.0.gamma")
_WAN21_MARKERS = ("decoder.upsamples.0.residual.0.gamma", "encoder.downsamples.0.residual.0.gamma")
_DIT_PATTERN = re.compile(r"(^|\.)(blocks\.\d+\.(self_attn|cross_attn|ffn)|patch_embedding|text_embedding)\.")

_PART_PREFIXES = {"decoder": ("decoder.", "conv2."), "encoder": ("encoder.", "conv1.")}


def read_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """All tensors of a .safetensors or weights-only .pth/.pt/.ckpt file, memory-mapped where the format allows."""
    return load_state_dict(path)[0]


def _strip_prefix(sd: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    for key in sd:
        for anchor in _WAN_ANCHORS:
            if key.endswith(anchor):
                prefix = key[: -len(anchor)]
                if not prefix:
                    return sd
                return {k[len(prefix) :]: v for k, v in sd.items() if k.startswith(prefix)}
    return sd


def _check_kind(sd: dict[str, torch.Tensor], source: str) -> None:
    expected = "expected a Wan2.2 VAE (48 latent channels; Wan2.2_VAE.pth or wan2.2_vae.safetensors)"
    if _WAN22_DECODER not in sd and _WAN22_ENCODER not in sd:
        if any(m in sd for m in _WAN21_MARKERS):
            channels = _latent_channels(sd)
            raise CheckpointKindError(
                f"{source}: found a Wan2.1 VAE ({channels} latent channels, 8x spatial compression, flat "
                f"'decoder.upsamples.N' stages); {expected}"
            )
        if any(_DIT_PATTERN.search(k) for k in sd):
            raise CheckpointKindError(f"{source}: found a diffusion transformer checkpoint (keys like "
                                      f"'{next(k for k in sd if _DIT_PATTERN.search(k))}'); {expected}")
        sample = ", ".join(sorted(sd)[:3]) or "no tensors"
        raise CheckpointKindError(f"{source}: found no Wan VAE keys (first keys: {sample}); {expected}")
    channels = _latent_channels(sd)
    if channels != len(WAN22_LATENT_MEAN):
        raise CheckpointKindError(f"{source}: found a Wan2.2-style VAE with {channels} latent channels, "
                                  f"expected {len(WAN22_LATENT_MEAN)} (the latent statistics exist only for those)")


def _latent_channels(sd: dict[str, torch.Tensor]) -> int | None:
    if "conv2.weight" in sd:
        return sd["conv2.weight"].shape[0]
    if "conv1.weight" in sd:
        return sd["conv1.weight"].shape[0] // 2
    return None


def _shape(sd: dict[str, torch.Tensor], key: str, source: str) -> torch.Size:
    if key not in sd:
        raise CheckpointKeyError(f"{source}: missing tensor '{key}' (needed to read the VAE's size)")
    return sd[key].shape


def _count(sd: dict[str, torch.Tensor], pattern: str) -> int:
    rx = re.compile(pattern)
    return len({m.group(1) for k in sd if (m := rx.match(k))})


def infer_wan_vae_config(sd: dict[str, torch.Tensor], source: str = "state dict") -> WanVAEConfig:
    """The `WanVAEConfig` a Wan2.2 state dict (either half or both) was built with, from its tensor shapes.

    A decoder-only file cannot tell dec_dim from dim_mult[0]; like every Wan VAE it is taken to be 1. The width
    of an absent half keeps its Wan2.2 default. The latent statistics are the Wan2.2 ones (files do not carry them).
    """
    has_enc, has_dec = _WAN22_ENCODER in sd, _WAN22_DECODER in sd
    kw: dict = {}
    if has_enc:
        dim = _shape(sd, "encoder.conv1.weight", source)[0]
        stages = _count(sd, r"encoder\.downsamples\.(\d+)\.")
        widths = [_shape(sd, f"encoder.downsamples.{i}.downsamples.0.residual.2.weight", source)[0] for i in range(stages)]
        blocks = _count(sd, r"encoder\.downsamples\.0\.downsamples\.(\d+)\.residual\.")
        kw.update(dim=dim, z_dim=_shape(sd, "conv1.weight", source)[0] // 2, dim_mult=tuple(w // dim for w in widths),
                  num_res_blocks=blocks,
                  temperal_downsample=tuple(f"encoder.downsamples.{i}.downsamples.{blocks}.time_conv.weight" in sd
                                            for i in range(stages - 1)))
    if has_dec:
        stages = _count(sd, r"decoder\.upsamples\.(\d+)\.")
        widths = [_shape(sd, f"decoder.upsamples.{i}.upsamples.0.residual.2.weight", source)[0] for i in range(stages)]
        blocks = _count(sd, r"decoder\.upsamples\.0\.upsamples\.(\d+)\.residual\.")
        mult0 = kw["dim_mult"][0] if has_enc else 1
        dec_dim = widths[-1] // mult0
        dec = dict(dec_dim=dec_dim, z_dim=_shape(sd, "conv2.weight", source)[0],
                   dim_mult=tuple(w // dec_dim for w in reversed(widths)), num_res_blocks=blocks - 1,
                   temperal_downsample=tuple(f"decoder.upsamples.{i}.upsamples.{blocks}.time_conv.weight" in sd
                                             for i in reversed(range(stages - 1))))
        for name, value in dec.items():
            if name in kw and kw[name] != value:
                raise CheckpointKeyError(
                    f"{source}: encoder and decoder disagree on {name}: encoder {kw[name]}, decoder {value}"
                )
        kw.update(dec)
        kw.setdefault("dim", WanVAEConfig.dim)
    if not has_dec:
        kw["dec_dim"] = WanVAEConfig.dec_dim
    return WanVAEConfig(**kw)


def wan_vae_from_state_dict(sd: dict[str, torch.Tensor], *, parts: Parts = "both", dtype: torch.dtype = torch.float32,
                            device: torch.device | str = "cpu", source: str = "state dict") -> WanVAE:
    """Build a `WanVAE` holding `parts` of a Wan2.2 state dict (ComfyUI or original naming, prefix allowed)."""
    sd = _strip_prefix(sd)
    _check_kind(sd, source)
    wanted = ("encoder", "decoder") if parts == "both" else (parts,)
    for part in wanted:
        anchor = _WAN22_ENCODER if part == "encoder" else _WAN22_DECODER
        if anchor not in sd:
            other = "decoder" if part == "encoder" else "encoder"
            raise CheckpointKeyError(f"{source}: missing tensor '{anchor}': the file holds only the {other}; "
                                     f"asked for parts={parts!r}")
    config = infer_wan_vae_config(sd, source)
    with torch.device("meta"):
        model = WanVAE(config, parts=parts)
    expected = model.state_dict()
    prefixes = tuple(p for part in wanted for p in _PART_PREFIXES[part])
    ours = {k: v for k, v in sd.items() if k.startswith(prefixes)}
    missing = [k for k in expected if k not in ours]
    if missing:
        raise CheckpointKeyError(f"{source}: missing tensor '{missing[0]}' ({len(missing)} missing in all)")
    unexpected = [k for k in ours if k not in expected]
    if unexpected:
        raise CheckpointKeyError(f"{source}: unexpected tensor '{unexpected[0]}' ({len(unexpected)} in all) "
                                 f"for a Wan2.2 VAE of config {config}")
    for k, t in expected.items():
        if ours[k].shape != t.shape:
            raise CheckpointKeyError(f"{source}: tensor '{k}' has shape {tuple(ours[k].shape)}, expected {tuple(t.shape)}")
    model.load_state_dict({k: v.to(dtype) for k, v in ours.items()}, strict=True, assign=True)
    return model.to(device).eval().requires_grad_(False)


def load_wan_vae(path: str | Path, *, parts: Parts = "both", dtype: torch.dtype = torch.float32,
                 device: torch.device | str = "cpu") -> WanVAE:
    """Load `Wan2.2_VAE.pth` or `wan2.2_vae.safetensors` (or a tiny file of the same layout) as a `WanVAE`.

    `parts="decoder"` / `"encoder"` builds and fills only that half (the other half's tensors are never read).
    """
    return wan_vae_from_state_dict(read_state_dict(path), parts=parts, dtype=dtype, device=device, source=str(path))
