"""`jointav verify FILE`: is this file's provenance intact? Exit 0 only for a valid, untampered file."""

from __future__ import annotations

import json
import sys
from pathlib import Path

EXIT_VALID, EXIT_INVALID, EXIT_ERROR = 0, 1, 2


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "verify", help="check a file's C2PA manifest and watermark; exit 0 only if valid and untampered",
        description="Reports the C2PA manifest's validity (claim signature, certificate, hash binding to the "
                    "file's bytes), what it records (model, prompt, seed, sampler, cameo consent hash) and whether "
                    "the frames carry the JointAV watermark; for a cameo clip, whether its consent was revoked "
                    "since and whether the usage log still holds its use. Exit 0: valid and untampered; 1: not "
                    "valid (no manifest, tampered, bad signature, watermark missing where the manifest promises "
                    "one, usage log cut below the clip, made after a revocation); 2: the file cannot be checked.")
    p.add_argument("file", help="an .mp4/.mov/.m4v, .wav or .flac file")
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    p.add_argument("--trust-anchor", action="append", default=[], metavar="PEM",
                   help="a CA certificate (PEM file) to trust besides this machine's JointAV CA (repeatable)")
    p.add_argument("--require-trusted", action="store_true",
                   help="also fail when the signer's certificate does not lead to a trusted CA")
    p.add_argument("--revocation", metavar="RECORD",
                   help="for a cameo clip: the person's consent record with their revocation ('jointav cameo revoke' "
                        "output); reports whether the clip's consent was revoked since (default: the newest record "
                        "this machine has seen)")
    p.add_argument("--usage-log", metavar="JSONL",
                   help="for a cameo clip: the usage log that must still hold its use (default: this machine's, "
                        "$JOINTAV_CAMEO_LOG)")
    p.set_defaults(func=run)


def run(args) -> int:
    from ..errors import JointAVError
    from ..provenance import verify_file

    try:
        anchors = [Path(a).read_text(encoding="ascii") for a in args.trust_anchor]
        revocation = None
        if args.revocation:
            from ..cameo.consent import load_consent

            revocation = load_consent(args.revocation)
        report = verify_file(args.file, trust_anchors=anchors, require_trusted=args.require_trusted,
                             usage_log=args.usage_log, revocation=revocation, revocation_source=args.revocation or "")
    except (OSError, UnicodeDecodeError, JointAVError) as e:
        print(f"error: {e}", file=sys.stderr)
        return EXIT_ERROR
    print(json.dumps(report.to_dict(), indent=2) if args.json else report.text())
    return EXIT_VALID if report.valid else EXIT_INVALID
