"""A cameo on the native path: the library's `apply_cameo` on a joint LATENT and a positive CONDITIONING.

The core LATENT is read back as the JointLatent `apply_cameo` takes, with what it already holds as conditioning
items (its noise_mask as a KeepMask, a cameo's consent record from `jointav_provenance` as a CameoUse, reference
tokens already on the positive as ReferenceTokens), so the library's checks (consent first, then one cameo per
clip, one set of reference tokens) apply unchanged. What apply_cameo adds goes back the native way: the first
frame into `samples` and the `noise_mask`, the reference tokens onto the positive conditioning
(references.py), the consent decision into `jointav_provenance` (JointAV Save Video's manifest). Plain: nothing
here imports ComfyUI.
"""

from __future__ import annotations

from ..errors import InputValueError
from ..pipeline.cameo import CameoUse, ConsentCheck, apply_cameo
from ..pipeline.packed_latent import PackedLayout
from ..pipeline.types import Decoders, JointLatent, JointModel
from ..samplers.conditioning import KeepMask
from .latents import PROVENANCE_KEY, is_nested, layout_from, split_samples, to_core_latent
from .references import attach_references, references_of

CAMEO_KEYS = ("cameo_profile_id", "consent_sha256", "cameo_operator", "cameo_mode")


def _held_masks(latent: dict, layout: PackedLayout):
    """(video `[B, F]`, audio `[B, L]`) bool hold masks of the LATENT's noise_mask (None: nothing held)."""
    mask = latent.get("noise_mask")
    if mask is None:
        return None, None
    if is_nested(mask):
        v_mask, a_mask = mask.tensors[:2]
        video_clean, audio_clean = v_mask.amax(dim=(1, 3, 4)) <= 0, a_mask.amax(dim=2) <= 0
        return (video_clean if bool(video_clean.any()) else None, audio_clean if bool(audio_clean.any()) else None)
    return layout.keep_masks(mask, tuple(latent["samples"].shape))


def joint_latent_of(latent: dict, positive, node: str) -> JointLatent:
    """The JointLatent (unsampled) a joint LATENT and its positive CONDITIONING stand for."""
    layout = layout_from(latent, node)
    missing = [k for k in ("frame_rate", "sample_rate") if k not in latent]
    if missing:
        raise InputValueError(f"{node}: latent lacks {', '.join(missing)}; expected a joint LATENT from a JointAV "
                              f"latent node")
    video, audio = split_samples(latent, node)
    video, audio = video.float().cpu(), audio.float().cpu()
    items = []
    video_clean, audio_clean = _held_masks(latent, layout)
    if video_clean is not None or audio_clean is not None:
        items.append(KeepMask(video if video_clean is not None else None, video_clean,
                              audio if audio_clean is not None else None, audio_clean))
    provenance = dict(latent.get(PROVENANCE_KEY) or {})
    if provenance.get("cameo_profile_id"):
        items.append(CameoUse(profile_id=provenance["cameo_profile_id"],
                              consent_sha256=provenance.get("consent_sha256", ""),
                              operator=provenance.get("cameo_operator", ""), mode=provenance.get("cameo_mode", ""),
                              record=provenance.get("cameo_record")))
    held = references_of(positive)
    if held is not None:
        items.append(held)
    return JointLatent(video=video, audio=audio, fps=float(latent["frame_rate"]),
                       audio_sample_rate=int(latent["sample_rate"]),
                       audio_samples_per_latent=int(latent.get("audio_samples_per_latent", 512)),
                       conditionings=items, provenance=provenance)


def apply_cameo_native(model: JointModel, decoders: Decoders, positive, latent: dict, profile, *, mode: str = "auto",
                       consent_check: ConsentCheck | None = None, node: str = "JointAV Apply Cameo (native)"
                       ) -> tuple[list, dict]:
    """(positive CONDITIONING with the cameo's reference tokens, LATENT with its first frame held and its consent
    record in `jointav_provenance`); neither input is changed. `consent_check` runs first, inside apply_cameo,
    and refuses by raising (see pipeline.cameo.apply_cameo for mode and the refusals)."""
    joint = joint_latent_of(latent, positive, node)
    applied = apply_cameo(model, decoders, joint, profile, mode=mode, consent_check=consent_check)
    added = applied.conditionings[len(joint.conditionings):]
    references = next((c for c in added if hasattr(c, "reference_tokens")), None)
    out_positive = attach_references(positive, references) if references is not None else positive
    holds = [c for c in added if not hasattr(c, "reference_tokens") and not isinstance(c, CameoUse)]
    if holds:  # a first frame: samples and noise_mask rebuilt from everything held
        samples = latent["samples"]
        core = to_core_latent(applied, layout_from(latent, node), type(samples) if is_nested(samples) else None)
        out = {**latent, **core}
    else:
        out = dict(latent)
    if applied.provenance:
        out[PROVENANCE_KEY] = dict(applied.provenance)
    return out_positive, out
