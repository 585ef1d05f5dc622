"""Audio To Video Latent, Video To Audio Latent and Extend Latent: issue 18's compositions as latents a graph
samples and decodes with the usual nodes. Each is a short declaration over `pipeline.graph_latents`, whose
latents carry conditioning items (WholeAudio, WholeVideo, SegmentTail), so they move to the native path unchanged.
"""

from __future__ import annotations

from comfy_api.latest import io

from ..pipeline import api as pipeline
from ..pipeline import graph_latents
from .failures import node_errors
from .latents import DURATION_TIP, DURATIONS, MAX_SIZE, SIZE_STEP, SIZE_TIP, size_rules
from .types import CATEGORY, JointAVDecoders, JointAVLatent, JointAVModel
from .validation import validate


class AudioToVideoLatent(io.ComfyNode):
    NAME = "JointAV Audio To Video Latent"

    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="JointAVAudioToVideoLatent",
            display_name=cls.NAME,
            category=CATEGORY,
            description="Audio-to-video: the given sound is held clean for the whole clip; the sampler makes frames "
                        "that follow it. On the embedded default the JointAV Sampler adds its animate adapter "
                        "(default_model/adapters/, a fine-tune of the video tower for a given sound) by itself.",
            inputs=[
                JointAVModel.Input("model"),
                JointAVDecoders.Input("decoders", tooltip="Their audio VAE encodes the sound (it needs its encoder)."),
                io.Audio.Input("audio", tooltip="The sound (any rate; mixed to mono at 16 kHz); its start is used."),
                io.Combo.Input("duration", options=DURATIONS, default=pipeline.MODEL_DURATION, tooltip=DURATION_TIP),
                io.Int.Input("width", default=0, min=0, max=MAX_SIZE, step=SIZE_STEP, tooltip=SIZE_TIP.format("width")),
                io.Int.Input("height", default=0, min=0, max=MAX_SIZE, step=SIZE_STEP,
                             tooltip=SIZE_TIP.format("height")),
            ],
            outputs=[JointAVLatent.Output(display_name="latent")],
        )

    @classmethod
    def validate_inputs(cls, **values) -> bool | str:
        return validate(cls, values, extra=lambda v: size_rules(cls.NAME, v))

    @classmethod
    def execute(cls, model, decoders, audio, duration: str, width: int, height: int) -> io.NodeOutput:
        with node_errors(cls.NAME):
            latent = graph_latents.audio_to_video_latent(model, decoders, audio, duration, height or None,
                                                         width or None)
        return io.NodeOutput(latent)


class VideoToAudioLatent(io.ComfyNode):
    NAME = "JointAV Video To Audio Latent"

    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="JointAVVideoToAudioLatent",
            display_name=cls.NAME,
            category=CATEGORY,
            description="Video-to-audio (foley): the given frames are held clean for the whole clip; the sampler "
                        "makes their sound. On the embedded default the JointAV Sampler adds its foley adapter "
                        "(default_model/adapters/, a fine-tune of the audio tower for a given picture) by itself.",
            inputs=[
                JointAVModel.Input("model"),
                JointAVDecoders.Input("decoders", tooltip="Their video VAE encodes the frames (it needs its encoder)."),
                io.Image.Input("images", tooltip="The frames, at the model's frame rate and a size it takes."),
                io.Combo.Input("duration", options=DURATIONS, default=pipeline.MODEL_DURATION, tooltip=DURATION_TIP),
            ],
            outputs=[JointAVLatent.Output(display_name="latent")],
        )

    @classmethod
    def validate_inputs(cls, **values) -> bool | str:
        return validate(cls, values)

    @classmethod
    def execute(cls, model, decoders, images, duration: str) -> io.NodeOutput:
        with node_errors(cls.NAME):
            latent = graph_latents.video_to_audio_latent(model, decoders, images, duration)
        return io.NodeOutput(latent)


class ExtendLatent(io.ComfyNode):
    NAME = "JointAV Extend Latent"

    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="JointAVExtendLatent",
            display_name=cls.NAME,
            category=CATEGORY,
            description="The next segment of a clip: holds the clip's last frames and the sound under them. Join "
                        "the clip's first keep_frames frames with the new segment's frames from skip_frames on.",
            inputs=[
                JointAVModel.Input("model"),
                JointAVDecoders.Input("decoders", tooltip="Their VAEs encode the held frames and sound."),
                io.Image.Input("images", tooltip="The clip so far (its frames)."),
                io.Audio.Input("audio", tooltip="The clip's sound, starting with its first frame."),
                io.Int.Input("hold", default=2, min=1, max=4,
                             tooltip="Latent frames held: 2 = the clip's last 5 frames (the default), 1 = its last "
                                     "frame only, ..."),
            ],
            outputs=[JointAVLatent.Output(display_name="latent"), io.Int.Output(display_name="keep_frames"),
                     io.Int.Output(display_name="skip_frames")],
        )

    @classmethod
    def validate_inputs(cls, **values) -> bool | str:
        return validate(cls, values)

    @classmethod
    def execute(cls, model, decoders, images, audio, hold: int) -> io.NodeOutput:
        with node_errors(cls.NAME):
            latent, keep, skip = graph_latents.extension_latent(model, decoders, images, audio, hold)
        return io.NodeOutput(latent, keep, skip)
