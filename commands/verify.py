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
                    "the frames carry the JointAV watermark. Exit 0: valid and untampered; 1: not valid "
                    "(no manifest, tampered, bad signature, watermark missing where the manifest promises one); "
                    "2: the file cannot be checked.")
    p.add_argument("file", help="an .mp4/.mov/.m4v, .wav or .flac file")
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    p.add_argument("--trust-anchor", action="append", default=[], metavar="PEM",
                   help="a CA certificate (PEM file) to trust besides this machine's JointAV CA (repeatable)")
    p.add_argument("--require-trusted", action="store_true",
                   help="also fail when the signer's certificate does not lead to a trusted CA")
    p.set_defaults(func=run)


def run(args) -> int:
    from ..errors import JointAVError
    from ..provenance import verify_file

    try:
        anchors = [Path(a).read_text(encoding="ascii") for a in args.trust_anchor]
        report = verify_file(args.file, trust_anchors=anchors, require_trusted=args.require_trusted)
    except (OSError, UnicodeDecodeError, JointAVError) as e:
        print(f"error: {e}", file=sys.stderr)
        return EXIT_ERROR
    print(json.dumps(report.to_dict(), indent=2) if args.json else report.text())
    return EXIT_VALID if report.valid else EXIT_INVALID
