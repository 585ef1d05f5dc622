"""Provenance on the pack's output files: C2PA manifests, an invisible watermark, and verification.

Writers call, for a clip: `key = local_watermark_key()`, `info = ProvenanceInfo(..., watermark_key_id=key.key_id)`,
`frames = embed_watermark(frames, key, info.clip_id)` before encoding, then `sign_output(path, info)` on
each finished file. `verify_file(path)` is what `jointav verify` reports.
"""

from __future__ import annotations

import os

from .c2pa_manifest import FORMATS, ProvenanceError, ProvenanceInfo, sign_output
from .certificates import LocalIdentity, local_identity, provenance_dir
from .verify import VerifyReport, WatermarkStatus, verify_file
from .watermark import (
    WatermarkKey,
    WatermarkReading,
    detect_watermark,
    detect_watermark_file,
    embed_watermark,
)


def local_watermark_key(folder: str | os.PathLike | None = None) -> WatermarkKey:
    """This machine's watermark key (from the local provenance identity, made on first use)."""
    return WatermarkKey(local_identity(folder).watermark_secret)


__all__ = [
    "FORMATS",
    "LocalIdentity",
    "ProvenanceError",
    "ProvenanceInfo",
    "VerifyReport",
    "WatermarkKey",
    "WatermarkReading",
    "WatermarkStatus",
    "detect_watermark",
    "detect_watermark_file",
    "embed_watermark",
    "local_identity",
    "local_watermark_key",
    "provenance_dir",
    "sign_output",
    "verify_file",
]
