"""Where cameo profiles and consent records meet: one digest names a profile, one gate decides each use.

A profile's identity is its id: `digest_tensors` of its reference tensors (cameo.profile). The manifest, the
folder name, the reference tokens and a clip's C2PA manifest all name the profile by it, so a grant signs that
same digest twice, as the record's `profile_id` and as its `profile_sha256` (`grant_for_profile`, which
`jointav cameo grant --profile` runs). The gate recomputes the digest from the tensors as they are at the
moment of use, so a record copied to another profile, or kept while a tensor was changed, is refused as
tampered, whatever the manifest claims.

A profile is bound to its person's key: the manifest's subject slot (set at creation or by the first grant)
and this machine's consent state (cameo.consent_state, outside the profile folder) both hold it, and a
grant, revocation or record signed by any other key is refused, `--force` or not. Records only move
forward: each grant or revocation takes a record version above everything seen for the profile, and the
gate refuses a record older than the newest this machine has seen (a copied-back `consent.json`), naming
what the newer one said. The gate also checks the usage log against this machine's checkpoint of it
(cameo.usage_log.check_log) and hands the log's length and head to the clip's manifest.

The record lives in the profile folder, in the file named by the manifest's consent slot. The gate reads that
slot from disk at every use, not from the manifest loaded earlier, so a grant or a revocation made after a
profile was loaded (a long-running ComfyUI) counts at once. The slot's sha256 is not enforced: the record is
protected by its signature and its version, and a revocation rewrites the file.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
from collections.abc import Callable, Iterable
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from ..errors import InputValueError, JointAVError
from .consent import (ConsentDecision, ConsentError, ConsentExpiredError, ConsentMissingError,
                      ConsentNotGrantedError, ConsentRecord, ConsentRevokedError, ConsentRolledBackError,
                      ConsentTamperedError, ConsentWrongKeyError, decide, format_time, grant_consent, load_consent,
                      operator_id, revoke, save_consent, verify_record)
from .consent_state import check_record, profile_entry
from .keys import fingerprint, operator_key, public_key_b64, public_key_from_b64
from .profile import MANIFEST_NAME, Profile, digest_tensors, set_consent_record, set_subject_key
from .usage_log import UsageLogTamperedError, UsageLogTruncatedError, check_log

CONSENT_NAME = "consent.json"  # the record's file name inside a profile folder
# What each refusal means, in the words put in front of the detailed reason.
REASONS = {
    ConsentRolledBackError: "consent record rolled back",
    ConsentWrongKeyError: "signed by a key other than the profile's person's",
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


def bound_key(profile: Profile) -> str | None:
    """The person's key (base64) the profile folder's manifest on disk binds it to, or None when not bound yet."""
    if profile.path is None:
        subject = profile.manifest.get("subject")
    else:
        try:
            subject = json.loads((profile.path / MANIFEST_NAME).read_text(encoding="utf-8")).get("subject")
        except (OSError, UnicodeDecodeError, json.JSONDecodeError, AttributeError) as e:
            raise ConsentTamperedError(f"cannot read {profile.path / MANIFEST_NAME} for the profile's subject key "
                                       f"({e})") from e
    key = subject.get("public_key") if isinstance(subject, dict) else None
    if key is not None:
        try:
            public_key_from_b64(key)
        except (ValueError, TypeError) as e:
            raise ConsentTamperedError(f"the subject slot of {profile.path or profile.name} holds {key!r}, not a "
                                       f"base64 Ed25519 key ({e})") from e
    return key


def _fingerprint(key_b64: str | None) -> str | None:
    return fingerprint(public_key_from_b64(key_b64)) if key_b64 else None


def _labelled(profile: Profile, operator: str, e: ConsentError) -> ConsentError:
    reason = next(text for kind, text in REASONS.items() if isinstance(e, kind))
    return type(e)(f"{_label(profile)} refused ({reason}) for operator {operator}: {e}")


def verified_record(profile: Profile, *, update: bool = True) -> tuple[Path, ConsentRecord]:
    """The profile's record, checked as a whole: signed by the key the profile is bound to, for these tensors,
    and not older than the newest record this machine has seen for it (noted as the newest when newer)."""
    path = consent_record_path(profile)
    record = load_consent(path, profile_id=profile.id)
    pin = bound_key(profile)
    where = f"consent record {path}"
    verify_record(record, profile_digest(profile), profile_id=profile.id, subject=_fingerprint(pin),
                  who=f" ({where})")
    check_record(record, profile.id, bound_key=pin, where=where, update=update)
    return path, record


def check_profile_consent(profile: Profile, operator: str | Ed25519PublicKey | Ed25519PrivateKey,
                          now: dt.datetime | None = None, *, log_path: str | Path | None = None) -> ConsentDecision:
    """Allow `operator` to use `profile` now, or raise the ConsentError saying why not: the reason and the
    operator (the fingerprint to grant) in front, the details after. An allowed use also needs the usage log
    (`log_path`, default usage_log.default_log_path()) intact and not cut back below this machine's checkpoint
    (UsageLogTamperedError otherwise); the decision carries the log's length and head for the clip's manifest."""
    op = operator_id(operator)
    try:
        _, record = verified_record(profile)
        decision = decide(record, op, now, profile_id=profile.id)
    except ConsentError as e:
        raise _labelled(profile, op, e) from e
    try:
        snapshot = check_log(log_path)
    except UsageLogTamperedError as e:
        what = "usage log cut back" if isinstance(e, UsageLogTruncatedError) else "usage log tampered with"
        raise type(e)(f"{_label(profile)} refused ({what}) for operator {op}: {e}; every use of a cameo is logged, "
                      f"so none is allowed until the log is restored", line=e.line) from e
    return dataclasses.replace(decision, usage_log=snapshot.to_dict())


def consent_check_for(operator_key_path: str | Path | None = None, now: dt.datetime | None = None,
                      log_path: str | Path | None = None) -> Callable[[Profile], ConsentDecision]:
    """The consent check generation runs (`apply_cameo(consent_check=...)`): this machine's operator key
    (`operator_key_path`, default $JOINTAV_OPERATOR_KEY or the config folder; made on first use so a refusal can
    name the fingerprint to grant) against the profile's consent record, at `now` (default: the moment of use)."""
    def check(profile: Profile) -> ConsentDecision:
        return check_profile_consent(profile, operator_key(operator_key_path), now, log_path=log_path)

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
            f"{decision.subject_id} {decision.subject_fingerprint}, record version {decision.record_version}, "
            f"sha256 {decision.record_sha256})")


def _newest_version(profile: Profile) -> int:
    """The newest record version known for the profile: its folder's record (whatever signed it) or this
    machine's consent state."""
    versions = [0]
    try:
        versions.append(load_consent(consent_record_path(profile)).version)
    except ConsentError:
        pass
    entry = profile_entry(profile.id)
    if entry is not None:
        versions.append(entry["newest"]["record_version"])
    return max(versions)


def _check_key(profile: Profile, key_b64: str, action: str) -> str | None:
    """Refuse `action` signed by `key_b64` when the profile is bound to another key; returns the manifest's key."""
    pin = bound_key(profile)
    entry = profile_entry(profile.id)
    for bound, whence in ((entry["subject_public_key"] if entry else None, "this machine's consent state"),
                          (pin, f"the subject slot of {profile.path / MANIFEST_NAME}" if profile.path else "")):
        if bound and bound != key_b64:
            raise ConsentWrongKeyError(
                f"{_label(profile)}: refused ({REASONS[ConsentWrongKeyError]}): {action} signed by key "
                f"{_fingerprint(key_b64)}, but the profile is bound to its person's key {_fingerprint(bound)} "
                f"({whence}); a grant or revocation by another key is refused, --force or not (a different person "
                f"needs a new profile, with a new id)")
    return pin


def grant_for_profile(profile: Profile, subject_key: Ed25519PrivateKey, *, subject_id: str,
                      operators: Iterable[str | Ed25519PublicKey], valid_until: dt.datetime,
                      valid_from: dt.datetime | None = None, now: dt.datetime | None = None,
                      file_name: str = CONSENT_NAME) -> tuple[ConsentRecord, Profile]:
    """Sign a grant bound to this profile's identity, write it into the profile folder as `file_name` and name it
    in the manifest's consent slot (replacing an earlier record). Returns the record and the updated profile.

    The first grant binds the profile to `subject_key` (manifest and this machine's consent state); a later one
    must be signed by the same key. The grant's record version is one above the newest known for the profile,
    so it supersedes every earlier record and an earlier one copied back is refused."""
    if profile.path is None:
        raise InputValueError(f"{_label(profile)}: not saved yet; a consent record is kept in the profile folder")
    digest = profile_digest(profile)
    if digest != profile.id:
        raise InputValueError(f"{_label(profile)}: its tensors hash to {digest}, not its id {profile.id}; it was "
                              f"modified or damaged, so consent is not signed for it (re-create the profile)")
    if Path(file_name).name != file_name:
        raise InputValueError(f"file_name={file_name!r}: expected a plain file name inside {profile.path}")
    key_b64 = public_key_b64(subject_key.public_key())
    pin = _check_key(profile, key_b64, "a new grant")
    record = grant_consent(subject_key, subject_id=subject_id, profile_id=profile.id, profile_sha256=digest,
                           operators=operators, valid_until=valid_until, valid_from=valid_from, now=now,
                           record_version=_newest_version(profile) + 1)
    where = f"the new grant {record.grant.grant_id}"
    check_record(record, profile.id, bound_key=pin, where=where, update=False)  # refuse before writing anything
    path = save_consent(record, profile.path / file_name)
    check_record(record, profile.id, bound_key=pin, where=where)
    profile = set_subject_key(profile, key_b64, record.grant.subject_fingerprint)
    return record, set_consent_record(profile, path)


def revoke_profile(profile: Profile, subject_key: Ed25519PrivateKey, *, operator: str | Ed25519PublicKey | None = None,
                   reason: str = "", now: dt.datetime | None = None) -> tuple[Path, ConsentRecord]:
    """Append a revocation signed by the profile's person to its record in the folder; returns the path and the
    revoked record. The revocation's record version is above every one known for the profile, so it counts even
    when the folder's record had been rolled back."""
    key_b64 = public_key_b64(subject_key.public_key())
    pin = _check_key(profile, key_b64, "a revocation")
    path = consent_record_path(profile)
    record = load_consent(path, profile_id=profile.id)
    verify_record(record, profile_digest(profile), profile_id=profile.id, subject=_fingerprint(pin),
                  who=f" (consent record {path})")
    revoked = revoke(record, subject_key, operator=operator, reason=reason, now=now,
                     record_version=max(record.version, _newest_version(profile)) + 1)
    check_record(revoked, profile.id, bound_key=pin, where=f"the revoked record {path}", update=False)
    save_consent(revoked, path)
    check_record(revoked, profile.id, bound_key=pin, where=f"the revoked record {path}")
    set_consent_record(profile, path)
    return path, revoked


def import_record(profile: Profile, record: ConsentRecord, source: str) -> tuple[Path, bool]:
    """Put a record the person sent (`jointav cameo revoke` output: their record with a revocation, or a new
    grant) into the profile folder, if it is signed by the profile's person, for its tensors, and newer than
    the folder's record and everything this machine has seen. Returns the record's path in the folder and
    whether anything changed (False when the folder already holds exactly this record)."""
    if profile.path is None:
        raise InputValueError(f"{_label(profile)}: not saved yet; a consent record is kept in the profile folder")
    pin = _check_key(profile, record.grant.subject_public_key, f"the record in {source}")
    try:
        verify_record(record, profile_digest(profile), profile_id=profile.id, subject=_fingerprint(pin),
                      who=f" ({source})")
        try:
            path = consent_record_path(profile)
            current = load_consent(path, profile_id=profile.id)
        except ConsentMissingError:
            path, current = profile.path / CONSENT_NAME, None
        if current is not None and current.record_sha256 == record.record_sha256:
            check_record(record, profile.id, bound_key=pin, where=source)
            return path, False
        if current is not None and record.version <= current.version:
            raise ConsentRolledBackError(f"{source} is record version {record.version}, but the profile's record "
                                         f"{path} is already version {current.version}; only a newer record is "
                                         f"imported (the person revokes on their newest copy)")
        check_record(record, profile.id, bound_key=pin, where=source, update=False)
    except ConsentError as e:
        raise type(e)(f"{_label(profile)}: import refused: {e}") from e
    save_consent(record, path)
    check_record(record, profile.id, bound_key=pin, where=source)
    profile = set_subject_key(profile, record.grant.subject_public_key, record.grant.subject_fingerprint)
    set_consent_record(profile, path)
    return path, True
