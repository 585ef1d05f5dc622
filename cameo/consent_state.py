"""What this machine has seen of each cameo profile's consent, kept outside the profile folders.

In the spirit of TUF's rollback protection: for every profile id the machine keeps the key the profile is
bound to (its person's, fixed by the first grant seen) and the newest record it has seen (record version,
record sha256, and a summary: grant, operators, validity, revocations). A record signed by another key,
older than the newest seen, or of the same version but different, is refused; a newer verified record
replaces the entry. It also keeps, per usage log, the newest length and head hash seen (a checkpoint), so a
log cut back below it is noticed at the next use (cameo.usage_log).

One JSON file (`$JOINTAV_CAMEO_STATE`, else <config>/cameo/consent-state.json), read and rewritten under an
exclusive lock. The operator owns the machine and can delete this file: that resets the protection here, but
each clip's manifest records the record version, subject key and log length it was made under, so
`jointav verify` and `jointav cameo audit` still show what was undone.
"""

from __future__ import annotations

import datetime as dt
import json
import os
from contextlib import contextmanager
from pathlib import Path

from ..atomic import atomic_path
from ..errors import JointAVError
from ..provenance.certificates import config_dir
from .consent import (ConsentRecord, ConsentRolledBackError, ConsentWrongKeyError, format_time)
from .keys import fingerprint, public_key_from_b64

try:  # POSIX; on Windows a single ComfyUI process writes, and the lock is skipped
    import fcntl
except ImportError:  # pragma: no cover - platform dependent
    fcntl = None

STATE_FORMAT = "jointav-cameo-consent-state"
STATE_VERSION = 1


class ConsentStateError(JointAVError):
    """The machine's consent state file cannot be read or written."""


def default_state_path() -> Path:
    """$JOINTAV_CAMEO_STATE, else <config>/cameo/consent-state.json."""
    return Path(os.environ.get("JOINTAV_CAMEO_STATE") or config_dir() / "cameo" / "consent-state.json")


def _empty() -> dict:
    return {"format": STATE_FORMAT, "version": STATE_VERSION, "profiles": {}, "usage_logs": {}}


def _read(path: Path) -> dict:
    if not path.exists():
        return _empty()
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ConsentStateError(f"consent state {path}: cannot be read ({e}); it holds this machine's rollback "
                                f"protection, so it is not replaced (move it aside to start over)") from e
    if not isinstance(data, dict) or data.get("format") != STATE_FORMAT or data.get("version") != STATE_VERSION:
        raise ConsentStateError(f"consent state {path}: not a {STATE_FORMAT} version {STATE_VERSION} file")
    data.setdefault("profiles", {})
    data.setdefault("usage_logs", {})
    return data


@contextmanager
def _locked(path: Path | None):
    """The state as a dict, under an exclusive lock; written back (atomically) when the block changed it."""
    path = Path(path) if path is not None else default_state_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path.with_name(path.name + ".lock"), os.O_RDWR | os.O_CREAT, 0o600)
    try:
        if fcntl is not None:
            fcntl.flock(fd, fcntl.LOCK_EX)
        state = _read(path)
        before = json.dumps(state, sort_keys=True)
        yield state
        if json.dumps(state, sort_keys=True) != before:
            with atomic_path(path, suffix=".json") as tmp:
                tmp.write_text(json.dumps(state, indent=1, sort_keys=True) + "\n", encoding="utf-8")
    finally:
        os.close(fd)  # closing releases the lock


def profile_entry(profile_id: str, path: str | os.PathLike | None = None) -> dict | None:
    """What this machine has seen for `profile_id` (None: nothing yet); read only."""
    path = Path(path) if path is not None else default_state_path()
    return _read(path)["profiles"].get(profile_id)


def record_summary(record: ConsentRecord) -> dict:
    """The newest record as the state keeps it: enough to name what a rollback undid and to tell whether a
    clip's consent was revoked since."""
    g = record.grant
    return {"record_version": record.version, "record_sha256": record.record_sha256,
            "grant_id": g.grant_id, "grant_sha256": record.grant_sha256, "subject_id": g.subject_id,
            "operators": list(g.operators), "valid_from": format_time(g.valid_from),
            "valid_until": format_time(g.valid_until),
            "revocations": [{"operator": r.operator, "revoked_at": format_time(r.revoked_at), "reason": r.reason,
                             "grant_sha256": r.grant_sha256, "record_version": r.record_version}
                            for r in record.revocations]}


def describe_revocation(r: dict) -> str:
    scope = "the whole grant" if r.get("operator") is None else f"operator {r['operator']}"
    return f"{scope} at {r.get('revoked_at')}" + (f" ({r['reason']})" if r.get("reason") else "")


def _rollback_message(record: ConsentRecord, entry: dict, where: str) -> str:
    newest = entry["newest"]
    seen = (f"this machine has already seen version {newest['record_version']} (record sha256 "
            f"{newest['record_sha256'][:16]}..., {entry.get('seen_at', '?')})")
    if record.version < newest["record_version"]:
        head = (f"{where} is record version {record.version} (sha256 {record.record_sha256[:16]}...), but {seen}: "
                f"the record was rolled back to an earlier copy")
    else:
        head = (f"{where} is record version {record.version} with sha256 {record.record_sha256[:16]}..., but {seen} "
                f"with other content: two different records claim one version")
    undone = [describe_revocation(r) for r in newest.get("revocations", [])
              if (r.get("record_version") or 0) > record.version]
    if undone:
        return head + f"; the newer record revokes {'; '.join(undone)}, so a revocation was rolled back"
    changes = []
    g = record.grant
    if sorted(g.operators) != sorted(newest.get("operators", [])):
        changes.append(f"operators {', '.join(newest.get('operators', []))} (this copy: {', '.join(g.operators)})")
    if format_time(g.valid_until) != newest.get("valid_until"):
        changes.append(f"valid until {newest.get('valid_until')} (this copy: {format_time(g.valid_until)})")
    if changes:
        head += "; the newer record grants " + " and ".join(changes)
    return head + "; ask the person for their newest record ('jointav cameo revoke --from FILE' imports it)"


def check_record(record: ConsentRecord, profile_id: str, *, bound_key: str | None = None, where: str = "",
                 path: str | os.PathLike | None = None, update: bool = True) -> dict:
    """Refuse `record` for `profile_id` if this machine knows better, else note it as the newest seen.

    The record's signatures must already be verified (consent.verify_record). `bound_key`: the subject key
    (base64) the profile's own manifest is bound to, if any. Raises ConsentWrongKeyError when the record is
    signed by another key than the profile's person's (the one this machine saw first, or the manifest's), and
    ConsentRolledBackError when it is older than the newest record seen (or the same version, other content).
    With `update`, a newer record becomes the newest seen. Returns the profile's entry."""
    where = where or f"consent record for cameo profile {profile_id!r}"
    with _locked(path) as state:
        entry = state["profiles"].get(profile_id)
        known = entry["subject_public_key"] if entry else None
        if known and bound_key and known != bound_key:
            raise ConsentWrongKeyError(
                f"cameo profile {profile_id!r}: its manifest binds it to key {_fp(bound_key)}, but this machine bound "
                f"it to its person's key {_fp(known)} on {entry.get('bound_at', '?')}; the manifest's subject was "
                f"changed (a different person needs a new profile, with a new id)")
        pinned = known or bound_key
        g = record.grant
        if pinned and g.subject_public_key != pinned:
            raise ConsentWrongKeyError(
                f"{where}: signed by key {g.subject_fingerprint} ({g.subject_id!r}), but cameo profile {profile_id!r} "
                f"is bound to its person's key {_fp(pinned)}; a grant or revocation by another key is refused (a "
                f"different person needs a new profile, with a new id)")
        if entry is not None:
            newest = entry["newest"]
            if record.version < newest["record_version"] or (
                    record.version == newest["record_version"] and record.record_sha256 != newest["record_sha256"]):
                raise ConsentRolledBackError(_rollback_message(record, entry, where))
        if update and (entry is None or record.version > entry["newest"]["record_version"]):
            now = format_time(dt.datetime.now(dt.timezone.utc))
            entry = {"subject_public_key": pinned or g.subject_public_key,
                     "subject_fingerprint": _fp(pinned or g.subject_public_key),
                     "bound_at": entry["bound_at"] if entry else now, "seen_at": now,
                     "newest": record_summary(record)}
            state["profiles"][profile_id] = entry
        return entry or {}


def _fp(key_b64: str) -> str:
    try:
        return fingerprint(public_key_from_b64(key_b64))
    except ValueError:
        return f"<not a key: {key_b64[:12]}...>"


def _log_key(log_path: str | os.PathLike) -> str:
    return str(Path(log_path).resolve())


def log_checkpoint(log_path: str | os.PathLike, path: str | os.PathLike | None = None) -> dict | None:
    """The newest length and head hash this machine recorded for the usage log at `log_path`, or None."""
    path = Path(path) if path is not None else default_state_path()
    return _read(path)["usage_logs"].get(_log_key(log_path))


def record_log_checkpoint(log_path: str | os.PathLike, entries: int, head_sha256: str,
                          path: str | os.PathLike | None = None) -> None:
    """Note that the usage log at `log_path` reached `entries` lines ending in `head_sha256` (never moves back)."""
    with _locked(path) as state:
        logs = state["usage_logs"]
        old = logs.get(_log_key(log_path))
        if old is None or entries > old["entries"]:
            logs[_log_key(log_path)] = {"entries": entries, "head_sha256": head_sha256,
                                        "updated": format_time(dt.datetime.now(dt.timezone.utc))}
