"""Where cameo profiles and consent records meet: one digest names a profile, one gate decides each use.

A profile's identity is its id: `digest_tensors` of its reference tensors (cameo.profile). The manifest, the
folder name, the reference tokens and a clip's C2PA manifest all name the profile by it, so a grant signs that
same digest twice, as the record's `profile_id` and as its `profile_sha256` (`grant_for_profile`, which
`jointav cameo grant --profile` runs). The gate recomputes the digest from the tensors as they are at the
moment of use, so a record copied to another profile, or kept while a tensor was changed, is refused as
tampered, whatever the manifest claims.

The record lives in the profile folder, in the file named by the manifest's consent slot. The gate reads that
slot from disk at every use, not from the manifest loaded earlier, so a grant or a revocation made after a
profile was loaded (a long-running ComfyUI) counts at once. The slot's sha256 is not enforced: the record is
protected by its signature, and a revocation rewrites the file.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Callable, Iterable
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from ..errors import InputValueError, JointAVError
from .consent import (ConsentDecision, ConsentError, ConsentExpiredError, ConsentMissingError,
                      ConsentNotGrantedError, ConsentRecord, ConsentRevokedError, ConsentTamperedError, check_consent,
                      format_time, grant_consent, load_consent, operator_id, save_consent)
from .keys import operator_key
from .profile import MANIFEST_NAME, Profile, digest_tensors, set_consent_record

CONSENT_NAME = "consent.json"  # the record's file name inside a profile folder
# What each refusal means, in the words put in front of the detailed reason.
REASONS = {
    ConsentMissingError: "no consent record",
    ConsentExpiredError: "consent expired or not yet valid",
    ConsentRevokedError: "consent revoked",
    ConsentTamperedError: "consent record tampered with or for another profile",
    ConsentNotGrantedError: "consent not granted to this operator",
}


def profile_digest(profile: Profile) -> str:
    """The profile's identity recomputed from its tensors as they are now (equals `profile.id` when intact)."""
    return digest_tensors(profile.tensors)


def _label(profile: Profile) -> str:
    return f"cameo {profile.name!r} ({profile.id[:12]})"


def consent_record_path(profile: Profile) -> Path:
    """The consent record file named by the profile folder's manifest on disk; ConsentMissingError saying where it
    looked when there is none."""
    grant_hint = f"the person in it grants use with 'jointav cameo grant --profile {profile.path or '<folder>'} ...'"
    if profile.path is None:
        raise ConsentMissingError(f"the profile is not saved in a folder, so it has no consent record; save it "
                                  f"(create_profile(out_dir=...)) and {grant_hint}")
    manifest_path = profile.path / MANIFEST_NAME
    try:
        slot = json.loads(manifest_path.read_text(encoding="utf-8")).get("consent") or {}
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, AttributeError) as e:
        raise ConsentMissingError(f"cannot read {manifest_path} to find the consent record ({e})") from e
    name = slot.get("file") if isinstance(slot, dict) else None
    if not name:
        raise ConsentMissingError(f"the consent slot of {manifest_path} names no record; {grant_hint}")
    if not isinstance(name, str) or Path(name).name != name:
        raise ConsentTamperedError(f"the consent slot of {manifest_path} names {name!r}; expected a file name inside "
                                   f"the profile folder")
    path = profile.path / name
    if not path.is_file():
        raise ConsentMissingError(f"{manifest_path} names the consent record {name}, but {path} does not exist; "
                                  f"{grant_hint}")
    return path


def check_profile_consent(profile: Profile, operator: str | Ed25519PublicKey | Ed25519PrivateKey,
                          now: dt.datetime | None = None) -> ConsentDecision:
    """Allow `operator` to use `profile` now, or raise the ConsentError saying why not: the reason and the
    operator (the fingerprint to grant) in front, the details after."""
    try:
        record = load_consent(consent_record_path(profile), profile_id=profile.id)
        return check_consent(record, profile_digest(profile), operator, now, profile_id=profile.id)
    except ConsentError as e:
        reason = next(text for kind, text in REASONS.items() if isinstance(e, kind))
        raise type(e)(f"{_label(profile)} refused ({reason}) for operator {operator_id(operator)}: {e}") from e


def consent_check_for(operator_key_path: str | Path | None = None,
                      now: dt.datetime | None = None) -> Callable[[Profile], ConsentDecision]:
    """The consent check generation runs (`apply_cameo(consent_check=...)`): this machine's operator key
    (`operator_key_path`, default $JOINTAV_OPERATOR_KEY or the config folder; made on first use so a refusal can
    name the fingerprint to grant) against the profile's consent record, at `now` (default: the moment of use)."""
    def check(profile: Profile) -> ConsentDecision:
        return check_profile_consent(profile, operator_key(operator_key_path), now)

    return check


def consent_status(profile: Profile, operator_key_path: str | Path | None = None,
                   now: dt.datetime | None = None) -> str:
    """One line for people: whether this machine's operator may use the profile now, and why not (a refusal, or
    an operator key that cannot be read)."""
    try:
        decision = consent_check_for(operator_key_path, now)(profile)
    except JointAVError as e:
        return f"REFUSED ({type(e).__name__}): {e}"
    return (f"allowed for {decision.operator} until {format_time(decision.valid_until)} (granted by "
            f"{decision.subject_id}, record sha256 {decision.record_sha256})")


def grant_for_profile(profile: Profile, subject_key: Ed25519PrivateKey, *, subject_id: str,
                      operators: Iterable[str | Ed25519PublicKey], valid_until: dt.datetime,
                      valid_from: dt.datetime | None = None, now: dt.datetime | None = None,
                      file_name: str = CONSENT_NAME) -> tuple[ConsentRecord, Profile]:
    """Sign a grant bound to this profile's identity, write it into the profile folder as `file_name` and name it
    in the manifest's consent slot (replacing an earlier record). Returns the record and the updated profile."""
    if profile.path is None:
        raise InputValueError(f"{_label(profile)}: not saved yet; a consent record is kept in the profile folder")
    digest = profile_digest(profile)
    if digest != profile.id:
        raise InputValueError(f"{_label(profile)}: its tensors hash to {digest}, not its id {profile.id}; it was "
                              f"modified or damaged, so consent is not signed for it (re-create the profile)")
    if Path(file_name).name != file_name:
        raise InputValueError(f"file_name={file_name!r}: expected a plain file name inside {profile.path}")
    record = grant_consent(subject_key, subject_id=subject_id, profile_id=profile.id, profile_sha256=digest,
                           operators=operators, valid_until=valid_until, valid_from=valid_from, now=now)
    path = save_consent(record, profile.path / file_name)
    return record, set_consent_record(profile, path)
