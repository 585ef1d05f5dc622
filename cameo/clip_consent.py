"""What a cameo clip's manifest says about its consent, checked against what is known now.

`jointav verify` (and the Verify node) run `check_cameo_clip` on a clip whose C2PA manifest has a cameo
entry (pipeline.cameo.consent_record_entry): whether the consent it was made under has since been revoked,
given the person's newest record (a file they sent, `jointav cameo revoke` output, or the newest record this
machine has seen, cameo.consent_state), and whether the usage log still holds the clip's use (the manifest
records the log's length and head hash when the use was allowed). `jointav cameo audit` lists the clips of a
folder that carry a profile id.
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass, field
from pathlib import Path

from .consent import ConsentError, ConsentRecord, parse_time, verify_record
from .consent_state import describe_revocation, profile_entry, record_summary
from .usage_log import UsageLogTamperedError, check_snapshot, sha256_file

REVOKED, WITHDRAWN, NOT_REVOKED, UNKNOWN = "revoked", "no longer granted", "not revoked", "unknown"


@dataclass
class CameoClipStatus:
    profile_id: str | None
    record_version: int | None = None
    subject_fingerprint: str | None = None
    consent: str = UNKNOWN  # REVOKED / WITHDRAWN / NOT_REVOKED / UNKNOWN, given the newest record known
    consent_note: str = ""
    usage_log: str = "not recorded"  # intact / not checked (no log here) / CUT OR TAMPERED / not recorded (older clip)
    usage_log_note: str = ""
    problems: list[str] = field(default_factory=list)  # what makes the clip's record of use untrustworthy

    def to_dict(self) -> dict:
        return asdict(self)

    def lines(self) -> list[str]:
        word = {REVOKED: "REVOKED since", WITHDRAWN: "NO LONGER GRANTED", NOT_REVOKED: "not revoked",
                UNKNOWN: "revocation status unknown"}[self.consent]
        return [f"consent:     record version {self.record_version}, subject key {self.subject_fingerprint}: "
                f"{word}" + (f": {self.consent_note}" if self.consent_note else ""),
                f"usage log:   {self.usage_log}" + (f"; {self.usage_log_note}" if self.usage_log_note else "")]


def _newest(cameo: dict, revocation: ConsentRecord | None, source: str) -> tuple[dict | None, str]:
    """The person's newest record as a summary (consent_state.record_summary), and where it came from; None and
    why when there is none that speaks for this clip's profile and key."""
    profile_id, subject = cameo.get("profile_id"), cameo.get("subject_fingerprint")
    if revocation is not None:
        try:
            verify_record(revocation, None, profile_id=profile_id, subject=subject, who=f" ({source})")
        except ConsentError as e:
            return None, f"the record in {source} does not apply to this clip: {e}"
        return record_summary(revocation), source
    entry = profile_entry(profile_id) if profile_id else None
    if entry is None:
        return None, ("no newer record at hand (pass the person's revocation, 'jointav cameo revoke' output, with "
                      "--revocation FILE)")
    if subject is not None and entry.get("subject_fingerprint") != subject:
        return None, (f"this machine binds the profile to key {entry.get('subject_fingerprint')}, the clip's consent "
                      f"was signed by {subject}: the profile's person was swapped")
    return entry["newest"], f"the newest record this machine has seen ({entry.get('seen_at', '?')})"


def consent_status(cameo: dict, revocation: ConsentRecord | None = None, source: str = "") -> tuple[str, str, bool]:
    """(status, note, made_after): whether the consent the clip was made under was revoked since, and whether the
    clip was made after the revocation (a revocation rolled back or ignored)."""
    newest, origin = _newest(cameo, revocation, source)
    if newest is None:
        return UNKNOWN, origin, False
    version = cameo.get("record_version") or 0
    if newest["record_version"] < version:
        return UNKNOWN, (f"{origin} is record version {newest['record_version']}, older than the clip's "
                         f"{version}; it cannot tell"), False
    operator = cameo.get("operator")
    made = cameo.get("checked_at")
    for r in newest.get("revocations", []):
        if r.get("operator") is None or r.get("operator") == operator:
            # to the second both record; a use in the revocation's own second gets the benefit of the doubt
            after = made is not None and parse_time(made) > parse_time(r["revoked_at"])
            when = (f"; the clip was made at {made}, AFTER it" if after else
                    f"; the clip was made before it, at {made}" if made else "")
            return REVOKED, f"the person revoked {describe_revocation(r)} (record version {r.get('record_version')}, " \
                            f"{origin}){when}", after
    if newest["grant_sha256"] != cameo.get("grant_sha256") and operator not in newest.get("operators", []):
        return WITHDRAWN, (f"the person's newer grant (record version {newest['record_version']}, {origin}) no "
                           f"longer lists operator {operator}"), False
    return NOT_REVOKED, f"as of record version {newest['record_version']} ({origin})", False


def check_cameo_clip(path: str | os.PathLike, generation: dict, *, log_path: str | os.PathLike | None = None,
                     revocation: ConsentRecord | None = None, revocation_source: str = "",
                     made_here: bool | None = None) -> CameoClipStatus | None:
    """The consent and usage-log status of a cameo clip from its manifest's generation assertion (None when it is
    not a cameo clip). `made_here`: whether the clip was made on this machine (its watermark key is this
    machine's; None: unknown); a clip made elsewhere was logged elsewhere, so the log here is not compared."""
    cameo = (generation or {}).get("cameo")
    if not isinstance(cameo, dict):
        return None
    status = CameoClipStatus(profile_id=cameo.get("profile_id"), record_version=cameo.get("record_version"),
                             subject_fingerprint=cameo.get("subject_fingerprint"))
    status.consent, status.consent_note, made_after = consent_status(cameo, revocation, revocation_source)
    if made_after:
        status.problems.append(f"the clip was made under a revoked consent: {status.consent_note}")
    snapshot = cameo.get("usage_log")
    if isinstance(snapshot, dict) and made_here is False:
        status.usage_log = "not checked"
        status.usage_log_note = "the clip was made on another machine (another watermark key); its use is in that log"
    elif isinstance(snapshot, dict):
        path = Path(path)
        mp4 = sha256_file(path) if path.suffix.lower() in (".mp4", ".m4v", ".mov") else None
        try:
            found = check_snapshot(snapshot, log_path, output_sha256=mp4)
        except UsageLogTamperedError as e:
            status.usage_log = "CUT OR TAMPERED"
            status.usage_log_note = str(e)
            status.problems.append(f"the usage log no longer holds this clip's use: {e}")
        else:
            if not found["checked"]:
                status.usage_log, status.usage_log_note = "not checked", found["note"]
            elif mp4 is not None and found["clip_entry"] is None:
                status.usage_log = "CUT OR TAMPERED"
                status.usage_log_note = (f"{_entries(found['entries'])}, but none after line {snapshot['entries']} "
                                         f"records this file's sha256 {mp4[:16]}...")
                status.problems.append(f"the usage log no longer holds this clip's use: {status.usage_log_note}; "
                                       f"its entry was cut off and the log grown again")
            else:
                status.usage_log = "intact"
                status.usage_log_note = (f"{_entries(found['entries'])}; {snapshot['entries']} before this clip's use"
                                         + (f", its entry is line {found['clip_entry']}" if found["clip_entry"]
                                            else ""))
    return status


def _entries(n: int) -> str:
    return f"{n} entr{'y' if n == 1 else 'ies'}"


def history_warnings(clips: list[tuple[str, dict]]) -> list[str]:
    """What the clips of a profile show together that no single clip does, from (name, manifest cameo entry)
    pairs: clips made under different person keys (the profile's key was swapped), and a clip made under an
    older record version than a clip made before it (an earlier record was put back: a rollback the machine did
    not stop, e.g. after its consent state was deleted). Clips made in the same second are not ordered."""
    warnings = []
    by_profile: dict[str, list[tuple[str, dict]]] = {}
    for name, cameo in clips:
        by_profile.setdefault(cameo.get("profile_id") or "?", []).append((name, cameo))
    for profile_id, items in sorted(by_profile.items()):
        keys = sorted({c.get("subject_fingerprint") for _, c in items if c.get("subject_fingerprint")})
        if len(keys) > 1:
            warnings.append(f"profile {profile_id}: clips made under {len(keys)} different person keys "
                            f"({', '.join(keys)}): the profile's key was swapped")
        dated = sorted((c["checked_at"], c["record_version"], name) for name, c in items
                       if c.get("checked_at") and isinstance(c.get("record_version"), int))
        for i, (made, version, name) in enumerate(dated):
            earlier = [(v, n, m) for m, v, n in dated[:i] if m < made and v > version]
            if earlier:
                v, n, m = max(earlier)
                warnings.append(f"profile {profile_id}: {name} was made at {made} under record version {version}, "
                                f"after {n} was made at {m} under version {v}: an earlier record was put back "
                                f"(a rollback)")
                break
    return warnings
