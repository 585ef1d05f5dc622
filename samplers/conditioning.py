"""Conditioning items: every way of holding part of the joint latent clean while the rest is generated.

One protocol (`ConditioningItem`): an item applies itself to a latent of a given shape by returning a
`KeepMask` (clean values and where to hold them); an item that also adds clean tokens outside the clip's timeline
(a cameo's face and voice, a multi-shot film's subject) has a `reference_tokens(video_shape, audio_shape)` method
too. The items:

- `FirstFrame`: the encoded image is latent frame 0 (image-to-audio-video: Ovi's i2v; a cameo's first frame).
- `VideoFrames`: any run of latent frames.
- `AudioSpan`: any run of audio latent positions.
- `SegmentTail`: extension; the previous segment's last latent frames AND the audio span that covers them, held
  as the start of the next segment (one item, so the two spans can never disagree).
- `WholeVideo` / `WholeAudio`: one modality held clean for the whole clip (video-to-audio "foley" and
  audio-to-video).
- `KeepMask` itself, for per-item masks; `samplers.guidance.ReferenceTokens` (and cameo.conditioning's
  `CameoReference`) for reference tokens, whose keep mask is empty.

`resolve` turns a list of items into the one `Held` the sampler uses (masks OR-ed, at most one set of
reference tokens). The loop overwrites the held entries with their clean values before every model call and once
more after the last step, and hands the masks to the model, which gives those tokens timestep 0 (the reference's
first_frame_is_clean).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

import torch

from ..errors import InputShapeError, InputValueError

Shape = tuple[int, ...]


class ConditioningItem(Protocol):
    """One way of holding part of the latent. Items that add reference tokens also have `reference_tokens`."""

    def keep_mask(self, video_shape: Shape, audio_shape: Shape) -> KeepMask:
        """The clean values and masks for a video latent `[B, C, F, H, W]` and an audio latent `[B, L, C]`."""
        ...


Conditioning = ConditioningItem  # the older name, kept for callers


@dataclass(frozen=True)
class KeepMask:
    """Clean values and where to hold them. values are full-size latents; only masked entries matter.

    video_values `[B, C, F, H, W]` with video_mask `[B, F]` bool; audio_values `[B, L, C]` with audio_mask `[B, L]` bool.
    A modality without conditioning has both None.
    """

    video_values: torch.Tensor | None = None
    video_mask: torch.Tensor | None = None
    audio_values: torch.Tensor | None = None
    audio_mask: torch.Tensor | None = None

    def keep_mask(self, video_shape: Shape, audio_shape: Shape) -> KeepMask:
        _check_pair("video", self.video_values, self.video_mask, tuple(video_shape), time_axis=2)
        _check_pair("audio", self.audio_values, self.audio_mask, tuple(audio_shape), time_axis=1)
        return self

    def to(self, device: torch.device | str, dtype: torch.dtype) -> KeepMask:
        """Masks moved to `device`, values to `device` and `dtype` (done once, not every step)."""
        def move(t, as_dtype=None):
            return None if t is None else t.to(device=device, dtype=as_dtype or t.dtype)
        return KeepMask(move(self.video_values, dtype), move(self.video_mask),
                        move(self.audio_values, dtype), move(self.audio_mask))

    def apply(self, video: torch.Tensor, audio: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """New video/audio latents with the held entries replaced by their clean values."""
        if self.video_mask is not None:
            mask = self.video_mask.to(video.device)[:, None, :, None, None]
            video = torch.where(mask, self.video_values.to(video.device, video.dtype), video)
        if self.audio_mask is not None:
            mask = self.audio_mask.to(audio.device)[:, :, None]
            audio = torch.where(mask, self.audio_values.to(audio.device, audio.dtype), audio)
        return video, audio

    def apply_noised(self, video: torch.Tensor, audio: torch.Tensor, video_noise: torch.Tensor,
                     audio_noise: torch.Tensor, sigma: float) -> tuple[torch.Tensor, torch.Tensor]:
        """Held entries set to their clean values noised to `sigma`: (1 - sigma) * clean + sigma * noise."""
        noised = KeepMask(
            None if self.video_mask is None else (1 - sigma) * self.video_values.to(video.device, video.dtype)
            + sigma * video_noise, self.video_mask,
            None if self.audio_mask is None else (1 - sigma) * self.audio_values.to(audio.device, audio.dtype)
            + sigma * audio_noise, self.audio_mask)
        return noised.apply(video, audio)


def _check_pair(modality: str, values, mask, latent_shape: Shape, time_axis: int) -> None:
    if (values is None) != (mask is None):
        raise InputValueError(f"KeepMask.{modality}: values and mask must be given together (got only one of them)")
    if values is None:
        return
    expected_mask = (latent_shape[0], latent_shape[time_axis])
    if tuple(values.shape) != latent_shape:
        raise InputShapeError(f"KeepMask.{modality}_values: shape {tuple(values.shape)}, expected the latent's {latent_shape}")
    if mask.dtype != torch.bool or tuple(mask.shape) != expected_mask:
        raise InputShapeError(
            f"KeepMask.{modality}_mask: {mask.dtype} {tuple(mask.shape)}, expected torch.bool {expected_mask}"
        )


def _run_mask(batch: int, length: int, start: int, count: int, what: str) -> torch.Tensor:
    if isinstance(start, bool) or not isinstance(start, int) or start < 0 or start + count > length:
        raise InputShapeError(f"{what}: positions {start}..{start + count - 1} lie outside the latent's {length} positions")
    mask = torch.zeros(batch, length, dtype=torch.bool)
    mask[:, start:start + count] = True
    return mask


def _batch_of(latent: torch.Tensor, batch: int, what: str) -> torch.Tensor:
    if latent.shape[0] == batch:
        return latent
    if latent.shape[0] == 1:
        return latent.expand(batch, *latent.shape[1:])
    raise InputShapeError(f"{what}: batch {latent.shape[0]}, expected {batch} (the latent batch) or 1")


def _video_run(latent: torch.Tensor, start: int, video_shape: Shape, what: str) -> KeepMask:
    """KeepMask holding frames start .. start+k-1 of every item at `latent` `[B or 1, C, k, H, W]`."""
    batch, channels, frames, height, width = video_shape
    if latent.ndim != 5 or (latent.shape[1], latent.shape[3], latent.shape[4]) != (channels, height, width):
        raise InputShapeError(
            f"{what}: shape {tuple(latent.shape)}, expected [B, {channels}, k, {height}, {width}] "
            f"(channels and size of the video latent {tuple(video_shape)})"
        )
    count = latent.shape[2]
    mask = _run_mask(batch, frames, start, count, what)
    values = torch.zeros(video_shape, dtype=latent.dtype, device=latent.device)
    values[:, :, start:start + count] = _batch_of(latent, batch, what)
    return KeepMask(video_values=values, video_mask=mask)


@dataclass(frozen=True)
class VideoFrames:
    """Hold latent frames start .. start+k-1 of every batch item at `latent` `[B or 1, C, k, H, W]` (or `[C, k, H, W]`).

    Video extension (the previous clip's last frames first), a cameo reference frame, ...
    """

    latent: torch.Tensor
    start: int = 0

    def keep_mask(self, video_shape: Shape, audio_shape: Shape) -> KeepMask:
        latent = self.latent if self.latent.ndim == 5 else self.latent.unsqueeze(0)
        return _video_run(latent, self.start, video_shape, "VideoFrames latent")


@dataclass(frozen=True)
class FirstFrame:
    """Image-to-audio-video: the encoded image `[B or 1, C, 1, H, W]`, `[C, 1, H, W]` or `[C, H, W]` is latent frame 0."""

    latent: torch.Tensor

    def keep_mask(self, video_shape: Shape, audio_shape: Shape) -> KeepMask:
        latent = self.latent.unsqueeze(1) if self.latent.ndim == 3 else self.latent
        latent = latent.unsqueeze(0) if latent.ndim == 4 else latent
        if latent.ndim != 5 or latent.shape[2] != 1:
            raise InputShapeError(
                f"FirstFrame latent: shape {tuple(self.latent.shape)}, expected one encoded frame "
                f"[B, C, 1, H, W], [C, 1, H, W] or [C, H, W]"
            )
        return _video_run(latent, 0, video_shape, "FirstFrame latent")


@dataclass(frozen=True)
class AudioSpan:
    """Hold audio latent positions start .. start+k-1 of every batch item at `latent` `[B or 1, k, C]` (or `[k, C]`)."""

    latent: torch.Tensor
    start: int = 0

    def keep_mask(self, video_shape: Shape, audio_shape: Shape) -> KeepMask:
        latent = self.latent if self.latent.ndim == 3 else self.latent.unsqueeze(0)
        batch, length, channels = audio_shape
        if latent.ndim != 3 or latent.shape[2] != channels:
            raise InputShapeError(
                f"AudioSpan latent: shape {tuple(self.latent.shape)}, expected [B, k, {channels}] "
                f"(channels of the audio latent {tuple(audio_shape)})"
            )
        count = latent.shape[1]
        mask = _run_mask(batch, length, self.start, count, "AudioSpan latent")
        values = torch.zeros(audio_shape, dtype=latent.dtype, device=latent.device)
        values[:, self.start:self.start + count] = _batch_of(latent, batch, "AudioSpan latent")
        return KeepMask(audio_values=values, audio_mask=mask)


def _merge(values, mask, new_values, new_mask, time_view):
    if new_mask is None:
        return values, mask
    if mask is None:
        return new_values, new_mask
    new_values = new_values.to(values.device, values.dtype)
    merged = torch.where(time_view(new_mask.to(values.device)), new_values, values)
    return merged, mask | new_mask.to(mask.device)


def combine(conditionings: Conditioning | Sequence[Conditioning] | None, video_shape: Shape,
            audio_shape: Shape) -> KeepMask | None:
    """One KeepMask from several conditionings (masks OR-ed; where two hold the same entry, the later one wins).

    None when there is nothing to hold, so the model is called without masks.
    """
    if conditionings is None:
        return None
    items = [conditionings] if not isinstance(conditionings, (list, tuple)) else list(conditionings)
    video_values = video_mask = audio_values = audio_mask = None
    for item in items:
        if not hasattr(item, "keep_mask"):
            raise InputValueError(
                f"conditioning: got {type(item).__name__}, expected a conditioning item (FirstFrame, VideoFrames, "
                f"AudioSpan, SegmentTail, WholeVideo, WholeAudio, KeepMask, ReferenceTokens)"
            )
        keep = item.keep_mask(tuple(video_shape), tuple(audio_shape))
        video_values, video_mask = _merge(video_values, video_mask, keep.video_values, keep.video_mask,
                                          lambda m: m[:, None, :, None, None])
        audio_values, audio_mask = _merge(audio_values, audio_mask, keep.audio_values, keep.audio_mask,
                                          lambda m: m[:, :, None])
    if video_mask is None and audio_mask is None:
        return None
    return KeepMask(video_values, video_mask, audio_values, audio_mask)


def _as_batched(latent: torch.Tensor, ndim: int, what: str, layout: str) -> torch.Tensor:
    if not isinstance(latent, torch.Tensor):
        raise InputValueError(f"{what}: got {type(latent).__name__}, expected a tensor {layout}")
    latent = latent if latent.ndim == ndim else latent.unsqueeze(0)
    if latent.ndim != ndim:
        raise InputShapeError(f"{what}: shape {tuple(latent.shape)}, expected {layout}")
    return latent


@dataclass(frozen=True)
class WholeVideo:
    """Video-to-audio (foley): the whole video latent `[B or 1, C, F, H, W]` (or `[C, F, H, W]`) held clean."""

    latent: torch.Tensor

    def keep_mask(self, video_shape: Shape, audio_shape: Shape) -> KeepMask:
        latent = _as_batched(self.latent, 5, "WholeVideo latent", "[B, C, F, H, W]")
        if latent.shape[2] != video_shape[2]:
            raise InputShapeError(f"WholeVideo latent: {latent.shape[2]} latent frames, expected all "
                                  f"{video_shape[2]} of the clip's video latent {tuple(video_shape)}")
        return _video_run(latent, 0, video_shape, "WholeVideo latent")


@dataclass(frozen=True)
class WholeAudio:
    """Audio-to-video: the whole audio latent `[B or 1, L, C]` (or `[L, C]`) held clean."""

    latent: torch.Tensor

    def keep_mask(self, video_shape: Shape, audio_shape: Shape) -> KeepMask:
        latent = _as_batched(self.latent, 3, "WholeAudio latent", "[B, L, C]")
        if latent.shape[1] != audio_shape[1]:
            raise InputShapeError(f"WholeAudio latent: {latent.shape[1]} audio latents, expected all "
                                  f"{audio_shape[1]} of the clip's audio latent {tuple(audio_shape)}")
        return AudioSpan(latent, 0).keep_mask(video_shape, audio_shape)


def audio_positions_covering(latent_frames: int, video_frames_per_latent: int, fps: float,
                             audio_seconds_per_latent: float) -> int:
    """Audio latent positions from time 0 that cover the first `latent_frames` latent frames' video frames.

    Latent frame 0 is one video frame, each further one `video_frames_per_latent` frames; frame i lasts from
    i/fps to (i+1)/fps, so the span is (1 + (k-1)*r)/fps seconds, rounded UP to whole audio latents.
    """
    frames = 1 + (latent_frames - 1) * video_frames_per_latent
    return math.ceil(frames / fps / audio_seconds_per_latent - 1e-9)


@dataclass(frozen=True)
class SegmentTail:
    """Extension: the previous segment's last latent frames `[B or 1, C, k, H, W]` and the audio latents
    `[B or 1, m, C]` covering them, held as the first k latent frames and the first m audio positions of the
    next segment. `min_audio` (when given) is the fewest positions that cover the k frames; fewer is refused,
    so the held audio always spans at least the held video."""

    video: torch.Tensor
    audio: torch.Tensor
    min_audio: int | None = None

    def keep_mask(self, video_shape: Shape, audio_shape: Shape) -> KeepMask:
        video = _as_batched(self.video, 5, "SegmentTail video", "[B, C, k, H, W]")
        audio = _as_batched(self.audio, 3, "SegmentTail audio", "[B, m, C]")
        if self.min_audio is not None and audio.shape[1] < self.min_audio:
            raise InputShapeError(f"SegmentTail audio: {audio.shape[1]} audio latents, expected at least "
                                  f"{self.min_audio} to cover the {video.shape[2]} held latent frames")
        held_video = _video_run(video, 0, video_shape, "SegmentTail video")
        held_audio = AudioSpan(audio, 0).keep_mask(video_shape, audio_shape)
        return KeepMask(held_video.video_values, held_video.video_mask, held_audio.audio_values,
                        held_audio.audio_mask)


@dataclass(frozen=True)
class Held:
    """What the sampler holds for one clip: the merged keep mask (None: nothing) and the reference tokens
    (None: none)."""

    keep: KeepMask | None
    references: object | None  # samplers.guidance.ReferenceTokens


def resolve(items: ConditioningItem | Sequence[ConditioningItem] | None, video_shape: Shape,
            audio_shape: Shape) -> Held:
    """The one `Held` for a list of conditioning items: their keep masks combined, and the reference tokens of
    the (at most one) item that has them."""
    if items is None:
        return Held(None, None)
    items = [items] if not isinstance(items, (list, tuple)) else list(items)
    references = [c for c in items if hasattr(c, "reference_tokens")]
    if len(references) > 1:
        raise InputValueError(f"conditioning: {len(references)} reference-token items (cameos, kept subjects) given; "
                              f"expected at most one per clip")
    refs = None
    if references:
        refs = references[0].reference_tokens(tuple(video_shape), tuple(audio_shape))
    return Held(combine(items, video_shape, audio_shape), refs)
