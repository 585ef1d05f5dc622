"""Ovi's state-dict layout, written down from the reference checkpoint rather than from our model code.

The fusion model holds two WanModel-style towers under `video_model.` and `audio_model.`; each block of
each tower has self-attention, text + cross-modal attention, an FFN and a modulation table. This table of
names and shape rules lets the loader recognise the layout, the tests check our model against an
independent description, and the benchmark write a checkpoint without building a model first.
"""

from __future__ import annotations

import math

from ..models.config import FusionConfig, TowerConfig

VIDEO_ROOT = "video_model."
AUDIO_ROOT = "audio_model."

# Audio patch embedding: a k=7 conv, SiLU, then a gated conv MLP (k=7) of nominal width 4·dim.
AUDIO_PATCH_KERNEL = 7

# ComfyUI "scaled fp8" files: `<layer>.scale_weight` per quantised weight and a marker tensor `scaled_fp8`.
SCALE_WEIGHT_SUFFIX = ".scale_weight"
SCALE_INPUT_SUFFIX = ".scale_input"
SCALED_FP8_MARKER = "scaled_fp8"


def conv_mlp_hidden(dim: int, multiple_of: int = 256) -> int:
    """Hidden width of the audio ConvMLP: int(2·4·dim/3) rounded up to a multiple of 256 (3072 → 8192)."""
    hidden = int(2 * (4 * dim) / 3)
    return multiple_of * math.ceil(hidden / multiple_of)


def _linear(name: str, out_features: int, in_features: int) -> dict[str, tuple[int, ...]]:
    return {f"{name}.weight": (out_features, in_features), f"{name}.bias": (out_features,)}


def _block_shapes(c: TowerConfig) -> dict[str, tuple[int, ...]]:
    d = c.dim
    s: dict[str, tuple[int, ...]] = {}
    for proj in ("q", "k", "v", "o"):
        s |= _linear(f"self_attn.{proj}", d, d)
    s |= {"self_attn.norm_q.weight": (d,), "self_attn.norm_k.weight": (d,)}
    for proj in ("q", "k", "v", "o", "k_fusion", "v_fusion"):
        s |= _linear(f"cross_attn.{proj}", d, d)
    s |= {
        "cross_attn.norm_q.weight": (d,),
        "cross_attn.norm_k.weight": (d,),
        "cross_attn.norm_k_fusion.weight": (d,),
        "cross_attn.pre_attn_norm_fusion.weight": (d,),
        "cross_attn.pre_attn_norm_fusion.bias": (d,),
        "norm3.weight": (d,),
        "norm3.bias": (d,),
        "modulation.modulation": (1, 6, d),
    }
    s |= _linear("ffn.0", c.ffn_dim, d)
    s |= _linear("ffn.2", d, c.ffn_dim)
    return s


def tower_shapes(c: TowerConfig) -> dict[str, tuple[int, ...]]:
    """Every tensor of one tower (names relative to the tower root) and its shape."""
    d = c.dim
    s: dict[str, tuple[int, ...]] = {}
    if c.is_video:
        s["patch_embedding.weight"] = (d, c.in_dim, *c.patch_size)
        s["patch_embedding.bias"] = (d,)
    else:
        hidden = conv_mlp_hidden(d)
        k = AUDIO_PATCH_KERNEL
        s["patch_embedding.0.weight"] = (d, c.in_dim, k)
        s["patch_embedding.0.bias"] = (d,)
        s["patch_embedding.2.w1.weight"] = (hidden, d, k)
        s["patch_embedding.2.w2.weight"] = (d, hidden, k)
        s["patch_embedding.2.w3.weight"] = (hidden, d, k)
    s |= _linear("text_embedding.0", d, c.text_dim)
    s |= _linear("text_embedding.2", d, d)
    s |= _linear("time_embedding.0", d, c.freq_dim)
    s |= _linear("time_embedding.2", d, d)
    s |= _linear("time_projection.1", 6 * d, d)
    s |= _linear("head.head", math.prod(c.patch_size) * c.out_dim, d)
    s["head.modulation"] = (1, 2, d)
    block = _block_shapes(c)
    for i in range(c.num_layers):
        s |= {f"blocks.{i}.{name}": shape for name, shape in block.items()}
    return s


def fusion_shapes(config: FusionConfig) -> dict[str, tuple[int, ...]]:
    """Every tensor of an Ovi fusion checkpoint with its shape, e.g. `FusionConfig.ovi()` → 30-layer Ovi."""
    shapes = {VIDEO_ROOT + k: v for k, v in tower_shapes(config.video).items()}
    shapes |= {AUDIO_ROOT + k: v for k, v in tower_shapes(config.audio).items()}
    return shapes
