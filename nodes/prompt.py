"""Encode Prompt: Ovi's one prompt (scene text, spoken lines, sound description) and the two negatives.

The core composes the markup (`<S>...<E>` per speech line; the sound description as `<AUDCAP>` tags or a
trailing `Audio: ...`, whichever the loaded model was trained on), so the node only passes the fields on.
"""

from __future__ import annotations

from comfy_api.latest import io

from ..pipeline import api as pipeline
from .clip_text import clip_text_encoder
from .failures import node_errors
from .types import CATEGORY, JointAVConditioning, JointAVModel
from .validation import validate

# Ovi's short default negatives.
VIDEO_NEGATIVE = "jitter, bad hands, blur, distortion"
AUDIO_NEGATIVE = "robotic, muffled, echo, distorted"


class EncodePrompt(io.ComfyNode):
    NAME = "JointAV Encode Prompt"

    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="JointAVEncodePrompt",
            display_name=cls.NAME,
            category=CATEGORY,
            description="Encodes the scene, the spoken lines and the sound description for both towers.",
            inputs=[
                JointAVModel.Input("model"),
                io.String.Input("video_prompt", multiline=True, default="",
                                tooltip="What is seen (and, optionally, said inline as <S>...<E>)."),
                io.String.Input("speech_lines", multiline=True, default="",
                                tooltip="Spoken lines, one per line; each becomes <S>line<E> after the video prompt."),
                io.String.Input("audio_description", multiline=True, default="",
                                tooltip="The sounds and voices; written in the style the loaded model expects."),
                io.String.Input("video_negative", multiline=True, default=VIDEO_NEGATIVE),
                io.String.Input("audio_negative", multiline=True, default=AUDIO_NEGATIVE),
                io.Clip.Input("clip", optional=True,
                              tooltip="umT5-XXL from Load CLIP (type wan): Ovi models need it, the default does not."),
            ],
            outputs=[JointAVConditioning.Output(display_name="conditioning")],
        )

    @classmethod
    def validate_inputs(cls, **values) -> bool | str:
        return validate(cls, values, extra=cls._rules)

    @classmethod
    def _rules(cls, values: dict) -> list[str | None]:
        texts = [values.get(name) for name in ("video_prompt", "speech_lines", "audio_description")]
        if all(isinstance(t, str) and not t.strip() for t in texts):  # only when all three are typed-in values
            return [f"{cls.NAME}: video_prompt, speech_lines and audio_description are all empty; "
                    "write at least a video prompt"]
        return []

    @classmethod
    def execute(cls, model, video_prompt: str, speech_lines: str, audio_description: str, video_negative: str,
                audio_negative: str, clip=None) -> io.NodeOutput:
        lines = [line for line in speech_lines.splitlines() if line.strip()]
        text_encode = clip_text_encoder(clip) if clip is not None else None
        with node_errors(cls.NAME):
            conditioning = pipeline.encode_prompt(model, video_prompt, lines, audio_description, video_negative,
                                                  audio_negative, text_encode=text_encode)
        # The exact text the model reads (speech and sound markup included) goes to the run's report, followed by
        # what the model's text encoder cannot read of it (the embedded model's closed vocabulary).
        return io.NodeOutput(conditioning, ui={"text": [conditioning.prompt, *conditioning.notes]})
