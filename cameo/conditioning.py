"""Conditioning builders: a cameo profile's likeness and voice as sampler conditionings.

- `first_frame_conditioning`: the profile's best frame, fitted to the clip's size around the subject and encoded, held as
  latent frame 0 (image-to-audio-video). The SUPPORTED path with Ovi weights: Ovi was trained for it.
- `reference_conditioning`: the profile's clean face latents and voice latents, appended to the DiT's video and
  audio sequences outside the clip's timeline (models.fusion_dit, "Reference tokens"). EXPERIMENTAL with Ovi
  weights, which never saw such tokens: expect little or unpredictable effect until a model is trained with
  them (the toy default model's cameo pathway is trained by a separate step).

Training the reference pathway: build `CameoReference` values for a batch (or pass `video_reference` /
`audio_reference` straight to `FusionDiT.forward`, None per sample to drop them, as for classifier-free
dropout), compute the usual flow-matching loss on the clip outputs and backpropagate; nothing in the path is
in-place on tensors that need gradients.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from ..errors import InputShapeError, InputValueError
from ..samplers.conditioning import FirstFrame
from ..samplers.guidance import ReferenceTokens
from .profile import Profile
from .reference_media import fit_frame


@dataclass(frozen=True)
class CameoReference(ReferenceTokens):
    """Reference tokens of one cameo profile (EXPERIMENTAL with Ovi weights); `profile_id` says whose."""

    profile_id: str = ""


def encode_pictures(video_vae, pictures: np.ndarray | torch.Tensor) -> torch.Tensor:
    """uint8 RGB pictures `[k, H, W, 3]` → `[C, k, H/16, W/16]`: each encoded on its own as an image (a first
    frame, the way the VAE sees an i2v image), float32 on the CPU."""
    pictures = torch.as_tensor(pictures)
    if pictures.dtype != torch.uint8 or pictures.ndim != 4 or pictures.shape[-1] != 3:
        raise InputShapeError(f"pictures: {pictures.dtype} {tuple(pictures.shape)}, expected uint8 [k, H, W, 3]")
    ref = next(video_vae.parameters())
    pixels = pictures.permute(0, 3, 1, 2).float().div(127.5).sub(1.0)
    with torch.no_grad():
        latents = [video_vae.encode_image(p[None, :, None].to(ref.device, ref.dtype)) for p in pixels]
    return torch.cat(latents, dim=2)[0].float().cpu()


def first_frame_conditioning(profile: Profile, video_vae, height: int, width: int, index: int = 0) -> FirstFrame:
    """Frame `index` of the profile (0 = the sharpest) cropped to `height:width` around its subject, resized to
    it, encoded and held as latent frame 0 of every batch item."""
    if not 0 <= index < profile.frames.shape[0]:
        raise InputValueError(f"frame index {index}: the profile {profile.name} stores {profile.frames.shape[0]} frames")
    picture = fit_frame(profile.frames[index].numpy(), height, width, centre=profile.subject_centres[index])
    latent = encode_pictures(video_vae, picture[None])  # [C, 1, h, w]
    return FirstFrame(latent[None])


def reference_conditioning(profile: Profile, *, video: bool = True, audio: bool = True,
                           guided: bool = False) -> CameoReference:
    """The profile's face latents `[1, C, k, h, w]` and/or voice latents `[1, L_ref, C]` as reference tokens
    (EXPERIMENTAL with Ovi weights; see the module docstring). guided: leave them out of the guidance's negative
    pass (for models trained with reference dropout; samplers.guidance)."""
    if not (video or audio):
        raise InputValueError("reference_conditioning: video=False and audio=False; expected at least one of them")
    return CameoReference(video=profile.video_latents[None] if video else None,
                          audio=profile.audio_latents[None] if audio else None, guided=guided, profile_id=profile.id)
