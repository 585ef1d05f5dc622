"""Reading checkpoint files without ever holding two copies of the weights.

Two container formats are read:
- safetensors: the header is checked against the file size before any data is touched, then the file is
  memory-mapped (every tensor is a view of the mapping until something materialises it), or, when every
  tensor is about to be converted anyway, read one tensor at a time (`CheckpointReader(copy=True)`).
- PyTorch pickles (.pth/.pt/.ckpt/.bin): only through `torch.load(weights_only=True)`, so a pickle that
  would run code is refused, never executed. Zip-format files are memory-mapped; the legacy (pre-1.6)
  format cannot be, so it is read once into memory (still a single copy).

`read_header` lists names, shapes and dtypes (and safetensors metadata) without reading tensor data,
which is what format detection and config inference work from.
"""

from __future__ import annotations

import json
import math
import pickle
import struct
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import torch

from ..errors import CheckpointFileError

SAFETENSORS = "safetensors"
TORCH_ZIP = "torch-zip"
TORCH_LEGACY = "torch-legacy"

# Containers training scripts wrap a state dict in; unwrapped automatically only when exactly one is present.
CONTAINER_KEYS = ("state_dict", "model", "module", "generator", "model_state_dict", "ema")

# A safetensors header is JSON text; anything this large is not one (the format itself caps it at 100 MB).
_MAX_HEADER_BYTES = 100 * 1024 * 1024

_SAFETENSORS_DTYPES: dict[str, torch.dtype] = {
    "F64": torch.float64, "F32": torch.float32, "F16": torch.float16, "BF16": torch.bfloat16,
    "F8_E4M3": torch.float8_e4m3fn, "F8_E5M2": torch.float8_e5m2,
    "I64": torch.int64, "I32": torch.int32, "I16": torch.int16, "I8": torch.int8, "U8": torch.uint8,
    "BOOL": torch.bool,
}


@dataclass(frozen=True)
class TensorInfo:
    shape: tuple[int, ...]
    dtype: torch.dtype
    offset: int | None = None  # absolute file offset of the data (safetensors only)

    @property
    def nbytes(self) -> int:
        return math.prod(self.shape) * self.dtype.itemsize


@dataclass(frozen=True)
class CheckpointHeader:
    """What a checkpoint holds, known without reading its tensor data."""

    path: Path
    format: str
    tensors: dict[str, TensorInfo]
    metadata: dict[str, str] = field(default_factory=dict)
    file_size: int = 0


def _describe_bytes(head: bytes) -> str:
    """A short guess at what a non-checkpoint file is, for error messages."""
    if not head:
        return "an empty file"
    if head.startswith(b"\x89PNG"):
        return "a PNG image"
    if head.startswith(b"\xff\xd8\xff"):
        return "a JPEG image"
    if head.startswith(b"GGUF"):
        return "a GGUF file (llama.cpp/ComfyUI-GGUF quantisation, not read by this loader)"
    if head.startswith(b"\x1f\x8b"):
        return "a gzip archive"
    if head.startswith(b"version https://git-lfs"):
        return "a Git LFS pointer (the real file was never downloaded: run `git lfs pull` or download it directly)"
    if head.lstrip().startswith((b"<!DOCTYPE", b"<html", b"<HTML")):
        return "an HTML page (a failed download?)"
    try:
        text = head.decode("utf-8")
    except UnicodeDecodeError:
        return f"binary data starting with {head[:8].hex(' ')}"
    snippet = text.strip().splitlines()[0][:60] if text.strip() else ""
    return f"a text file (starts with {snippet!r})"


def sniff_format(path: Path | str) -> str:
    """The container format of `path` from its first bytes (not its extension); raises for anything else."""
    path = _existing(path)
    with open(path, "rb") as f:
        head = f.read(64)
    if head.startswith(b"PK\x03\x04"):
        return TORCH_ZIP
    # Legacy torch.save files are a bare pickle: protocol opcode 0x80 followed by the protocol number.
    if len(head) >= 2 and head[0] == 0x80 and 2 <= head[1] <= 5:
        return TORCH_LEGACY
    # safetensors: an 8-byte little-endian header length, then the JSON header itself.
    if len(head) >= 9 and head[8:9] == b"{" and 2 <= struct.unpack("<Q", head[:8])[0] <= _MAX_HEADER_BYTES:
        return SAFETENSORS
    raise CheckpointFileError(
        f"{path}: not a checkpoint: found {_describe_bytes(head)}; "
        f"expected a safetensors file or a PyTorch .pth/.pt/.ckpt/.bin file"
    )


def _existing(path: Path | str) -> Path:
    path = Path(path)
    if not path.exists():
        raise CheckpointFileError(f"{path}: checkpoint file not found (expected an existing .safetensors or .pth file)")
    if not path.is_file():
        raise CheckpointFileError(f"{path}: is a directory, not a checkpoint file")
    return path


def _read_safetensors_header(path: Path) -> CheckpointHeader:
    """Parse and validate the safetensors header against the real file size; reads no tensor data."""
    size = path.stat().st_size
    with open(path, "rb") as f:
        (header_len,) = struct.unpack("<Q", f.read(8))  # sniff_format has seen at least 9 bytes
        if 8 + header_len > size:
            raise CheckpointFileError(
                f"{path}: truncated safetensors file: the header alone needs {8 + header_len} bytes "
                f"but the file has {size} bytes"
            )
        raw = f.read(header_len)
    try:
        header = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise CheckpointFileError(f"{path}: damaged safetensors file: header is not valid JSON ({e})") from None
    if not isinstance(header, dict):
        raise CheckpointFileError(f"{path}: damaged safetensors file: header is {type(header).__name__}, expected a JSON object")

    metadata = header.pop("__metadata__", None) or {}
    tensors: dict[str, TensorInfo] = {}
    data_needed = 0
    for name, entry in header.items():
        try:
            dtype_name, shape, (begin, end) = entry["dtype"], tuple(entry["shape"]), entry["data_offsets"]
        except (TypeError, KeyError, ValueError):
            raise CheckpointFileError(f"{path}: damaged safetensors header entry for {name!r}: {entry!r}") from None
        if dtype_name not in _SAFETENSORS_DTYPES:
            raise CheckpointFileError(
                f"{path}: tensor {name!r} has dtype {dtype_name}, expected one of {sorted(_SAFETENSORS_DTYPES)}"
            )
        info = TensorInfo(shape, _SAFETENSORS_DTYPES[dtype_name], 8 + header_len + begin)
        if end - begin != info.nbytes:
            raise CheckpointFileError(
                f"{path}: damaged safetensors header: tensor {name!r} {dtype_name}{list(shape)} needs "
                f"{info.nbytes} bytes, its offsets span {end - begin}"
            )
        tensors[name] = info
        data_needed = max(data_needed, end)

    data_present = size - 8 - header_len
    if data_present != data_needed:
        what = "truncated" if data_present < data_needed else "damaged"
        raise CheckpointFileError(
            f"{path}: {what} safetensors file: the header describes {data_needed} data bytes "
            f"(file size {8 + header_len + data_needed} bytes) but the file has {data_present} data bytes "
            f"(file size {size} bytes)"
        )
    if not tensors:
        raise CheckpointFileError(f"{path}: safetensors file holds no tensors; expected a state dict of weights")
    return CheckpointHeader(path, SAFETENSORS, tensors, dict(metadata), size)


def _torch_load(path: Path, fmt: str):
    """torch.load that never executes code; memory-mapped whenever the file format allows it."""
    try:
        return torch.load(path, map_location="cpu", weights_only=True, mmap=(fmt == TORCH_ZIP))
    except pickle.UnpicklingError as e:
        # torch names the offending global ("Unsupported global: GLOBAL posix.system ..."); keep that line.
        reason = next((line.strip() for line in str(e).splitlines() if "GLOBAL" in line), str(e).splitlines()[0])
        raise CheckpointFileError(
            f"{path}: refused to load: this pickle would execute code or build objects other than tensors "
            f"({reason}); expected a weights-only checkpoint (tensors, dicts, lists, numbers). "
            f"Convert it to safetensors in a trusted environment."
        ) from None
    except (RuntimeError, EOFError, OSError, ValueError, AttributeError, KeyError, TypeError) as e:
        # A damaged archive surfaces as any of these from torch's readers (e.g. AttributeError for an fp8
        # tensor in the legacy format, which torch cannot read back); all mean "cannot be read".
        first = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise CheckpointFileError(
            f"{path}: damaged or truncated PyTorch checkpoint ({fmt}): {first}; "
            f"expected a complete torch.save file ({path.stat().st_size} bytes found)"
        ) from None


def _unwrap(obj, path: Path, unwrap: str | None) -> Mapping:
    """The mapping of tensors inside a loaded pickle, unwrapping a known container only when unambiguous."""
    if not isinstance(obj, Mapping):
        raise CheckpointFileError(f"{path}: holds a {type(obj).__name__}, expected a dict of tensors (a state dict)")
    if unwrap is not None:
        if unwrap not in obj or not isinstance(obj[unwrap], Mapping):
            raise CheckpointFileError(
                f"{path}: container key {unwrap!r} not found or not a dict; top-level keys: {list(obj)[:10]}"
            )
        return obj[unwrap]
    if any(isinstance(v, torch.Tensor) for v in obj.values()):
        return obj
    present = [k for k in CONTAINER_KEYS if isinstance(obj.get(k), Mapping)]
    if len(present) == 1:
        return obj[present[0]]
    if len(present) > 1:
        raise CheckpointFileError(
            f"{path}: holds several state dicts {present}; pass unwrap=<one of them> to choose"
        )
    return obj


def _tensors_only(mapping: Mapping, path: Path) -> dict[str, torch.Tensor]:
    tensors = {str(k): v for k, v in mapping.items() if isinstance(v, torch.Tensor)}
    if not tensors:
        raise CheckpointFileError(
            f"{path}: holds no tensors (top-level keys: {list(mapping)[:10]}); expected a state dict of weights"
        )
    return tensors


def read_header(path: Path | str, *, unwrap: str | None = None) -> CheckpointHeader:
    """Names, shapes, dtypes and metadata of a checkpoint, without reading tensor data.

    For safetensors only the JSON header is read. For zip-format pickles the file is memory-mapped and
    unpickled (weights only); tensor bytes are not touched. Legacy pickles are read whole.
    """
    path = _existing(path)
    if sniff_format(path) == SAFETENSORS:
        return _read_safetensors_header(path)
    with CheckpointReader(path, unwrap=unwrap) as reader:
        return reader.header


class CheckpointReader:
    """An open checkpoint whose tensors are fetched one at a time; `header` is known before any data is read.

    `copy=False` (default): tensors are views of a memory map of the file, so nothing is read or copied
    until used. That is the right mode when the tensors become model parameters as they are.
    `copy=True` (safetensors only): each `take` reads that one tensor into fresh memory. The right mode when
    every tensor is converted or moved to another device at once: read pages of a file mapping stay
    resident until the whole mapping is released, so converting views of it would hold the file AND the
    converted copy; reading one tensor at a time holds the converted copy plus one tensor.
    Pickles are always memory-mapped (zip format) or read whole (legacy format).
    """

    def __init__(self, path: Path | str, *, unwrap: str | None = None, copy: bool = False):
        path = _existing(path)
        fmt = sniff_format(path)
        self._safetensors = None
        self._file = None
        self._tensors: dict[str, torch.Tensor] = {}
        if fmt == SAFETENSORS:
            self.header = _read_safetensors_header(path)
            if copy:
                self._file = open(path, "rb")
            else:
                from safetensors import SafetensorError, safe_open

                try:
                    self._safetensors = safe_open(str(path), framework="pt", device="cpu")
                except SafetensorError as e:
                    raise CheckpointFileError(f"{path}: damaged safetensors file: {e}") from None
        else:
            self._tensors = _tensors_only(_unwrap(_torch_load(path, fmt), path, unwrap), path)
            infos = {k: TensorInfo(tuple(v.shape), v.dtype) for k, v in self._tensors.items()}
            self.header = CheckpointHeader(path, fmt, infos, {}, path.stat().st_size)

    def take(self, name: str) -> torch.Tensor:
        """The tensor `name` on the CPU; the reader keeps no reference to it."""
        if self._safetensors is not None:
            return self._safetensors.get_tensor(name)
        if self._file is not None:
            return self._read(name)
        return self._tensors.pop(name)

    def _read(self, name: str) -> torch.Tensor:
        info = self.header.tensors[name]
        out = torch.empty(info.shape, dtype=info.dtype)
        buffer = out.reshape(-1).view(torch.uint8).numpy()
        self._file.seek(info.offset)
        if self._file.readinto(buffer) != info.nbytes:
            raise CheckpointFileError(
                f"{self.header.path}: tensor {name!r} ended early: expected {info.nbytes} bytes at offset "
                f"{info.offset} (the file changed while it was read?)"
            )
        return out

    def close(self) -> None:
        self._safetensors = None
        self._tensors = {}
        if self._file is not None:
            self._file.close()
            self._file = None

    def __enter__(self) -> "CheckpointReader":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def load_state_dict(path: Path | str, *, unwrap: str | None = None) -> tuple[dict[str, torch.Tensor], CheckpointHeader]:
    """All tensors of a checkpoint as memory-mapped views (pickles: see CheckpointReader), with the header."""
    with CheckpointReader(path, unwrap=unwrap) as reader:
        return {name: reader.take(name) for name in reader.header.tensors}, reader.header
