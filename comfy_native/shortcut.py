"""Today's JointAV Sampler as a shortcut over the native path.

The node keeps its inputs (JOINTAV_MODEL, JOINTAV_CONDITIONING, JOINTAV_LATENT, seed, steps, solver, shift,
scales, skip layer), so saved workflows load and run, but the work is core's: the JointAV Guider on the
model's core MODEL, JointAV Noise, the reference's sigmas and the JointAV Solver, run by core's
`CFGGuider.sample`. So model management, LoRA patches on that MODEL's weights and core's interruption apply to
the node too, and the clip is the library loop's (tests/integration: test_native_model.py).

A hold adapter the model family ships for the latent's hold (the embedded default's foley adapter when the
whole video is given, its animate adapter when the whole sound is; pipeline/adapters.py) is added as core's own
"diff" weight patches on a clone of the MODEL, as LoraLoaderModelOnly would add that file, so model management
patches and unpatches it around the run.

A cameo's reference tokens ride on the positive conditioning (references.py) with the guider's reference
guidance set as the latent's item says. Where the library loop stays: a model without a core MODEL (loaded
outside ComfyUI) or with block swap (`offload` cpu / blocks N: the library's own streaming).
"""

from __future__ import annotations

import comfy.sample
import torch

from ..pipeline.adapters import HoldAdapter, PREFIX, chosen_adapter
from ..pipeline.api import checked_steps, sampling_provenance
from ..pipeline.types import JointConditioning, JointLatent, JointModel
from ..samplers.conditioning import resolve
from .guidance import JointAVGuider, JointAVNoise, reference_sigmas, resolve_skip_layer
from .latents import nested_tensor_class, split_samples, to_core_latent
from .loading import native_model
from .references import attach_references
from .solvers import jointav_sampler

NODE = "JointAV Sampler"


def library_reason(model: JointModel, latent: JointLatent) -> str | None:
    """Why this run stays on the library loop, or None when it goes through core."""
    if native_model(model.native) is None:
        return "the model has no core MODEL (loaded outside ComfyUI)"
    if model.offload != "none":
        return f"block swap (offload {model.offload}) is the library's own"
    return None


def own_weights(patcher, dit):
    """A DiT parameter's own value, `name -> tensor`: core keeps the value a loaded clone's patches replaced (a LoRA,
    the adapter of an earlier run) in the patcher's backup, shared by its clones."""
    params = dict(dit.named_parameters())
    backup = getattr(patcher, "backup", {})

    def weight(name: str):
        kept = backup.get(PREFIX + name)
        return kept.weight if kept is not None else params[name]
    return weight


def with_adapter(patcher, adapter: HoldAdapter | None):
    """`patcher`, or a clone of it with the adapter's differences as core weight patches (strength 1)."""
    if adapter is None:
        return patcher
    patched = patcher.clone()
    patches = {PREFIX + name: ("diff", (diff,)) for name, diff in adapter.diffs.items()}
    missing = set(patches) - set(patched.add_patches(patches, 1.0))
    if missing:  # (read_adapter matched every name to the DiT: the MODEL's weights must have them too)
        raise RuntimeError(f"{NODE}: adapter {adapter.source}: the core MODEL has no weights named "
                           f"{sorted(missing)[:3]}")
    return patched


def _conditioning(embedding: torch.Tensor) -> list:
    """One text embedding `[L, text_dim]` as a core CONDITIONING."""
    return [[embedding[None], {}]]


def sample_through_core(model: JointModel, conditioning: JointConditioning, latent: JointLatent, *, seed: int,
                        steps: int, solver: str, shift: float, video_guidance: float, audio_guidance: float,
                        skip_layer: int, progress=None) -> JointLatent:
    """The JointAV Sampler's run on the native path; same arguments and result as `pipeline.api.sample`."""
    checked_steps(steps)
    # (the core path holds clean, by noise_mask)
    added = chosen_adapter(model, latent.conditionings, "clean", weight=own_weights(model.native, model.dit))
    patcher = with_adapter(model.native, added)
    native = native_model(patcher)
    resolved_skip = resolve_skip_layer(int(skip_layer), native, NODE)
    sigmas = reference_sigmas(solver, steps, shift)  # checks the solver name and the shift
    layout = native.diffusion_model.layout
    core = to_core_latent(latent, layout, nested_tensor_class())
    references = resolve(latent.conditionings or None, tuple(latent.video.shape), tuple(latent.audio.shape)).references
    guider = JointAVGuider(patcher, video_guidance, audio_guidance, resolved_skip or 0,
                           reference_guidance=bool(references.guided) if references is not None else "auto")
    guider.set_conds(attach_references(_conditioning(conditioning.video_positive), references),
                     _conditioning(conditioning.video_negative), _conditioning(conditioning.audio_negative))
    noise = JointAVNoise(seed).generate_noise(core)
    samples = comfy.sample.fix_empty_latent_channels(patcher, core["samples"])

    def callback(step, denoised, x, total):
        if progress is not None:
            progress(step + 1, total)

    out = guider.sample(noise, samples, jointav_sampler(solver), sigmas, denoise_mask=core.get("noise_mask"),
                        callback=callback, disable_pbar=True, seed=seed)
    video, audio = split_samples({**core, "samples": out}, NODE)
    provenance = sampling_provenance(model, conditioning, latent, seed=seed, solver=solver, steps=steps, shift=shift,
                                     video_guidance=video_guidance, audio_guidance=audio_guidance,
                                     skip_layer=resolved_skip, adapter=added)
    return JointLatent(video=video.float().cpu(), audio=audio.float().cpu(), fps=latent.fps,
                       audio_sample_rate=latent.audio_sample_rate,
                       audio_samples_per_latent=latent.audio_samples_per_latent,
                       conditionings=list(latent.conditionings), sampled=True, provenance=provenance)
