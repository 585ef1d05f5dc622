"""To Video: frames + waveform + the latent's frame rate as a core VIDEO, so core Save Video writes the MP4."""

from __future__ import annotations

from fractions import Fraction

import torch
from comfy_api.latest import InputImpl, Types, io

from ..pipeline.cameo import cameo_provenance
from .types import CATEGORY, JointAVLatent


def one_track(audio: dict) -> dict:
    """Save Video writes one audio track; batch items (decoded back to back like the frames) are joined in time."""
    waveform = audio["waveform"]
    if waveform.ndim == 3 and waveform.shape[0] > 1:
        waveform = torch.cat(list(waveform), dim=-1).unsqueeze(0)
    return {"waveform": waveform, "sample_rate": int(audio["sample_rate"])}


class ToVideo(io.ComfyNode):
    NAME = "JointAV To Video"

    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="JointAVToVideo",
            display_name=cls.NAME,
            category=CATEGORY,
            description="Joins decoded frames and audio at the latent's frame rate into a VIDEO for Save Video.",
            inputs=[
                JointAVLatent.Input("latent", tooltip="The sampled latent; only its frame rate is used."),
                io.Image.Input("images"),
                io.Audio.Input("audio", optional=True),
            ],
            outputs=[io.Video.Output(display_name="video")],
        )

    @classmethod
    def execute(cls, latent, images, audio=None) -> io.NodeOutput:
        if cameo_provenance(latent):
            # core Save Video would write it unsigned and unlogged; a cameo's use must be on record
            raise ValueError(f"{cls.NAME} (input latent): this clip carries a cameo; save it with JointAV Save Video "
                             f"so its manifest records the consent and the use is logged")
        frame_rate = Fraction(float(latent.fps)).limit_denominator(1001)
        components = Types.VideoComponents(images=images, frame_rate=frame_rate,
                                           audio=one_track(audio) if audio is not None else None)
        return io.NodeOutput(InputImpl.VideoFromComponents(components))
