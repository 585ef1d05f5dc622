"""From a recording's frames and sound to a cameo's reference latents: the one path that both a profile
(pipeline.cameo.create_profile) and the training of the reference pathway (training.stages) go through, so
the model is trained on exactly the kind of references users' profiles give it.

Steps: pick the sharpest frontal frames (reference_media.pick_frames), crop a square around the subject
sized to the model's grid, encode each crop as an image with the video VAE; cut the longest clean voice
stretch (reference_media.voiced_segment) and encode it with the audio VAE.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

from ..audio.mmaudio_vae import encode_audio
from ..errors import InputValueError
from .conditioning import encode_pictures
from .reference_media import VOICE_RATE, FramePick, VoiceSegment, crop_side, pick_frames, square_crop, voiced_segment

MAX_REFERENCE_SIZE = 256  # default cap on the side of a reference crop, in pixels


@dataclass(frozen=True, eq=False)  # holds arrays
class ReferenceMedia:
    picks: list[FramePick]
    reference_size: int  # side of the square crops, pixels
    crops: np.ndarray  # uint8 [k, size, size, 3]
    segment: VoiceSegment
    video_latents: torch.Tensor  # [C, k, size/f, size/f]
    audio_latents: torch.Tensor  # [L_ref, C_audio]


def reference_grid(video_vae, dit_patch: int = 2) -> int:
    """Pixels a reference crop's side must be a multiple of: the VAE's factor times the DiT's spatial patch."""
    return video_vae.config.spatial_factor * dit_patch


def encode_reference_media(video_vae, audio_vae, frames: np.ndarray, times: np.ndarray, sound: np.ndarray, *,
                           max_frames: int = 2, reference_size: int | None = None,
                           voice_seconds: tuple[float, float] = (1.0, 3.0), dit_patch: int = 2) -> ReferenceMedia:
    """frames uint8 `[T, H, W, 3]` at `times` seconds, sound mono float32 at 16 kHz. reference_size: the crops'
    side in pixels (default: the subject's crop rounded up to the grid, at most MAX_REFERENCE_SIZE)."""
    picks = pick_frames(frames, times, max_frames)
    grid = reference_grid(video_vae, dit_patch)
    if reference_size is None:
        side = crop_side(frames.shape[1:], picks[0].box)
        reference_size = min(MAX_REFERENCE_SIZE, max(grid, math.ceil(side / grid) * grid))
    if isinstance(reference_size, bool) or not isinstance(reference_size, int) or reference_size < grid \
            or reference_size % grid:
        raise InputValueError(f"reference_size={reference_size!r}: expected a multiple of {grid} pixels")
    crops = np.stack([square_crop(frames[p.index], p.box, reference_size) for p in picks])
    segment = voiced_segment(sound, *voice_seconds)
    audio = encode_audio(audio_vae, torch.from_numpy(segment.waveform)[None], VOICE_RATE)[0].float().cpu()
    return ReferenceMedia(picks=picks, reference_size=reference_size, crops=crops, segment=segment,
                          video_latents=encode_pictures(video_vae, crops), audio_latents=audio)
