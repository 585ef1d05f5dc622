"""Cameo pipeline blocks (one per node): create a profile, load a profile, apply a profile to a clip's latent.

Likeness and voice reach the model in two ways (cameo.conditioning): as the clip's first frame, the supported
path for Ovi weights, and as reference tokens outside the clip's timeline, experimental for Ovi weights (they
never saw such tokens). Consent is checked by the caller's `consent_check` (cameo.consent_gate), before anything
is conditioned; the decision rides on the latent as a `CameoUse` so that the clip's C2PA manifest records the
consent record's hash and the profile id, and `log_cameo_use` appends the use to the usage log once the file
is written.
"""

from __future__ import annotations

import dataclasses
import hashlib
import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ..cameo.conditioning import first_frame_conditioning, reference_conditioning
from ..cameo.consent import ConsentDecision, format_time
from ..cameo.encode import encode_reference_media
from ..cameo.keys import fingerprint, public_key_b64
from ..cameo.profile import (Profile, check_encoders, encoder_identity, file_digest, new_profile, read_profile,
                             save_profile)
from ..cameo.reference_media import VOICE_RATE, as_rgb_uint8, limit_side, load_voice, read_recording
from ..cameo.usage_log import append_use, sha256_file
from ..errors import CheckpointKindError, InputValueError
from ..samplers.conditioning import FirstFrame, KeepMask
from .types import Decoders, JointLatent, JointModel

log = logging.getLogger(__name__)

MODES = ("first_frame", "reference_tokens", "both")
# What a user picks: a mode, or "auto" = the model's own (ModelSpec.cameo_mode: first_frame for Ovi, the path its
# weights support; both for the embedded default, trained with reference tokens).
MODE_CHOICES = ("auto", *MODES)
# How the reference tokens meet classifier-free guidance (samplers.guidance): auto = the model's own setting
# (ModelSpec.reference_guidance), on = guided (left out of the negative pass), off = in both passes.
REFERENCE_GUIDANCE = {"auto": None, "on": True, "off": False}


def reference_guidance_choice(choice: str, name: str = "reference_guidance") -> bool | None:
    """A user's auto / on / off as apply_cameo's reference_guidance (None = the model's setting)."""
    if choice not in REFERENCE_GUIDANCE:
        raise InputValueError(f"{name}={choice!r}: expected one of {', '.join(REFERENCE_GUIDANCE)}")
    return REFERENCE_GUIDANCE[choice]

MAX_STORED_SIDE = 1024  # stored frames are scaled down to this longer side
ConsentCheck = Callable[[Profile], object]


@dataclass(frozen=True)
class CameoUse:
    """That a clip is made with a cameo profile under a consent decision (`consent_check`'s ConsentDecision).

    It travels in the latent's conditionings, holding nothing (an empty keep-mask), because sampling starts a
    new provenance record but keeps the conditionings: writers read it back from the sampled latent with
    `cameo_provenance`.
    """

    profile_id: str
    consent_sha256: str
    operator: str
    mode: str
    record: dict | None = None  # what else the manifest's cameo entry records (`consent_record_entry`)

    def keep_mask(self, video_shape: tuple[int, ...], audio_shape: tuple[int, ...]) -> KeepMask:
        return KeepMask()

    def provenance(self) -> dict:
        """The keys `pipeline.generate.provenance_info` turns into the manifest's cameo entry."""
        keys = {"cameo_profile_id": self.profile_id, "consent_sha256": self.consent_sha256,
                "cameo_operator": self.operator, "cameo_mode": self.mode}
        return {**keys, "cameo_record": self.record} if self.record is not None else keys


def consent_record_entry(decision: ConsentDecision) -> dict:
    """What a clip's manifest records of the consent it was made under, besides the record's hash: the person's key
    (so a clip shows the key its profile was bound to), the record version and grant (so a later revocation, or
    a rollback, can be told), when the use was allowed, and the usage log's length and head hash then (so a log
    cut back below this clip is found by `jointav verify`)."""
    entry = {"subject_fingerprint": decision.subject_fingerprint, "subject_id": decision.subject_id,
             "record_version": decision.record_version, "grant_id": decision.grant_id,
             "grant_sha256": decision.grant_sha256, "operator": decision.operator,
             "checked_at": format_time(decision.checked_at) if decision.checked_at is not None else None}
    if decision.usage_log is not None:
        entry["usage_log"] = dict(decision.usage_log)
    return entry


def _source_entry(kind: str, value) -> dict:
    """What a profile was made from: a file's name and sha256, or the sha256 of in-memory data."""
    if isinstance(value, (str, Path)):
        return {"kind": kind, "name": Path(value).name, "sha256": file_digest(value)}
    if isinstance(value, dict):  # a ComfyUI AUDIO dict
        data = torch.as_tensor(value["waveform"], dtype=torch.float32).cpu().contiguous().numpy()
    else:
        data = np.ascontiguousarray(value.detach().cpu().numpy() if hasattr(value, "detach") else np.asarray(value))
    return {"kind": kind, "name": None, "sha256": hashlib.sha256(data.tobytes()).hexdigest()}


def _encoders(decoders: Decoders):
    video_vae, audio_vae = decoders.video_vae, decoders.audio_vae
    if video_vae is None or getattr(video_vae, "parts", "both") == "decoder":
        raise InputValueError("decoders: no video VAE encoder is loaded; a cameo profile needs it to encode frames")
    if audio_vae is None or not audio_vae.has_encoder:
        raise InputValueError("decoders: no audio VAE encoder is loaded; a cameo profile needs it to encode the "
                              "voice (load an audio VAE file that has the encoder.* weights)")
    return video_vae, audio_vae


def create_profile(decoders: Decoders, *, recording: str | Path | None = None, image=None, voice=None,
                   name: str, out_dir: str | Path | None = None, family: str | None = None, max_frames: int = 2,
                   reference_size: int | None = None, voice_seconds: tuple[float, float] = (1.0, 3.0),
                   subject_key=None) -> Profile:
    """A cameo profile from a recording (a video file with sound), or from an image plus a voice clip.

    recording: a video file path. image: a file path, an RGB array or a ComfyUI IMAGE. voice: a sound (or video)
    file path or a ComfyUI AUDIO dict; with a recording it replaces the recording's own sound.
    Picks up to `max_frames` sharp frontal frames and the longest clean voice stretch of voice_seconds
    (min, max) seconds, encodes the subject crops (reference_size² pixels; default: the crop's own size rounded
    up to the VAE factor times the DiT's 2x2 patch, at most cameo.encode.MAX_REFERENCE_SIZE) and the voice with the decoders' encoders, and
    saves the profile under `out_dir` when given (see cameo.profile). family: the model family it is made for
    (recorded in the manifest). subject_key: the person's Ed25519 public key when they make their own profile:
    the profile is bound to it from the start (else the first grant binds it).
    """
    if (recording is None) == (image is None):
        raise InputValueError("cameo source: give either recording=<video file with sound> or image=... with "
                              "voice=...; found " + ("both" if recording is not None else "neither"))
    video_vae, audio_vae = _encoders(decoders)
    sources = []
    if recording is not None:
        recorded = read_recording(recording)
        frames, times, sound = recorded.frames, recorded.times, recorded.voice
        sources.append(_source_entry("recording", recording))
    else:
        frames, times, sound = as_rgb_uint8(image, "image")[None], np.zeros(1), None
        sources.append(_source_entry("image", image))
    if voice is not None:
        sound = load_voice(voice)
        sources.append(_source_entry("voice", voice))
    if sound is None:
        raise InputValueError(f"cameo source: {recording or 'the image'} comes without sound; pass voice=<a voice "
                              f"clip> as well")

    media = encode_reference_media(video_vae, audio_vae, frames, times, sound, max_frames=max_frames,
                                   reference_size=reference_size, voice_seconds=voice_seconds)
    picks, segment = media.picks, media.segment

    stored, entries = [], []
    for p in picks:
        small, scale = limit_side(frames[p.index], MAX_STORED_SIDE)
        stored.append(small)
        entries.append({"source_index": p.index, "time_s": round(p.time_s, 4), "sharpness": round(p.sharpness, 4),
                        "detector": p.detector, "box": [round(v * scale) for v in p.box],
                        "crop_size": media.reference_size})
    voice_wave = torch.from_numpy(segment.waveform)
    tensors = {
        "frames": torch.from_numpy(np.stack(stored)),
        "video_latents": media.video_latents,
        "voice": voice_wave,
        "audio_latents": media.audio_latents,
    }
    profile = new_profile(
        name, tensors, encoder=encoder_identity(video_vae, audio_vae, family), source={"inputs": sources},
        frames=entries, voice={"start_s": round(segment.start / VOICE_RATE, 4),
                               "end_s": round(segment.end / VOICE_RATE, 4), "sample_rate": VOICE_RATE},
        subject=None if subject_key is None else {"public_key": public_key_b64(subject_key),
                                                  "fingerprint": fingerprint(subject_key)})
    return save_profile(profile, out_dir) if out_dir is not None else profile


def _check_model(profile: Profile, model: JointModel) -> None:
    """The profile's latents must have the channels the DiT takes, and crops its patch divides."""
    cfg = model.dit.config
    video, audio = profile.video_latents, profile.audio_latents
    where = profile.path or profile.name
    if video.shape[0] != cfg.video.in_dim or audio.shape[1] != cfg.audio.in_dim:
        raise CheckpointKindError(
            f"cameo profile {where}: latents with {video.shape[0]} video / {audio.shape[1]} audio channels, model "
            f"{model.name} takes {cfg.video.in_dim} / {cfg.audio.in_dim}; re-create the profile with its VAEs")
    _, ph, pw = cfg.video.patch_size
    if video.shape[2] % ph or video.shape[3] % pw:
        raise CheckpointKindError(f"cameo profile {where}: reference latents of {tuple(video.shape[2:])} do not "
                                  f"divide into the model's {ph}x{pw} patches")


def load_profile(path: str | Path, model: JointModel, decoders: Decoders) -> Profile:
    """Read a profile folder (or its manifest.json), verify its tensors against the manifest, and check that it
    was made by the encoders in `decoders` and fits `model`."""
    profile = read_profile(path)
    check_encoders(profile, decoders.video_vae, decoders.audio_vae, model.spec.family)
    _check_model(profile, model)
    return profile


def apply_cameo(model: JointModel, decoders: Decoders, latent: JointLatent, profile: Profile, *,
                mode: str = "auto", consent_check: ConsentCheck | None = None,
                reference_guidance: bool | None = None) -> JointLatent:
    """The latent with the cameo's conditionings added (a new JointLatent; the input is not changed).

    mode: "first_frame" (supported: the profile's best frame fitted to the clip, held as frame 0),
    "reference_tokens" (EXPERIMENTAL with Ovi weights: face and voice latents as tokens outside the clip),
    "both", or "auto" (the model's ModelSpec.cameo_mode). reference_guidance: whether guidance steers toward
    the reference tokens too (None: the model's ModelSpec.reference_guidance, on for the embedded default,
    which was trained for it, off for Ovi).
    consent_check(profile) runs first; it refuses by raising (a False return is refused too), and then nothing
    is conditioned. When it returns a ConsentDecision (cameo.consent_gate.consent_check_for), the decision is
    recorded on the latent (a CameoUse, and the same keys in `provenance`) for the clip's manifest and the
    usage log; one cameo per clip.
    """
    if mode not in MODE_CHOICES:
        raise InputValueError(f"mode={mode!r}: expected one of {', '.join(MODE_CHOICES)}")
    if mode == "auto":
        mode = model.spec.cameo_mode
    decision = consent_check(profile) if consent_check is not None else None
    if decision is False:
        raise InputValueError(f"cameo {profile.name} ({profile.id[:12]}): the consent check refused this use")
    use = None
    if isinstance(decision, ConsentDecision):
        if decision.profile_id != profile.id:
            raise InputValueError(f"cameo {profile.name}: the consent decision is for profile {decision.profile_id}, "
                                  f"not {profile.id}")
        use = CameoUse(profile_id=profile.id, consent_sha256=decision.record_sha256, operator=decision.operator,
                       mode=mode, record=consent_record_entry(decision))
    held_use = next((c for c in latent.conditionings if isinstance(c, CameoUse)), None)
    if held_use is not None:
        raise InputValueError(f"latent: already made with cameo {held_use.profile_id[:12]}; one cameo per clip (its "
                              f"manifest records one consent)")
    _check_model(profile, model)
    uses_tokens = mode in ("reference_tokens", "both")
    if uses_tokens:
        check_encoders(profile, decoders.video_vae, decoders.audio_vae, model.spec.family)
        held = [c for c in latent.conditionings if hasattr(c, "reference_tokens")]
        if held:
            raise InputValueError(f"latent: already carries reference tokens ({getattr(held[0], 'profile_id', '?')}"
                                  f"); one cameo's reference tokens per clip")
        if model.spec.family.startswith("ovi"):
            log.warning("cameo %s: reference tokens are EXPERIMENTAL with %s weights (never trained with them); "
                        "mode='first_frame' is the supported path", profile.name, model.spec.family)
    added = []
    if mode in ("first_frame", "both"):
        if decoders.video_vae is None:
            raise InputValueError("decoders: no video VAE is loaded; the cameo's first frame needs its encoder")
        if any(isinstance(c, FirstFrame) for c in latent.conditionings):
            log.warning("cameo %s: its frame replaces the first frame this latent already holds", profile.name)
        factor = decoders.video_vae.config.spatial_factor
        height, width = latent.video.shape[3] * factor, latent.video.shape[4] * factor
        added.append(first_frame_conditioning(profile, decoders.video_vae, height, width))
    if uses_tokens:
        guided = model.spec.reference_guidance if reference_guidance is None else bool(reference_guidance)
        added.append(reference_conditioning(profile, guided=guided))
    if use is None:
        return dataclasses.replace(latent, conditionings=[*latent.conditionings, *added])
    return dataclasses.replace(latent, conditionings=[*latent.conditionings, *added, use],
                               provenance={**latent.provenance, **use.provenance()})


def cameo_provenance(latent: JointLatent) -> dict:
    """The cameo keys of a clip's provenance (profile id, consent record hash, operator, mode); {} without one."""
    use = next((c for c in latent.conditionings if isinstance(c, CameoUse)), None)
    return use.provenance() if use is not None else {}


def log_cameo_use(provenance: dict, output: str | Path, log_path: str | Path | None = None) -> dict | None:
    """Append a written cameo clip to the usage log (default: usage_log.default_log_path()): profile id,
    operator, consent record hash and the finished file's sha256. None for a clip without a cameo."""
    if not provenance.get("consent_sha256"):
        return None
    return append_use(log_path, profile_id=provenance["cameo_profile_id"], operator=provenance["cameo_operator"],
                      consent_sha256=provenance["consent_sha256"], output_sha256=sha256_file(output))
