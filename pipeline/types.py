"""The values that flow between pipeline blocks (and between ComfyUI nodes as custom types)."""

from __future__ import annotations

from dataclasses import dataclass, field
from fractions import Fraction
from typing import Any, Callable

import torch

from ..text.ovi_prompt import AudioCaptionStyle


@dataclass(frozen=True)
class DurationPreset:
    """One clip length a model supports, as video frames (1 + 4k)."""

    name: str
    frames: int


@dataclass(frozen=True)
class ModelSpec:
    """What a joint model family needs beyond the DiT's tensor shapes: timing, presets, prompt style."""

    family: str  # "ovi-1.0-720", "ovi-960", "ovi-1.1-960-10s", "jointav-default", ...
    fps: float
    durations: tuple[DurationPreset, ...]
    resolutions: tuple[tuple[int, int], ...]  # (height, width) presets, the first is the default
    caption_style: AudioCaptionStyle
    text_encoder: str  # "umt5" (the CLIP users load for Wan) or "embedded" (the model ships its own)
    video_latent_channels: int = 48
    audio_latent_channels: int = 20
    vae_time_factor: int = 4
    vae_space_factor: int = 16
    spatial_patch: int = 2  # the DiT's patch over the latent's height and width (2x2 in Ovi and the default)
    audio_sample_rate: int = 16000
    audio_samples_per_latent: int = 512
    target_area: int | None = None  # pixels; None = any size that divides
    # audio latents per video latent-frame interval; ties the two lengths (samplers.audio_latent_length)
    audio_per_video_frame: Fraction = Fraction(157, 30)
    default_skip_layer: int | None = 11  # the block skipped in the negative pass (skip-layer guidance); None: off
    default_steps: int = 50
    # Trained with reference tokens dropped at random, so cameo references may be guided (left out of the negative
    # pass; samplers.guidance). False for Ovi, whose weights never saw reference tokens.
    reference_guidance: bool = False
    cameo_mode: str = "first_frame"  # what cameo mode "auto" means for this family (pipeline.cameo.MODES)

    @property
    def max_area(self) -> int:
        """The most pixels per frame this family is run at: 10% over the area it was trained on, or its largest
        preset. Beyond it a step's memory and time grow past what a queue can absorb (a 4096x4096 frame on the
        default model never finished its first step), so larger frames are refused before any work."""
        if self.target_area:
            return int(self.target_area * 1.1)
        return max(h * w for h, w in self.resolutions)

    @property
    def size_multiple(self) -> int:
        """Frame height and width must divide by this: the VAE's spatial factor times the DiT's patch."""
        return self.vae_space_factor * self.spatial_patch

    def duration_preset(self, name: str) -> DurationPreset:
        for preset in self.durations:
            if preset.name == name:
                return preset
        names = ", ".join(p.name for p in self.durations)
        raise KeyError(f"duration {name!r} is not a preset of model {self.family}; presets: {names}")


@dataclass
class JointModel:
    """A loaded DiT with its family spec and, for self-contained models, its own text encoder."""

    dit: torch.nn.Module
    spec: ModelSpec
    name: str
    source: str  # file path, or "embedded"
    text_encoder: Any | None = None  # an object with encode(list[str]) -> list[Tensor [L_i, text_dim]]
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))
    offload: str = "none"  # "none" | "cpu" | "blocks N": block swap from RAM while sampling (models/offload.py)
    native: Any | None = None  # inside ComfyUI: the core MODEL (ModelPatcher) that manages `dit`'s weights


@dataclass
class Decoders:
    """Video VAE, audio VAE and vocoder (any may be None when only one modality is wanted)."""

    video_vae: Any | None
    audio_vae: Any | None
    vocoder: Any | None
    name: str = ""
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))


@dataclass
class JointConditioning:
    """Positive and negative text embeddings per tower, and the exact prompts they came from."""

    video_positive: torch.Tensor  # [L, text_dim]
    audio_positive: torch.Tensor
    video_negative: torch.Tensor
    audio_negative: torch.Tensor
    prompt: str
    video_negative_prompt: str
    audio_negative_prompt: str
    # What the model's own text encoder cannot read of the prompt (unknown words, ignored fields), one line each;
    # empty for encoders that read any text (umT5). The CLI prints them, the node shows them.
    notes: tuple[str, ...] = ()


@dataclass
class JointLatent:
    """Video latent `[B, C, F, h, w]` and audio latent `[B, L, C]` of one clip, with timing and held values."""

    video: torch.Tensor
    audio: torch.Tensor
    fps: float
    audio_sample_rate: int
    audio_samples_per_latent: int
    conditionings: list = field(default_factory=list)  # samplers.conditioning objects (first frame, ...)
    sampled: bool = False  # False: a shape template (noise is drawn by the sampler); True: denoised latents
    provenance: dict = field(default_factory=dict)  # model, prompt, seed, sampler settings (set by sampling)

    @property
    def video_frames(self) -> int:
        return 1 + 4 * (self.video.shape[2] - 1)

    @property
    def duration_s(self) -> float:
        return self.video_frames / self.fps


ProgressFn = Callable[[int, int], None]
CancelFn = Callable[[], bool]
