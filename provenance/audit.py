"""Find the clips in a folder that were made with a cameo profile, from their C2PA manifests alone.

`jointav cameo audit` builds on this: a person (or an operator acting on a revocation) finds every clip
that carries a profile id, without decoding any frames. Only the manifest is read; `signed` says whether
it validates (claim signature and hash binding), as `jointav verify` would judge it.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from .c2pa_manifest import FORMATS
from .certificates import local_identity
from .verify import VerifyReport, _read_manifest
from ..errors import InputValueError


@dataclass(frozen=True)
class CameoClip:
    path: Path
    cameo: dict  # the manifest's cameo entry (pipeline.cameo.consent_record_entry plus profile id and record hash)
    signed: bool  # the manifest validates


def find_cameo_clips(folder: str | os.PathLike, profile_id: str | None = None) -> list[CameoClip]:
    """Every file under `folder` (recursively, in path order) whose manifest has a cameo entry, for `profile_id`
    when given."""
    folder = Path(folder)
    if not folder.is_dir():
        raise InputValueError(f"cameo audit: {folder} is not a folder")
    try:
        identity = local_identity(None, create=False)
        anchors = identity.ca_pem.decode("ascii")
    except InputValueError:
        anchors = ""
    found = []
    for path in sorted(p for p in folder.rglob("*") if p.is_file() and p.suffix.lower() in FORMATS):
        report = VerifyReport(path=str(path), format=FORMATS[path.suffix.lower()])
        _read_manifest(path, report.format, anchors, report)
        cameo = (report.generation or {}).get("cameo")
        if isinstance(cameo, dict) and (profile_id is None or cameo.get("profile_id") == profile_id):
            found.append(CameoClip(path=path, cameo=cameo, signed=report.manifest_present and not report.problems))
    return found
