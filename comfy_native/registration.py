"""Registers the fusion DiT with core ComfyUI without patching core files (the pattern of packs that add a family).

1. `JointAVFusion` joins `comfy.supported_models.models` (an older copy from a reload is replaced, never doubled).
2. `comfy.model_detection.detect_unet_config` is wrapped once (a marker attribute says so): a state dict with
   Ovi's towers gets our unet_config, read off its tensor shapes by `model_loader.dit.infer_fusion_config`, and
   every other state dict goes to core's own detection unchanged.
3. `comfy.sd.load_diffusion_model` is wrapped once so that a fusion-DiT file whose tensors do not fit names
   the file (core's detection never sees a path) and the family is read from the published file name.
4. `comfy.lora.model_lora_keys_unet` is wrapped once so LoRAs whose keys lack core's `diffusion_model.`
   prefix (`video_model.blocks.0.self_attn.q.lora_A.weight`, as trainers on the plain model write them)
   find their layer too; core maps the prefixed form and `lora_unet_*` itself.
The wrappers call the implementation registered last (module attributes on core's modules), so reloading this
pack updates them without stacking wrappers.
"""

from __future__ import annotations

import logging
from pathlib import Path

import comfy.lora
import comfy.model_detection
import comfy.sd
import comfy.supported_models

from ..errors import CheckpointKeyError, CheckpointKindError, JointAVError
from ..model_loader.dit import check_keys, infer_fusion_config
from ..model_loader.ovi_keys import (AUDIO_ROOT, SCALE_INPUT_SUFFIX, SCALE_WEIGHT_SUFFIX, SCALED_FP8_MARKER,
                                     VIDEO_ROOT, fusion_shapes)
from ..pipeline.specs import OVI_720_5S, spec_for_file
from .model import IMAGE_MODEL, JointAVFusion, JointAVModel

log = logging.getLogger(__name__)

_DETECT_ATTR = "_jointav_detect"  # on comfy.model_detection: our detection of the moment
_LOAD_ATTR = "_jointav_after_load"  # on comfy.sd: our post-load step of the moment
_LORA_ATTR = "_jointav_lora_keys"  # on comfy.lora: our extra LoRA key names of the moment
_MARKER = "_jointav_original"  # on a wrapper: the function it wraps
_PROBE = VIDEO_ROOT + "patch_embedding.weight"


def _tower_prefix(state_dict, key_prefix: str) -> str | None:
    """What sits between key_prefix and `video_model.` (e.g. "" or "diffusion_model."), if this is a fusion DiT."""
    for key in state_dict:
        if key.startswith(key_prefix) and key.endswith(_PROBE):
            inner = key[len(key_prefix): -len(_PROBE)]
            if inner == "" or inner.endswith("."):
                return inner
    return None


def detect_fusion_config(state_dict, key_prefix: str, metadata=None) -> dict | None:
    """Our unet_config for an Ovi-layout state dict under `key_prefix`, or None for anything else."""
    inner = _tower_prefix(state_dict, key_prefix)
    if inner is None:
        return None
    prefix = key_prefix + inner
    if not any(k.startswith(prefix + AUDIO_ROOT) for k in state_dict):
        raise CheckpointKindError(f"diffusion model: holds {prefix}video_model.* but no {prefix}audio_model.* keys; "
                                  f"expected both towers of an Ovi fusion DiT")
    shapes = {}
    for key, tensor in state_dict.items():
        if not key.startswith(prefix):
            continue
        name = key[len(prefix):]
        if name.endswith((SCALE_WEIGHT_SUFFIX, SCALE_INPUT_SUFFIX)) or name.rsplit(".", 1)[-1] == SCALED_FP8_MARKER:
            continue  # fp8 scales: core's scaled-fp8 layers read them themselves
        shapes[name] = tuple(tensor.shape)
    source = f"diffusion model (keys under {prefix!r})"
    config = infer_fusion_config(shapes, metadata or {}, source=source)
    check_keys(fusion_shapes(config), shapes, prefix=prefix, source=source, config=config)
    return {"image_model": IMAGE_MODEL, "fusion": config.to_dict(), "family": OVI_720_5S.family}


def _detect_wrapper(original):
    def detect_unet_config(state_dict, key_prefix, metadata=None):
        ours = getattr(comfy.model_detection, _DETECT_ATTR, None)
        found = ours(state_dict, key_prefix, metadata) if ours is not None else None
        return found if found is not None else original(state_dict, key_prefix, metadata=metadata)

    setattr(detect_unet_config, _MARKER, original)
    return detect_unet_config


def _after_load(patcher, unet_path) -> None:
    model = getattr(patcher, "model", None)
    if model is not None and hasattr(model, "jointav_spec"):
        spec = spec_for_file(unet_path)
        model.jointav_spec = spec
        model.diffusion_model.spec = spec


def _load_wrapper(original):
    def load_diffusion_model(unet_path, model_options={}):
        try:
            patcher = original(unet_path, model_options=model_options)
        except JointAVError as exc:  # raised by our detection, which never sees the file
            raise type(exc)(f"{unet_path}: {exc}") from None
        except RuntimeError as exc:  # load_state_dict's size mismatch names the key, not the file
            if "size mismatch" in str(exc) and (VIDEO_ROOT in str(exc) or AUDIO_ROOT in str(exc)):
                raise CheckpointKeyError(f"{unet_path}: {exc}") from None
            raise
        after = getattr(comfy.sd, _LOAD_ATTR, None)
        if patcher is not None and after is not None:
            after(patcher, unet_path)
        return patcher

    setattr(load_diffusion_model, _MARKER, original)
    return load_diffusion_model


def lora_keys(model, key_map: dict) -> dict:
    """Prefix-less LoRA names of a JointAV model's weights: `video_model.…` → `diffusion_model.video_model.….weight`."""
    if isinstance(model, JointAVModel):
        for key in model.state_dict():
            if key.startswith("diffusion_model.") and key.endswith(".weight"):
                key_map.setdefault(key[len("diffusion_model."):-len(".weight")], key)
    return key_map


def _lora_wrapper(original):
    def model_lora_keys_unet(model, key_map={}):
        key_map = original(model, key_map)
        ours = getattr(comfy.lora, _LORA_ATTR, None)
        return ours(model, key_map) if ours is not None else key_map

    setattr(model_lora_keys_unet, _MARKER, original)
    return model_lora_keys_unet


def register() -> None:
    """Idempotent: safe to call on every load of the pack."""
    models = comfy.supported_models.models
    models[:] = [m for m in models if getattr(m, "unet_config", None) != {"image_model": IMAGE_MODEL}]
    models.append(JointAVFusion)

    comfy.model_detection.__dict__[_DETECT_ATTR] = detect_fusion_config
    if not hasattr(comfy.model_detection.detect_unet_config, _MARKER):
        comfy.model_detection.detect_unet_config = _detect_wrapper(comfy.model_detection.detect_unet_config)

    comfy.sd.__dict__[_LOAD_ATTR] = _after_load
    if not hasattr(comfy.sd.load_diffusion_model, _MARKER):
        comfy.sd.load_diffusion_model = _load_wrapper(comfy.sd.load_diffusion_model)
    comfy.lora.__dict__[_LORA_ATTR] = lora_keys
    if not hasattr(comfy.lora.model_lora_keys_unet, _MARKER):
        comfy.lora.model_lora_keys_unet = _lora_wrapper(comfy.lora.model_lora_keys_unet)
    log.info("JointAV: fusion DiT registered with core model detection (%s)", Path(__file__).parent.name)
