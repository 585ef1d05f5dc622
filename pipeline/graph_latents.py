"""issue 18's compositions as one latent each, for node graphs (ComfyUI IMAGE `[T, H, W, 3]` in 0..1 and AUDIO
dicts): the graph samples and decodes them with the usual nodes. Node-free, so they move to the native path as
they are.
"""

from __future__ import annotations

import numpy as np
import torch

from ..audio.av_stream import MODEL_RATE
from ..errors import InputShapeError, InputValueError
from ..samplers import SegmentTail, WholeAudio, WholeVideo
from . import api
from .segments import (DEFAULT_HOLD, _check_hold, _first_tail, _held_audio, _sample_at, encode_frames, encode_sound, held_frames,
                       to_uint8)
from .types import Decoders, JointLatent, JointModel


def _audio_dict_sound(audio: dict, what: str) -> np.ndarray:
    from ..audio.av_stream import _as_model_sound

    waveform, rate = audio.get("waveform") if isinstance(audio, dict) else None, \
        audio.get("sample_rate") if isinstance(audio, dict) else None
    if not isinstance(waveform, torch.Tensor) or waveform.ndim != 3 or not isinstance(rate, int) or rate <= 0:
        raise InputValueError(f"{what}: expected a ComfyUI AUDIO {{'waveform': [B, C, S], 'sample_rate': int}}")
    return _as_model_sound(waveform[0].float().cpu().numpy(), rate)


def _images_uint8(images: torch.Tensor, what: str) -> np.ndarray:
    if not isinstance(images, torch.Tensor) or images.ndim != 4 or images.shape[-1] != 3:
        shape = tuple(images.shape) if isinstance(images, torch.Tensor) else type(images).__name__
        raise InputShapeError(f"{what}: {shape}, expected frames [T, H, W, 3] (a ComfyUI IMAGE)")
    return to_uint8(images.float().cpu())


def audio_to_video_latent(model: JointModel, decoders: Decoders, audio: dict, duration: str = api.MODEL_DURATION,
                          height: int | None = None, width: int | None = None) -> JointLatent:
    """A clip whose whole audio latent is held to the given sound's first `duration` (audio-to-video)."""
    sound = _audio_dict_sound(audio, "audio")
    latent = api.empty_latent(model, duration, height, width)
    frames = latent.video_frames
    if len(sound) < _sample_at(frames - 1, model.spec.fps):
        raise InputValueError(f"audio: {len(sound) / MODEL_RATE:.2f} s of sound, shorter than the asked duration "
                              f"{duration} ({(frames - 1) / model.spec.fps:.2f} s)")
    samples = latent.audio.shape[1] * model.spec.audio_samples_per_latent
    held = encode_sound(decoders, np.pad(sound[:samples], (0, max(0, samples - len(sound)))))
    latent.conditionings.append(WholeAudio(held[:, :latent.audio.shape[1]]))
    return latent


def video_to_audio_latent(model: JointModel, decoders: Decoders, images: torch.Tensor,
                          duration: str = api.MODEL_DURATION) -> JointLatent:
    """A clip whose whole video latent is held to the given frames' first `duration` (video-to-audio, foley).
    The frames must have a size the model takes; their rate is taken to be the model's."""
    frames = _images_uint8(images, "images")
    height, width = frames.shape[1:3]
    latent = api.empty_latent(model, duration, int(height), int(width))
    if len(frames) < latent.video_frames:
        raise InputValueError(f"images: {len(frames)} frames, fewer than the asked duration {duration} needs "
                              f"({latent.video_frames} frames at {model.spec.fps:g} fps)")
    latent.conditionings.append(WholeVideo(encode_frames(decoders, frames[:latent.video_frames])))
    return latent


def extension_latent(model: JointModel, decoders: Decoders, images: torch.Tensor, audio: dict,
                     hold_latent_frames: int = DEFAULT_HOLD) -> tuple[JointLatent, int, int]:
    """The next segment of a clip (its frames and sound): a latent holding the clip's last usable frames and the
    audio span that covers them. Returns (latent, usable, held): keep the clip's first `usable` frames, then the
    new segment's frames from index `held` on (its first `held` frames are the clip's, shared)."""
    _check_hold(model, hold_latent_frames)
    frames = _images_uint8(images, "images")
    sound = _audio_dict_sound(audio, "audio")
    height, width = frames.shape[1:3]
    usable, tail = _first_tail(frames, sound, model, hold_latent_frames, "images/audio")
    m = _held_audio(model, hold_latent_frames)
    latent = api.empty_latent(model, api.MODEL_DURATION, int(height), int(width))
    held_sound = tail.sound[:m * model.spec.audio_samples_per_latent]
    latent.conditionings.append(SegmentTail(encode_frames(decoders, tail.frames), encode_sound(decoders, held_sound),
                                            min_audio=m))
    return latent, usable, held_frames(hold_latent_frames, model)
