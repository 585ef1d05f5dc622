"""One tensor holding a clip's video and audio latents: the layout of a joint latent in a ComfyUI 0.3.x LATENT.

ComfyUI before 0.38 carries exactly one tensor per LATENT (`samples`) through its samplers, noise and masks,
so the two streams travel packed (newer core uses `NestedTensor((video, audio))` instead; see
`comfy_native/latents.py`). The layout ("jointav-packed-v1"):

    samples = [B, Cv, F + Fa, H, W]
      frames 0 .. F-1      the video latent [B, Cv, F, H, W] as it is
      frames F .. F+Fa-1   the audio latent [B, L, Ca], each item flattened row-major (position by position,
                           Ca values each), zero-padded to Fa·Cv·H·W values and laid out row-major as
                           [Cv, Fa, H, W]; Fa = ceil(L·Ca / (Cv·H·W)), the fewest frames that hold it

To core it is an ordinary video latent of Cv channels (so core noise, masks, previews and latent nodes see a
5-D tensor of the model's channel count). The video frame count F is read back from the packed frame count:
the audio length is tied to F by the model's ratio (`samplers.audio_latent_length`), and F + Fa(F) grows
strictly with F, so exactly one F fits. Plain PyTorch: no ComfyUI import.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from fractions import Fraction

import torch

from ..errors import InputShapeError
from ..samplers import audio_latent_length

LAYOUT_NAME = "jointav-packed-v1"


@dataclass(frozen=True)
class PackedLayout:
    """The packing rule of one model: its latent channels and its audio-per-video-frame ratio."""

    video_channels: int
    audio_channels: int
    audio_per_video_frame: Fraction

    def audio_frames(self, audio_length: int, height: int, width: int) -> int:
        return math.ceil(audio_length * self.audio_channels / (self.video_channels * height * width))

    def audio_length(self, video_frames: int) -> int:
        return audio_latent_length(video_frames, self.audio_per_video_frame)

    def split(self, packed_shape: tuple[int, ...]) -> tuple[int, int, int]:
        """(video frames F, audio length L, audio frames Fa) of a packed `[B, Cv, F + Fa, H, W]` shape."""
        return _split(self, tuple(packed_shape))

    def _split(self, packed_shape: tuple[int, ...]) -> tuple[int, int, int]:
        if len(packed_shape) != 5 or packed_shape[1] != self.video_channels:
            raise InputShapeError(f"joint latent: shape {tuple(packed_shape)}, expected a packed {LAYOUT_NAME} latent "
                                  f"[B, {self.video_channels}, F + Fa, H, W]")
        total, height, width = packed_shape[2], packed_shape[3], packed_shape[4]
        for frames in range(2, total):
            length = self.audio_length(frames)
            extra = self.audio_frames(length, height, width)
            if frames + extra == total:
                return frames, length, extra
            if frames + extra > total:
                break
        raise InputShapeError(f"joint latent: {total} packed frames of {height}x{width} hold no video length F with "
                              f"its audio (F + ceil(L(F)·{self.audio_channels}/({self.video_channels}·{height}·"
                              f"{width})) frames); was the LATENT made by a JointAV latent node for this model?")

    def pack(self, video: torch.Tensor, audio: torch.Tensor) -> torch.Tensor:
        """video `[B, Cv, F, H, W]` + audio `[B, L, Ca]` → `[B, Cv, F + Fa, H, W]` (video's dtype and device)."""
        batch, channels, frames, height, width = video.shape
        expected = self.audio_length(frames)
        if audio.ndim != 3 or audio.shape[0] != batch or tuple(audio.shape[1:]) != (expected, self.audio_channels):
            raise InputShapeError(f"joint latent: audio {tuple(audio.shape)} does not go with video {tuple(video.shape)};"
                                  f" expected [{batch}, {expected}, {self.audio_channels}]")
        extra = self.audio_frames(expected, height, width)
        flat = torch.zeros(batch, extra * channels * height * width, dtype=video.dtype, device=video.device)
        flat[:, : expected * self.audio_channels] = audio.reshape(batch, -1).to(video.dtype)
        return torch.cat([video, flat.reshape(batch, channels, extra, height, width)], dim=2)

    def unpack(self, packed: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """`[B, Cv, F + Fa, H, W]` → (video `[B, Cv, F, H, W]`, audio `[B, L, Ca]`), views where possible."""
        frames, length, _ = self.split(tuple(packed.shape))
        batch = packed.shape[0]
        video = packed[:, :, :frames]
        audio = packed[:, :, frames:].reshape(batch, -1)[:, : length * self.audio_channels]
        return video, audio.reshape(batch, length, self.audio_channels)

    def stream_mask(self, packed_shape: tuple[int, ...], device=None) -> torch.Tensor:
        """`[1, 1, F + Fa, 1, 1]` float: 1 on the video frames, 0 on the audio frames (per-stream guidance)."""
        frames, _, extra = self.split(tuple(packed_shape))
        mask = torch.zeros(1, 1, frames + extra, 1, 1, device=device)
        mask[:, :, :frames] = 1
        return mask

    def pack_keep_masks(self, video_clean: torch.Tensor | None, audio_clean: torch.Tensor | None,
                        packed_shape: tuple[int, ...]) -> torch.Tensor:
        """A core `noise_mask` (1 = generate, 0 = hold) from per-frame `[B, F]` / per-position `[B, L]` masks."""
        batch, channels, _, height, width = packed_shape
        frames, length, _ = self.split(tuple(packed_shape))
        video = torch.ones(batch, channels, frames, height, width)
        audio = torch.ones(batch, length, self.audio_channels)
        if video_clean is not None:
            video = video * (~video_clean.bool()).float()[:, None, :, None, None]
        if audio_clean is not None:
            audio = audio * (~audio_clean.bool()).float()[:, :, None]
        return self.pack(video, audio)

    def keep_masks(self, noise_mask: torch.Tensor | None, packed_shape: tuple[int, ...]
                   ) -> tuple[torch.Tensor | None, torch.Tensor | None]:
        """Per-frame video and per-position audio hold masks (bool, True = held clean) from a packed noise mask;
        None for a stream that holds nothing."""
        if noise_mask is None:
            return None, None
        mask = noise_mask
        if tuple(mask.shape) != tuple(packed_shape):
            mask = mask.expand(packed_shape) if mask.ndim == len(packed_shape) else mask.reshape(packed_shape)
        video, audio = self.unpack(mask)
        video_clean = video.amax(dim=(1, 3, 4)) <= 0
        audio_clean = audio.amax(dim=2) <= 0
        return (video_clean if bool(video_clean.any()) else None,
                audio_clean if bool(audio_clean.any()) else None)


@functools.lru_cache(maxsize=256)
def _split(layout: PackedLayout, packed_shape: tuple[int, ...]) -> tuple[int, int, int]:
    # every forward and guidance step asks again for the same few shapes; the search is pure Python
    return layout._split(packed_shape)
