"""Cameo profiles on disk: a folder with the reference tensors (safetensors) and a JSON manifest.

```
<cameos>/<slug>-<id12>/
    manifest.json          what the profile is, who it shows, how it was made (MANIFEST_FORMAT below)
    reference.safetensors  frames, video_latents, voice, audio_latents (TENSOR_SHAPES below)
```
ComfyUI registers `<models>/cameos` as the folder; outside ComfyUI any folder works. The profile id is the
sha256 of the reference tensors (names, dtypes, shapes and bytes), so a changed tensor no longer matches its
manifest. The latents are only meaningful for the encoders that made them: the manifest records the video
and audio VAEs' encoder fingerprints and `check_encoders` compares them with the VAEs in use.

The manifest has a slot for the subject's consent record (`consent.file`, `consent.sha256`), filled by
`set_consent_record`, and one for the key of the person it shows (`subject.public_key`, `subject.fingerprint`),
filled once, at creation or by the first grant (`set_subject_key`), and never changed: a different person is
a new profile. Checking records against them is cameo.consent_gate's job.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import tempfile
import weakref
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from ..atomic import atomic_path
from ..errors import CheckpointFileError, CheckpointKeyError, CheckpointKindError, InputValueError

log = logging.getLogger(__name__)

MANIFEST_NAME = "manifest.json"
TENSORS_NAME = "reference.safetensors"
MANIFEST_FORMAT = "jointav-cameo-profile"
MANIFEST_VERSION = 1
# name -> (dtype, layout): k reference frames, L_ref audio latents, S voice samples at 16 kHz.
TENSOR_SHAPES = {
    "frames": (torch.uint8, "[k, H, W, 3] RGB, the chosen frames (longer side <= 1024)"),
    "video_latents": (torch.float32, "[C, k, h, w] each frame's subject crop encoded as an image"),
    "voice": (torch.float32, "[S] mono 16 kHz voice segment"),
    "audio_latents": (torch.float32, "[L_ref, C] the voice segment encoded"),
}
_TENSOR_NDIM = {"frames": 4, "video_latents": 4, "voice": 1, "audio_latents": 2}
# Keys of the decode side; everything else in a VAE's state dict is what encoding depends on.
_DECODER_PREFIXES = ("decoder.", "conv2.")


def digest_tensors(tensors: dict[str, torch.Tensor]) -> str:
    """sha256 over the tensors in name order: each name, dtype, shape and raw bytes."""
    h = hashlib.sha256()
    for name in sorted(tensors):
        t = tensors[name].detach().to("cpu").contiguous()
        h.update(f"{name}|{str(t.dtype).removeprefix('torch.')}|{list(t.shape)}|".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


def file_digest(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


_FINGERPRINTS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def encoder_fingerprint(vae: torch.nn.Module) -> str:
    """sha256 of what a VAE's encoder depends on: its non-decoder weights and buffers and, for the video VAE, the
    latent statistics that normalise its output. Cached per module until one of its tensors changes."""
    state = {k: v for k, v in vae.state_dict().items() if not k.startswith(_DECODER_PREFIXES)}
    config = getattr(vae, "config", None)
    for stat in ("latent_mean", "latent_std"):
        if getattr(config, stat, None) is not None:
            state[f"config.{stat}"] = torch.tensor(getattr(config, stat), dtype=torch.float64)
    weights = [(k, v) for k, v in state.items() if not k.startswith("config.")]
    if any(v.is_inference() for _, v in weights):
        # Tensors made under inference_mode (ComfyUI runs nodes so) have no version counter to cache on.
        return digest_tensors(state)
    version = tuple((k, v.data_ptr(), v._version) for k, v in weights)
    cached = _FINGERPRINTS.get(vae)
    if cached is None or cached[0] != version:
        cached = (version, digest_tensors(state))
        _FINGERPRINTS[vae] = cached
    return cached[1]


def encoder_identity(video_vae: torch.nn.Module, audio_vae: torch.nn.Module, family: str | None = None) -> dict:
    """The manifest's `encoder` block: model family (if known) and each VAE's class, latent width and fingerprint."""
    return {
        "model_family": family,
        "video_vae": {"class": type(video_vae).__name__, "latent_channels": int(video_vae.config.z_dim),
                      "sha256": encoder_fingerprint(video_vae)},
        "audio_vae": {"class": type(audio_vae).__name__, "latent_channels": int(audio_vae.config.embed_dim),
                      "sha256": encoder_fingerprint(audio_vae)},
    }


@dataclass(frozen=True)
class Profile:
    """A cameo profile: reference tensors, their manifest, and the folder it lives in (None if not saved)."""

    manifest: dict
    tensors: dict[str, torch.Tensor]
    path: Path | None = None

    @property
    def id(self) -> str:
        return self.manifest["profile_id"]

    @property
    def name(self) -> str:
        return self.manifest["name"]

    @property
    def frames(self) -> torch.Tensor:
        """uint8 `[k, H, W, 3]`, best first."""
        return self.tensors["frames"]

    @property
    def video_latents(self) -> torch.Tensor:
        """`[C, k, h, w]` clean latents of the subject crops (reference tokens)."""
        return self.tensors["video_latents"]

    @property
    def voice(self) -> torch.Tensor:
        """`[S]` the voice segment, mono 16 kHz."""
        return self.tensors["voice"]

    @property
    def audio_latents(self) -> torch.Tensor:
        """`[L_ref, C]` clean audio latents of the voice segment (reference tokens)."""
        return self.tensors["audio_latents"]

    @property
    def subject_centres(self) -> list[tuple[float, float]]:
        """(x, y) centre of the face or subject in each stored frame."""
        return [(x + w / 2, y + h / 2) for x, y, w, h in (f["box"] for f in self.manifest["frames"])]

    @property
    def consent(self) -> dict:
        return self.manifest["consent"]


def new_profile(name: str, tensors: dict[str, torch.Tensor], *, encoder: dict, source: dict, frames: list[dict],
                voice: dict, subject: dict | None = None) -> Profile:
    """An unsaved profile: the manifest assembled around `tensors` (see TENSOR_SHAPES). `subject`: the person's key
    ({"public_key": base64, "fingerprint"}) when they make their own profile; else the first grant sets it."""
    if not isinstance(name, str) or not name.strip():
        raise InputValueError(f"name={name!r}: expected the subject's display name (a non-empty string)")
    _check_inventory(tensors, "new profile")
    manifest = {
        "format": MANIFEST_FORMAT,
        "version": MANIFEST_VERSION,
        "profile_id": digest_tensors(tensors),
        "name": name.strip(),
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "source": source,
        "encoder": encoder,
        "frames": frames,
        "voice": voice,
        "tensors": {"file": TENSORS_NAME, "entries": {k: {"dtype": str(v.dtype).removeprefix("torch."),
                                                          "shape": list(v.shape)} for k, v in tensors.items()}},
        "consent": {"file": None, "sha256": None},
        "subject": subject,
    }
    return Profile(manifest=manifest, tensors={k: v.contiguous() for k, v in tensors.items()})


def _slug(name: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")[:40] or "cameo"


def save_profile(profile: Profile, out_dir: str | Path) -> Profile:
    """Write the profile as `<out_dir>/<slug>-<id12>/`; the folder appears complete or not at all.

    Saving the same tensors again returns the existing folder untouched (its consent record included)."""
    folder = Path(out_dir) / f"{_slug(profile.name)}-{profile.id[:12]}"
    if (folder / MANIFEST_NAME).is_file():
        existing = read_profile(folder)
        if existing.id != profile.id:
            raise CheckpointFileError(f"cameo profile folder {folder} already holds profile {existing.id}, "
                                      f"expected {profile.id}")
        return existing
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{folder.name}.", dir=folder.parent))
    try:
        save_file(profile.tensors, str(tmp / TENSORS_NAME), metadata={"format": MANIFEST_FORMAT,
                                                                       "profile_id": profile.id})
        (tmp / MANIFEST_NAME).write_text(json.dumps(profile.manifest, indent=2) + "\n")
        os.chmod(tmp, 0o755)
        os.replace(tmp, folder)
    except BaseException:
        for child in tmp.iterdir():
            child.unlink()
        tmp.rmdir()
        raise
    return Profile(manifest=profile.manifest, tensors=profile.tensors, path=folder)


def profile_folder(path: str | Path) -> Path:
    """The profile folder from the folder itself or its manifest.json."""
    path = Path(path)
    return path.parent if path.name == MANIFEST_NAME else path


def read_profile(path: str | Path) -> Profile:
    """Read and verify a profile folder (or its manifest.json): format, tensor inventory and the tensors' hash."""
    folder = profile_folder(path)
    manifest_path = folder / MANIFEST_NAME
    if not manifest_path.is_file():
        raise CheckpointFileError(f"cameo profile {folder}: no {MANIFEST_NAME}; expected a folder made by "
                                  f"create_profile")
    try:
        manifest = json.loads(manifest_path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise CheckpointFileError(f"cameo profile {manifest_path}: not readable JSON ({e})") from e
    if not isinstance(manifest, dict) or manifest.get("format") != MANIFEST_FORMAT:
        found = manifest.get("format") if isinstance(manifest, dict) else type(manifest).__name__
        raise CheckpointKindError(f"cameo profile {manifest_path}: format {found!r}, expected {MANIFEST_FORMAT!r}")
    if manifest.get("version") != MANIFEST_VERSION:
        raise CheckpointKindError(f"cameo profile {manifest_path}: version {manifest.get('version')!r}, this "
                                  f"pack reads version {MANIFEST_VERSION}")
    for key in ("profile_id", "name", "encoder", "frames", "tensors", "consent"):
        if key not in manifest:
            raise CheckpointKeyError(f"cameo profile {manifest_path}: the manifest has no {key!r} entry")
    tensors_path = folder / manifest["tensors"].get("file", TENSORS_NAME)
    try:
        tensors = load_file(str(tensors_path))
    except (OSError, SafetensorError) as e:
        raise CheckpointFileError(f"cameo profile {tensors_path}: cannot be read as safetensors ({e})") from e
    _check_inventory(tensors, str(tensors_path))
    recorded = manifest["tensors"].get("entries", {})
    for name, t in tensors.items():
        entry = recorded.get(name, {})
        if entry.get("shape") != list(t.shape) or entry.get("dtype") != str(t.dtype).removeprefix("torch."):
            raise CheckpointKeyError(f"cameo profile {tensors_path}: tensor {name!r} is {t.dtype} "
                                     f"{list(t.shape)}, the manifest says {entry or 'nothing'}")
    digest = digest_tensors(tensors)
    if digest != manifest["profile_id"]:
        raise CheckpointFileError(
            f"cameo profile {tensors_path}: the tensors hash to {digest}, but the manifest's profile_id is "
            f"{manifest['profile_id']}; the reference data was modified or damaged (re-create the profile)")
    return Profile(manifest=manifest, tensors=tensors, path=folder)


def _check_inventory(tensors: dict[str, torch.Tensor], where: str) -> None:
    if set(tensors) != set(TENSOR_SHAPES):
        raise CheckpointKeyError(f"cameo profile {where}: tensors {sorted(tensors)}, expected {sorted(TENSOR_SHAPES)}")
    for name, (dtype, layout) in TENSOR_SHAPES.items():
        t = tensors[name]
        if t.dtype != dtype or t.ndim != _TENSOR_NDIM[name] or t.numel() == 0:
            raise CheckpointKeyError(f"cameo profile {where}: tensor {name!r} is {t.dtype} {list(t.shape)}, "
                                     f"expected {str(dtype).removeprefix('torch.')} {layout}")
    k = tensors["frames"].shape[0]
    if tensors["video_latents"].shape[1] != k:
        raise CheckpointKeyError(f"cameo profile {where}: {k} frames but {tensors['video_latents'].shape[1]} "
                                 f"latent frames; expected one latent frame per stored frame")


def check_encoders(profile: Profile, video_vae: torch.nn.Module | None, audio_vae: torch.nn.Module | None,
                   family: str | None = None) -> None:
    """Refuse a profile whose latents were made by other encoders than `video_vae` / `audio_vae` (None: not
    checked). A different model family with the same encoders is fine: the latents mean the same."""
    where = profile.path or profile.name
    recorded = profile.manifest["encoder"]
    for key, vae in (("video_vae", video_vae), ("audio_vae", audio_vae)):
        if vae is None:
            continue
        entry = recorded.get(key) or {}
        fingerprint = encoder_fingerprint(vae)
        if entry.get("sha256") != fingerprint:
            raise CheckpointKindError(
                f"cameo profile {where}: made with a {key} whose encoder fingerprint is {entry.get('sha256')}, "
                f"but the loaded {key} has {fingerprint}; its latents only fit the encoder that made them "
                f"(load that VAE, or re-create the profile with this one)")
    made_for = recorded.get("model_family")
    if family is not None and made_for is not None and made_for != family:
        log.info("cameo profile %s was made for %s; used with %s (same encoders)", where, made_for, family)


def set_consent_record(profile: Profile, consent_file: str | Path) -> Profile:
    """Record the consent record's file name and sha256 in a saved profile's manifest (the file must sit in the
    profile folder); returns the updated profile."""
    if profile.path is None:
        raise InputValueError(f"cameo profile {profile.name}: not saved yet; save it before attaching consent")
    consent_file = Path(consent_file)
    if consent_file.parent.resolve() != profile.path.resolve() or not consent_file.is_file():
        raise InputValueError(f"consent record {consent_file}: expected an existing file inside the profile "
                              f"folder {profile.path}")
    on_disk = profile.path / MANIFEST_NAME  # the current one: keeps a subject key bound since this was loaded
    current = json.loads(on_disk.read_text()) if on_disk.is_file() else profile.manifest
    manifest = dict(current, consent={"file": consent_file.name, "sha256": file_digest(consent_file)})
    with atomic_path(profile.path / MANIFEST_NAME) as tmp:
        tmp.write_text(json.dumps(manifest, indent=2) + "\n")
    return Profile(manifest=manifest, tensors=profile.tensors, path=profile.path)


def set_subject_key(profile: Profile, public_key_b64: str, fingerprint: str) -> Profile:
    """Bind a saved profile to its person's key (base64 raw Ed25519, and its fingerprint) in its manifest; a
    profile already bound to another key is refused (a different person is a new profile, with a new id)."""
    if profile.path is None:
        raise InputValueError(f"cameo profile {profile.name}: not saved yet; save it before binding its person's key")
    manifest = json.loads((profile.path / MANIFEST_NAME).read_text())
    bound = manifest.get("subject") or {}
    if bound.get("public_key") not in (None, public_key_b64):
        raise InputValueError(f"cameo profile {profile.path}: bound to key {bound.get('fingerprint')}, not "
                              f"{fingerprint}; a different person needs a new profile")
    if bound.get("public_key") == public_key_b64:
        return Profile(manifest=manifest, tensors=profile.tensors, path=profile.path)
    manifest["subject"] = {"public_key": public_key_b64, "fingerprint": fingerprint}
    with atomic_path(profile.path / MANIFEST_NAME) as tmp:
        tmp.write_text(json.dumps(manifest, indent=2) + "\n")
    return Profile(manifest=manifest, tensors=profile.tensors, path=profile.path)
