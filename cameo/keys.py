"""Ed25519 identities for cameo consent: the subject who grants, the operator who generates.

A key is a pair of PEM files: the private key (written with 0600 permissions, never overwritten by
accident) and its public key. An identity is named by its fingerprint, a short hash of the raw public
key, which is what consent records list as allowed operators.
"""

from __future__ import annotations

import base64
import hashlib
import os
from pathlib import Path

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from ..atomic import atomic_path
from ..errors import InputValueError
from ..provenance.certificates import config_dir, write_secret_file

FINGERPRINT_PREFIX = "ed25519:"


def default_operator_key_path() -> Path:
    """Where this machine's operator key lives: $JOINTAV_OPERATOR_KEY, else <config>/keys/operator.key."""
    return Path(os.environ.get("JOINTAV_OPERATOR_KEY") or config_dir() / "keys" / "operator.key")


def generate_key() -> Ed25519PrivateKey:
    return Ed25519PrivateKey.generate()


def raw_public(public_key: Ed25519PublicKey) -> bytes:
    return public_key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


def fingerprint(public_key: Ed25519PublicKey | Ed25519PrivateKey) -> str:
    """`ed25519:` + the first 128 bits of SHA-256 of the raw public key, in hex."""
    if isinstance(public_key, Ed25519PrivateKey):
        public_key = public_key.public_key()
    return FINGERPRINT_PREFIX + hashlib.sha256(raw_public(public_key)).hexdigest()[:32]


def public_key_b64(public_key: Ed25519PublicKey) -> str:
    return base64.b64encode(raw_public(public_key)).decode("ascii")


def public_key_from_b64(text: str) -> Ed25519PublicKey:
    """The inverse of `public_key_b64`; ValueError when `text` is not a 32-byte base64 key."""
    raw = base64.b64decode(text.encode("ascii"), validate=True)
    return Ed25519PublicKey.from_public_bytes(raw)


def public_path_for(private_path: str | os.PathLike) -> Path:
    """`subject.key` -> `subject.pub.pem`: where the public half of a saved key is written."""
    private_path = Path(private_path)
    return private_path.with_name(private_path.stem + ".pub.pem")


def save_key(key: Ed25519PrivateKey, path: str | os.PathLike, *, overwrite: bool = False) -> tuple[Path, Path]:
    """Write the private key (PEM, mode 0600) to `path` and its public key beside it; returns both paths.

    An existing key is never replaced unless `overwrite` is set: losing a subject's key loses the
    ability to revoke what it signed.
    """
    path = Path(path)
    private_pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                    serialization.NoEncryption())
    try:
        write_secret_file(path, private_pem, overwrite=overwrite)
    except FileExistsError:
        raise InputValueError(f"key file {path} already exists; expected a new path (or overwrite=True)") from None
    public = public_path_for(path)
    with atomic_path(public, suffix=".pem") as tmp:
        tmp.write_bytes(key.public_key().public_bytes(serialization.Encoding.PEM,
                                                      serialization.PublicFormat.SubjectPublicKeyInfo))
    return path, public


def load_private_key(path: str | os.PathLike) -> Ed25519PrivateKey:
    path = Path(path)
    if not path.is_file():
        raise InputValueError(f"private key {path} does not exist")
    try:
        key = serialization.load_pem_private_key(path.read_bytes(), password=None)
    except (ValueError, TypeError) as e:
        raise InputValueError(f"private key {path}: not an unencrypted PEM private key ({e})") from e
    if not isinstance(key, Ed25519PrivateKey):
        raise InputValueError(f"private key {path}: found a {type(key).__name__}, expected an Ed25519 key")
    return key


def load_public_key(path: str | os.PathLike) -> Ed25519PublicKey:
    path = Path(path)
    if not path.is_file():
        raise InputValueError(f"public key {path} does not exist")
    try:
        key = serialization.load_pem_public_key(path.read_bytes())
    except ValueError as e:
        raise InputValueError(f"public key {path}: not a PEM public key ({e})") from e
    if not isinstance(key, Ed25519PublicKey):
        raise InputValueError(f"public key {path}: found a {type(key).__name__}, expected an Ed25519 key")
    return key


def operator_key(path: str | os.PathLike | None = None, *, create: bool = True) -> Ed25519PrivateKey:
    """This machine's operator identity: loaded from `path` (default `default_operator_key_path()`),
    generated and saved there on first use when `create` is set."""
    path = Path(path) if path is not None else default_operator_key_path()
    if path.is_file() or not create:
        return load_private_key(path)
    key = generate_key()
    try:
        save_key(key, path)
    except InputValueError:  # another process created it in between: use theirs
        return load_private_key(path)
    return key


def verify_signature(public_key: Ed25519PublicKey, signature_b64: str, message: bytes) -> bool:
    try:
        public_key.verify(base64.b64decode(signature_b64.encode("ascii"), validate=True), message)
    except (InvalidSignature, ValueError):
        return False
    return True


def sign_b64(key: Ed25519PrivateKey, message: bytes) -> str:
    return base64.b64encode(key.sign(message)).decode("ascii")
