"""Check a file's provenance: its C2PA manifest (signature, certificate, binding to the bytes) and its watermark.

Verdict (`VerifyReport.valid`, and `jointav verify`'s exit 0):
- a C2PA manifest is present and validates: claim signature and certificate fine, every hash binding
  matches the file's bytes (nothing in the media data or the manifest changed since signing);
- the signer is trusted if its chain leads to this machine's JointAV CA or to a `trust_anchors` PEM.
  An untrusted but otherwise valid signature (a file signed on another machine) is reported and still
  valid, as C2PA's "Valid" state is; `require_trusted=True` makes it invalid;
- when the manifest says the frames carry a JointAV watermark and its key is at hand, the watermark must
  be present with the payload the manifest records: the pack marks every clip it writes, so a missing
  mark means the pictures are not the ones that were signed. Without the key it is reported unchecked.
A file without a manifest is never valid; its watermark is still read and reported (a re-encoded copy
loses the manifest but keeps the mark).

What C2PA does not cover, so a change there is not reported: the MP4 `ftyp` box (and `free`/`skip`
boxes), which the standard excludes from the BMFF hash, and the zero padding that C2PA reserves
inside the manifest for the signature. Neither carries media or provenance; every other byte of the
media data and of the manifest (claim, assertions, signature, certificates) is covered.
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass, field
from pathlib import Path

import av

from ..errors import InputValueError, JointAVError
from .c2pa_manifest import ASSERTION_LABEL, FORMATS
from .certificates import local_identity
from .watermark import PRESENCE_THRESHOLD, SCHEME, WatermarkKey, detect_watermark_file

UNTRUSTED = "signingCredential.untrusted"
VIDEO_MIME = ("video/mp4", "video/quicktime")


@dataclass
class WatermarkStatus:
    checked: bool
    present: bool | None = None
    score: float | None = None
    payload: int | None = None
    payload_ok: bool | None = None  # the payload's CRC matched
    expected_payload: int | None = None  # what the manifest records
    key_id: str | None = None
    note: str = ""


@dataclass
class VerifyReport:
    path: str
    format: str
    manifest_present: bool = False
    validation_state: str | None = None  # c2pa's: Invalid / Valid / Trusted
    signature_valid: bool | None = None
    hash_binding_valid: bool | None = None
    trusted: bool | None = None
    signer: str | None = None
    failures: list[dict] = field(default_factory=list)  # c2pa failure codes and explanations
    claim_generator: str | None = None
    digital_source_type: str | None = None
    generation: dict | None = None  # the org.jointav.generation assertion
    watermark: WatermarkStatus | None = None
    cameo: dict | None = None  # a cameo clip's consent and usage-log status (cameo.clip_consent.CameoClipStatus)
    problems: list[str] = field(default_factory=list)  # why it is not valid, in words
    valid: bool = False

    def to_dict(self) -> dict:
        return asdict(self)

    def text(self) -> str:
        lines = [f"file:        {self.path} ({self.format})"]
        if not self.manifest_present:
            lines.append("manifest:    none")
        else:
            def word(ok):
                return "unknown" if ok is None else "valid" if ok else "INVALID"

            lines.append(f"manifest:    C2PA state {self.validation_state}; claim signature "
                         f"{word(self.signature_valid)}; hash binding to the file's bytes "
                         f"{word(self.hash_binding_valid)}")
            trust = "trusted" if self.trusted else "NOT trusted (add its CA with --trust-anchor)"
            lines.append(f"signer:      {self.signer or '?'}: {trust}")
            lines.append(f"generator:   {self.claim_generator or '?'}; source type {self.digital_source_type or '?'}")
            for f in self.failures:
                lines.append(f"  failure:   {f.get('code')}: {f.get('explanation', '')}")
            g = self.generation or {}
            if g:
                lines.append(f"model:       {g.get('model')}")
                lines.append(f"prompt:      {g.get('prompt')}")
                lines.append(f"seed:        {g.get('seed')}")
                if g.get("sampler"):
                    lines.append("sampler:     " + ", ".join(f"{k}={v}" for k, v in g["sampler"].items()))
                cameo = g.get("cameo")
                if cameo:
                    lines.append(f"cameo:       profile {cameo.get('profile_id')}, consent record sha256 "
                                 f"{cameo.get('consent_sha256')}")
                if self.cameo is not None:
                    from ..cameo.clip_consent import CameoClipStatus

                    lines.extend(CameoClipStatus(**self.cameo).lines())
        w = self.watermark
        if w is None:
            lines.append("watermark:   not applicable (no video frames)")
        elif not w.checked:
            lines.append(f"watermark:   not checked ({w.note})")
        else:
            state = "present" if w.present else "ABSENT"
            payload = f", payload 0x{w.payload:08x}" if w.payload is not None else ""
            crc = "" if w.payload is None else " (checksum ok)" if w.payload_ok else " (checksum FAILED)"
            lines.append(f"watermark:   {state} (score {w.score:.1f}, threshold {PRESENCE_THRESHOLD:g}){payload}{crc}"
                         + (f"; {w.note}" if w.note else ""))
        for p in self.problems:
            lines.append(f"problem:     {p}")
        lines.append(f"result:      {'VALID' if self.valid else 'NOT VALID'}")
        return "\n".join(lines)


def _format(path: Path) -> str:
    suffix = path.suffix.lower()
    if suffix not in FORMATS:
        raise InputValueError(f"verify {path}: suffix {suffix!r} is not supported; "
                              f"expected one of {', '.join(FORMATS)}")
    return FORMATS[suffix]


def _require_readable(path: Path, mime: str) -> None:
    """Refuse a file that is not a readable file of its type (a random file named .mp4), so it is reported as
    what it is rather than as a damaged manifest or an untrusted signer."""
    kind = {"video/mp4": "MP4", "video/quicktime": "MOV", "audio/wav": "WAV", "audio/flac": "FLAC"}[mime]
    wanted = "video" if mime in VIDEO_MIME else "audio"
    try:
        with av.open(str(path)) as container:
            found = [s.type for s in container.streams]
    except av.error.FFmpegError as e:
        raise InputValueError(f"verify {path}: not a readable {kind} file ({e.strerror or e}); "
                              f"nothing to verify") from None
    if wanted not in found:
        raise InputValueError(f"verify {path}: not a readable {kind} file (no {wanted} stream; found "
                              f"{', '.join(found) or 'none'}); nothing to verify")


def _read_manifest(path: Path, mime: str, anchors: str, report: VerifyReport) -> None:
    import c2pa

    settings = {"version": 1, "trust": {"trust_anchors": anchors}} if anchors else None
    try:
        context = c2pa.Context.from_dict(settings) if settings else c2pa.Context()
        with context, open(path, "rb") as stream, c2pa.Reader(mime, stream, context=context) as reader:
            state = reader.get_validation_state()
            results = reader.get_validation_results() or {}
            manifest = reader.get_active_manifest() or {}
    except c2pa.C2paError.ManifestNotFound:
        report.problems.append("no C2PA manifest in the file")
        return
    except c2pa.C2paError as e:
        report.manifest_present = True
        report.problems.append(f"the C2PA manifest cannot be read ({e}); it was damaged or altered")
        return
    report.manifest_present = True
    report.validation_state = state
    active = results.get("activeManifest", {})
    report.failures = [{"code": f.get("code"), "explanation": f.get("explanation", "")}
                       for f in active.get("failure", [])]
    codes = [f["code"] for f in report.failures]
    integrity = [c for c in codes if c != UNTRUSTED]
    report.hash_binding_valid = not any(c.startswith("assertion.") for c in integrity)
    report.signature_valid = not any(not c.startswith("assertion.") for c in integrity)
    report.trusted = state == "Trusted" or any(s.get("code") == "signingCredential.trusted"
                                               for s in active.get("success", []))
    sig = manifest.get("signature_info", {})
    report.signer = " / ".join(x for x in (sig.get("common_name"), sig.get("issuer")) if x) or None
    gen = (manifest.get("claim_generator_info") or [{}])[0]
    report.claim_generator = " ".join(str(x) for x in (gen.get("name"), gen.get("version")) if x) or None
    for assertion in manifest.get("assertions", []):
        label, data = assertion.get("label", ""), assertion.get("data", {})
        if label == ASSERTION_LABEL:
            report.generation = data
        elif label.startswith("c2pa.actions"):
            created = [a for a in data.get("actions", []) if a.get("action") == "c2pa.created"]
            if created:
                report.digital_source_type = created[0].get("digitalSourceType")
    if integrity:
        what = []
        if not report.hash_binding_valid:
            what.append("the file's bytes or assertions no longer match the signed hashes (tampered)")
        if not report.signature_valid:
            what.append("the claim signature or certificate does not validate")
        report.problems.append("; ".join(what) + f" [{', '.join(integrity)}]")


def _check_watermark(path: Path, key: WatermarkKey | None, report: VerifyReport) -> WatermarkStatus:
    recorded = (report.generation or {}).get("watermark")
    expected = recorded.get("payload") if isinstance(recorded, dict) else None
    wanted_key = recorded.get("key_id") if isinstance(recorded, dict) else None
    if isinstance(recorded, dict) and recorded.get("scheme") != SCHEME:
        return WatermarkStatus(checked=False, expected_payload=expected, key_id=wanted_key,
                               note=f"scheme {recorded.get('scheme')!r} is not {SCHEME!r}")
    if key is None:
        return WatermarkStatus(checked=False, expected_payload=expected, key_id=wanted_key,
                               note="no watermark key here (this machine has made no provenance identity)")
    if wanted_key is not None and key.key_id != wanted_key:
        return WatermarkStatus(checked=False, expected_payload=expected, key_id=wanted_key,
                               note=f"marked with key {wanted_key}; the key here is {key.key_id}")
    try:
        reading = detect_watermark_file(path, key)
    except (av.error.FFmpegError, JointAVError) as e:  # a damaged stream must not hide the rest of the report
        return WatermarkStatus(checked=False, expected_payload=expected, key_id=key.key_id,
                               note=f"the frames cannot be decoded ({type(e).__name__}: {e})")
    status = WatermarkStatus(checked=True, present=reading.present, score=reading.score, payload=reading.payload,
                             payload_ok=reading.payload_ok, expected_payload=expected, key_id=key.key_id)
    if expected is not None:
        if not reading.present:
            report.problems.append(f"the manifest says the frames carry watermark key {wanted_key} payload "
                                   f"0x{expected:08x}, but it is absent (score {reading.score:.1f})")
        elif reading.payload_ok and reading.payload != expected:
            report.problems.append(f"watermark payload 0x{reading.payload:08x} differs from the manifest's "
                                   f"0x{expected:08x}: the frames come from another clip")
        elif reading.payload == expected:
            status.note = "payload matches the manifest"
        else:
            status.note = "payload unreadable (checksum failed); presence confirmed"
    return status


def verify_file(path: str | os.PathLike, *, trust_anchors: tuple[str, ...] | list[str] = (),
                require_trusted: bool = False, watermark_key: WatermarkKey | None = None,
                identity_folder: str | os.PathLike | None = None, usage_log: str | os.PathLike | None = None,
                revocation=None, revocation_source: str = "") -> VerifyReport:
    """Verify `path`'s manifest and watermark; see the module doc for what makes it valid.

    `trust_anchors`: extra CA certificate PEM texts; this machine's JointAV CA is always one when it
    exists. `watermark_key`: defaults to this machine's (from `identity_folder`, default the local one).
    For a cameo clip it also reports (cameo.clip_consent) whether its consent was revoked since, given
    `revocation` (the person's record, a ConsentRecord from `revocation_source`; default: the newest this
    machine has seen), and whether the usage log (`usage_log`, default this machine's) still holds its use; a
    log cut below the clip's record, or a clip made after a revocation, makes it not valid.
    Raises InputValueError only when the file is missing, of an unsupported type or not readable as its type.
    """
    path = Path(path)
    if not path.is_file():
        raise InputValueError(f"verify: {path} does not exist or is not a file")
    mime = _format(path)
    _require_readable(path, mime)
    report = VerifyReport(path=str(path), format=mime)
    anchors = list(trust_anchors)
    try:
        identity = local_identity(identity_folder, create=False)
    except InputValueError:
        identity = None
    if identity is not None:
        anchors.append(identity.ca_pem.decode("ascii"))
        watermark_key = watermark_key or WatermarkKey(identity.watermark_secret)
    _read_manifest(path, mime, "\n".join(a.strip() + "\n" for a in anchors), report)
    if report.manifest_present and report.trusted is False and require_trusted:
        report.problems.append("the signer's certificate does not lead to a trusted CA (--require-trusted)")
    if mime in VIDEO_MIME:
        report.watermark = _check_watermark(path, watermark_key, report)
    if report.generation and report.generation.get("cameo"):
        from ..cameo.clip_consent import check_cameo_clip  # cameo builds on provenance, not the other way round

        # the usage log here only speaks for clips made here: this machine's watermark key marked them
        marked_with = (report.generation.get("watermark") or {}).get("key_id")
        made_here = None if marked_with is None or watermark_key is None else marked_with == watermark_key.key_id
        status = check_cameo_clip(path, report.generation, log_path=usage_log, revocation=revocation,
                                  revocation_source=revocation_source, made_here=made_here)
        report.cameo = status.to_dict()
        report.problems.extend(status.problems)
    report.valid = report.manifest_present and not report.problems
    return report
