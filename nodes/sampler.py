"""Sampler: the joint flow-matching loop with separate video and audio guidance and skip-layer guidance.

Inside ComfyUI it is a shortcut over the native path (comfy_native/shortcut.py): same inputs and clip, run by
core's guider and sampling on the model's core MODEL; the library loop remains for block swap (see
`library_reason`)."""

from __future__ import annotations

from comfy_api.latest import io

from ..comfy_native.shortcut import library_reason, sample_through_core
from ..errors import GenerationInterrupted
from ..models.offload import find_block_swap
from ..pipeline import api as pipeline
from .device import StepProgress, interrupted_exception, make_room, raise_if_interrupted
from .failures import node_errors
from .types import CATEGORY, JointAVConditioning, JointAVLatent, JointAVModel
from .validation import validate

SOLVERS = ["unipc", "euler", "dpm++"]
MAX_SEED = 0xFFFFFFFFFFFFFFFF


class Sampler(io.ComfyNode):
    NAME = "JointAV Sampler"

    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="JointAVSampler",
            display_name=cls.NAME,
            category=CATEGORY,
            description="Denoises the joint latent; video and audio noise are both drawn from the seed, as in Ovi.",
            inputs=[
                JointAVModel.Input("model"),
                JointAVConditioning.Input("conditioning"),
                JointAVLatent.Input("latent"),
                io.Int.Input("seed", default=0, min=0, max=MAX_SEED, control_after_generate=True),
                io.Int.Input("steps", default=0, min=0, max=1000,
                             tooltip="Sampling steps. 0: the loaded model's own (Ovi: 50; the default model: 24)."),
                io.Combo.Input("solver", options=SOLVERS, default="unipc"),
                io.Float.Input("shift", default=5.0, min=0.1, max=100.0, step=0.1,
                               tooltip="Timestep shift of the flow schedule (Ovi: 5)."),
                io.Float.Input("video_guidance", default=4.0, min=0.0, max=30.0, step=0.1,
                               tooltip="Classifier-free guidance scale of the video tower (Ovi: 4)."),
                io.Float.Input("audio_guidance", default=3.0, min=0.0, max=30.0, step=0.1,
                               tooltip="Classifier-free guidance scale of the audio tower (Ovi: 3)."),
                io.Int.Input("skip_layer", default=pipeline.MODEL_SKIP_LAYER, min=-1, max=1000,
                             tooltip="Block skipped in the negative pass (skip-layer guidance). -1: the loaded "
                                     "model's own (Ovi: 11; the default model: off). 0: off."),
            ],
            outputs=[JointAVLatent.Output(display_name="latent")],
        )

    @classmethod
    def validate_inputs(cls, **values) -> bool | str:
        return validate(cls, values)

    @classmethod
    def execute(cls, model, conditioning, latent, seed: int, steps: int, solver: str, shift: float,
                video_guidance: float, audio_guidance: float, skip_layer: int) -> io.NodeOutput:
        steps = steps or model.spec.default_steps
        if library_reason(model, latent) is None:  # the native path: core's guider, noise, solver and management
            with node_errors(cls.NAME):
                sampled = sample_through_core(model, conditioning, latent, seed=seed, steps=steps, solver=solver,
                                              shift=shift, video_guidance=video_guidance,
                                              audio_guidance=audio_guidance, skip_layer=skip_layer,
                                              progress=StepProgress(steps))
            return io.NodeOutput(sampled)
        # The library loop runs only for block swap (library_reason): a JointModel with a core MODEL samples above.
        swap = find_block_swap(model.dit)
        if swap is not None:  # what the session places on the GPU (resident part + blocks in flight)
            make_room(swap.placement_bytes(), model.device)
        try:
            with node_errors(cls.NAME):
                sampled = pipeline.sample(model, conditioning, latent, seed=seed, steps=steps, solver=solver,
                                          shift=shift, video_guidance=video_guidance, audio_guidance=audio_guidance,
                                          skip_layer=skip_layer, progress=StepProgress(steps),
                                          cancel=raise_if_interrupted)
        except GenerationInterrupted as exc:  # the core's own cancel path: report it as ComfyUI's interruption
            raise interrupted_exception() from exc
        return io.NodeOutput(sampled)
