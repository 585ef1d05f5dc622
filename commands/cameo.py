"""`jointav cameo keygen|grant|revoke|show`: keys and consent records for cameo profiles."""

from __future__ import annotations

import argparse
import datetime as dt
import sys
from pathlib import Path


def _time(text: str) -> dt.datetime:
    """'2027-01-31' (midnight UTC) or an ISO 8601 time; without a zone it is UTC."""
    try:
        t = dt.datetime.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: expected a date (2027-01-31) or an ISO time "
                                         f"(2027-01-31T12:00:00Z)") from None
    return t.replace(tzinfo=dt.timezone.utc) if t.tzinfo is None else t


def register(subparsers) -> None:
    p = subparsers.add_parser("cameo", help="cameo consent: keys, grants, revocations",
                              description="Make keys, grant a cameo profile to operators, revoke, and inspect records.")
    sub = p.add_subparsers(dest="cameo_command", required=True)

    k = sub.add_parser("keygen", help="make an Ed25519 key (default: this machine's operator key)")
    k.add_argument("--out", help="private key file for a subject (its .pub.pem is written beside it); default: "
                                 "the operator key ($JOINTAV_OPERATOR_KEY or ~/.config/jointav/keys/operator.key)")
    k.add_argument("--force", action="store_true",
                   help="replace an existing key (what it signed can then not be revoked)")
    k.set_defaults(func=_keygen)

    g = sub.add_parser("grant", help="sign a consent record that lets operators use a profile")
    g.add_argument("--subject-key", required=True, help="the subject's private key (from 'jointav cameo keygen --out')")
    g.add_argument("--subject-id", required=True, help="who the subject is, e.g. a name or handle")
    g.add_argument("--profile-id", required=True)
    source = g.add_mutually_exclusive_group(required=True)
    source.add_argument("--profile-hash", help="SHA-256 of the profile's reference tensors (64 hex digits)")
    source.add_argument("--profile-tensors", help="the profile's reference tensors (.safetensors): hash them")
    g.add_argument("--operator", action="append", default=[], help="an operator fingerprint or id (repeatable)")
    g.add_argument("--operator-key", action="append", default=[], help="an operator's public key PEM (repeatable)")
    until = g.add_mutually_exclusive_group(required=True)
    until.add_argument("--until", type=_time, help="end of validity (UTC unless a zone is given)")
    until.add_argument("--days", type=int, help="valid for this many days from --from")
    g.add_argument("--from", dest="valid_from", type=_time, help="start of validity (default: now)")
    g.add_argument("--out", required=True, help="the consent record to write (.json)")
    g.add_argument("--force", action="store_true", help="replace an existing record file")
    g.set_defaults(func=_grant)

    r = sub.add_parser("revoke", help="append a signed revocation to a consent record (in place)")
    r.add_argument("record", help="the consent record (.json)")
    r.add_argument("--subject-key", required=True, help="the subject's private key that signed the record")
    r.add_argument("--operator", help="revoke only this operator (fingerprint or id); default: the whole grant")
    r.add_argument("--reason", default="", help="a short reason, kept in the record")
    r.set_defaults(func=_revoke)

    s = sub.add_parser("show", help="print a consent record and whether an operator may use it now")
    s.add_argument("record", help="the consent record (.json)")
    s.add_argument("--operator", help="operator fingerprint or id to check (default: this machine's operator key)")
    source = s.add_mutually_exclusive_group()
    source.add_argument("--profile-hash", help="check the record against these tensors' hash")
    source.add_argument("--profile-tensors", help="check the record against these reference tensors (.safetensors)")
    s.set_defaults(func=_show)


def _fail(e: Exception) -> int:
    print(f"error: {e}", file=sys.stderr)
    return 2


def _keygen(args) -> int:
    from ..cameo.keys import default_operator_key_path, fingerprint, generate_key, save_key
    from ..errors import JointAVError

    path = Path(args.out) if args.out else default_operator_key_path()
    key = generate_key()
    try:
        private, public = save_key(key, path, overwrite=args.force)
    except (OSError, JointAVError) as e:
        return _fail(e)
    print(f"fingerprint {fingerprint(key)}\nprivate key {private} (keep it secret)\npublic key  {public}")
    return 0


def _profile_hash(args) -> str | None:
    from ..cameo.consent import profile_file_sha256

    if args.profile_tensors:
        return profile_file_sha256(args.profile_tensors)
    return args.profile_hash.lower() if args.profile_hash else None


def _grant(args) -> int:
    from ..cameo.consent import format_time, grant_consent, save_consent
    from ..cameo.keys import fingerprint, load_private_key, load_public_key
    from ..errors import JointAVError

    out = Path(args.out)
    if out.exists() and not args.force:
        return _fail(FileExistsError(f"{out} exists; pass --force to replace it"))
    try:
        subject = load_private_key(args.subject_key)
        operators = list(args.operator) + [fingerprint(load_public_key(p)) for p in args.operator_key]
        start = args.valid_from or dt.datetime.now(dt.timezone.utc)
        end = args.until if args.until is not None else start + dt.timedelta(days=args.days)
        record = grant_consent(subject, subject_id=args.subject_id, profile_id=args.profile_id,
                               profile_sha256=_profile_hash(args), operators=operators, valid_until=end,
                               valid_from=start)
        save_consent(record, out)
    except (OSError, JointAVError) as e:
        return _fail(e)
    g = record.grant
    print(f"wrote {out}: grant {g.grant_id} by {g.subject_id} ({g.subject_fingerprint}) for profile {g.profile_id}, "
          f"operators {', '.join(g.operators)}, valid {format_time(g.valid_from)} to {format_time(g.valid_until)}")
    return 0


def _revoke(args) -> int:
    from ..cameo.consent import load_consent, revoke, save_consent
    from ..cameo.keys import load_private_key
    from ..errors import JointAVError

    try:
        record = revoke(load_consent(args.record), load_private_key(args.subject_key), operator=args.operator,
                        reason=args.reason)
        save_consent(record, args.record)
    except (OSError, JointAVError) as e:
        return _fail(e)
    scope = f"operator {args.operator}" if args.operator else "the whole grant"
    print(f"revoked {scope} of grant {record.grant.grant_id} in {args.record}")
    return 0


def _show(args) -> int:
    from ..cameo.consent import ConsentError, check_consent, format_time, load_consent
    from ..cameo.keys import default_operator_key_path, fingerprint, load_private_key
    from ..errors import JointAVError

    try:
        record = load_consent(args.record)
        operator = args.operator or fingerprint(load_private_key(default_operator_key_path()))
        expected = _profile_hash(args)
    except (OSError, JointAVError) as e:
        return _fail(e)
    g = record.grant
    print(f"grant       {g.grant_id} (version {g.version})\n"
          f"subject     {g.subject_id} ({g.subject_fingerprint})\n"
          f"profile     {g.profile_id}, tensors sha256 {g.profile_sha256}\n"
          f"operators   {', '.join(g.operators)}\n"
          f"valid       {format_time(g.valid_from)} to {format_time(g.valid_until)}\n"
          f"record      sha256 {record.record_sha256}")
    for r in record.revocations:
        scope = "whole grant" if r.operator is None else f"operator {r.operator}"
        print(f"revoked     {scope} at {format_time(r.revoked_at)}" + (f" ({r.reason})" if r.reason else ""))
    if expected is None:
        print("note        no --profile-hash/--profile-tensors: the binding to the profile's tensors is not checked")
    try:
        decision = check_consent(record, expected or g.profile_sha256, operator)
    except ConsentError as e:
        print(f"decision    REFUSED for {operator}: {type(e).__name__}: {e}")
        return 1
    print(f"decision    allowed for {decision.operator} until {format_time(decision.valid_until)}")
    return 0
