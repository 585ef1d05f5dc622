"""The joint latent as a core LATENT, on the core that is running.

ComfyUI 0.38+ has `comfy.nested_tensor.NestedTensor`: there `samples` is `NestedTensor((video, audio))` (and a
`noise_mask` one mask per stream), and core unpacks it before the model's forward. 0.3.x has no nested
tensors: there `samples` is the packed tensor of `pipeline/packed_latent.py`. Either way the LATENT carries
    frame_rate                 video frames per second
    sample_rate                audio samples per second of the decoded waveform
    audio_samples_per_latent   waveform samples per audio latent position
    jointav_layout             {video_frames, audio_length, video_channels, audio_channels, audio_per_video_frame,
                                name}: how to read `samples` back without the model (decoders, noise)
    jointav_provenance         what made the clip (JointAV Save Video's manifest), when known
"""

from __future__ import annotations

import importlib
from fractions import Fraction

import torch

from ..errors import InputShapeError, InputValueError
from ..pipeline.packed_latent import LAYOUT_NAME, PackedLayout
from ..pipeline.types import JointLatent
from ..samplers.conditioning import combine

LAYOUT_KEY = "jointav_layout"
PROVENANCE_KEY = "jointav_provenance"


def nested_tensor_class():
    """Core's NestedTensor class where the running core has one (0.38+), else None (0.3.x: pack instead)."""
    try:
        module = importlib.import_module("comfy.nested_tensor")
    except ImportError:
        return None
    return getattr(module, "NestedTensor", None)


def is_nested(samples) -> bool:
    return getattr(samples, "is_nested", False) is True and hasattr(samples, "tensors")


def joint_samples(video: torch.Tensor, audio: torch.Tensor, layout: PackedLayout, nested=None):
    """`samples` for a LATENT: NestedTensor((video, audio)) when `nested` (core's class) is given, else packed."""
    if nested is not None:
        return nested((video, audio))
    return layout.pack(video, audio)


def layout_info(layout: PackedLayout, video_frames: int, audio_length: int) -> dict:
    return {"name": LAYOUT_NAME, "video_channels": layout.video_channels, "audio_channels": layout.audio_channels,
            "audio_per_video_frame": str(layout.audio_per_video_frame), "video_frames": video_frames,
            "audio_length": audio_length}


def layout_from(latent: dict, node: str) -> PackedLayout:
    info = latent.get(LAYOUT_KEY) if isinstance(latent, dict) else None
    if not isinstance(info, dict) or info.get("name") != LAYOUT_NAME:
        keys = sorted(latent) if isinstance(latent, dict) else type(latent).__name__
        raise InputValueError(f"{node}: latent has no {LAYOUT_KEY!r} entry (found {keys}); expected a joint "
                              f"audio-video LATENT from a JointAV latent node (or a sampler fed by one)")
    return PackedLayout(int(info["video_channels"]), int(info["audio_channels"]),
                        Fraction(info["audio_per_video_frame"]))


def split_samples(latent: dict, node: str) -> tuple[torch.Tensor, torch.Tensor]:
    """(video `[B, Cv, F, H, W]`, audio `[B, L, Ca]`) of a joint LATENT, packed or nested."""
    samples = latent.get("samples")
    if is_nested(samples):
        video, audio = samples.tensors[:2]
        return video, audio
    layout = layout_from(latent, node)
    if not isinstance(samples, torch.Tensor):
        raise InputShapeError(f"{node}: latent samples is a {type(samples).__name__}; expected a tensor")
    return layout.unpack(samples)


def to_core_latent(latent: JointLatent, layout: PackedLayout, nested=None) -> dict:
    """A JointLatent (empty or sampled; held frames as keep-mask conditionings) as a core LATENT dict."""
    video, audio = latent.video.float(), latent.audio.float()
    keep_items = [c for c in latent.conditionings if not hasattr(c, "reference_tokens")]
    keep = combine(keep_items or None, tuple(video.shape), tuple(audio.shape))
    out = {"frame_rate": float(latent.fps), "sample_rate": int(latent.audio_sample_rate),
           "audio_samples_per_latent": int(latent.audio_samples_per_latent),
           LAYOUT_KEY: layout_info(layout, video.shape[2], audio.shape[1])}
    if keep is not None:
        video, audio = keep.apply(video, audio)
    out["samples"] = joint_samples(video, audio, layout, nested)
    if keep is not None:
        if nested is not None:
            v_mask = torch.ones_like(video) if keep.video_mask is None else \
                (~keep.video_mask).float()[:, None, :, None, None].expand_as(video).clone()
            a_mask = torch.ones_like(audio) if keep.audio_mask is None else \
                (~keep.audio_mask).float()[:, :, None].expand_as(audio).clone()
            out["noise_mask"] = nested((v_mask, a_mask))
        else:
            out["noise_mask"] = layout.pack_keep_masks(keep.video_mask, keep.audio_mask, tuple(out["samples"].shape))
    if latent.provenance:
        out[PROVENANCE_KEY] = dict(latent.provenance)
    return out


def from_core_latent(latent: dict, node: str) -> JointLatent:
    """A sampled joint LATENT as the JointLatent the decoders and savers take."""
    if not isinstance(latent, dict) or "samples" not in latent:
        raise InputValueError(f"{node}: latent is a {type(latent).__name__} without 'samples'; expected a LATENT")
    video, audio = split_samples(latent, node)
    missing = [k for k in ("frame_rate", "sample_rate") if k not in latent]
    if missing:
        raise InputValueError(f"{node}: latent lacks {', '.join(missing)}; expected a joint LATENT from a JointAV node")
    return JointLatent(video=video.float().cpu(), audio=audio.float().cpu(), fps=float(latent["frame_rate"]),
                       audio_sample_rate=int(latent["sample_rate"]),
                       audio_samples_per_latent=int(latent.get("audio_samples_per_latent", 512)),
                       sampled=True, provenance=dict(latent.get(PROVENANCE_KEY, {})))
