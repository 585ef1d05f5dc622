"""Reference tokens (a cameo's clean face and voice latents) carried in core CONDITIONING.

On the native path the tokens ride on the positive conditioning entries, as plain tensors under two keys, so
they reach the model wherever the conditioning goes (core samplers, our guider, any node that copies entries):

    jointav_video_reference   [B or 1, C, k, h, w]   clean face latents (k reference frames)
    jointav_audio_reference   [B or 1, L_ref, C]     clean voice latents

Either may be absent. `JointAVModel.extra_conds` hands them to the DiT as `video_reference` / `audio_reference`.
Whether the guidance's negative pass sees them too is the JointAV Guider's `reference_guidance`, not part of
the conditioning. Plain: nothing here imports ComfyUI.
"""

from __future__ import annotations

import torch

from ..errors import InputShapeError, InputValueError
from ..samplers.guidance import ReferenceTokens

VIDEO_REFERENCE_KEY = "jointav_video_reference"
AUDIO_REFERENCE_KEY = "jointav_audio_reference"
REFERENCE_KEYS = (VIDEO_REFERENCE_KEY, AUDIO_REFERENCE_KEY)


def _entries(conditioning, what: str) -> list:
    if not isinstance(conditioning, list) or not all(isinstance(c, (list, tuple)) and len(c) >= 2
                                                     and isinstance(c[1], dict) for c in conditioning):
        raise InputValueError(f"{what}: got {type(conditioning).__name__}, expected a CONDITIONING (a list of "
                              f"[tensor, dict] entries, as CLIP Text Encode makes)")
    return conditioning


def _checked(tensor, ndim: int, key: str, layout: str) -> torch.Tensor:
    if not isinstance(tensor, torch.Tensor) or tensor.ndim != ndim or tensor.numel() == 0:
        shape = tuple(tensor.shape) if isinstance(tensor, torch.Tensor) else type(tensor).__name__
        raise InputShapeError(f"{key}: got {shape}, expected a non-empty tensor {layout}")
    return tensor


def reference_entries(references: ReferenceTokens | None) -> dict:
    """The conditioning keys for `references` (only those present); {} for None."""
    if references is None:
        return {}
    out = {}
    if references.video is not None:
        out[VIDEO_REFERENCE_KEY] = _checked(references.video, 5, VIDEO_REFERENCE_KEY, "[B or 1, C, k, h, w]")
    if references.audio is not None:
        out[AUDIO_REFERENCE_KEY] = _checked(references.audio, 3, AUDIO_REFERENCE_KEY, "[B or 1, L_ref, C]")
    return out


def attach_references(conditioning, references: ReferenceTokens | None, what: str = "positive") -> list:
    """A new CONDITIONING whose every entry carries `references` (replacing any it carried); the input is not
    changed. None gives a copy without reference keys."""
    keys = reference_entries(references)
    out = []
    for entry in _entries(conditioning, what):
        options = {k: v for k, v in entry[1].items() if k not in REFERENCE_KEYS}
        out.append([entry[0], {**options, **keys}, *entry[2:]])
    return out


def strip_references(conditioning, what: str = "conditioning") -> list:
    """A new CONDITIONING without reference keys."""
    return attach_references(conditioning, None, what)


def references_of(conditioning, what: str = "positive", guided: bool = False) -> ReferenceTokens | None:
    """The reference tokens a CONDITIONING carries (those of its first entry that has any), as the library's
    ReferenceTokens; None when no entry carries them. guided: the library's flag for the result (the native
    path decides it in the guider)."""
    for entry in _entries(conditioning, what):
        video, audio = entry[1].get(VIDEO_REFERENCE_KEY), entry[1].get(AUDIO_REFERENCE_KEY)
        if video is None and audio is None:
            continue
        if video is not None:
            _checked(video, 5, VIDEO_REFERENCE_KEY, "[B or 1, C, k, h, w]")
        if audio is not None:
            _checked(audio, 3, AUDIO_REFERENCE_KEY, "[B or 1, L_ref, C]")
        return ReferenceTokens(video=video, audio=audio, guided=guided)
    return None
