"""Loading and saving the fusion DiT: format detection, config from tensor shapes, dtype policy.

Formats read (safetensors or weights-only .pth):
- Ovi's own keys, `video_model.*` and `audio_model.*`;
- the same under a prefix, as repackaged files have it (`model.diffusion_model.`, `diffusion_model.`,
  `model.`, ...): whatever precedes `video_model.`/`audio_model.` is stripped, and keys outside that
  prefix (a VAE or text encoder bundled in the same file) are left alone;
- fp32, bf16, fp16 and float8_e4m3fn weights, fp8 with or without ComfyUI's per-tensor scales
  (`<layer>.scale_weight` plus a `scaled_fp8` marker key; `<layer>.scale_input` activation scales are
  ignored because this model never quantises activations).

Dtype policy: every weight stays in the dtype it is stored in unless `weight_dtype` asks otherwise, and
`weight_dtype` applies only to the weights of the casting layers (Linear and Conv, >99.9% of the bytes).
Biases, norm gains and modulation tables keep their stored dtype: the layers compute them in float32 at
use, so up-casting them at load time would cost memory without restoring precision the file lost.

Memory: the model is built on the meta device and its parameters are assigned the memory-mapped file
tensors (`load_state_dict(assign=True)`), so nothing is copied unless a dtype or device change is asked
for, and then one tensor at a time (each safetensors tensor is mapped separately and released once its
converted copy exists).
"""

from __future__ import annotations

import json
import logging
import math
import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch

from ..errors import CheckpointKeyError, CheckpointKindError, InputValueError
from ..models.config import FusionConfig, TowerConfig
from ..models.fusion_dit import FusionDiT
from ..models.layers import CastConv1d, CastConv3d, CastLinear
from .checkpoint import CheckpointHeader, CheckpointReader
from .ovi_keys import AUDIO_ROOT, SCALE_INPUT_SUFFIX, SCALE_WEIGHT_SUFFIX, SCALED_FP8_MARKER, VIDEO_ROOT

log = logging.getLogger(__name__)

# safetensors `__metadata__` entry holding FusionConfig.to_dict() as JSON (written by save_fusion_dit).
CONFIG_METADATA_KEY = "jointav_config"
# Ovi's (and Wan's) head size; the head count of a file without stored config is dim / 128.
OVI_HEAD_DIM = 128
OVI_TEXT_LEN = 512
OVI_EPS = 1e-6
OVI_AUDIO_ROPE_SCALE = 0.19676

FP8_DTYPES = (torch.float8_e4m3fn, torch.float8_e5m2)
WEIGHT_DTYPES = (torch.float32, torch.bfloat16, torch.float16, *FP8_DTYPES)
# The model's per-layer scale buffer (models/layers.py), fed from `<layer>.scale_weight`.
MODEL_SCALE_SUFFIX = ".weight_scale"
_CAST_LAYERS = (CastLinear, CastConv1d, CastConv3d)

EXPECTED = ("an Ovi fusion DiT: keys video_model.* and audio_model.* (optionally under one prefix such as "
            "model.diffusion_model.)")
_TOWER_KEY = re.compile(r"(?:^|\.)(video_model|audio_model)\.")


@dataclass(frozen=True)
class FusionLayout:
    """How a checkpoint's keys map onto the model's state dict."""

    prefix: str  # stripped from every model key ("" for Ovi's own files)
    model_keys: dict[str, str]  # file key -> model state-dict key
    ignored: tuple[str, ...]  # file keys not loaded: other components, the fp8 marker, activation scales


# --- what else a file might be ---------------------------------------------------------------------

def _strip_known_prefix(name: str) -> str:
    for prefix in ("model.diffusion_model.", "diffusion_model.", "model.", "module."):
        if name.startswith(prefix):
            return name[len(prefix):]
    return name


def _describe_other(names: Sequence[str], header: CheckpointHeader) -> str:
    """A short, specific guess at what model a non-Ovi checkpoint holds."""
    stripped = {_strip_known_prefix(n): n for n in names}
    keys = set(stripped)
    if "patch_embedding.weight" in keys and any(k.startswith("blocks.0.self_attn.") for k in keys):
        info = header.tensors[stripped["patch_embedding.weight"]]
        in_dim, dim = info.shape[1], info.shape[0]
        variant = "Wan2.2 TI2V-5B" if in_dim == 48 else "Wan 2.1/2.2 14B-style" if in_dim in (16, 36) else "Wan"
        return (f"looks like a single-tower {variant} DiT (blocks.*, patch_embedding in_dim {in_dim}, dim {dim}): "
                f"no audio_model.* keys")
    if any(k.startswith(("input_blocks.", "middle_block.", "output_blocks.")) for k in keys):
        return "looks like a Stable Diffusion-style UNet (input_blocks/middle_block/output_blocks)"
    if any(k.startswith(("double_blocks.", "single_blocks.")) for k in keys):
        return "looks like a Flux-style DiT (double_blocks/single_blocks)"
    if any(k.startswith("encoder.block.0.layer.0.SelfAttention") for k in keys) or "shared.weight" in keys:
        return "looks like a T5 text encoder (e.g. umT5-XXL)"
    if any(k.startswith(("decoder.upsamples.", "encoder.downsamples.")) for k in keys) or \
            {"conv1.weight", "conv2.weight"} <= keys:
        return "looks like a Wan VAE (encoder/decoder, conv1/conv2)"
    if any(k.startswith("conv_pre.") for k in keys) and any(k.startswith("resblocks.") for k in keys):
        return "looks like a BigVGAN vocoder (conv_pre, resblocks)"
    if any(k.startswith(("decoder.conv_in.", "encoder.conv_in.")) for k in keys):
        return "looks like a VAE (encoder/decoder conv_in), e.g. MMAudio's"
    shown = ", ".join(sorted(names)[:5])
    return f"unrecognised keys ({len(names)} tensors, e.g. {shown})"


def _tower_prefix(name: str) -> str | None:
    m = _TOWER_KEY.search(name)
    return None if m is None else name[: m.start(1)]


def detect_fusion_layout(header: CheckpointHeader) -> FusionLayout:
    """Find the prefix and fp8 scale keys of a fusion-DiT checkpoint, or say what else the file holds."""
    path = header.path
    names = list(header.tensors)
    prefixes = {p for p in map(_tower_prefix, names) if p is not None}
    if not prefixes:
        raise CheckpointKindError(f"{path}: {_describe_other(names, header)}; expected {EXPECTED}")
    if len(prefixes) > 1:
        raise CheckpointKindError(
            f"{path}: holds fusion-DiT tensors under several prefixes {sorted(prefixes)}; expected one copy of {EXPECTED}"
        )
    prefix = prefixes.pop()
    present = {root for root in (VIDEO_ROOT, AUDIO_ROOT) if any(n.startswith(prefix + root) for n in names)}
    if present != {VIDEO_ROOT, AUDIO_ROOT}:
        missing = ({VIDEO_ROOT, AUDIO_ROOT} - present).pop()
        tower = "video" if VIDEO_ROOT in present else "audio"
        raise CheckpointKindError(
            f"{path}: holds only the {tower} tower ({prefix}{tower}_model.*): no {prefix}{missing}* keys; "
            f"expected {EXPECTED}"
        )

    model_keys: dict[str, str] = {}
    ignored: list[str] = []
    for name in names:
        if not name.startswith(prefix):
            ignored.append(name)
            continue
        key = name[len(prefix):]
        if key.rsplit(".", 1)[-1] == SCALED_FP8_MARKER or key.endswith(SCALE_INPUT_SUFFIX):
            ignored.append(name)
        elif key.endswith(SCALE_WEIGHT_SUFFIX):
            model_keys[name] = key[: -len(SCALE_WEIGHT_SUFFIX)] + MODEL_SCALE_SUFFIX
        else:
            model_keys[name] = key
    return FusionLayout(prefix, model_keys, tuple(ignored))


# --- config from shapes ----------------------------------------------------------------------------

def _stored_config(metadata: Mapping[str, str], source: str) -> FusionConfig | None:
    raw = metadata.get(CONFIG_METADATA_KEY)
    if raw is None:
        return None
    try:
        return FusionConfig.from_dict(json.loads(raw))
    except (ValueError, KeyError, TypeError) as e:
        raise CheckpointKindError(
            f"{source}: metadata {CONFIG_METADATA_KEY!r} is not a valid FusionConfig ({e}); found {raw[:200]!r}"
        ) from None


def _infer_tower(shapes: Mapping[str, Sequence[int]], root: str, stored: TowerConfig | None,
                 source: str) -> TowerConfig:
    def shape(name: str, ndim: int) -> tuple[int, ...]:
        found = shapes.get(root + name)
        if found is None:
            raise CheckpointKeyError(f"{source}: cannot infer the model config: tensor {root}{name} is missing")
        if len(found) != ndim:
            raise CheckpointKeyError(
                f"{source}: tensor {root}{name} has shape {list(found)}, expected a {ndim}-D tensor"
            )
        return tuple(found)

    is_video = root == VIDEO_ROOT
    if is_video:
        pe = shape("patch_embedding.weight", 5)
        patch = pe[2:]
    else:
        pe = shape("patch_embedding.0.weight", 3)
        patch = (1,)
    dim, in_dim = pe[0], pe[1]
    head_out = shape("head.head.weight", 2)[0]
    if head_out % math.prod(patch):
        raise CheckpointKeyError(
            f"{source}: {root}head.head.weight has {head_out} outputs, expected a multiple of the patch volume "
            f"{math.prod(patch)} (patch {list(patch)})"
        )
    pattern = re.compile(re.escape(root) + r"blocks\.(\d+)\.")
    layers = {int(m.group(1)) for k in shapes if (m := pattern.match(k))}
    if not layers:
        raise CheckpointKeyError(f"{source}: no {root}blocks.* tensors; expected at least one block")

    if stored is not None:
        num_heads, text_len, eps, rope = (stored.num_heads, stored.text_len, stored.eps,
                                          stored.temporal_rope_scaling_factor)
    elif dim % OVI_HEAD_DIM == 0:
        num_heads, text_len, eps = dim // OVI_HEAD_DIM, OVI_TEXT_LEN, OVI_EPS
        rope = 1.0 if is_video else OVI_AUDIO_ROPE_SCALE
    else:
        raise CheckpointKindError(
            f"{source}: cannot tell the number of attention heads of {root[:-1]}: width {dim} is not a multiple "
            f"of Ovi's head size {OVI_HEAD_DIM} and the file has no {CONFIG_METADATA_KEY!r} metadata; expected an "
            f"Ovi-size model or a file written by save_fusion_dit (or pass config=)"
        )
    return TowerConfig(
        patch_size=tuple(patch), in_dim=in_dim, out_dim=head_out // math.prod(patch), dim=dim,
        ffn_dim=shape("blocks.0.ffn.0.weight", 2)[0], freq_dim=shape("time_embedding.0.weight", 2)[1],
        num_heads=num_heads, num_layers=max(layers) + 1, text_len=text_len,
        text_dim=shape("text_embedding.0.weight", 2)[1], eps=eps, temporal_rope_scaling_factor=rope,
    )


def infer_fusion_config(shapes: Mapping[str, Sequence[int]], metadata: Mapping[str, str] | None = None, *,
                        source: str = "checkpoint") -> FusionConfig:
    """The FusionConfig of a checkpoint from its tensor shapes (keys without prefix), in one place.

    Widths, depth, patch, in/out/text/frequency dims come from shapes. What shapes cannot tell (head count
    when the width is not a multiple of 128, text_len, eps, RoPE scaling) comes from the `jointav_config`
    metadata when present, otherwise Ovi's values. A stored config that disagrees with the shapes is an error.
    """
    stored = _stored_config(metadata or {}, source)
    towers = {}
    for name, root in (("video", VIDEO_ROOT), ("audio", AUDIO_ROOT)):
        towers[name] = _infer_tower(shapes, root, getattr(stored, name) if stored else None, source)
    if towers["video"].num_layers != towers["audio"].num_layers:
        raise CheckpointKeyError(
            f"{source}: video_model has {towers['video'].num_layers} blocks and audio_model "
            f"{towers['audio'].num_layers}; expected the same depth"
        )
    config = FusionConfig(**towers)
    if stored is not None and stored != config:
        diffs = [f"{tower}.{k}: metadata {a[k]!r}, shapes {b[k]!r}"
                 for tower in ("video", "audio")
                 for a, b in [(stored.to_dict()[tower], config.to_dict()[tower])] for k in a if a[k] != b[k]]
        raise CheckpointKeyError(
            f"{source}: metadata {CONFIG_METADATA_KEY!r} disagrees with the tensor shapes: {'; '.join(diffs)}"
        )
    return config


# --- key check and dtype policy --------------------------------------------------------------------

def _fmt(shape: Sequence[int]) -> str:
    return str(list(shape))


def check_keys(expected: Mapping[str, Sequence[int]], found: Mapping[str, Sequence[int]], *, prefix: str,
               source: str, config: FusionConfig, limit: int = 5) -> None:
    """Raise CheckpointKeyError naming the first missing, unexpected and mis-shaped keys (file names)."""
    missing = [k for k in expected if k not in found]
    unexpected = [k for k in found if k not in expected]
    misshaped = [k for k in expected if k in found and tuple(found[k]) != tuple(expected[k])]
    if not (missing or unexpected or misshaped):
        return
    lines = []
    lines += [f"  missing    {prefix}{k} (expected {_fmt(expected[k])})" for k in missing[:limit]]
    lines += [f"  unexpected {prefix}{k} (found {_fmt(found[k])})" for k in unexpected[:limit]]
    lines += [f"  mis-shaped {prefix}{k}: found {_fmt(found[k])}, expected {_fmt(expected[k])}"
              for k in misshaped[:limit]]
    v, a = config.video, config.audio
    raise CheckpointKeyError(
        f"{source}: tensors do not match the fusion DiT (video dim {v.dim}/ffn {v.ffn_dim}, audio dim {a.dim}/"
        f"ffn {a.ffn_dim}, {v.num_layers} layers): {len(missing)} missing, {len(unexpected)} unexpected, "
        f"{len(misshaped)} mis-shaped (first {limit} of each):\n" + "\n".join(lines)
    )


# Conversions go through float32 in row blocks of about this many elements, so their temporaries stay
# small next to the weight itself (the audio ConvMLP weights are 176M elements each at Ovi size).
_CHUNK_ELEMENTS = 1 << 22


def _row_blocks(t: torch.Tensor) -> tuple[torch.Tensor, ...]:
    return t.split(max(1, _CHUNK_ELEMENTS // max(1, t[0].numel())))


def _convert_blocks(w: torch.Tensor, dtype: torch.dtype, fn) -> torch.Tensor:
    """`fn(block.float())` for each row block of `w`, written into a new tensor of `dtype`."""
    out = torch.empty(w.shape, dtype=dtype, device=w.device)
    for src, dst in zip(_row_blocks(w), _row_blocks(out)):
        dst.copy_(fn(src.float()))
    return out


def quantize_fp8(weight: torch.Tensor, dtype: torch.dtype = torch.float8_e4m3fn,
                 weight_scale: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-tensor scaled fp8: w8 = w / scale, scale = absmax(w) / fp8 max. Returns (w8, float32 scale).

    `weight_scale`: the scale `weight` is already stored with (w = weight · weight_scale), if any.
    """
    absmax = torch.stack([b.float().abs().amax() for b in _row_blocks(weight)]).amax()
    if weight_scale is not None:
        absmax = absmax * weight_scale
    scale = (absmax / torch.finfo(dtype).max).clamp_min(torch.finfo(torch.float32).tiny)
    if weight_scale is None:
        return _convert_blocks(weight, dtype, lambda b: b / scale), scale
    return _convert_blocks(weight, dtype, lambda b: b * weight_scale / scale), scale


def _convert_weight(w: torch.Tensor, scale: torch.Tensor | None, target: torch.dtype
                    ) -> tuple[torch.Tensor, torch.Tensor | None]:
    """One casting-layer weight (and its optional per-tensor scale) in the asked storage dtype."""
    if w.dtype == target:
        return w, scale
    if target in FP8_DTYPES:
        return quantize_fp8(w, target, scale)
    if scale is not None:
        return _convert_blocks(w, target, lambda b: b * scale), None
    return w.to(target), None


def _cast_weight_names(model: torch.nn.Module) -> dict[str, torch.nn.Module]:
    return {f"{name}.weight": m for name, m in model.named_modules() if isinstance(m, _CAST_LAYERS)}


# --- public API --------------------------------------------------------------------------------------

def load_fusion_dit(
    path: str | os.PathLike,
    *,
    device: torch.device | str = "cpu",
    compute_dtype: torch.dtype = torch.float32,
    weight_dtype: torch.dtype | None = None,
    attention_backend: str = "auto",
    config: FusionConfig | None = None,
    unwrap: str | None = None,
) -> FusionDiT:
    """Load a fusion-DiT checkpoint (any format in this module's docstring) into a ready, eval-mode model.

    weight_dtype: storage dtype of the Linear/Conv weights (None: as stored; float8_e4m3fn quantises with
    per-tensor scales). compute_dtype: the dtype the forward runs in. config: skip inference (the file is
    still checked against it, key by key). unwrap: the container key of a .pth holding several state dicts.
    """
    path = Path(path)
    device = torch.device(device)
    if weight_dtype is not None and weight_dtype not in WEIGHT_DTYPES:
        raise InputValueError(
            f"weight_dtype: expected None or one of {', '.join(str(d) for d in WEIGHT_DTYPES)}, found {weight_dtype}"
        )
    # Tensors used as they are stay views of the file mapping; when each is converted or moved anyway,
    # they are read one at a time instead, so the file and the converted copy are never both resident.
    stream = weight_dtype is not None or device.type != "cpu"
    with CheckpointReader(path, unwrap=unwrap, copy=stream) as reader:
        return _load(reader, device, compute_dtype, weight_dtype, attention_backend, config)


def _load(reader: CheckpointReader, device: torch.device, compute_dtype: torch.dtype,
          weight_dtype: torch.dtype | None, attention_backend: str, config: FusionConfig | None) -> FusionDiT:
    header = reader.header
    path = header.path
    layout = detect_fusion_layout(header)
    if any(k.endswith(SCALE_INPUT_SUFFIX) for k in layout.ignored):
        log.info("%s: ignoring *%s tensors (fp8 activation scales; this model does not quantise activations)",
                 path, SCALE_INPUT_SUFFIX)
    found = {m: tuple(header.tensors[f].shape) for f, m in layout.model_keys.items()}
    for key, shape in found.items():
        if key.endswith(MODEL_SCALE_SUFFIX):
            if math.prod(shape) != 1:
                raise CheckpointKeyError(
                    f"{path}: {layout.prefix}{key[: -len(MODEL_SCALE_SUFFIX)]}{SCALE_WEIGHT_SUFFIX} has shape "
                    f"{_fmt(shape)}; expected one per-tensor scale (shape [] or [1])"
                )
            found[key] = ()
    if config is None:
        config = infer_fusion_config(found, header.metadata, source=str(path))

    model = FusionDiT(config, attention_backend=attention_backend, device="meta", compute_dtype=compute_dtype)
    cast_layers = _cast_weight_names(model)
    quantize = weight_dtype in FP8_DTYPES
    for weight_key, module in cast_layers.items():
        scale_key = weight_key[: -len(".weight")] + MODEL_SCALE_SUFFIX
        if scale_key in found or (quantize and weight_key in found):
            module.register_buffer("weight_scale", torch.empty((), dtype=torch.float32, device="meta"))
    expected = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    if quantize:  # scales that quantisation will create are not in the file
        found |= {k: () for k in expected if k.endswith(MODEL_SCALE_SUFFIX)}
    check_keys(expected, found, prefix=layout.prefix, source=str(path), config=config)

    state: dict[str, torch.Tensor] = {}
    file_key = {m: f for f, m in layout.model_keys.items()}
    for key in expected:
        if key.endswith(MODEL_SCALE_SUFFIX):
            continue  # handled with its weight
        t = reader.take(file_key[key]).to(device)
        if key in cast_layers:
            scale_key = key[: -len(".weight")] + MODEL_SCALE_SUFFIX
            scale = reader.take(file_key[scale_key]).reshape(()).to(device, torch.float32) \
                if scale_key in file_key else None
            t, scale = _convert_weight(t, scale, weight_dtype or t.dtype)
            if scale is not None:
                state[scale_key] = scale
            elif scale_key in expected:  # the file's scale was folded into a non-fp8 weight
                cast_layers[key].weight_scale = None
        state[key] = t
    model.load_state_dict(state, strict=True, assign=True)
    return model.requires_grad_(False).eval()


def save_fusion_dit(model: FusionDiT, path: str | os.PathLike, *, metadata: Mapping[str, str] | None = None) -> None:
    """Write a model as safetensors with Ovi's key names and its config in the metadata.

    Scaled fp8 layers are written the ComfyUI way (`<layer>.scale_weight` plus the `scaled_fp8` marker),
    so the file reads back with `load_fusion_dit` and in tools that know that convention. The file is
    written next to `path` and renamed into place, so a crash never leaves a truncated checkpoint behind.
    """
    from safetensors.torch import save_file

    path = Path(path)
    tensors: dict[str, torch.Tensor] = {}
    for key, t in model.state_dict().items():
        if key.endswith(MODEL_SCALE_SUFFIX):
            key = key[: -len(MODEL_SCALE_SUFFIX)] + SCALE_WEIGHT_SUFFIX
        tensors[key] = t.detach().to("cpu").contiguous()
    if any(k.endswith(SCALE_WEIGHT_SUFFIX) for k in tensors):
        tensors[SCALED_FP8_MARKER] = torch.empty(0, dtype=torch.float8_e4m3fn)
    meta = {"format": "pt", CONFIG_METADATA_KEY: json.dumps(model.config.to_dict())}
    meta |= dict(metadata or {})
    tmp = path.with_name(path.name + ".partial")
    save_file(tensors, str(tmp), metadata=meta)
    os.replace(tmp, path)
