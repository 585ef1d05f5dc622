"""The fusion DiT as a core ComfyUI model: diffusion model, `BaseModel` subclass, latent format, model config.

Core builds the DiT itself (`BaseModel.__init__` calls `JointAVDiffusionModel(**unet_config, device=, dtype=,
operations=)`), from `comfy.ops` layers, so `ModelPatcher` manages the weights like any core model's: loading,
unloading, partial ("lowvram") loading, casting, fp8 storage, LoRA patches. The state dict keeps Ovi's names
(`video_model.*`, `audio_model.*`), so under core they read `diffusion_model.video_model.*`.

Data in the model's forward: `x` is the packed joint latent (pipeline/packed_latent.py) on ComfyUI 0.3.x, or
the list `[video, audio]` that newer core unpacks a `NestedTensor` into; the conditioning keys are made by
`JointAVModel.extra_conds` (see there).
"""

from __future__ import annotations

from fractions import Fraction

import comfy.conds
import comfy.latent_formats
import comfy.model_management
import comfy.model_base
import comfy.patcher_extension
import comfy.supported_models_base
import torch
import torch.nn as nn

from ..errors import InputShapeError
from ..models.config import FusionConfig
from ..models.fusion_dit import FusionDiT
from ..pipeline.packed_latent import PackedLayout
from ..pipeline.specs import FAMILIES, OVI_720_5S
from ..pipeline.types import ModelSpec
from .attention import optimized_attention
from .references import AUDIO_REFERENCE_KEY, VIDEO_REFERENCE_KEY

IMAGE_MODEL = "jointav_fusion"  # the unet_config value that selects this family among core's models

def layout_for(config: FusionConfig, spec: ModelSpec) -> PackedLayout:
    return PackedLayout(config.video.in_dim, config.audio.in_dim, Fraction(spec.audio_per_video_frame))


class JointAVDiffusionModel(nn.Module):
    """Core's `diffusion_model`: the two towers of a `FusionDiT`, called the way core calls a DiT.

    The towers are this module's own children (so its state dict is exactly Ovi's and core's weight
    management sees every layer); `self.dit` is the plain FusionDiT over the same towers, not a child.
    """

    def __init__(self, fusion: dict, family: str = OVI_720_5S.family, image_model: str = IMAGE_MODEL,
                 device=None, dtype=None, operations=None, **_unused):
        super().__init__()
        config = FusionConfig.from_dict(fusion)
        dit = FusionDiT(config, device=device, dtype=dtype, operations=operations, attention=optimized_attention)
        self.video_model = dit.video_model
        self.audio_model = dit.audio_model
        self.__dict__["dit"] = dit  # not registered: the towers above are its only weights
        self.dtype = dtype
        self.config = config
        self.spec = FAMILIES.get(family, OVI_720_5S)
        self.layout = layout_for(config, self.spec)

    def forward(self, x, timestep, context, control=None, transformer_options={}, audio_context=None,
                skip_layer=None, denoise_mask=None, **kwargs):
        # Core's DIFFUSION_MODEL wrappers (EasyCache, ...) run around the DiT call, as in core's own DiTs.
        wrappers = comfy.patcher_extension.get_all_wrappers(comfy.patcher_extension.WrappersMP.DIFFUSION_MODEL,
                                                            transformer_options)
        if wrappers and isinstance(x, torch.Tensor):
            # A wrapper may write into its input: EasyCache answers a skipped step with `x += cached diff`. When
            # no dtype cast stood between (an fp32 model, as on a CPU), x is the very tensor core's
            # calculate_denoised reads after this call, so it would see x + diff as the input and the step would
            # be wrong by the whole diff. The wrappers get their own copy of x.
            x = x.clone()
        return comfy.patcher_extension.WrapperExecutor.new_class_executor(self._forward, self, wrappers).execute(
            x, timestep, context, audio_context, skip_layer, denoise_mask, transformer_options, **kwargs)

    def _forward(self, x, timestep, context, audio_context, skip_layer, denoise_mask, transformer_options={},
                 video_reference=None, audio_reference=None, **kwargs):
        nested = isinstance(x, (list, tuple))
        if nested:  # newer core: [video, audio], already unpacked
            video, audio = x
        else:
            video, audio = self.layout.unpack(x)
        video_clean = audio_clean = None
        if denoise_mask is not None:
            if isinstance(denoise_mask, (list, tuple)):
                video_clean = denoise_mask[0].amax(dim=(1, 3, 4)) <= 0
                audio_clean = denoise_mask[1].amax(dim=2) <= 0
            else:
                video_clean, audio_clean = self.layout.keep_masks(denoise_mask, tuple(x.shape))
        if video.dtype.itemsize >= 2:
            self.dit.compute_dtype = video.dtype  # core hands x in the compute dtype it chose (manual cast or not)
        # a stop request (/interrupt) lands between blocks, not after a whole forward, unless a caller set its own
        own_check = self.dit.block_check
        if own_check is None:
            self.dit.block_check = comfy.model_management.throw_exception_if_processing_interrupted
        try:
            video_out, audio_out = self.dit(
                video, audio, timestep, context, context if audio_context is None else audio_context,
                video_clean=video_clean, audio_clean=audio_clean, skip_layer=skip_layer,
                video_reference=video_reference, audio_reference=audio_reference)
        finally:
            self.dit.block_check = own_check
        if nested:
            return [video_out, audio_out]
        return self.layout.pack(video_out, audio_out)


def _padded_context(context: torch.Tensor, config, what: str) -> torch.Tensor:
    """Zero rows up to the text length: the reference pads this way and attends to every row, and equal lengths
    keep core from repeating a shorter prompt's rows when it batches conditionings."""
    tower = config.video
    if context.ndim != 3 or context.shape[2] != tower.text_dim or context.shape[1] > tower.text_len:
        raise InputShapeError(
            f"JointAV model: {what} conditioning has shape {tuple(context.shape)}; expected [B, tokens <= "
            f"{tower.text_len}, {tower.text_dim}] (for Ovi: umT5-XXL from Load CLIP, type wan; for the embedded "
            f"default: the CLIP of JointAV Load Model)")
    return torch.nn.functional.pad(context, (0, 0, 0, tower.text_len - context.shape[1]))


class JointAVModel(comfy.model_base.BaseModel):
    """`BaseModel` for the fusion DiT: discrete flow matching (CONST), Ovi's shift in its sampling settings.

    Conditioning keys it reads (set by CLIP Text Encode and the JointAV Guider):
    cross_attn (video tower's text, and the audio tower's unless jointav_audio_context is set),
    jointav_audio_context, jointav_skip_layer (block skipped on this pass), jointav_pass ("positive" /
    "negative": keeps the two passes in separate forwards, as the reference runs them), jointav_video_reference /
    jointav_audio_reference (a cameo's reference tokens, comfy_native/references.py; to the DiT as
    video_reference / audio_reference).
    """

    def __init__(self, model_config, model_type=comfy.model_base.ModelType.FLOW, device=None):
        super().__init__(model_config, model_type, device=device, unet_model=JointAVDiffusionModel)
        self.jointav_spec: ModelSpec = self.diffusion_model.spec
        compute = self.manual_cast_dtype or self.get_dtype()
        if isinstance(compute, torch.dtype) and compute.is_floating_point and compute.itemsize >= 2:
            self.diffusion_model.dit.compute_dtype = compute  # for callers of the plain DiT (JointAV Sampler)

    def extra_conds(self, **kwargs):
        out = {}
        config = self.diffusion_model.config
        cross_attn = kwargs.get("cross_attn", None)
        if cross_attn is not None:
            out["c_crossattn"] = comfy.conds.CONDCrossAttn(_padded_context(cross_attn, config, "text"))
        audio_context = kwargs.get("jointav_audio_context", None)
        if audio_context is not None:
            out["audio_context"] = comfy.conds.CONDCrossAttn(_padded_context(audio_context, config, "audio negative"))
        for key, name in (("jointav_skip_layer", "skip_layer"), ("jointav_pass", "jointav_pass")):
            if kwargs.get(key, None) is not None:
                out[name] = comfy.conds.CONDConstant(kwargs[key])
        for key, name in ((VIDEO_REFERENCE_KEY, "video_reference"), (AUDIO_REFERENCE_KEY, "audio_reference")):
            if kwargs.get(key, None) is not None:  # [1 or B, ...]: core repeats a batch of 1 to the latent's
                out[name] = comfy.conds.CONDRegular(kwargs[key])
        denoise_mask = kwargs.get("denoise_mask", None)
        if denoise_mask is not None:
            out["denoise_mask"] = comfy.conds.CONDRegular(denoise_mask)
        return out

    def scale_latent_inpaint(self, sigma, noise, latent_image, **kwargs):
        # Held frames/positions are fed clean at every step, as the reference's keep-mask loop does.
        return latent_image


class JointAVLatentFormat(comfy.latent_formats.LatentFormat):
    """The packed joint latent: 3-D (frames), the video latent's channel count, no scaling."""

    latent_dimensions = 3

    def __init__(self, channels: int = 48):
        self.latent_channels = channels


class JointAVFusion(comfy.supported_models_base.BASE):
    """The model-config entry core's detection picks for a unet_config with image_model == "jointav_fusion"."""

    unet_config = {"image_model": IMAGE_MODEL}
    unet_extra_config = {}
    sampling_settings = {"shift": 5.0, "multiplier": 1000}  # Ovi's flow shift
    latent_format = JointAVLatentFormat
    supported_inference_dtypes = [torch.bfloat16, torch.float16, torch.float32]
    memory_usage_factor = 1.0

    def __init__(self, unet_config):
        super().__init__(unet_config)
        self.latent_format = JointAVLatentFormat(unet_config["fusion"]["video"]["in_dim"])

    def model_type(self, state_dict, prefix=""):
        return comfy.model_base.ModelType.FLOW

    def inpaint_model(self):
        return False

    def get_model(self, state_dict, prefix="", device=None):
        return JointAVModel(self, device=device)

    def process_unet_state_dict(self, state_dict):
        # Any prefix left before the towers (e.g. "diffusion_model.") goes; core already took "model.diffusion_model."
        out = {}
        for key, value in state_dict.items():
            for root in ("video_model.", "audio_model."):
                at = key.find(root)
                if at >= 0 and (at == 0 or key[at - 1] == "."):
                    key = key[at:]
                    break
            out[key] = value
        return out

    def clip_target(self, state_dict={}):
        return None
