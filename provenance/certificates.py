"""The local provenance identity: a small certificate authority, a C2PA signing certificate and a watermark key.

Everything is made offline on first use with `cryptography` and kept in one folder
(`$JOINTAV_PROVENANCE_DIR`, else `<config>/provenance`, config being `$XDG_CONFIG_HOME/jointav` or
`~/.config/jointav`). The CA is self-signed; the signing certificate is issued by it, because C2PA
validators refuse self-signed end-entity certificates. Anyone who verifies a file made here trusts it
by adding `ca.pem` as a trust anchor; without it a signature still validates but is reported untrusted.

The identity is written to a temporary folder and renamed into place whole, so two processes making it
at the same time end up sharing one identity instead of mixing halves of two.
"""

from __future__ import annotations

import datetime as dt
import os
import secrets
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from ..errors import InputValueError

IDENTITY_FOLDER = "identity-v1"
ORGANIZATION = "ComfyUI-JointAV (local, self-issued)"
VALIDITY = dt.timedelta(days=3650)
FILES = ("ca.pem", "ca.key", "signer.pem", "signer.key", "watermark.key")


def config_dir() -> Path:
    """The pack's per-user config folder: $XDG_CONFIG_HOME/jointav or ~/.config/jointav."""
    base = os.environ.get("XDG_CONFIG_HOME") or Path.home() / ".config"
    return Path(base) / "jointav"


def provenance_dir() -> Path:
    return Path(os.environ.get("JOINTAV_PROVENANCE_DIR") or config_dir() / "provenance")


def write_secret_file(path: str | os.PathLike, data: bytes, *, overwrite: bool = False) -> Path:
    """Write `data` to `path` readable by its owner only (0600) from the first byte on.

    The bytes go to a private temporary file that is then linked (new file: fails with FileExistsError
    if `path` exists, even when another process wins a race) or renamed (overwrite) into place.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)  # mode 0600
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        if overwrite:
            os.replace(tmp, path)
        else:
            os.link(tmp, path)
    finally:
        Path(tmp).unlink(missing_ok=True)
    return path


@dataclass(frozen=True)
class LocalIdentity:
    """PEM bytes of the local CA and signer, and the secret watermark key, as read from `folder`."""

    folder: Path
    ca_pem: bytes
    chain_pem: bytes  # signing certificate followed by the CA certificate
    signer_key_pem: bytes
    watermark_secret: bytes


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, ORGANIZATION),
                      x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def _key_usage(*, cert_sign: bool) -> x509.KeyUsage:
    return x509.KeyUsage(digital_signature=True, content_commitment=False, key_encipherment=False,
                         data_encipherment=False, key_agreement=False, key_cert_sign=cert_sign,
                         crl_sign=cert_sign, encipher_only=False, decipher_only=False)


def _make_certificates(now: dt.datetime) -> tuple[bytes, bytes, bytes, bytes]:
    """(ca.pem, ca.key, signer chain pem, signer.key): ECDSA P-256, i.e. C2PA's ES256."""
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = (x509.CertificateBuilder()
          .subject_name(_name("JointAV local provenance CA")).issuer_name(_name("JointAV local provenance CA"))
          .public_key(ca_key.public_key()).serial_number(x509.random_serial_number())
          .not_valid_before(now - dt.timedelta(minutes=5)).not_valid_after(now + VALIDITY)
          .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
          .add_extension(_key_usage(cert_sign=True), critical=True)
          .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False)
          .sign(ca_key, hashes.SHA256()))
    key = ec.generate_private_key(ec.SECP256R1())
    signer = (x509.CertificateBuilder()
              .subject_name(_name("JointAV content signer")).issuer_name(ca.subject)
              .public_key(key.public_key()).serial_number(x509.random_serial_number())
              .not_valid_before(now - dt.timedelta(minutes=5)).not_valid_after(now + VALIDITY)
              .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
              .add_extension(_key_usage(cert_sign=False), critical=True)
              # C2PA accepts only a few extended key usages for claim signers; e-mail protection is one
              .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.EMAIL_PROTECTION]), critical=False)
              .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
              .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False)
              .sign(ca_key, hashes.SHA256()))

    def private(k) -> bytes:
        return k.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                               serialization.NoEncryption())

    ca_pem = ca.public_bytes(serialization.Encoding.PEM)
    return ca_pem, private(ca_key), signer.public_bytes(serialization.Encoding.PEM) + ca_pem, private(key)


def _create(target: Path) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))  # mode 0700
    try:
        ca_pem, ca_key, chain, signer_key = _make_certificates(dt.datetime.now(dt.timezone.utc))
        contents = dict(zip(FILES, (ca_pem, ca_key, chain, signer_key, secrets.token_bytes(32))))
        for name, data in contents.items():
            write_secret_file(staging / name, data)
        try:
            os.rename(staging, target)
        except OSError:
            if not (target / FILES[-1]).is_file():  # not a lost race with another process: a real failure
                raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def local_identity(folder: str | os.PathLike | None = None, *, create: bool = True) -> LocalIdentity:
    """The identity in `folder` (default `provenance_dir()`), made there on first use when `create` is set."""
    root = Path(folder) if folder is not None else provenance_dir()
    target = root / IDENTITY_FOLDER
    if not target.is_dir():
        if not create:
            raise InputValueError(f"provenance identity {target} does not exist; expected one made by signing a file")
        _create(target)
    data = {}
    for name in FILES:
        path = target / name
        if not path.is_file():
            raise InputValueError(f"provenance identity {target}: {name} is missing; "
                                  f"expected all of {', '.join(FILES)}")
        data[name] = path.read_bytes()
    if len(data["watermark.key"]) != 32:
        raise InputValueError(f"provenance identity {target / 'watermark.key'}: {len(data['watermark.key'])} bytes, "
                              f"expected 32")
    return LocalIdentity(folder=target, ca_pem=data["ca.pem"], chain_pem=data["signer.pem"],
                         signer_key_pem=data["signer.key"], watermark_secret=data["watermark.key"])
