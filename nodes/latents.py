"""Empty Latent, Image To AV Latent and Split Latent: the joint latent a sampler starts from, and a way out.

Lengths are presets (Ovi ties 121 frames at 24 fps to 157 audio latents, 241 to 314), so duration is a
choice, not a number; which presets a model has is known only once it is loaded, so the core checks it.
"""

from __future__ import annotations

from comfy_api.latest import io

from ..pipeline import api as pipeline
from ..pipeline.specs import FAMILIES
from .failures import node_errors
from .types import CATEGORY, JointAVDecoders, JointAVLatent, JointAVModel


def _preset_names() -> list[str]:
    """Every duration preset name of the model families the pack knows, shortest first."""
    seconds = {p.name: p.frames / spec.fps for spec in FAMILIES.values() for p in spec.durations}
    return sorted(seconds, key=seconds.get)


DURATIONS = _preset_names()
MAX_SIZE = pipeline.MAX_SIDE
# The widget step: the smallest VAE factor of any family (8x, the default) times the smallest DiT patch (2).
# The loaded model's own multiple (VAE factor x DiT patch) is checked on execute.
SIZE_STEP = min(s.vae_space_factor for s in FAMILIES.values()) * 2


def check_size(node: str, name: str, value: int | None, *, allow_zero: bool = False) -> str | None:
    """A message for a typed-in width/height no model can use (the core checks the model's own multiple)."""
    if value is None or (allow_zero and value == 0):
        return None
    if not SIZE_STEP <= value <= MAX_SIZE or value % SIZE_STEP:
        return f"{node}: {name}={value} must be a multiple of {SIZE_STEP} between {SIZE_STEP} and {MAX_SIZE}"
    return None


def check_duration(node: str, value: str | None) -> str | None:
    if value is None or value in DURATIONS:
        return None
    return f"{node}: duration={value!r} is not a preset; presets: {', '.join(DURATIONS)}"


class EmptyLatent(io.ComfyNode):
    NAME = "JointAV Empty Latent"

    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="JointAVEmptyLatent",
            display_name=cls.NAME,
            category=CATEGORY,
            description="A text-to-audio-video latent of one preset length and a frame size.",
            inputs=[
                JointAVModel.Input("model"),
                io.Combo.Input("duration", options=DURATIONS, default="5s",
                               tooltip="Clip length preset; the model decides which presets it supports."),
                io.Int.Input("width", default=992, min=SIZE_STEP, max=MAX_SIZE, step=SIZE_STEP,
                             tooltip="Frame width in pixels; a multiple of the model's spatial multiple (32 for Ovi)."),
                io.Int.Input("height", default=512, min=SIZE_STEP, max=MAX_SIZE, step=SIZE_STEP,
                             tooltip="Frame height in pixels; a multiple of the model's spatial multiple."),
                io.Int.Input("batch", default=1, min=1, max=64, tooltip="Clips generated side by side."),
            ],
            outputs=[JointAVLatent.Output(display_name="latent")],
        )

    @classmethod
    def validate_inputs(cls, duration: str | None = None, width: int | None = None, height: int | None = None,
                        batch: int | None = None) -> bool | str:
        problems = [check_duration(cls.NAME, duration), check_size(cls.NAME, "width", width),
                    check_size(cls.NAME, "height", height)]
        if batch is not None and not 1 <= batch <= 64:
            problems.append(f"{cls.NAME}: batch={batch} must be between 1 and 64")
        problems = [p for p in problems if p]
        return "; ".join(problems) if problems else True

    @classmethod
    def execute(cls, model, duration: str, width: int, height: int, batch: int) -> io.NodeOutput:
        with node_errors(cls.NAME):
            latent = pipeline.empty_latent(model, duration, height, width, batch)
        return io.NodeOutput(latent)


class ImageToAVLatent(io.ComfyNode):
    NAME = "JointAV Image To AV Latent"

    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="JointAVImageToAVLatent",
            display_name=cls.NAME,
            category=CATEGORY,
            description="An image-to-audio-video latent: the image becomes the clip's first frame.",
            inputs=[
                JointAVModel.Input("model"),
                JointAVDecoders.Input("decoders", tooltip="Their video VAE encodes the first frame."),
                io.Image.Input("image", tooltip="The first frame (the first image of a batch)."),
                io.Combo.Input("duration", options=DURATIONS, default="5s",
                               tooltip="Clip length preset; the model decides which presets it supports."),
                io.Int.Input("width", default=0, min=0, max=MAX_SIZE, step=SIZE_STEP, optional=True,
                             tooltip="0: from the image (fitted to the model's pixel area and multiple)."),
                io.Int.Input("height", default=0, min=0, max=MAX_SIZE, step=SIZE_STEP, optional=True,
                             tooltip="0: from the image (fitted to the model's pixel area and multiple)."),
            ],
            outputs=[JointAVLatent.Output(display_name="latent")],
        )

    @classmethod
    def validate_inputs(cls, duration: str | None = None, width: int | None = None,
                        height: int | None = None) -> bool | str:
        problems = [check_duration(cls.NAME, duration), check_size(cls.NAME, "width", width, allow_zero=True),
                    check_size(cls.NAME, "height", height, allow_zero=True)]
        if (width == 0) != (height == 0) and width is not None and height is not None:
            problems.append(f"{cls.NAME}: width={width}, height={height}: give both sizes, or 0 for both")
        problems = [p for p in problems if p]
        return "; ".join(problems) if problems else True

    @classmethod
    def execute(cls, model, decoders, image, duration: str, width: int = 0, height: int = 0) -> io.NodeOutput:
        with node_errors(cls.NAME):
            latent = pipeline.image_to_av_latent(model, decoders, image, duration, height or None, width or None)
        return io.NodeOutput(latent)


class SplitLatent(io.ComfyNode):
    NAME = "JointAV Split Latent"

    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="JointAVSplitLatent",
            display_name=cls.NAME,
            category=CATEGORY,
            description="Hands the video half out as a core LATENT (Wan2.2 VAE layout) for core video nodes.",
            inputs=[io.MultiType.Input("latent", types=[JointAVLatent, io.Latent])],
            outputs=[io.Latent.Output(display_name="video_latent"), io.Float.Output(display_name="fps")],
        )

    @classmethod
    def execute(cls, latent) -> io.NodeOutput:
        if isinstance(latent, dict):  # a joint core LATENT (from core samplers)
            from ..comfy_native.latents import from_core_latent

            with node_errors(cls.NAME):
                latent = from_core_latent(latent, cls.NAME)
        return io.NodeOutput({"samples": latent.video}, float(latent.fps))
