"""Checkpoint files of the audio decoder: MMAudio's 16 kHz VAE and its BigVGAN v1 vocoder.

Accepted formats (all read without executing pickled code):
- MMAudio VAE: `v1-16.pth` (a plain state dict) or the same keys as safetensors; MPConv weights either as
  stored (free weights) or already re-normalised. Which one a file holds is read off the weight rows
  (see `vae_weight_form`).
- BigVGAN: `best_netG.pt` (state dict under a top-level 'generator'), or the bare state dict as .pt/.pth/
  safetensors; convolutions weight-normed (`weight_g`/`weight_v` or torch's `parametrizations.weight.
  original0/1`) or already folded to `.weight`.
The model configuration is read off tensor shapes. A file of another model raises CheckpointKindError;
missing or mis-shaped tensors raise CheckpointKeyError.
"""

from __future__ import annotations

import os

import torch

from ..audio.bigvgan import BigVGANConfig, BigVGANVocoder, fold_weight_norm
from ..audio.mmaudio_vae import MMAudioVAE, MMAudioVAEConfig, normalize_mpconv_weight
from ..errors import CheckpointKeyError, CheckpointKindError, InputValueError
from .checkpoint import load_state_dict

VAE_KIND = "MMAudio VAE"
BIGVGAN_KIND = "BigVGAN vocoder"

# Re-normalised MPConv rows have norm n/(n + 1e-4·sqrt(fan_in)) < 1; stored (free) rows are trained
# under forced normalisation to norm sqrt(fan_in) (>= 7 for every layer of the real model). A row norm
# at most this bound therefore means "already normalised".
_EFFECTIVE_ROW_NORM_MAX = 1.01


# ---------------------------------------------------------------------------------------------------
# Reading


def read_state_dict(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """Tensors of a .safetensors / .pth / .pt / .ckpt file, memory-mapped, never executing pickled code.

    A BigVGAN training checkpoint's top-level 'generator' dict is unwrapped (see checkpoint.CONTAINER_KEYS).
    """
    return load_state_dict(path)[0]


def checkpoint_kind(state_dict: dict[str, torch.Tensor]) -> str:
    """A short name of the model a state dict belongs to, from its key names."""
    keys = state_dict.keys()
    if "decoder.learnable_gain" in keys and "decoder.mid.attn_1.qkv.weight" in keys:
        return VAE_KIND
    if any(k.startswith("conv_pre.") for k in keys) and any(k.startswith("ups.0.0.") for k in keys):
        return BIGVGAN_KIND
    if any(".self_attn." in k or ".cross_attn." in k for k in keys):
        return "diffusion transformer (DiT)"
    if any(".residual." in k or k.startswith("decoder.head.") or ".downsamples." in k for k in keys):
        return "Wan video VAE"
    return "unknown model"


def _require_kind(state_dict: dict[str, torch.Tensor], expected: str, source: str) -> None:
    found = checkpoint_kind(state_dict)
    if found != expected:
        sample = ", ".join(sorted(state_dict)[:3])
        raise CheckpointKindError(f"{source}: found a {found} checkpoint (keys like {sample}), expected a {expected}")


def _tensor(state_dict: dict[str, torch.Tensor], key: str, ndim: int, source: str) -> torch.Tensor:
    t = state_dict.get(key)
    if t is None:
        raise CheckpointKeyError(f"{source}: missing tensor {key!r}")
    if t.ndim != ndim:
        raise CheckpointKeyError(f"{source}: tensor {key!r} has shape {tuple(t.shape)}, expected {ndim} dims")
    return t


def _load_exact(module: torch.nn.Module, state_dict: dict[str, torch.Tensor], source: str,
                optional: tuple[str, ...] = ()) -> None:
    """load_state_dict with errors that name the key: every model tensor must be present with its shape;
    unexpected keys are errors too (a wrong file must not load silently). `optional` keys keep their
    built-in values when absent."""
    own = module.state_dict()
    for key, param in own.items():
        if key not in state_dict:
            if key in optional:
                continue
            raise CheckpointKeyError(f"{source}: missing tensor {key!r} (expected shape {tuple(param.shape)})")
        if tuple(state_dict[key].shape) != tuple(param.shape):
            raise CheckpointKeyError(f"{source}: tensor {key!r} has shape {tuple(state_dict[key].shape)}, "
                                     f"expected {tuple(param.shape)}")
    extra = sorted(k for k in state_dict if k not in own)
    if extra:
        raise CheckpointKeyError(f"{source}: unexpected tensor {extra[0]!r} ({len(extra)} unexpected in all)")
    module.load_state_dict(state_dict, strict=False)


# ---------------------------------------------------------------------------------------------------
# MMAudio VAE


def infer_vae_config(state_dict: dict[str, torch.Tensor], source: str = "state dict") -> MMAudioVAEConfig:
    """data_dim, embed_dim and hidden_dim from the decoder's first and last convolutions."""
    conv_in = _tensor(state_dict, "decoder.conv_in.weight", 3, source)
    conv_out = _tensor(state_dict, "decoder.conv_out.weight", 3, source)
    return MMAudioVAEConfig(data_dim=conv_out.shape[0], embed_dim=conv_in.shape[1], hidden_dim=conv_out.shape[1])


def vae_weight_form(state_dict: dict[str, torch.Tensor], source: str = "state dict") -> str:
    """'raw' (stored free weights, to be normalised) or 'effective' (already normalised), read off the row
    norms of every MPConv weight; a file mixing both raises CheckpointKeyError naming a key of each."""
    forms: dict[str, str] = {}
    for key, w in state_dict.items():
        if key.endswith(".weight") and w.ndim == 3:
            rows = torch.linalg.vector_norm(w.to(torch.float32).flatten(1), dim=1)
            forms[key] = "effective" if bool((rows <= _EFFECTIVE_ROW_NORM_MAX).all()) else "raw"
    kinds = set(forms.values())
    if len(kinds) > 1:
        raw = next(k for k, f in forms.items() if f == "raw")
        eff = next(k for k, f in forms.items() if f == "effective")
        raise CheckpointKeyError(f"{source}: MPConv weights mix stored and normalised forms ({raw!r} has rows of "
                                 f"norm > {_EFFECTIVE_ROW_NORM_MAX}, {eff!r} has all rows <= it); expected one form")
    return kinds.pop() if kinds else "raw"


def apply_vae_weights(vae: MMAudioVAE, state_dict: dict[str, torch.Tensor], *, source: str = "state dict",
                      weight_form: str = "auto") -> str:
    """Load a VAE state dict into `vae`, normalising MPConv weights once if they are stored raw.

    weight_form: 'auto' (detect), 'raw' or 'effective'. Encoder weights are skipped when the VAE was built
    without an encoder. `data_mean`/`data_std` fall back to the built-in 80-band statistics when absent.
    Returns the form that was found or given.
    """
    if weight_form not in ("auto", "raw", "effective"):
        raise InputValueError(f"apply_vae_weights: weight_form={weight_form!r}, expected 'auto', 'raw' or 'effective'")
    _require_kind(state_dict, VAE_KIND, source)
    if not vae.has_encoder:
        state_dict = {k: v for k, v in state_dict.items() if not k.startswith("encoder.")}
    form = vae_weight_form(state_dict, source) if weight_form == "auto" else weight_form
    if form == "raw":
        state_dict = {k: normalize_mpconv_weight(v) if k.endswith(".weight") and v.ndim == 3 else v
                      for k, v in state_dict.items()}
    stats_known = not bool(torch.isnan(vae.data_mean).any())
    _load_exact(vae, state_dict, source, optional=("data_mean", "data_std") if stats_known else ())
    return form


def load_mmaudio_vae(path: str | os.PathLike, *, device: str | torch.device = "cpu",
                     dtype: torch.dtype = torch.float32, with_encoder: bool | None = None,
                     weight_form: str = "auto") -> MMAudioVAE:
    """Build and load an MMAudio VAE from a file; config from shapes. `with_encoder=None` keeps the encoder
    when the file has one."""
    state_dict = read_state_dict(path)
    _require_kind(state_dict, VAE_KIND, str(path))
    has_encoder = any(k.startswith("encoder.") for k in state_dict)
    if with_encoder and not has_encoder:
        raise CheckpointKeyError(f"{path}: no encoder.* tensors (decoder-only file), but with_encoder=True")
    vae = MMAudioVAE(infer_vae_config(state_dict, str(path)),
                     with_encoder=has_encoder if with_encoder is None else with_encoder)
    apply_vae_weights(vae, state_dict, source=str(path), weight_form=weight_form)
    return vae.to(device=device, dtype=dtype).eval().requires_grad_(False)


# ---------------------------------------------------------------------------------------------------
# BigVGAN


def infer_bigvgan_config(state_dict: dict[str, torch.Tensor], source: str = "state dict") -> BigVGANConfig:
    """Read the generator config off the tensor shapes (folded or weight-normed).

    Shapes give num_mels, upsample_initial_channel, the stage count and kernels. Strides and dilations
    are not stored: strides follow BigVGAN's kernel = 2·stride rule, dilations are MMAudio's (1, 3, 5).
    """
    sd = fold_weight_norm(state_dict)
    conv_pre = _tensor(sd, "conv_pre.weight", 3, source)
    stages = 0
    while f"ups.{stages}.0.weight" in sd:
        stages += 1
    if stages == 0:
        raise CheckpointKeyError(f"{source}: missing tensor 'ups.0.0.weight' (no upsampling stage found)")
    up_kernels = tuple(_tensor(sd, f"ups.{i}.0.weight", 3, source).shape[-1] for i in range(stages))
    n_blocks = len({k.split(".")[1] for k in sd if k.startswith("resblocks.")})
    if n_blocks % stages:
        raise CheckpointKeyError(f"{source}: {n_blocks} resblocks for {stages} upsampling stages; "
                                 f"expected a multiple of the stage count")
    per_stage = n_blocks // stages
    res_kernels = tuple(_tensor(sd, f"resblocks.{j}.convs1.0.weight", 3, source).shape[-1] for j in range(per_stage))
    n_dil = 0
    while f"resblocks.0.convs1.{n_dil}.weight" in sd:
        n_dil += 1
    default = BigVGANConfig()
    if n_dil != len(default.resblock_dilation_sizes[0]):
        raise CheckpointKeyError(f"{source}: resblocks have {n_dil} dilated convolutions each, expected "
                                 f"{len(default.resblock_dilation_sizes[0])} (MMAudio's dilations (1, 3, 5))")
    return BigVGANConfig(
        num_mels=conv_pre.shape[1],
        upsample_initial_channel=conv_pre.shape[0],
        upsample_rates=tuple(k // 2 for k in up_kernels),
        upsample_kernel_sizes=up_kernels,
        resblock_kernel_sizes=res_kernels,
        resblock_dilation_sizes=tuple(default.resblock_dilation_sizes[0] for _ in range(per_stage)),
    )


def apply_bigvgan_weights(vocoder: BigVGANVocoder, state_dict: dict[str, torch.Tensor], *,
                          source: str = "state dict") -> None:
    """Load a BigVGAN state dict (weight-normed or folded) into `vocoder`, folding weight norm once.

    The anti-aliasing filter buffers stored in checkpoints are skipped: they are fixed functions of the
    architecture and computed at construction.
    """
    _require_kind(state_dict, BIGVGAN_KIND, source)
    folded = {k: v for k, v in fold_weight_norm(state_dict).items() if not k.endswith(".filter")}
    for key in folded:
        if key.endswith((".weight_g", ".weight_v", ".original0", ".original1")):
            raise CheckpointKeyError(f"{source}: weight-norm tensor {key!r} has no partner (g needs v); "
                                     f"expected both halves of each pair")
    _load_exact(vocoder, folded, source)


def load_bigvgan(path: str | os.PathLike, *, device: str | torch.device = "cpu",
                 dtype: torch.dtype = torch.float32, config: BigVGANConfig | None = None) -> BigVGANVocoder:
    """Build and load a BigVGAN v1 generator from a file; config from shapes unless given."""
    state_dict = read_state_dict(path)
    _require_kind(state_dict, BIGVGAN_KIND, str(path))
    vocoder = BigVGANVocoder(config or infer_bigvgan_config(state_dict, str(path)))
    apply_bigvgan_weights(vocoder, state_dict, source=str(path))
    return vocoder.to(device=device, dtype=dtype).eval().requires_grad_(False)
