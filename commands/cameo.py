"""`jointav cameo create|keygen|grant|revoke|show`: cameo profiles, keys and consent records.

A grant names a profile by its id (the digest of its reference tensors, see cameo.consent_gate); with
`--profile DIR` the record is written into the profile folder and named in its manifest, where generation
looks for it.
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
    g.add_argument("--out", help="the consent record to write (.json); only with --profile-id")
    g.add_argument("--force", action="store_true", help="replace an existing record")
    g.set_defaults(func=_grant)

    r = sub.add_parser("revoke", help="append a signed revocation to a consent record (in place)")
    r.add_argument("record", help="the consent record (.json), or a profile folder (its record)")
    r.add_argument("--subject-key", required=True, help="the subject's private key that signed the record")
    r.add_argument("--operator", help="revoke only this operator (fingerprint or id); default: the whole grant")
    r.add_argument("--reason", default="", help="a short reason, kept in the record")
    r.set_defaults(func=_revoke)

    s = sub.add_parser("show", help="print a consent record and whether an operator may use it now")
    s.add_argument("record", help="a profile folder (its record, checked against its tensors) or a record (.json)")
    s.add_argument("--operator", help="operator fingerprint or id to check (default: this machine's operator key)")
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


def _create(args) -> int:
    from ..errors import JointAVError
    from ..pipeline import api
    from ..pipeline.cameo import create_profile

    if args.image and not args.voice:
        return _fail(ValueError("--image needs --voice: a picture has no sound to take the voice from"))
    try:
        decoders = api.load_decoders(args.video_vae, args.audio_vae, None, device=args.device)
        profile = create_profile(decoders, recording=args.recording, image=args.image, voice=args.voice,
                                 name=args.name, out_dir=args.out, max_frames=args.max_frames)
    except (OSError, JointAVError) as e:
        return _fail(e)
    voice = profile.manifest["voice"]
    print(f"profile {profile.path}\nname    {profile.name}\nid      {profile.id}\n"
          f"frames  {profile.frames.shape[0]} (source frames "
          f"{', '.join(str(f['source_index']) for f in profile.manifest['frames'])})\n"
          f"voice   {voice['start_s']:.2f}-{voice['end_s']:.2f} s\n"
          f"consent none yet: the person grants it with 'jointav cameo grant --profile {profile.path} "
          f"--subject-key KEY --subject-id NAME --operator FINGERPRINT --days N'")
    return 0


def _profile_record(path: str) -> Path:
    """A record path from a record file, or from a profile folder (the record its manifest names)."""
    from ..cameo.consent_gate import consent_record_path
    from ..cameo.profile import read_profile

    path = Path(path)
    return consent_record_path(read_profile(path)) if path.is_dir() else path


def _grant(args) -> int:
    from ..cameo.consent import format_time, grant_consent, save_consent
    from ..cameo.consent_gate import CONSENT_NAME, grant_for_profile
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
            record = grant_consent(subject, subject_id=args.subject_id, profile_id=profile_id,
                                   profile_sha256=profile_id, operators=operators, valid_until=end,
                                   valid_from=start)
            save_consent(record, out)
    except (OSError, JointAVError) as e:
        return _fail(e)
    g = record.grant
    print(f"wrote {out}: grant {g.grant_id} by {g.subject_id} ({g.subject_fingerprint}) for profile {g.profile_id}, "
          f"operators {', '.join(g.operators)}, valid {format_time(g.valid_from)} to {format_time(g.valid_until)}, "
          f"record sha256 {record.record_sha256}")
    return 0


def _revoke(args) -> int:
    from ..cameo.consent import load_consent, revoke, save_consent
    from ..cameo.keys import load_private_key
    from ..cameo.profile import MANIFEST_NAME, read_profile, set_consent_record
    from ..errors import JointAVError

    try:
        path = _profile_record(args.record)
        record = revoke(load_consent(path), load_private_key(args.subject_key), operator=args.operator,
                        reason=args.reason)
        save_consent(record, path)
    except (OSError, JointAVError) as e:
        return _fail(e)
    scope = f"operator {args.operator}" if args.operator else "the whole grant"
    print(f"revoked {scope} of grant {record.grant.grant_id} in {path}")
    if (path.parent / MANIFEST_NAME).is_file():  # keep the profile manifest's record of the file current
        try:
            profile = read_profile(path.parent)
            if profile.consent.get("file") == path.name:
                set_consent_record(profile, path)
        except (OSError, JointAVError) as e:
            print(f"note: the revocation is saved, but {path.parent / MANIFEST_NAME} was not updated: {e}",
                  file=sys.stderr)
    return 0


def _show(args) -> int:
    from ..cameo.consent import ConsentError, check_consent, format_time, load_consent
    from ..cameo.consent_gate import check_profile_consent, consent_record_path
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
    print(f"record      {path}\n"
          f"grant       {g.grant_id} (version {g.version})\n"
          f"subject     {g.subject_id} ({g.subject_fingerprint})\n"
          f"profile     {g.profile_id}, tensors sha256 {g.profile_sha256}\n"
          f"operators   {', '.join(g.operators)}\n"
          f"valid       {format_time(g.valid_from)} to {format_time(g.valid_until)}\n"
          f"record      sha256 {record.record_sha256}")
    for r in record.revocations:
        scope = "whole grant" if r.operator is None else f"operator {r.operator}"
        print(f"revoked     {scope} at {format_time(r.revoked_at)}" + (f" ({r.reason})" if r.reason else ""))
    try:
        if profile is not None:
            decision = check_profile_consent(profile, operator)
        else:
            print("note        a record file alone: its binding to the profile's tensors is not checked (pass the "
                  "profile folder to check it)")
            decision = check_consent(record, g.profile_sha256, operator)
    except ConsentError as e:
        print(f"decision    REFUSED for {operator}: {type(e).__name__}: {e}")
        return 1
    print(f"decision    allowed for {decision.operator} until {format_time(decision.valid_until)}")
    return 0
