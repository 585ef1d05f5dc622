"""Consent records for cameo profiles: who may use a person's likeness and voice, until when, and revocations.

A record is a grant signed with the subject's Ed25519 key, plus a list of revocations each signed by the
same key. The grant names the profile by id and by a hash of its reference tensors, so a record cannot
be moved to another profile. Every grant and revocation carries a `record_version` that only grows (a
new grant for a profile takes the next version after everything seen for it; a revocation the next after
its record's), so an older copy of a record is recognisably older (cameo.consent_state keeps the newest
version seen per profile and refuses anything older). `check_consent` checks a record on its own
(`verify_record`: signatures, subject key, profile binding) and decides one use (`decide`); it raises one
exception type per reason for refusal.

What a record alone cannot prove (say so to users): that the subject key belongs to the person shown.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path

import torch
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from ..atomic import atomic_path
from ..errors import InputValueError, JointAVError
from .keys import fingerprint, public_key_b64, public_key_from_b64, sign_b64, verify_signature

CONSENT_VERSION = 2  # the record format; version 1 (before record versions) is still read, as record version 0
READABLE_VERSIONS = (1, 2)
TIME_FORMAT = "%Y-%m-%dT%H:%M:%SZ"
# domain separation: a grant signature can never be replayed as a revocation signature or vice versa
GRANT_DOMAIN = b"jointav-cameo-consent-grant-v1\n"
REVOCATION_DOMAIN = b"jointav-cameo-consent-revocation-v1\n"


class ConsentError(JointAVError):
    """Base of every refusal to use a cameo profile."""


class ConsentMissingError(ConsentError):
    """The profile has no consent record."""


class ConsentExpiredError(ConsentError):
    """The consent is not valid at this time: expired, or not valid yet."""


class ConsentRevokedError(ConsentError):
    """The subject revoked the grant, or revoked it for this operator."""


class ConsentTamperedError(ConsentError):
    """The record was changed after signing, belongs to another profile, or cannot be read."""


class ConsentNotGrantedError(ConsentError):
    """The record is valid but does not list this operator."""


class ConsentRolledBackError(ConsentError):
    """The record is older than one this machine has already seen for the profile (a file copied back)."""


class ConsentWrongKeyError(ConsentTamperedError):
    """The record is signed by a key other than the one the profile is bound to (its person's)."""


def canonical_json(value) -> bytes:
    """The one byte form of a JSON value that is signed and hashed: sorted keys, no spaces, UTF-8, no floats."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False).encode("utf-8")


def format_time(t: dt.datetime) -> str:
    return _utc(t, "time").strftime(TIME_FORMAT)


def parse_time(text: str) -> dt.datetime:
    """A record timestamp ('2026-05-01T12:00:00Z') as an aware UTC datetime; ValueError otherwise."""
    return dt.datetime.strptime(text, TIME_FORMAT).replace(tzinfo=dt.timezone.utc)


def _utc(t: dt.datetime, name: str) -> dt.datetime:
    if t.tzinfo is None:
        raise InputValueError(f"{name} {t.isoformat()}: a naive datetime; expected a timezone-aware one (UTC)")
    return t.astimezone(dt.timezone.utc).replace(microsecond=0)


def _now(now: dt.datetime | None) -> dt.datetime:
    return _utc(now, "now") if now is not None else dt.datetime.now(dt.timezone.utc).replace(microsecond=0)


def operator_id(operator: str | Ed25519PublicKey | Ed25519PrivateKey) -> str:
    """An operator as records name it: a key becomes its fingerprint, a string is taken as an id."""
    if isinstance(operator, (Ed25519PublicKey, Ed25519PrivateKey)):
        return fingerprint(operator)
    if not isinstance(operator, str) or not operator.strip():
        raise InputValueError(f"operator {operator!r}: expected a key fingerprint ('ed25519:...') or a non-empty id")
    return operator.strip()


def profile_tensors_sha256(tensors: Mapping[str, torch.Tensor]) -> str:
    """SHA-256 over a profile's reference tensors: names, dtypes, shapes and raw bytes, in name order.

    Independent of the file they are stored in (safetensors header order, metadata), so re-saving the
    same tensors keeps the hash and a changed tensor changes it.
    """
    h = hashlib.sha256(b"jointav-cameo-profile-tensors-v1\n")
    for name in sorted(tensors):
        t = tensors[name].detach().to("cpu").contiguous().reshape(-1)
        raw = t.view(torch.uint8).numpy().tobytes() if t.numel() else b""
        header = canonical_json({"name": name, "dtype": str(t.dtype).removeprefix("torch."),
                                 "shape": list(tensors[name].shape), "bytes": len(raw)})
        h.update(len(header).to_bytes(8, "big") + header)
        h.update(raw)
    return h.hexdigest()


def profile_file_sha256(path: str | os.PathLike) -> str:
    """`profile_tensors_sha256` of the tensors in a .safetensors file."""
    from safetensors.torch import load_file

    path = Path(path)
    if not path.is_file():
        raise InputValueError(f"profile tensors {path} do not exist")
    return profile_tensors_sha256(load_file(str(path)))


@dataclass(frozen=True)
class Grant:
    """What the subject signs."""

    grant_id: str
    subject_id: str
    subject_public_key: str  # base64 of the raw 32-byte Ed25519 key
    profile_id: str
    profile_sha256: str
    operators: tuple[str, ...]
    valid_from: dt.datetime
    valid_until: dt.datetime
    issued_at: dt.datetime
    version: int = CONSENT_VERSION
    record_version: int = 1  # grows with every grant and revocation for the profile (0: a version-1 record)

    def to_dict(self) -> dict:
        data = {"version": self.version, "grant_id": self.grant_id, "subject_id": self.subject_id,
                "subject_public_key": self.subject_public_key, "profile_id": self.profile_id,
                "profile_sha256": self.profile_sha256, "operators": list(self.operators),
                "valid_from": format_time(self.valid_from), "valid_until": format_time(self.valid_until),
                "issued_at": format_time(self.issued_at)}
        if self.version >= 2:  # a version-1 grant was signed without it
            data["record_version"] = self.record_version
        return data

    @property
    def subject_fingerprint(self) -> str:
        return fingerprint(public_key_from_b64(self.subject_public_key))


@dataclass(frozen=True)
class Revocation:
    """A signed withdrawal of the whole grant (operator None) or of one operator."""

    grant_sha256: str  # binds the revocation to one signed grant
    operator: str | None
    revoked_at: dt.datetime
    reason: str
    signature: str
    record_version: int | None = None  # None only in version-1 records

    def body(self) -> dict:
        data = {"grant_sha256": self.grant_sha256, "target": "grant" if self.operator is None else "operator",
                "operator": self.operator, "revoked_at": format_time(self.revoked_at), "reason": self.reason}
        if self.record_version is not None:
            data["record_version"] = self.record_version
        return data

    def describe(self) -> str:
        scope = "the whole grant" if self.operator is None else f"operator {self.operator}"
        return f"{scope} at {format_time(self.revoked_at)}" + (f" ({self.reason})" if self.reason else "")

    def to_dict(self) -> dict:
        return {"body": self.body(), "signature": self.signature}


@dataclass(frozen=True)
class ConsentRecord:
    grant: Grant
    signature: str
    revocations: tuple[Revocation, ...] = field(default=())

    @property
    def grant_sha256(self) -> str:
        return hashlib.sha256(canonical_json({"grant": self.grant.to_dict(), "signature": self.signature})).hexdigest()

    @property
    def version(self) -> int:
        """The record's version: the newest of its grant's and its revocations' record versions."""
        return max([self.grant.record_version] + [r.record_version or 0 for r in self.revocations])

    @property
    def record_sha256(self) -> str:
        """Hash of the whole record as consulted (grant, signature and revocations): what logs and manifests cite."""
        return hashlib.sha256(canonical_json(self.to_dict())).hexdigest()

    def to_dict(self) -> dict:
        return {"grant": self.grant.to_dict(), "signature": self.signature,
                "revocations": [r.to_dict() for r in self.revocations]}

    @classmethod
    def from_dict(cls, data: dict, source: str = "consent record") -> "ConsentRecord":
        """Parse a record; anything malformed is a ConsentTamperedError naming `source` and the field."""
        try:
            g = data["grant"]
            if g["version"] not in READABLE_VERSIONS:
                raise ConsentTamperedError(f"{source}: version {g['version']!r}, expected one of "
                                           f"{', '.join(map(str, READABLE_VERSIONS))}")
            grant = Grant(grant_id=str(g["grant_id"]), subject_id=str(g["subject_id"]),
                          subject_public_key=str(g["subject_public_key"]), profile_id=str(g["profile_id"]),
                          profile_sha256=str(g["profile_sha256"]), operators=tuple(str(o) for o in g["operators"]),
                          valid_from=parse_time(g["valid_from"]), valid_until=parse_time(g["valid_until"]),
                          issued_at=parse_time(g["issued_at"]), version=g["version"],
                          record_version=_record_version(g) if g["version"] >= 2 else 0)
            if g["version"] < 2 and "record_version" in g:
                raise ValueError("a version-1 grant with a record_version")
            public_key_from_b64(grant.subject_public_key)
            revocations = []
            for r in data.get("revocations", []):
                b = r["body"]
                targets_operator = b["target"] == "operator"
                if b["target"] not in ("grant", "operator") or targets_operator != (b["operator"] is not None):
                    raise ValueError(f"revocation target {b['target']!r} with operator {b['operator']!r}")
                revocations.append(Revocation(grant_sha256=str(b["grant_sha256"]), operator=b["operator"],
                                              revoked_at=parse_time(b["revoked_at"]), reason=str(b["reason"]),
                                              signature=str(r["signature"]),
                                              record_version=_record_version(b) if grant.version >= 2
                                              or "record_version" in b else None))
            return cls(grant=grant, signature=str(data["signature"]), revocations=tuple(revocations))
        except ConsentTamperedError:
            raise
        except (KeyError, TypeError, ValueError) as e:
            raise ConsentTamperedError(f"{source}: malformed ({type(e).__name__}: {e}); expected a record written "
                                       f"by 'jointav cameo grant'") from e


def _record_version(data: dict) -> int:
    value = data["record_version"]
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise ValueError(f"record_version {value!r} is not a positive integer")
    return value


@dataclass(frozen=True)
class ConsentDecision:
    """A permitted use: what generation may proceed under, and the record hash to log and cite."""

    profile_id: str
    operator: str
    subject_id: str
    subject_fingerprint: str
    grant_id: str
    valid_until: dt.datetime
    record_sha256: str
    record_version: int = 0
    grant_sha256: str = ""
    checked_at: dt.datetime | None = None
    usage_log: dict | None = None  # the usage log's length and head when the use was allowed (consent_gate)


def grant_consent(subject_key: Ed25519PrivateKey, *, subject_id: str, profile_id: str, profile_sha256: str,
                  operators: Iterable[str | Ed25519PublicKey], valid_until: dt.datetime,
                  valid_from: dt.datetime | None = None, now: dt.datetime | None = None,
                  record_version: int = 1) -> ConsentRecord:
    """A new record in which `subject_key` allows `operators` to use profile `profile_id` from `valid_from`
    (default now) until `valid_until`. `record_version`: one more than the newest record known for the profile
    (cameo.consent_gate.grant_for_profile works it out), so this grant supersedes every earlier one."""
    issued = _now(now)
    start = _utc(valid_from, "valid_from") if valid_from is not None else issued
    end = _utc(valid_until, "valid_until")
    if end <= start:
        raise InputValueError(f"valid_until {format_time(end)}: expected a time after valid_from {format_time(start)}")
    ops = tuple(sorted({operator_id(o) for o in operators}))
    if not ops:
        raise InputValueError("operators: empty; expected at least one operator fingerprint or id")
    if len(profile_sha256) != 64 or any(c not in "0123456789abcdef" for c in profile_sha256):
        raise InputValueError(f"profile_sha256 {profile_sha256!r}: expected 64 lowercase hex digits")
    if not subject_id.strip() or not profile_id.strip():
        raise InputValueError(f"subject_id {subject_id!r} / profile_id {profile_id!r}: expected non-empty ids")
    if not isinstance(record_version, int) or record_version < 1:
        raise InputValueError(f"record_version {record_version!r}: expected a positive integer")
    grant = Grant(grant_id=uuid.uuid4().hex, subject_id=subject_id,
                  subject_public_key=public_key_b64(subject_key.public_key()), profile_id=profile_id,
                  profile_sha256=profile_sha256, operators=ops, valid_from=start, valid_until=end, issued_at=issued,
                  record_version=record_version)
    return ConsentRecord(grant=grant, signature=sign_b64(subject_key, GRANT_DOMAIN + canonical_json(grant.to_dict())))


def revoke(record: ConsentRecord, subject_key: Ed25519PrivateKey, *, operator: str | Ed25519PublicKey | None = None,
           reason: str = "", now: dt.datetime | None = None, record_version: int | None = None) -> ConsentRecord:
    """`record` with one more revocation signed by its subject: of `operator`, or of the whole grant.
    `record_version`: the revocation's (default one more than the record's; more to pass a newer version seen
    elsewhere, so the revocation is newer than everything known for the profile)."""
    if public_key_b64(subject_key.public_key()) != record.grant.subject_public_key:
        raise ConsentWrongKeyError(f"revoke consent {record.grant.grant_id} for cameo profile "
                                   f"{record.grant.profile_id!r}: key {fingerprint(subject_key)} is not the subject's "
                                   f"key {record.grant.subject_fingerprint}; only the person who granted can revoke")
    version = record.version + 1 if record_version is None else record_version
    if version <= record.version:
        raise InputValueError(f"record_version {version}: expected more than the record's {record.version}")
    op = operator_id(operator) if operator is not None else None
    unsigned = Revocation(grant_sha256=record.grant_sha256, operator=op, revoked_at=_now(now), reason=reason,
                          signature="", record_version=version)
    signature = sign_b64(subject_key, REVOCATION_DOMAIN + canonical_json(unsigned.body()))
    return replace(record, revocations=record.revocations + (replace(unsigned, signature=signature),))


def check_consent(record: ConsentRecord | None, profile_sha256: str,
                  operator: str | Ed25519PublicKey | Ed25519PrivateKey, now: dt.datetime | None = None, *,
                  profile_id: str | None = None, subject: str | None = None) -> ConsentDecision:
    """Allow this use of a cameo profile or raise why not: `verify_record`, then `decide`.

    `profile_sha256`: `profile_tensors_sha256` of the profile's reference tensors as loaded now;
    `operator`: who generates (fingerprint, id or key); `profile_id`: the profile's id, named in messages
    and checked against the record; `subject`: the subject fingerprint expected (the key the profile is bound
    to, cameo.consent_state), when known.
    """
    op = operator_id(operator)
    name = profile_id or (record.grant.profile_id if record is not None else "?")
    if record is None:
        raise ConsentMissingError(f"cameo profile {name!r}: no consent record; expected one signed by the person in "
                                  f"it that grants operator {op} ('jointav cameo grant')")
    verify_record(record, profile_sha256, profile_id=profile_id, subject=subject, who=f", operator {op}")
    return decide(record, op, now, profile_id=profile_id)


def _what(record: ConsentRecord, profile_id: str | None, who: str = "") -> str:
    g = record.grant
    return f"consent {g.grant_id} (record version {record.version}) for cameo profile {profile_id or g.profile_id!r}{who}"


def verify_record(record: ConsentRecord, profile_sha256: str | None, *, profile_id: str | None = None,
                  subject: str | None = None, who: str = "") -> None:
    """That `record` is what its subject signed, in full: the grant's signature, each revocation's (bound to this
    grant, record versions rising), the subject key `subject` (a fingerprint) when given, and the profile it is
    for (`profile_sha256`: None skips the tensors check, for a record checked without its profile)."""
    g = record.grant
    what = _what(record, profile_id, who)
    try:
        subject_key = public_key_from_b64(g.subject_public_key)
    except ValueError as e:
        raise ConsentTamperedError(f"{what}: the subject key is not a base64 Ed25519 key ({e})") from e
    if not verify_signature(subject_key, record.signature, GRANT_DOMAIN + canonical_json(g.to_dict())):
        raise ConsentTamperedError(f"{what}: the grant's signature does not verify with subject {g.subject_id!r}'s key "
                                   f"{g.subject_fingerprint}; the record was changed after it was signed")
    if subject is not None and g.subject_fingerprint != subject:
        raise ConsentWrongKeyError(f"{what}: signed by key {g.subject_fingerprint}, expected subject key {subject} "
                                   f"(the key the profile is bound to); a grant or revocation by another key does "
                                   f"not count for this profile")
    if profile_id is not None and g.profile_id != profile_id:
        raise ConsentTamperedError(f"{what}: the record is for profile {g.profile_id!r}, not {profile_id!r}")
    if profile_sha256 is not None and g.profile_sha256 != profile_sha256:
        raise ConsentTamperedError(f"{what}: the record is for reference tensors hashing to "
                                   f"{g.profile_sha256[:16]}..., this profile's tensors hash to "
                                   f"{profile_sha256[:16]}...; it belongs to another profile or the tensors "
                                   f"were changed")
    last = g.record_version
    for i, r in enumerate(record.revocations):
        if r.grant_sha256 != record.grant_sha256 or not verify_signature(
                subject_key, r.signature, REVOCATION_DOMAIN + canonical_json(r.body())):
            raise ConsentTamperedError(f"{what}: revocation #{i + 1} is not a revocation of this grant signed by "
                                       f"subject key {g.subject_fingerprint}")
        if r.record_version is not None:
            if r.record_version <= last:
                raise ConsentTamperedError(f"{what}: revocation #{i + 1} has record version {r.record_version}, "
                                           f"expected more than {last}; revocations were reordered")
            last = r.record_version


def decide(record: ConsentRecord, operator: str | Ed25519PublicKey | Ed25519PrivateKey,
           now: dt.datetime | None = None, *, profile_id: str | None = None) -> ConsentDecision:
    """Whether a verified record (`verify_record`) lets `operator` use the profile at `now`; raises why not."""
    op = operator_id(operator)
    when = _now(now)
    g = record.grant
    what = _what(record, profile_id, f", operator {op}")
    for r in record.revocations:
        if r.operator is None or r.operator == op:
            scope = "the whole grant" if r.operator is None else "this operator"
            because = f" ({r.reason})" if r.reason else ""
            raise ConsentRevokedError(f"{what}: subject {g.subject_id!r} revoked {scope} at "
                                      f"{format_time(r.revoked_at)}{because}")
    if op not in g.operators:
        raise ConsentNotGrantedError(f"{what}: this operator is not granted; the record grants "
                                     f"{', '.join(g.operators)}")
    if when < g.valid_from:
        raise ConsentExpiredError(f"{what}: not valid before {format_time(g.valid_from)}; now is {format_time(when)}")
    if when >= g.valid_until:
        raise ConsentExpiredError(f"{what}: expired at {format_time(g.valid_until)}; now is {format_time(when)}")
    return ConsentDecision(profile_id=g.profile_id, operator=op, subject_id=g.subject_id,
                           subject_fingerprint=g.subject_fingerprint, grant_id=g.grant_id,
                           valid_until=g.valid_until, record_sha256=record.record_sha256,
                           record_version=record.version, grant_sha256=record.grant_sha256, checked_at=when)


def save_consent(record: ConsentRecord, path: str | os.PathLike) -> Path:
    path = Path(path)
    with atomic_path(path, suffix=".json") as tmp:
        text = json.dumps(record.to_dict(), indent=2, sort_keys=True, ensure_ascii=False) + "\n"
        tmp.write_text(text, encoding="utf-8")
    return path


def load_consent(path: str | os.PathLike, *, profile_id: str | None = None) -> ConsentRecord:
    """Read a record file: ConsentMissingError when there is none, ConsentTamperedError when it is not one."""
    path = Path(path)
    if not path.is_file():
        raise ConsentMissingError(f"cameo profile {profile_id or '?'}: consent record {path} does not exist")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ConsentTamperedError(f"consent record {path}: not JSON ({e})") from e
    if not isinstance(data, dict):
        raise ConsentTamperedError(f"consent record {path}: found a JSON {type(data).__name__}, expected an object")
    return ConsentRecord.from_dict(data, source=f"consent record {path}")
