"""Joint classifier-free guidance: one positive and one negative model pass per step, a scale per modality.

Ovi feeds the positive prompt to both towers, but has separate negative prompts for video and audio, and runs
the negative pass with skip-layer guidance (one transformer block skipped in both towers). The guided velocity
is neg + s * (pos - neg), with s = the video scale for the video output and the audio scale for the audio output.

Reference tokens (cameo) go to BOTH passes unchanged by default, as Ovi holds an i2v first frame in both: the
references are then part of the shared condition and guidance steers only the text. Giving them to the positive
pass alone would multiply their effect by the guidance scale, which for weights that never saw reference tokens
(Ovi) amplifies an off-distribution input. A model trained with the references dropped at random (the embedded
default) has learnt both conditionals, and there guidance on the references is what makes the cameo show:
`ReferenceTokens(guided=True)` leaves them out of the negative pass (ModelSpec.reference_guidance picks it).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Protocol

import torch

from ..errors import InputShapeError, InputValueError

DEFAULT_VIDEO_GUIDANCE = 4.0
DEFAULT_AUDIO_GUIDANCE = 3.0
DEFAULT_SLG_LAYER = 11


class JointModel(Protocol):
    """The fusion DiT as the sampler calls it (models/fusion_dit.py implements this).

    video `[B, C, F, H, W]`, audio `[B, L, C]`, t `[B]` (the solver's timesteps), contexts `[B, Lt, text_dim]`;
    video_clean `[B, F]` / audio_clean `[B, L]` bool: tokens held clean (they get timestep 0);
    skip_layer: index of the block to skip in both towers, or None. Returns (video velocity, audio velocity),
    shaped like video and audio. Only when a sample uses reference tokens is the model also called with
    `video_reference` `[B or 1, C, k, h, w]` / `audio_reference` `[B or 1, L_ref, C]` (clean latents outside the
    clip; see FusionDiT.forward), so models without them keep working for everything else.
    """

    def __call__(
        self,
        video: torch.Tensor,
        audio: torch.Tensor,
        t: torch.Tensor,
        video_context: torch.Tensor,
        audio_context: torch.Tensor,
        *,
        video_clean: torch.Tensor | None = None,
        audio_clean: torch.Tensor | None = None,
        skip_layer: int | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]: ...


@dataclass(frozen=True)
class PromptContexts:
    """The text embeddings one model pass sees: the video tower's and the audio tower's, each `[B, Lt, text_dim]`."""

    video: torch.Tensor
    audio: torch.Tensor

    @classmethod
    def shared(cls, context: torch.Tensor) -> PromptContexts:
        """One embedding for both towers, as Ovi's positive prompt is used."""
        return cls(video=context, audio=context)

    def for_batch(self, batch: int, name: str) -> PromptContexts:
        """Checked contexts with batch `batch`; a batch-1 context is repeated for every item."""
        return PromptContexts(
            video=_context_for_batch(self.video, batch, f"{name}.video"),
            audio=_context_for_batch(self.audio, batch, f"{name}.audio"),
        )


@dataclass(frozen=True)
class ReferenceTokens:
    """Clean reference latents the model appends to its sequences (cameo face and voice); not part of the clip.

    video `[B or 1, C, k, h, w]` (k reference frames at any size the DiT's patch divides), audio
    `[B or 1, L_ref, C]`; either may be None. A conditioning for `sample`: the loop recognises any object with a
    `reference_tokens(video_shape, audio_shape)` method and hands the result to both guidance passes.
    """

    video: torch.Tensor | None = field(default=None, repr=False)
    audio: torch.Tensor | None = field(default=None, repr=False)
    guided: bool = False  # True: the negative pass runs without them, so guidance also steers toward them
    # True: a subject carried from a film's earlier shot (not a cameo); hold adapters are chosen by it
    # (pipeline/adapters.latent_hold), the sampler treats both alike
    carried: bool = False

    def keep_mask(self, video_shape: tuple[int, ...], audio_shape: tuple[int, ...]):
        """Reference tokens hold nothing inside the clip: an empty keep mask (the conditioning-item protocol)."""
        from .conditioning import KeepMask

        return KeepMask()

    def reference_tokens(self, video_shape: tuple[int, ...], audio_shape: tuple[int, ...]) -> ReferenceTokens:
        """Self, checked against a video latent `[B, C, F, h, w]` and an audio latent `[B, L, C]`."""
        if self.video is None and self.audio is None:
            raise InputValueError("ReferenceTokens: both video and audio are None; expected at least one reference")
        for what, ref, ndim, channel_axis, latent_shape in (("video", self.video, 5, 1, video_shape),
                                                            ("audio", self.audio, 3, 2, audio_shape)):
            if ref is None:
                continue
            batch, channels = latent_shape[0], latent_shape[channel_axis]
            if not isinstance(ref, torch.Tensor) or ref.ndim != ndim or ref.shape[channel_axis] != channels \
                    or ref.shape[0] not in (1, batch) or ref.numel() == 0:
                layout = f"[B, {channels}, k, h, w]" if what == "video" else f"[B, L_ref, {channels}]"
                shape = tuple(ref.shape) if isinstance(ref, torch.Tensor) else type(ref).__name__
                raise InputShapeError(f"ReferenceTokens.{what}: got {shape}, expected non-empty {layout} with B = "
                                      f"{batch} or 1 (channels of the {what} latent {tuple(latent_shape)})")
        return self

    def to(self, device: torch.device | str, dtype: torch.dtype) -> ReferenceTokens:
        def move(t):
            return None if t is None else t.to(device=device, dtype=dtype)
        return ReferenceTokens(move(self.video), move(self.audio), guided=self.guided, carried=self.carried)


def _context_for_batch(context: torch.Tensor, batch: int, name: str) -> torch.Tensor:
    if not isinstance(context, torch.Tensor) or context.ndim != 3:
        shape = tuple(context.shape) if isinstance(context, torch.Tensor) else type(context).__name__
        raise InputShapeError(f"{name} context: got {shape}, expected a tensor [B, Lt, text_dim]")
    if context.shape[0] == batch:
        return context
    if context.shape[0] == 1:
        return context.expand(batch, -1, -1)
    raise InputShapeError(f"{name} context: batch {context.shape[0]}, expected {batch} (the latent batch) or 1")


def normalize_slg_layer(slg_layer: int | bool | None) -> int | None:
    """None/False, or an index <= 0 (the reference's `slg_layer > 0` test), turns skip-layer guidance off."""
    if slg_layer is None or slg_layer is False:
        return None
    if isinstance(slg_layer, bool) or not isinstance(slg_layer, int):
        raise InputValueError(f"slg_layer: got {slg_layer!r}, expected a block index (int), None or False")
    return slg_layer if slg_layer > 0 else None


@dataclass(frozen=True)
class JointGuidance:
    video_scale: float = DEFAULT_VIDEO_GUIDANCE
    audio_scale: float = DEFAULT_AUDIO_GUIDANCE
    slg_layer: int | None = DEFAULT_SLG_LAYER

    def __post_init__(self):
        for name in ("video_scale", "audio_scale"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
                raise InputValueError(f"{name}: got {value!r}, expected a finite number")
        object.__setattr__(self, "slg_layer", normalize_slg_layer(self.slg_layer))


def _checked_output(output: torch.Tensor, like: torch.Tensor, what: str) -> torch.Tensor:
    if not isinstance(output, torch.Tensor) or tuple(output.shape) != tuple(like.shape):
        shape = tuple(output.shape) if isinstance(output, torch.Tensor) else type(output).__name__
        raise InputShapeError(f"model {what}: got {shape}, expected the input's shape {tuple(like.shape)}")
    return output


def guided_velocity(
    model: JointModel,
    video: torch.Tensor,
    audio: torch.Tensor,
    t: torch.Tensor,
    positive: PromptContexts,
    negative: PromptContexts,
    guidance: JointGuidance,
    *,
    video_clean: torch.Tensor | None = None,
    audio_clean: torch.Tensor | None = None,
    references: ReferenceTokens | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """(video velocity, audio velocity) after joint CFG. Always two passes: even at scale 1, neg + 1*(pos - neg)
    equals pos only up to float rounding, so skipping the negative pass would change results.
    references: given to both passes, or to the positive pass alone when `references.guided` (see the module
    docstring)."""
    held = negative_held = {"video_clean": video_clean, "audio_clean": audio_clean}
    if references is not None:
        held = {**held, "video_reference": references.video, "audio_reference": references.audio}
        if not references.guided:
            negative_held = held
    pos_video, pos_audio = model(video, audio, t, positive.video, positive.audio, skip_layer=None, **held)
    neg_video, neg_audio = model(video, audio, t, negative.video, negative.audio, skip_layer=guidance.slg_layer,
                                 **negative_held)
    pos_video = _checked_output(pos_video, video, "video velocity (positive pass)")
    pos_audio = _checked_output(pos_audio, audio, "audio velocity (positive pass)")
    neg_video = _checked_output(neg_video, video, "video velocity (negative pass)")
    neg_audio = _checked_output(neg_audio, audio, "audio velocity (negative pass)")
    return (
        neg_video + guidance.video_scale * (pos_video - neg_video),
        neg_audio + guidance.audio_scale * (pos_audio - neg_audio),
    )
