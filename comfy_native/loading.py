"""Core MODEL (and CLIP) for JointAV Load Model: Ovi files through core's own loader, the embedded default built
the way core builds a detected model (model config → BaseModel from comfy.ops layers → ModelPatcher)."""

from __future__ import annotations

import logging

import comfy.model_management
import comfy.model_patcher
import comfy.sd
import torch

from ..pipeline.default_model import DefaultParts
from ..pipeline.specs import DEFAULT_SPEC, FAMILIES
from ..pipeline.types import ModelSpec
from .model import IMAGE_MODEL, JointAVFusion, JointAVModel
from .text_encoder import default_clip

# JointAV Load Model's weight_dtype choices as core's model_options["dtype"] (None: core decides)
CORE_DTYPES = {"auto": None, "fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16,
               "fp8_e4m3fn": torch.float8_e4m3fn}


def native_model(patcher) -> JointAVModel | None:
    """The JointAV BaseModel behind a core MODEL, or None for any other model."""
    model = getattr(patcher, "model", None)
    return model if isinstance(model, JointAVModel) else None


def require_native(patcher, node: str, name: str = "model") -> JointAVModel:
    """The JointAV BaseModel of a MODEL input, or an error naming the node, the input and what came instead."""
    model = native_model(patcher)
    if model is None:
        found = type(getattr(patcher, "model", patcher)).__name__
        raise ValueError(f"{node}: {name} is a {found} model; this node needs a JointAV model (an Ovi fusion DiT "
                         f"from Load Diffusion Model / JointAV Load Model, or the embedded default)")
    return model


def load_ovi_file(path: str, weight_dtype: str = "auto", spec: ModelSpec | None = None):
    """Core's Load Diffusion Model path for an Ovi file (our registration recognises it); family set from `spec`."""
    options = {} if CORE_DTYPES[weight_dtype] is None else {"dtype": CORE_DTYPES[weight_dtype]}
    patcher = comfy.sd.load_diffusion_model(path, model_options=options)
    model = native_model(patcher)
    if model is None:
        raise ValueError(f"{path}: core did not load it as a JointAV fusion DiT "
                         f"(found {type(getattr(patcher, 'model', None)).__name__})")
    if spec is not None:
        model.jointav_spec = model.diffusion_model.spec = spec
    return patcher


def load_default(parts: DefaultParts):
    """(MODEL, CLIP) of the embedded default: a core-managed copy of its DiT and text encoder (both tiny)."""
    config = JointAVFusion({"image_model": IMAGE_MODEL, "fusion": parts.dit.config.to_dict(),
                            "family": DEFAULT_SPEC.family})
    config.set_inference_dtype(torch.float32, None)
    load_device = comfy.model_management.get_torch_device()
    offload_device = comfy.model_management.unet_offload_device()
    model = config.get_model({}, device=offload_device)
    model.load_model_weights(dict(parts.dit.state_dict()), "")
    patcher = comfy.model_patcher.ModelPatcher(model, load_device=load_device, offload_device=offload_device)
    return patcher, default_clip(parts.text_encoder)


def spec_of(patcher) -> ModelSpec:
    model = native_model(patcher)
    return model.jointav_spec if model is not None else FAMILIES[DEFAULT_SPEC.family]


def check_fusion_file(path: str) -> None:
    """Our own header check before core reads the file: a foreign or half-written file gets the library's
    specific message (what the file looks like, which key is missing) instead of core's generic one."""
    from ..model_loader.checkpoint import CheckpointReader
    from ..model_loader.dit import detect_fusion_layout

    with CheckpointReader(path) as reader:
        detect_fusion_layout(reader.header)


def load_for_node(path: str | None, *, weight_dtype: str, attention_backend: str, device, offload: str,
                  family: str):
    """(JointModel for today's JointAV nodes, core MODEL, core CLIP or None) for JointAV Load Model.

    One copy of the weights, core-managed: the JointModel's DiT is the MODEL's, and its `native` field is the
    MODEL, through which the JointAV Sampler samples (comfy_native/shortcut.py). The embedded default (or a
    JointAV bundle) also gives its text encoder as a CLIP. With block swap (offload cpu / blocks N) the
    JointModel keeps the library's own copy and sampler, and the MODEL is a second, core-managed copy.
    """
    from dataclasses import replace
    from pathlib import Path

    from ..models.attention import resolve_backend
    from ..pipeline import api as pipeline
    from ..pipeline.default_model import default_parts, is_bundle, load_bundle
    from ..pipeline.specs import spec_for_file
    from ..pipeline.types import JointModel

    def shared_dit(patcher):
        dit = patcher.model.diffusion_model.dit
        if attention_backend != "auto":  # an explicit kernel for every sampler; auto keeps core's choice
            dit.attention = None
            dit.attention_backend = resolve_backend(attention_backend, device)
        return dit

    if path is None or is_bundle(path):
        joint = pipeline.load_joint_model(path, weight_dtype=weight_dtype, attention_backend=attention_backend,
                                          device=device, offload=offload, family=family)
        patcher, clip = load_default(default_parts() if path is None else load_bundle(path))
        if joint.offload == "none":  # one copy, core-managed; block swap keeps the library's own copy
            joint = replace(joint, dit=shared_dit(patcher), native=patcher)
        return joint, patcher, clip
    check_fusion_file(path)
    if offload != "none":
        # A second, block-swapped copy of an Ovi-size DiT would double its RAM, and swapping the core MODEL's own
        # blocks would fight core's placement; core already streams what does not fit (partial loading).
        logging.warning(
            "JointAV Load Model: offload=%r does not apply to %s (an Ovi file): ComfyUI's memory management places "
            "its weights and streams the layers that do not fit on the GPU (start ComfyUI with --lowvram or "
            "--reserve-vram to keep more free); block swap applies to the embedded default and JointAV bundles",
            offload, Path(path).name)
    spec = spec_for_file(path, family)
    patcher = load_ovi_file(path, weight_dtype, spec)
    joint = JointModel(dit=shared_dit(patcher), spec=spec, name=Path(path).name, source=str(path), device=device,
                       native=patcher)
    return joint, patcher, None
