"""Empty Latent, Image To AV Latent and Split Latent: the joint latent a sampler starts from, and a way out.

Lengths are presets (Ovi ties 121 frames at 24 fps to 157 audio latents, 241 to 314), so duration is a
choice, not a number; which presets and sizes a model takes is known only once it is loaded, so the core
checks them (before any tensor is made). The defaults, "auto" and 0 x 0, are the loaded model's own.
"""

from __future__ import annotations

from comfy_api.latest import io

from ..pipeline import api as pipeline
from ..pipeline.specs import FAMILIES
from .failures import node_errors
from .types import CATEGORY, JointAVDecoders, JointAVLatent, JointAVModel
from .validation import validate


def _preset_names() -> list[str]:
    """Every duration preset name of the model families the pack knows, shortest first."""
    seconds = {p.name: p.frames / spec.fps for spec in FAMILIES.values() for p in spec.durations}
    return sorted(seconds, key=seconds.get)


DURATIONS = [pipeline.MODEL_DURATION, *_preset_names()]
MAX_SIZE = pipeline.MAX_SIDE
# The widget step: the smallest VAE factor of any family (8x, the default) times the smallest DiT patch (2).
# The loaded model's own multiple (VAE factor x DiT patch) is checked on execute.
SIZE_STEP = min(s.vae_space_factor for s in FAMILIES.values()) * 2


def check_size(node: str, name: str, value: int | None) -> str | None:
    """A message for a typed-in width/height no model can use (the core checks the loaded model's own rule)."""
    if value is None or value == 0:
        return None
    if not SIZE_STEP <= value <= MAX_SIZE or value % SIZE_STEP:
        return (f"{node}: {name}={value} must be 0 (the model's default) or a multiple of {SIZE_STEP} between "
                f"{SIZE_STEP} and {MAX_SIZE}")
    return None


def size_rules(node: str, values: dict) -> list[str | None]:
    """Sizes: each 0 or a usable multiple, and both 0 (the model's default) or neither."""
    width, height = values.get("width"), values.get("height")
    problems = [check_size(node, "width", width), check_size(node, "height", height)]
    if width is not None and height is not None and (width == 0) != (height == 0):
        problems.append(f"{node}: width={width}, height={height}: give both sizes, or 0 for both (the model's default)")
    return problems


SIZE_TIP = ("Frame {0} in pixels; 0 (with the other 0 too): the loaded model's default size. Must be a multiple of "
            "the model's spatial multiple (16 for the default model, 32 for Ovi) within its frame area.")
DURATION_TIP = ("Clip length preset; auto: the loaded model's default (2s for the default model, 5s or 10s for Ovi). "
                "The model decides which presets it supports.")


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
                io.Combo.Input("duration", options=DURATIONS, default=pipeline.MODEL_DURATION, tooltip=DURATION_TIP),
                io.Int.Input("width", default=0, min=0, max=MAX_SIZE, step=SIZE_STEP, tooltip=SIZE_TIP.format("width")),
                io.Int.Input("height", default=0, min=0, max=MAX_SIZE, step=SIZE_STEP,
                             tooltip=SIZE_TIP.format("height")),
                io.Int.Input("batch", default=1, min=1, max=64, tooltip="Clips generated side by side."),
            ],
            outputs=[JointAVLatent.Output(display_name="latent")],
        )

    @classmethod
    def validate_inputs(cls, **values) -> bool | str:
        return validate(cls, values, extra=lambda v: size_rules(cls.NAME, v))

    @classmethod
    def execute(cls, model, duration: str, width: int, height: int, batch: int) -> io.NodeOutput:
        with node_errors(cls.NAME):
            latent = pipeline.empty_latent(model, duration, height or None, width or None, batch)
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
                io.Combo.Input("duration", options=DURATIONS, default=pipeline.MODEL_DURATION, tooltip=DURATION_TIP),
                io.Int.Input("width", default=0, min=0, max=MAX_SIZE, step=SIZE_STEP, optional=True,
                             tooltip="0: from the image (fitted to the model's pixel area and multiple)."),
                io.Int.Input("height", default=0, min=0, max=MAX_SIZE, step=SIZE_STEP, optional=True,
                             tooltip="0: from the image (fitted to the model's pixel area and multiple)."),
            ],
            outputs=[JointAVLatent.Output(display_name="latent")],
        )

    @classmethod
    def validate_inputs(cls, **values) -> bool | str:
        return validate(cls, values, extra=lambda v: size_rules(cls.NAME, v))

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
