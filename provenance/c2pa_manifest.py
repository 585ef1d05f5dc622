"""C2PA manifests on the pack's output files: what made them, signed offline with the local identity.

`sign_output(path, info)` embeds a manifest into a finished MP4/MOV, WAV or FLAC file in place (via a
temporary file renamed over it). The manifest holds a `c2pa.actions` "created" action with the IPTC
digital source type trainedAlgorithmicMedia, the claim generator "ComfyUI-JointAV <version>", and an
`org.jointav.generation` assertion with the model, prompt, seed, sampler settings, the watermark's key id
and payload, and for cameo clips the profile id, the consent record's hash, version and subject key,
and the usage log's length and head hash when the use was allowed. C2PA hashes the file's
bytes (BMFF boxes for MP4, data hash for WAV/FLAC) into the signed claim, so any later change to them,
or to the manifest, fails validation.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path

from .. import __version__
from ..atomic import atomic_path
from ..errors import InputValueError, JointAVError
from .certificates import LocalIdentity, local_identity
from .watermark import SCHEME, new_payload

GENERATOR = "ComfyUI-JointAV"
ASSERTION_LABEL = "org.jointav.generation"
TRAINED_ALGORITHMIC_MEDIA = "http://cv.iptc.org/newscodes/digitalsourcetype/trainedAlgorithmicMedia"
# suffix -> MIME type given to c2pa; these are the containers the pack writes that c2pa-python can sign
FORMATS = {".mp4": "video/mp4", ".m4v": "video/mp4", ".mov": "video/quicktime", ".wav": "audio/wav",
           ".flac": "audio/flac"}


class ProvenanceError(JointAVError):
    """A manifest could not be made, signed or read."""


@dataclass
class ProvenanceInfo:
    """What a manifest records about one generated clip.

    `clip_id` is the 32-bit watermark payload (random by default); pass it to `embed_watermark` and set
    `watermark_key_id` to the key's id when the frames were marked, so `jointav verify` checks the mark.
    `sampler`/`extra` hold JSON values (numbers, strings, lists, dicts).
    """

    model: str
    prompt: str
    seed: int
    sampler: dict = field(default_factory=dict)
    consent_sha256: str | None = None
    cameo_profile_id: str | None = None
    cameo_record: dict | None = None  # more of the consent (pipeline.cameo.consent_record_entry)
    clip_id: int = field(default_factory=new_payload)
    watermark_key_id: str | None = None
    extra: dict = field(default_factory=dict)

    def assertion_data(self) -> dict:
        data = {"model": self.model, "prompt": self.prompt, "seed": int(self.seed), "sampler": self.sampler,
                "clip_id": self.clip_id, "generator": f"{GENERATOR} {__version__}"}
        if self.watermark_key_id is not None:
            data["watermark"] = {"scheme": SCHEME, "key_id": self.watermark_key_id, "payload": self.clip_id}
        if self.consent_sha256 is not None or self.cameo_profile_id is not None:
            data["cameo"] = {**(self.cameo_record or {}), "profile_id": self.cameo_profile_id,
                             "consent_sha256": self.consent_sha256}
        if self.extra:
            data["extra"] = self.extra
        try:
            json.dumps(data, allow_nan=False)
        except (TypeError, ValueError) as e:
            raise InputValueError(f"ProvenanceInfo: a field is not a JSON value ({e}); expected numbers, strings, "
                                  f"lists and dicts") from e
        return data


def manifest_definition(info: ProvenanceInfo, title: str) -> dict:
    """The manifest definition handed to c2pa's Builder."""
    return {
        "claim_generator_info": [{"name": GENERATOR, "version": __version__}],
        "title": title,
        "assertions": [
            {"label": "c2pa.actions", "data": {"actions": [{
                "action": "c2pa.created",
                "digitalSourceType": TRAINED_ALGORITHMIC_MEDIA,
                "softwareAgent": {"name": GENERATOR, "version": __version__},
            }]}},
            {"label": ASSERTION_LABEL, "data": info.assertion_data()},
        ],
    }


def mime_type(path: str | os.PathLike) -> str:
    suffix = Path(path).suffix.lower()
    try:
        return FORMATS[suffix]
    except KeyError:
        raise InputValueError(f"C2PA signing {path}: suffix {suffix!r} is not supported; expected one of "
                              f"{', '.join(FORMATS)}") from None


def sign_output(path: str | os.PathLike, info: ProvenanceInfo, *, identity: LocalIdentity | None = None) -> Path:
    """Embed a signed C2PA manifest describing `info` into the finished file at `path`; returns `path`.

    `identity` defaults to the local one (`local_identity()`, made on first use). The file is replaced
    only once the signed copy is complete.
    """
    import c2pa

    path = Path(path)
    mime = mime_type(path)
    if not path.is_file():
        raise InputValueError(f"C2PA signing: {path} does not exist")
    identity = identity or local_identity()
    definition = manifest_definition(info, path.name)
    try:
        signer = c2pa.Signer.from_info(c2pa.C2paSignerInfo(c2pa.C2paSigningAlg.ES256, identity.chain_pem,
                                                           identity.signer_key_pem, None))
        with signer, c2pa.Builder(definition) as builder, atomic_path(path, suffix=path.suffix) as tmp:
            with open(path, "rb") as source, open(tmp, "w+b") as dest:
                builder.sign(signer, mime, source, dest)
    except c2pa.C2paError as e:
        raise ProvenanceError(f"C2PA signing {path} ({mime}) with the identity in {identity.folder} failed: {e}") from e
    return path
