"""Decode Video (to core IMAGE frames) and Decode Audio (to core AUDIO)."""

from __future__ import annotations

from comfy_api.latest import io

from ..comfy_native.latents import from_core_latent
from ..errors import GenerationInterrupted
from ..pipeline import api as pipeline
from .device import StepProgress, interrupted_exception, raise_if_interrupted, release_cache
from .failures import node_errors
from .types import CATEGORY, JointAVDecoders, JointAVLatent
from .validation import validate

SAMPLE_RATES = [16000, 44100, 48000]


def as_joint_latent(latent, node: str):
    """A core LATENT dict as the JointLatent the pipeline decodes; a JointLatent passes as it is."""
    return from_core_latent(latent, node) if isinstance(latent, dict) else latent


class DecodeVideo(io.ComfyNode):
    NAME = "JointAV Decode Video"

    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="JointAVDecodeVideo",
            display_name=cls.NAME,
            category=CATEGORY,
            description="Decodes the video half of a sampled latent into frames (IMAGE, all batch items in a row).",
            # today's JOINTAV_LATENT, or a joint core LATENT from core samplers
            inputs=[JointAVDecoders.Input("decoders"), io.MultiType.Input("latent", types=[JointAVLatent, io.Latent])],
            outputs=[io.Image.Output(display_name="images")],
        )

    @classmethod
    def execute(cls, decoders, latent) -> io.NodeOutput:
        with node_errors(cls.NAME):
            latent = as_joint_latent(latent, cls.NAME)
        release_cache()
        try:
            with node_errors(cls.NAME):
                images = pipeline.decode_video(decoders, latent, progress=StepProgress(latent.video.shape[2]),
                                               cancel=raise_if_interrupted)
        except GenerationInterrupted as exc:  # reported as ComfyUI's own interruption, like the sampler's
            raise interrupted_exception() from exc
        return io.NodeOutput(images)


class DecodeAudio(io.ComfyNode):
    NAME = "JointAV Decode Audio"

    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="JointAVDecodeAudio",
            display_name=cls.NAME,
            category=CATEGORY,
            description="Decodes the audio half of a sampled latent into a waveform (AUDIO).",
            inputs=[
                JointAVDecoders.Input("decoders"),
                io.MultiType.Input("latent", types=[JointAVLatent, io.Latent]),
                io.Combo.Input("sample_rate", options=SAMPLE_RATES, default=44100,
                               tooltip="Output rate; the vocoder's own rate (16 kHz for Ovi) is resampled."),
                io.Boolean.Input("stereo", default=True, tooltip="Two identical channels instead of one."),
            ],
            outputs=[io.Audio.Output(display_name="audio")],
        )

    @classmethod
    def validate_inputs(cls, **values) -> bool | str:
        return validate(cls, values)

    @classmethod
    def execute(cls, decoders, latent, sample_rate: int, stereo: bool) -> io.NodeOutput:
        with node_errors(cls.NAME):
            latent = as_joint_latent(latent, cls.NAME)
        release_cache()
        with node_errors(cls.NAME):
            audio = pipeline.decode_audio(decoders, latent, sample_rate=int(sample_rate), channels=2 if stereo else 1)
        return io.NodeOutput(audio)
