"""Ovi's joint guidance as a core GUIDER, its seeding as a core NOISE, its schedules as core SIGMAS.

Guider: a `comfy.samplers.CFGGuider` (as core's dual-CFG guiders are). Per step one positive pass (the prompt
for both towers) and one negative pass (the video negative for the video tower, the audio negative for the
audio tower, one block skipped: skip-layer guidance), always both and in separate forwards, as the reference;
then neg + scale·(pos − neg) with the video scale on the video part and the audio scale on the audio part.
A cameo's reference tokens ride on the positive conditioning (references.py); `reference_guidance` says whether
the negative pass sees them too (off, as the library's ReferenceTokens(guided=False)) or runs without them (on:
guidance also steers toward the cameo); auto is the model family's ModelSpec.reference_guidance.

Noise: video and audio noise each from a fresh generator seeded with the seed (batch item b: seed + b), drawn
on the model's device as the reference draws it (`samplers.initial_noise`), so with Euler and the reference's
sigmas the core path reproduces the JointAV Sampler's clip.
"""

from __future__ import annotations

import comfy.model_management
import comfy.samplers
import torch

from ..errors import InputValueError
from ..pipeline.cameo import reference_guidance_choice
from ..samplers import initial_noise, make_solver
from .latents import LAYOUT_KEY, is_nested, joint_samples, layout_from
from .loading import require_native
from .references import REFERENCE_KEYS


def _first(conditioning, node: str, name: str):
    if not isinstance(conditioning, list) or not conditioning or len(conditioning[0]) < 2:
        raise InputValueError(f"{node}: {name} is not a CONDITIONING (found {type(conditioning).__name__}); "
                              f"connect CLIP Text Encode")
    return conditioning[0]


def resolve_skip_layer(skip_layer: int, model, node: str) -> int | None:
    """-1: the model family's own default (off when the model has fewer blocks, so -1 works with every model);
    0: off; otherwise the block index (checked against the model)."""
    layers = model.diffusion_model.config.num_layers
    if skip_layer == -1:
        default = model.jointav_spec.default_skip_layer
        return default if default is not None and 0 < default < layers else None
    if skip_layer == 0:
        return None
    if not 0 < skip_layer < layers:
        raise InputValueError(f"{node}: skip_layer={skip_layer} is beyond the model's {layers} blocks; expected -1 "
                              f"(model default), 0 (off) or 1..{layers - 1}")
    return skip_layer


def resolve_reference_guidance(choice, model, node: str) -> bool:
    """auto / on / off (or a bool) → whether the negative pass runs without the reference tokens."""
    guided = choice if isinstance(choice, bool) else reference_guidance_choice(choice, f"{node}: reference_guidance")
    return bool(model.jointav_spec.reference_guidance) if guided is None else guided


class JointAVGuider(comfy.samplers.CFGGuider):
    NODE = "JointAV Guider"

    def __init__(self, model_patcher, video_scale: float = 4.0, audio_scale: float = 3.0, skip_layer: int = -1,
                 reference_guidance: str | bool = "auto"):
        model = require_native(model_patcher, self.NODE)
        super().__init__(model_patcher)
        self.video_scale, self.audio_scale = float(video_scale), float(audio_scale)
        self.skip_layer = resolve_skip_layer(int(skip_layer), model, self.NODE)
        self.reference_guidance = resolve_reference_guidance(reference_guidance, model, self.NODE)
        self.layout = model.diffusion_model.layout
        self._scales, self._scales_key = None, None  # stream_scales' table and the (shape, device, dtype) it is for

    def set_conds(self, positive, video_negative, audio_negative=None):
        pos = [[c[0], {**c[1], "jointav_pass": "positive"}] for c in positive]
        if not pos:
            _first(positive, self.NODE, "positive")
        vneg = _first(video_negative, self.NODE, "video_negative")
        aneg = _first(audio_negative if audio_negative is not None else video_negative, self.NODE, "audio_negative")
        # the negative pass sees the positive's reference tokens unless guidance is to steer toward them
        held = next(({k: c[1][k] for k in REFERENCE_KEYS if c[1].get(k) is not None} for c in pos
                     if any(c[1].get(k) is not None for k in REFERENCE_KEYS)), {})
        options = {k: v for k, v in vneg[1].items() if k not in REFERENCE_KEYS}
        if not self.reference_guidance:
            options.update(held)
        neg = [[vneg[0], {**options, "jointav_audio_context": aneg[0], "jointav_pass": "negative",
                          "jointav_skip_layer": self.skip_layer}]]
        self.inner_set_conds({"positive": pos, "negative": neg})

    def stream_scales(self, x) -> torch.Tensor | list:
        if is_nested(x):
            return [self.video_scale, self.audio_scale]
        key = (tuple(x.shape), x.device, x.dtype)
        if self._scales_key != key:  # one table per run: the shape holds for every step
            mask = self.layout.stream_mask(key[0], device=x.device).to(x.dtype)
            self._scales, self._scales_key = self.audio_scale + (self.video_scale - self.audio_scale) * mask, key
        return self._scales

    def predict_noise(self, x, timestep, model_options={}, seed=None):
        positive, negative = self.conds.get("positive"), self.conds.get("negative")
        cond, uncond = comfy.samplers.calc_cond_batch(self.inner_model, [positive, negative], x, timestep,
                                                      model_options)
        scales = self.stream_scales(x)
        if is_nested(x):
            return type(x)([u + (c - u) * s for c, u, s in zip(cond.tensors, uncond.tensors, scales)])
        return uncond + (cond - uncond) * scales


class JointAVNoise:
    """Core NOISE (`seed` and `generate_noise(latent)`) with the reference's per-stream seeding."""

    NODE = "JointAV Noise"

    def __init__(self, seed: int, device: str = "model"):
        self.seed = int(seed)
        self.device = device

    def _device(self) -> torch.device:
        return comfy.model_management.get_torch_device() if self.device == "model" else torch.device("cpu")

    def generate_noise(self, input_latent: dict) -> torch.Tensor:
        samples = input_latent["samples"]
        layout = layout_from(input_latent, self.NODE)
        info = input_latent[LAYOUT_KEY]
        if is_nested(samples):
            video_shape, audio_shape = tuple(samples.tensors[0].shape), tuple(samples.tensors[1].shape)
        else:
            batch, channels, _, height, width = samples.shape
            video_shape = (batch, channels, int(info["video_frames"]), height, width)
            audio_shape = (batch, int(info["audio_length"]), layout.audio_channels)
        device = self._device()
        video = initial_noise(video_shape, self.seed, device=device).cpu()
        audio = initial_noise(audio_shape, self.seed, device=device).cpu()
        return joint_samples(video, audio, layout, type(samples) if is_nested(samples) else None)


def reference_sigmas(solver: str, steps: int, shift: float) -> torch.Tensor:
    """The sigma table the reference's solver walks (float32, ending in 0): Euler's is diffusers' double-shifted
    table, UniPC's starts at 0.999 (the reference hands UniPC truncated integer timesteps; core passes sigma·1000)."""
    return make_solver(solver, steps, shift).sigmas.clone()
