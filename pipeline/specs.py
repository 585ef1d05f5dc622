"""The model families this pack knows, and how a checkpoint file is matched to one.

Ovi's three releases share one architecture; they differ in clip length, frame area and the style of the
sound description, so the family cannot be read off the tensors. It comes from the file name (as
published) unless the user picks it.
"""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

from ..text.ovi_prompt import AudioCaptionStyle
from .types import DurationPreset, ModelSpec

# Sizes Ovi recommends (height, width); all are multiples of 32 as its DiT patch over the 16x VAE needs.
_OVI_720_SIZES = ((704, 704), (512, 992), (992, 512), (448, 1120), (1120, 448), (512, 960), (960, 512))
_OVI_960_SIZES = ((960, 960), (704, 1280), (1280, 704), (512, 992), (992, 512))

OVI_720_5S = ModelSpec(
    family="ovi-1.0-720x720-5s", fps=24.0, durations=(DurationPreset("5s", 121),), resolutions=_OVI_720_SIZES,
    caption_style=AudioCaptionStyle.TAGS, text_encoder="umt5", target_area=720 * 720,
)
OVI_960_5S = ModelSpec(
    family="ovi-960x960-5s", fps=24.0, durations=(DurationPreset("5s", 121),), resolutions=_OVI_960_SIZES,
    caption_style=AudioCaptionStyle.AUDIO_PREFIX, text_encoder="umt5", target_area=960 * 960,
)
OVI_960_10S = ModelSpec(
    family="ovi-1.1-960x960-10s", fps=24.0, durations=(DurationPreset("10s", 241),), resolutions=_OVI_960_SIZES,
    caption_style=AudioCaptionStyle.AUDIO_PREFIX, text_encoder="umt5", target_area=960 * 960,
)

# The embedded default: 12 fps, 16 kHz audio with 512 samples per latent, so one latent-frame interval
# (4 frames = 1/3 s) holds 31.25/3 audio latents.
DEFAULT_FPS = 12.0
DEFAULT_SPEC = ModelSpec(
    family="jointav-default", fps=DEFAULT_FPS,
    durations=(DurationPreset("2s", 25), DurationPreset("1s", 13), DurationPreset("3s", 37)),
    resolutions=((64, 64), (64, 96), (96, 64), (128, 128)),
    caption_style=AudioCaptionStyle.TAGS, text_encoder="embedded", video_latent_channels=16, vae_space_factor=8,
    audio_per_video_frame=Fraction(4 * 16000, 512) / Fraction(DEFAULT_FPS).limit_denominator(),
    # Skip-layer guidance off: with 4 blocks, skipping one leaves a negative pass too unlike the model (on 20
    # validation captions, not the test's, skipping block 1 halved the bounce counts kept and blurred sync).
    default_skip_layer=None,
    default_steps=24,
    reference_guidance=True,
    cameo_mode="both",
)

FAMILIES = {spec.family: spec for spec in (OVI_720_5S, OVI_960_5S, OVI_960_10S, DEFAULT_SPEC)}


def spec_for_file(path: str | Path, family: str = "auto") -> ModelSpec:
    """The family of an Ovi checkpoint: chosen by the user, or read from the published file name."""
    if family != "auto":
        if family not in FAMILIES:
            raise KeyError(f"model family {family!r} is unknown; known: auto, {', '.join(FAMILIES)}")
        return FAMILIES[family]
    name = Path(path).name.lower()
    if "10s" in name:
        return OVI_960_10S
    if "960" in name:
        return OVI_960_5S
    return OVI_720_5S
