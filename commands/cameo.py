"""`jointav cameo create|keygen|grant|revoke|show|audit`: cameo profiles, keys, consent records, and clips.

A grant names a profile by its id (the digest of its reference tensors, see cameo.consent_gate); with
`--profile DIR` the record is written into the profile folder and named in its manifest, where generation
looks for it. The first grant binds the profile to the person's key; grants and revocations signed by
another key are refused (also with --force), and every record carries a version above the ones before it.
`revoke --from FILE` imports the record a person sends; `audit FOLDER` lists the clips made with a profile.
"""

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
    p = subparsers.add_parser("cameo", help="cameo profiles and consent: create, keys, grants, revocations",
                              description="Create a cameo profile, make keys, grant a profile to operators, revoke, "
                                          "and inspect records.")
    sub = p.add_subparsers(dest="cameo_command", required=True)

    c = sub.add_parser("create", help="make a cameo profile from a recording, or an image and a voice clip",
                       description="Picks sharp frontal frames and a clean voice segment, encodes them with the "
                                   "video and audio VAE encoders and saves the profile as <out>/<name>-<id>/.")
    source = c.add_mutually_exclusive_group(required=True)
    source.add_argument("--recording", help="a video file with sound of the person")
    source.add_argument("--image", help="a picture of the person (PNG/JPEG); needs --voice")
    c.add_argument("--voice", help="a voice clip (WAV/FLAC/MP3, or a video's sound); with --recording it replaces "
                                   "the recording's sound")
    c.add_argument("--name", required=True, help="the person's display name")
    c.add_argument("--out", required=True, help="folder the profile folder is made in (ComfyUI: models/cameos)")
    c.add_argument("--max-frames", type=int, default=2, help="reference frames to keep (default 2)")
    c.add_argument("--video-vae", help="Wan2.2 VAE file whose encoder makes the latents (default: embedded)")
    c.add_argument("--audio-vae", help="MMAudio VAE file with encoder weights (default: embedded)")
    c.add_argument("--device", help="cpu or cuda (default: cuda when available)")
    c.add_argument("--subject-key", help="the person's key (their .pub.pem, or private key) when they make their own "
                                         "profile: it is bound to that key from the start (else the first grant "
                                         "binds it)")
    c.set_defaults(func=_create)

    k = sub.add_parser("keygen", help="make an Ed25519 key (default: this machine's operator key)")
    k.add_argument("--out", help="private key file for a subject (its .pub.pem is written beside it); default: "
                                 "the operator key ($JOINTAV_OPERATOR_KEY or ~/.config/jointav/keys/operator.key)")
    k.add_argument("--force", action="store_true",
                   help="replace an existing key (what it signed can then not be revoked)")
    k.set_defaults(func=_keygen)

    g = sub.add_parser("grant", help="sign a consent record that lets operators use a profile")
    g.add_argument("--subject-key", required=True, help="the subject's private key (from 'jointav cameo keygen --out')")
    g.add_argument("--subject-id", required=True, help="who the subject is, e.g. a name or handle")
    source = g.add_mutually_exclusive_group(required=True)
    source.add_argument("--profile", help="the profile folder: the record is written into it and named in its "
                                          "manifest")
    source.add_argument("--profile-id", help="the profile's id (64 hex digits, the digest of its reference "
                                             "tensors) when the folder is not at hand; needs --out")
    g.add_argument("--operator", action="append", default=[], help="an operator fingerprint or id (repeatable)")
    g.add_argument("--operator-key", action="append", default=[], help="an operator's public key PEM (repeatable)")
    until = g.add_mutually_exclusive_group(required=True)
    until.add_argument("--until", type=_time, help="end of validity (UTC unless a zone is given)")
    until.add_argument("--days", type=int, help="valid for this many days from --from")
    g.add_argument("--from", dest="valid_from", type=_time, help="start of validity (default: now)")
    g.add_argument("--out", help="the consent record to write (.json); only with --profile-id (with --force, an "
                                 "existing record there is superseded: the new one takes the next version)")
    g.add_argument("--force", action="store_true", help="replace an existing record (a new grant by the same person's "
                                                        "key; a profile's key never changes)")
    g.set_defaults(func=_grant)

    r = sub.add_parser("revoke", help="append a signed revocation to a consent record (in place), or import one",
                       description="The person revokes with their key: in a profile folder (its record) or in their "
                                   "own copy of the record, which they can send to the operator. The operator imports "
                                   "such a file into the profile folder with --from FILE (no key needed: it must be "
                                   "signed by the profile's person and newer than what the folder holds).")
    r.add_argument("record", help="the consent record (.json), or a profile folder (its record)")
    how = r.add_mutually_exclusive_group(required=True)
    how.add_argument("--subject-key", help="the subject's private key that signed the record")
    how.add_argument("--from", dest="from_file", metavar="FILE",
                     help="import the person's record with their revocation ('jointav cameo revoke' output) into "
                          "the profile folder")
    r.add_argument("--operator", help="revoke only this operator (fingerprint or id); default: the whole grant")
    r.add_argument("--reason", default="", help="a short reason, kept in the record")
    r.set_defaults(func=_revoke)

    s = sub.add_parser("show", help="print a consent record and whether an operator may use it now")
    s.add_argument("record", help="a profile folder (its record, checked against its tensors) or a record (.json)")
    s.add_argument("--operator", help="operator fingerprint or id to check (default: this machine's operator key)")
    s.set_defaults(func=_show)

    a = sub.add_parser("audit", help="list the clips in a folder made with a cameo profile",
                       description="Reads the C2PA manifest of every .mp4/.mov/.m4v/.wav/.flac under FOLDER and lists "
                                   "those that carry the profile id, with the consent record version they were made "
                                   "under and whether it was revoked since (given --revocation, else the newest "
                                   "record this machine has seen); warns when the clips of a profile were made under "
                                   "different person keys, or under an older record after a newer one.")
    a.add_argument("folder", help="a folder of clips (searched recursively)")
    who = a.add_mutually_exclusive_group()
    who.add_argument("--profile-id", help="the profile id (64 hex digits); default: every cameo clip")
    who.add_argument("--profile", help="a profile folder (its id)")
    a.add_argument("--revocation", metavar="RECORD", help="the person's consent record with their revocation")
    a.add_argument("--json", action="store_true", help="print the list as JSON")
    a.set_defaults(func=_audit)


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


def _create(args) -> int:
    from ..errors import JointAVError
    from ..pipeline import api
    from ..pipeline.cameo import create_profile

    if args.image and not args.voice:
        return _fail(ValueError("--image needs --voice: a picture has no sound to take the voice from"))
    try:
        subject = _public_key(args.subject_key) if args.subject_key else None
        decoders = api.load_decoders(args.video_vae, args.audio_vae, None, device=args.device)
        profile = create_profile(decoders, recording=args.recording, image=args.image, voice=args.voice,
                                 name=args.name, out_dir=args.out, max_frames=args.max_frames, subject_key=subject)
    except (OSError, JointAVError) as e:
        return _fail(e)
    voice = profile.manifest["voice"]
    print(f"profile {profile.path}\nname    {profile.name}\nid      {profile.id}\n"
          f"frames  {profile.frames.shape[0]} (source frames "
          f"{', '.join(str(f['source_index']) for f in profile.manifest['frames'])})\n"
          f"voice   {voice['start_s']:.2f}-{voice['end_s']:.2f} s\n"
          f"person  {(profile.manifest.get('subject') or {}).get('fingerprint') or 'bound by the first grant'}\n"
          f"consent none yet: the person grants it with 'jointav cameo grant --profile {profile.path} "
          f"--subject-key KEY --subject-id NAME --operator FINGERPRINT --days N'")
    return 0


def _public_key(path: str):
    """A public key from a .pub.pem, or the public half of a private key file."""
    from ..cameo.keys import load_private_key, load_public_key
    from ..errors import InputValueError

    try:
        return load_public_key(path)
    except InputValueError:
        return load_private_key(path).public_key()


def _names_record(folder: Path, name: str) -> bool:
    """Whether `folder` is a profile folder whose manifest's consent slot names the record file `name`."""
    import json

    from ..cameo.profile import MANIFEST_NAME

    try:
        return (json.loads((folder / MANIFEST_NAME).read_text()).get("consent") or {}).get("file") == name
    except (OSError, ValueError, AttributeError):
        return False


def _grant(args) -> int:
    from ..cameo.consent import ConsentError, format_time, grant_consent, load_consent, save_consent
    from ..cameo.consent_gate import CONSENT_NAME, grant_for_profile
    from ..cameo.consent_state import check_record, profile_entry
    from ..cameo.keys import fingerprint, load_private_key, load_public_key
    from ..cameo.profile import read_profile
    from ..errors import JointAVError

    if args.profile and args.out:
        return _fail(ValueError("--out: with --profile the record is written into the profile folder"))
    if args.profile_id and not args.out:
        return _fail(ValueError("--profile-id needs --out: where to write the record"))
    try:
        subject = load_private_key(args.subject_key)
        operators = list(args.operator) + [fingerprint(load_public_key(p)) for p in args.operator_key]
        start = args.valid_from or dt.datetime.now(dt.timezone.utc)
        end = args.until if args.until is not None else start + dt.timedelta(days=args.days)
        if args.profile:
            profile = read_profile(args.profile)
            out = profile.path / CONSENT_NAME
            if out.exists() and not args.force:
                return _fail(FileExistsError(f"{out} exists; pass --force to replace it"))
            record, _ = grant_for_profile(profile, subject, subject_id=args.subject_id, operators=operators,
                                          valid_until=end, valid_from=start)
        else:
            out = Path(args.out)
            if out.exists() and not args.force:
                return _fail(FileExistsError(f"{out} exists; pass --force to replace it"))
            # a profile's id is the digest of its tensors, so the record binds both fields to it
            profile_id = args.profile_id.lower()
            versions = [0]
            if out.exists():  # the record this one supersedes: same profile, same person
                try:
                    versions.append(load_consent(out).version)
                except ConsentError:
                    pass
            entry = profile_entry(profile_id)
            if entry is not None:
                versions.append(entry["newest"]["record_version"])
            record = grant_consent(subject, subject_id=args.subject_id, profile_id=profile_id,
                                   profile_sha256=profile_id, operators=operators, valid_until=end,
                                   valid_from=start, record_version=max(versions) + 1)
            check_record(record, profile_id, where=f"the new grant for {out}")  # refuses another key
            save_consent(record, out)
    except (OSError, JointAVError) as e:
        return _fail(e)
    g = record.grant
    print(f"wrote {out}: grant {g.grant_id} by {g.subject_id} ({g.subject_fingerprint}) for profile {g.profile_id}, "
          f"operators {', '.join(g.operators)}, valid {format_time(g.valid_from)} to {format_time(g.valid_until)}, "
          f"record version {record.version}, sha256 {record.record_sha256}")
    return 0


def _revoke(args) -> int:
    from ..cameo.consent import load_consent, revoke, save_consent
    from ..cameo.consent_gate import import_record, revoke_profile
    from ..cameo.consent_state import check_record
    from ..cameo.keys import load_private_key
    from ..cameo.profile import read_profile
    from ..errors import JointAVError

    target = Path(args.record)
    if target.is_file() and _names_record(target.parent, target.name):
        target = target.parent  # the record of a profile folder: revoke it as the folder's
    try:
        if args.from_file:
            if not target.is_dir():
                return _fail(ValueError(f"--from: {target} is not a profile folder; the person's record is imported "
                                        f"into the profile folder it is for"))
            if args.operator or args.reason:
                return _fail(ValueError("--from imports the person's signed record as it is; --operator and --reason "
                                        "are theirs to give when they revoke"))
            path, changed = import_record(read_profile(target), load_consent(args.from_file), str(args.from_file))
            record = load_consent(path)
            print(f"{'imported' if changed else 'already held'} record version {record.version} from "
                  f"{args.from_file} into {path}")
        elif target.is_dir():
            path, record = revoke_profile(read_profile(target), load_private_key(args.subject_key),
                                          operator=args.operator, reason=args.reason)
        else:  # the person's own copy of the record, to send to the operator
            path = target
            record = revoke(load_consent(path), load_private_key(args.subject_key), operator=args.operator,
                            reason=args.reason)
            check_record(record, record.grant.profile_id, where=f"the revoked record {path}")
            save_consent(record, path)
    except (OSError, JointAVError) as e:
        return _fail(e)
    if args.from_file:
        return 0
    for r in record.revocations:
        if r.record_version == record.version:
            print(f"revoked {r.describe()} of grant {record.grant.grant_id} in {path} (record version "
                  f"{record.version})")
    if not target.is_dir():
        print(f"send {path} to the operators who hold the profile; they import it with 'jointav cameo revoke "
              f"PROFILE_DIR --from {path.name}'")
    return 0


def _show(args) -> int:
    from ..cameo.consent import ConsentError, check_consent, format_time, load_consent
    from ..cameo.consent_gate import bound_key, check_profile_consent, consent_record_path
    from ..cameo.consent_state import check_record
    from ..cameo.usage_log import UsageLogError
    from ..cameo.keys import default_operator_key_path, fingerprint, load_private_key
    from ..cameo.profile import read_profile
    from ..errors import JointAVError

    try:
        target = Path(args.record)
        profile = read_profile(target) if target.is_dir() else None
        path = consent_record_path(profile) if profile is not None else target
        record = load_consent(path)
        operator = args.operator or fingerprint(load_private_key(default_operator_key_path()))
    except (OSError, JointAVError) as e:
        return _fail(e)
    g = record.grant
    pin = bound_key(profile) if profile is not None else None
    print(f"record      {path}\n"
          f"grant       {g.grant_id} (format {g.version}), record version {record.version}\n"
          f"subject     {g.subject_id} ({g.subject_fingerprint})\n"
          f"profile     {g.profile_id}, tensors sha256 {g.profile_sha256}\n"
          f"operators   {', '.join(g.operators)}\n"
          f"valid       {format_time(g.valid_from)} to {format_time(g.valid_until)}\n"
          f"record      sha256 {record.record_sha256}")
    if profile is not None:
        print(f"person key  {(profile.manifest.get('subject') or {}).get('fingerprint') if pin else 'not bound yet'}")
    for r in record.revocations:
        print(f"revoked     {r.describe()} (record version {r.record_version})")
    try:
        if profile is not None:
            decision = check_profile_consent(profile, operator)
        else:
            print("note        a record file alone: its binding to the profile's tensors is not checked (pass the "
                  "profile folder to check it)")
            decision = check_consent(record, g.profile_sha256, operator)
            check_record(record, g.profile_id, where=f"consent record {path}", update=False)
    except (ConsentError, UsageLogError) as e:
        print(f"decision    REFUSED for {operator}: {type(e).__name__}: {e}")
        return 1
    print(f"decision    allowed for {decision.operator} until {format_time(decision.valid_until)}")
    return 0


def _audit(args) -> int:
    import json

    from ..cameo.clip_consent import consent_status, history_warnings
    from ..cameo.consent import load_consent
    from ..cameo.profile import read_profile
    from ..errors import JointAVError
    from ..provenance.audit import find_cameo_clips

    try:
        profile_id = read_profile(args.profile).id if args.profile else (args.profile_id or "").lower() or None
        revocation = load_consent(args.revocation) if args.revocation else None
        clips = find_cameo_clips(args.folder, profile_id)
    except (OSError, JointAVError) as e:
        return _fail(e)
    rows = []
    for clip in clips:
        status, note, after = consent_status(clip.cameo, revocation, args.revocation or "")
        rows.append({"path": str(clip.path), "profile_id": clip.cameo.get("profile_id"),
                     "record_version": clip.cameo.get("record_version"),
                     "subject_fingerprint": clip.cameo.get("subject_fingerprint"),
                     "operator": clip.cameo.get("operator"), "made": clip.cameo.get("checked_at"),
                     "consent": status, "made_after_revocation": after, "note": note, "signed": clip.signed})
    keys = {r["subject_fingerprint"] for r in rows if r["subject_fingerprint"]}
    warnings = history_warnings([(str(clip.path), clip.cameo) for clip in clips])
    if args.json:
        print(json.dumps({"folder": str(args.folder), "profile_id": profile_id, "clips": rows,
                          "subject_keys": sorted(keys), "warnings": warnings}, indent=2))
        return 0
    what = f"profile {profile_id}" if profile_id else "any cameo profile"
    print(f"{len(rows)} clip(s) in {args.folder} made with {what}")
    for r in rows:
        flag = "REVOKED since" if r["consent"] == "revoked" else r["consent"]
        if r["made_after_revocation"]:
            flag = "MADE AFTER ITS REVOCATION"
        print(f"{r['path']}\n    profile {r['profile_id']}, record version {r['record_version']}, subject "
              f"{r['subject_fingerprint']}, operator {r['operator']}, made {r['made']}: {flag}"
              + ("" if r["signed"] else " (manifest does NOT validate)"))
    for warning in warnings:
        print(f"warning: {warning}")
    return 0
