"""Nodes of the native path: JointAV pieces that plug into core's MODEL / CONDITIONING / LATENT / GUIDER /
NOISE / SIGMAS, so core SamplerCustomAdvanced, KSamplerSelect, BasicScheduler, CLIP Text Encode, LoRA,
caching and compile nodes drive the fusion DiT.

    JointAV Empty AV Latent / Image To AV Latent (native): joint LATENT (comfy_native/latents.py)
    JointAV Guider: GUIDER (separate video/audio scales and negatives, skip-layer guidance)
    JointAV Noise: NOISE seeded as the reference (and the JointAV Sampler) seeds it
    JointAV Scheduler: SIGMAS of the reference's solvers
    JointAV Solver: SAMPLER stepping as the reference's solvers (UniPC, DPM++, Euler)
    JointAV Prompt Markup: Ovi's prompt markup as a STRING for CLIP Text Encode
    JointAV To LATENT: a JOINTAV_LATENT (today's sampler) as a joint LATENT
    JointAV Apply Cameo (native): a consenting person's likeness and voice on the positive CONDITIONING and LATENT
"""

from __future__ import annotations

from comfy_api.latest import io

from ..cameo.consent_gate import consent_check_for
from ..comfy_native.cameo import apply_cameo_native
from ..comfy_native.guidance import JointAVGuider, JointAVNoise, reference_sigmas
from ..comfy_native.latents import nested_tensor_class, to_core_latent
from ..comfy_native.loading import require_native
from ..comfy_native.model import layout_for
from ..comfy_native.solvers import jointav_sampler
from ..errors import InputValueError
from ..pipeline import api as pipeline
from ..pipeline.cameo import MODE_CHOICES, REFERENCE_GUIDANCE
from ..pipeline.types import JointModel
from ..text.ovi_prompt import AudioCaptionStyle, compose_prompt
from .failures import node_errors
from .latents import DURATION_TIP, DURATIONS, MAX_SIZE, SIZE_STEP, SIZE_TIP, size_rules
from .types import CATEGORY, JointAVCameo, JointAVDecoders, JointAVLatent
from .validation import validate

MAX_SEED = 0xFFFFFFFFFFFFFFFF
SOLVERS = ["euler", "unipc", "dpm++"]
STYLE_CHOICES = {"<AUDCAP> tags (Ovi 1.0, default model)": AudioCaptionStyle.TAGS,
                 "Audio: prefix (Ovi 960x960, 1.1)": AudioCaptionStyle.AUDIO_PREFIX}


def joint_model_view(patcher, node: str) -> JointModel:
    """The pipeline's view of a core MODEL (its plain DiT and family), for the latent builders."""
    model = require_native(patcher, node)
    return JointModel(dit=model.diffusion_model.dit, spec=model.jointav_spec, name=model.jointav_spec.family,
                      source="core MODEL")


def core_latent(joint, view: JointModel) -> dict:
    return to_core_latent(joint, layout_for(view.dit.config, view.spec), nested_tensor_class())


class EmptyAVLatent(io.ComfyNode):
    NAME = "JointAV Empty AV Latent"

    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="JointAVEmptyAVLatent",
            display_name=cls.NAME,
            category=CATEGORY,
            description="A joint audio-video LATENT (video and audio together) for core samplers.",
            inputs=[
                io.Model.Input("model", tooltip="A JointAV MODEL: its family decides fps, presets and channels."),
                io.Combo.Input("duration", options=DURATIONS, default=pipeline.MODEL_DURATION, tooltip=DURATION_TIP),
                io.Int.Input("width", default=0, min=0, max=MAX_SIZE, step=SIZE_STEP, tooltip=SIZE_TIP.format("width")),
                io.Int.Input("height", default=0, min=0, max=MAX_SIZE, step=SIZE_STEP,
                             tooltip=SIZE_TIP.format("height")),
                io.Int.Input("batch", default=1, min=1, max=64),
            ],
            outputs=[io.Latent.Output(display_name="latent")],
        )

    @classmethod
    def validate_inputs(cls, **values) -> bool | str:
        return validate(cls, values, extra=lambda v: size_rules(cls.NAME, v))

    @classmethod
    def execute(cls, model, duration: str, width: int, height: int, batch: int) -> io.NodeOutput:
        with node_errors(cls.NAME):
            view = joint_model_view(model, cls.NAME)
            latent = core_latent(pipeline.empty_latent(view, duration, height or None, width or None, batch), view)
        return io.NodeOutput(latent)


class ImageToAVLatentNative(io.ComfyNode):
    NAME = "JointAV Image To AV Latent (native)"

    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="JointAVImageToAVLatentNative",
            display_name=cls.NAME,
            category=CATEGORY,
            description="A joint LATENT whose first frame is the image (held by a noise_mask), for core samplers.",
            inputs=[
                io.Model.Input("model"),
                JointAVDecoders.Input("decoders", tooltip="Their video VAE encodes the first frame."),
                io.Image.Input("image"),
                io.Combo.Input("duration", options=DURATIONS, default=pipeline.MODEL_DURATION, tooltip=DURATION_TIP),
                io.Int.Input("width", default=0, min=0, max=MAX_SIZE, step=SIZE_STEP, optional=True,
                             tooltip="0: from the image (fitted to the model's pixel area and multiple)."),
                io.Int.Input("height", default=0, min=0, max=MAX_SIZE, step=SIZE_STEP, optional=True,
                             tooltip="0: from the image (fitted to the model's pixel area and multiple)."),
            ],
            outputs=[io.Latent.Output(display_name="latent")],
        )

    @classmethod
    def validate_inputs(cls, **values) -> bool | str:
        return validate(cls, values, extra=lambda v: size_rules(cls.NAME, v))

    @classmethod
    def execute(cls, model, decoders, image, duration: str, width: int = 0, height: int = 0) -> io.NodeOutput:
        with node_errors(cls.NAME):
            view = joint_model_view(model, cls.NAME)
            joint = pipeline.image_to_av_latent(view, decoders, image, duration, height or None, width or None)
            latent = core_latent(joint, view)
        return io.NodeOutput(latent)


class Guider(io.ComfyNode):
    NAME = JointAVGuider.NODE

    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="JointAVGuider",
            display_name=cls.NAME,
            category=CATEGORY,
            description="Ovi's joint guidance for core SamplerCustomAdvanced: one prompt, separate video and audio "
                        "negatives and scales, skip-layer guidance on the negative pass.",
            inputs=[
                io.Model.Input("model"),
                io.Conditioning.Input("positive", tooltip="CLIP Text Encode of the prompt (in Ovi's markup)."),
                io.Conditioning.Input("video_negative"),
                io.Conditioning.Input("audio_negative"),
                io.Float.Input("video_cfg", default=4.0, min=0.0, max=30.0, step=0.1),
                io.Float.Input("audio_cfg", default=3.0, min=0.0, max=30.0, step=0.1),
                io.Int.Input("skip_layer", default=-1, min=-1, max=1000,
                             tooltip="Block skipped in the negative pass. -1: the model's own default (11 for Ovi, "
                                     "off for the embedded default); 0: off."),
                io.Combo.Input("reference_guidance", options=list(REFERENCE_GUIDANCE), default="auto", optional=True,
                               tooltip="With a cameo's reference tokens on the positive (JointAV Apply Cameo "
                                       "(native)): on = the negative pass runs without them, so guidance steers "
                                       "toward the cameo too; off = both passes see them (toward the text only). "
                                       "auto: the model's setting (on for the embedded default, which was trained "
                                       "for it; off for Ovi)."),
            ],
            outputs=[io.Guider.Output(display_name="guider")],
        )

    @classmethod
    def validate_inputs(cls, **values) -> bool | str:
        return validate(cls, values)

    @classmethod
    def execute(cls, model, positive, video_negative, audio_negative, video_cfg: float, audio_cfg: float,
                skip_layer: int, reference_guidance: str = "auto") -> io.NodeOutput:
        with node_errors(cls.NAME):
            guider = JointAVGuider(model, video_cfg, audio_cfg, skip_layer, reference_guidance)
            guider.set_conds(positive, video_negative, audio_negative)
        return io.NodeOutput(guider)


class Noise(io.ComfyNode):
    NAME = JointAVNoise.NODE

    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="JointAVNoise",
            display_name=cls.NAME,
            category=CATEGORY,
            description="Video and audio noise, each from a generator seeded with the seed (as Ovi and the JointAV "
                        "Sampler draw it), for a joint LATENT.",
            inputs=[
                io.Int.Input("noise_seed", default=0, min=0, max=MAX_SEED, control_after_generate=True),
                io.Combo.Input("device", options=["model", "cpu"], default="model",
                               tooltip="model: drawn on the compute device, as the reference draws it (the same "
                                       "seed gives other numbers on another device)."),
            ],
            outputs=[io.Noise.Output(display_name="noise")],
        )

    @classmethod
    def validate_inputs(cls, **values) -> bool | str:
        return validate(cls, values)

    @classmethod
    def execute(cls, noise_seed: int, device: str) -> io.NodeOutput:
        return io.NodeOutput(JointAVNoise(noise_seed, device))


class Scheduler(io.ComfyNode):
    NAME = "JointAV Scheduler"

    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="JointAVScheduler",
            display_name=cls.NAME,
            category=CATEGORY,
            description="The sigmas the reference's solvers step through (Euler: diffusers' flow-match table).",
            inputs=[
                io.Combo.Input("solver", options=SOLVERS, default="euler"),
                io.Int.Input("steps", default=50, min=1, max=1000),
                io.Float.Input("shift", default=5.0, min=0.1, max=100.0, step=0.1),
            ],
            outputs=[io.Sigmas.Output(display_name="sigmas")],
        )

    @classmethod
    def validate_inputs(cls, **values) -> bool | str:
        return validate(cls, values)

    @classmethod
    def execute(cls, solver: str, steps: int, shift: float) -> io.NodeOutput:
        with node_errors(cls.NAME):
            sigmas = reference_sigmas(solver, steps, shift)
        return io.NodeOutput(sigmas)


class Solver(io.ComfyNode):
    NAME = "JointAV Solver"

    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="JointAVSolver",
            display_name=cls.NAME,
            category=CATEGORY,
            description="Ovi's own solvers as a core SAMPLER (for SamplerCustomAdvanced): UniPC, DPM++ and Euler stepped "
                        "as the reference steps them. With JointAV Scheduler's sigmas they reproduce the JointAV "
                        "Sampler's clip; core's uni_pc / dpmpp_2m are other algorithms and give other clips.",
            inputs=[io.Combo.Input("solver", options=SOLVERS, default="unipc")],
            outputs=[io.Sampler.Output(display_name="sampler")],
        )

    @classmethod
    def validate_inputs(cls, **values) -> bool | str:
        return validate(cls, values)

    @classmethod
    def execute(cls, solver: str) -> io.NodeOutput:
        return io.NodeOutput(jointav_sampler(solver))


class PromptMarkup(io.ComfyNode):
    NAME = "JointAV Prompt Markup"

    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="JointAVPromptMarkup",
            display_name=cls.NAME,
            category=CATEGORY,
            description="Ovi's one prompt (scene, <S>spoken lines<E>, sound description) as text for CLIP Text Encode.",
            inputs=[
                io.String.Input("video_prompt", multiline=True, default=""),
                io.String.Input("speech_lines", multiline=True, default="",
                                tooltip="One spoken line per line; each becomes <S>line<E>."),
                io.String.Input("audio_description", multiline=True, default=""),
                io.Combo.Input("style", options=list(STYLE_CHOICES), default=next(iter(STYLE_CHOICES)),
                               tooltip="How the model family writes the sound description."),
            ],
            outputs=[io.String.Output(display_name="text")],
        )

    @classmethod
    def validate_inputs(cls, **values) -> bool | str:
        return validate(cls, values)

    @classmethod
    def execute(cls, video_prompt: str, speech_lines: str, audio_description: str, style: str) -> io.NodeOutput:
        with node_errors(cls.NAME):
            if style not in STYLE_CHOICES:
                raise ValueError(f"style={style!r}; expected one of {', '.join(STYLE_CHOICES)}")
            text = compose_prompt(video_prompt, speech_lines, audio_description, style=STYLE_CHOICES[style])
        return io.NodeOutput(text, ui={"text": [text]})


class ToCoreLatent(io.ComfyNode):
    NAME = "JointAV To LATENT"

    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="JointAVToCoreLatent",
            display_name=cls.NAME,
            category=CATEGORY,
            description="A JointAV latent (from today's JointAV nodes) as a joint core LATENT.",
            inputs=[io.Model.Input("model"), JointAVLatent.Input("latent")],
            outputs=[io.Latent.Output(display_name="latent")],
        )

    @classmethod
    def execute(cls, model, latent) -> io.NodeOutput:
        with node_errors(cls.NAME):
            if any(hasattr(c, "reference_tokens") for c in getattr(latent, "conditionings", [])):
                # a LATENT cannot hold them: the clip would lose the cameo's tokens but keep its consent record
                raise InputValueError("latent: carries a cameo's reference tokens (JointAV Apply Cameo, mode "
                                      "reference_tokens or both), which a LATENT cannot hold; on the native path "
                                      "apply the cameo with JointAV Apply Cameo (native), which puts them on the "
                                      "positive CONDITIONING")
            view = joint_model_view(model, cls.NAME)
            out = core_latent(latent, view)
        return io.NodeOutput(out)


class ApplyCameoNative(io.ComfyNode):
    NAME = "JointAV Apply Cameo (native)"

    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="JointAVApplyCameoNative",
            display_name=cls.NAME,
            category=CATEGORY,
            description="Puts a cameo's likeness and voice into a native graph, if the person's consent record grants "
                        "this machine's operator key now: its reference tokens go onto the positive CONDITIONING "
                        "(for the JointAV Guider), its best frame becomes the LATENT's held first frame, and the "
                        "consent record's hash and the profile id ride on the LATENT to JointAV Save Video's manifest.",
            inputs=[
                io.Model.Input("model", tooltip="A JointAV MODEL (the profile must fit its channels and patch)."),
                JointAVDecoders.Input("decoders", tooltip="Their video VAE encodes the cameo's first frame."),
                io.Conditioning.Input("positive", tooltip="The prompt's CLIP Text Encode, before the JointAV Guider."),
                io.Latent.Input("latent", tooltip="The empty (or image-to-AV) joint LATENT, before the sampler."),
                JointAVCameo.Input("cameo"),
                io.Combo.Input("mode", options=list(MODE_CHOICES), default="auto",
                               tooltip="first_frame: the cameo's best frame becomes the clip's first frame (the "
                                       "supported path with Ovi). reference_tokens: face and voice latents as extra "
                                       "tokens outside the clip; EXPERIMENTAL with Ovi weights (never trained with "
                                       "them). both: the two together. auto: the model's choice (first_frame for "
                                       "Ovi, both for the embedded default). How guidance treats the tokens is the "
                                       "JointAV Guider's reference_guidance."),
            ],
            outputs=[io.Conditioning.Output(display_name="positive"), io.Latent.Output(display_name="latent")],
        )

    @classmethod
    def validate_inputs(cls, **values) -> bool | str:
        return validate(cls, values)

    @classmethod
    def fingerprint_inputs(cls, **_) -> float:
        return float("nan")  # consent can be revoked or expire between runs: check it every time

    @classmethod
    def execute(cls, model, decoders, positive, latent, cameo, mode: str) -> io.NodeOutput:
        with node_errors(cls.NAME):
            view = joint_model_view(model, cls.NAME)
            out_positive, out_latent = apply_cameo_native(view, decoders, positive, latent, cameo, mode=mode,
                                                          consent_check=consent_check_for(), node=cls.NAME)
        return io.NodeOutput(out_positive, out_latent)


NATIVE_NODES = [EmptyAVLatent, ImageToAVLatentNative, Guider, Noise, Scheduler, Solver, PromptMarkup, ToCoreLatent,
                ApplyCameoNative]
