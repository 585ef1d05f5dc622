"""A local, append-only, hash-chained record of every use of a cameo profile.

One JSON object per line. Each entry carries the SHA-256 of the previous line's exact bytes
(`prev_sha256`; 64 zeros for the first) and of its own content (`entry_sha256`), so `verify_chain`
finds an edited, removed, inserted or reordered line and names it. Entries are appended with one
`write` on a file opened with O_APPEND, then fsync'ed, under an exclusive lock where the platform has
one; old lines are never rewritten.

Limits: a chain on the same disk cannot show that its newest lines were cut off (truncation leaves a
valid shorter chain) or that the whole file was rewritten with fresh hashes: for that, compare
`ChainReport.head_sha256` with a copy kept somewhere else.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from ..errors import InputValueError, JointAVError
from ..provenance.certificates import config_dir
from .consent import canonical_json, format_time

try:  # POSIX; on Windows a single ComfyUI process appends, and the lock is skipped
    import fcntl
except ImportError:  # pragma: no cover - platform dependent
    fcntl = None

GENESIS = "0" * 64
LOG_VERSION = 1


class UsageLogError(JointAVError):
    """The usage log cannot be read or appended to."""


class UsageLogTamperedError(UsageLogError):
    """An entry of the usage log was edited, removed, inserted or reordered; `line` is the first bad line (1-based)."""

    def __init__(self, message: str, line: int):
        super().__init__(message)
        self.line = line


def default_log_path() -> Path:
    """$JOINTAV_CAMEO_LOG, else <config>/cameo/usage.jsonl."""
    return Path(os.environ.get("JOINTAV_CAMEO_LOG") or config_dir() / "cameo" / "usage.jsonl")


def sha256_file(path: str | os.PathLike) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


@dataclass(frozen=True)
class ChainReport:
    entries: int
    head_sha256: str  # hash of the last line (GENESIS for an empty log): keep a copy elsewhere to detect truncation


def _entry_hash(fields: dict) -> str:
    return hashlib.sha256(canonical_json(fields)).hexdigest()


@contextmanager
def _locked_append(path: Path):
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o600)
    try:
        if fcntl is not None:
            fcntl.flock(fd, fcntl.LOCK_EX)
        yield fd
    finally:
        os.close(fd)  # closing releases the lock


def _last_line(fd: int) -> bytes | None:
    """The last complete line (without its newline), None for an empty file; reads backwards in chunks."""
    size = os.fstat(fd).st_size
    if size == 0:
        return None
    if os.pread(fd, 1, size - 1) != b"\n":
        raise UsageLogTamperedError("usage log: the last line is incomplete (no newline); an append was cut off "
                                    "or the file was edited", line=-1)
    end, buf = size - 1, b""
    while end > 0:
        start = max(0, end - 65536)
        buf = os.pread(fd, end - start, start) + buf
        end = start
        if b"\n" in buf:
            return buf[buf.rindex(b"\n") + 1:]
    return buf


def append_use(path: str | os.PathLike | None = None, *, profile_id: str, operator: str, consent_sha256: str,
               output_sha256: str | None = None, now: dt.datetime | None = None) -> dict:
    """Append one use of a cameo profile to the log at `path` (default `default_log_path()`); returns the entry.

    `consent_sha256` is `ConsentDecision.record_sha256`; `output_sha256` the finished file's SHA-256
    (`sha256_file`) when it is already written.
    """
    path = Path(path) if path is not None else default_log_path()
    for name, value in (("consent_sha256", consent_sha256), ("output_sha256", output_sha256)):
        if value is not None and (len(value) != 64 or any(c not in "0123456789abcdef" for c in value)):
            raise InputValueError(f"usage log {name} {value!r}: expected 64 lowercase hex digits")
    when = (now or dt.datetime.now(dt.timezone.utc))
    with _locked_append(path) as fd:
        try:
            last = _last_line(fd)
        except UsageLogTamperedError as e:
            raise UsageLogTamperedError(f"usage log {path}: {e}; not appending", line=e.line) from None
        if last is None:
            seq, prev = 1, GENESIS
        else:
            try:
                seq = int(json.loads(last)["seq"]) + 1
            except (ValueError, KeyError, TypeError) as e:
                raise UsageLogTamperedError(f"usage log {path}: the last line is not an entry ({e}); not appending",
                                            line=-1) from None
            prev = hashlib.sha256(last).hexdigest()
        fields = {"version": LOG_VERSION, "seq": seq, "time": format_time(when), "profile_id": profile_id,
                  "operator": operator, "consent_sha256": consent_sha256, "output_sha256": output_sha256,
                  "prev_sha256": prev}
        entry = {**fields, "entry_sha256": _entry_hash(fields)}
        line = canonical_json(entry) + b"\n"
        if os.write(fd, line) != len(line):
            raise UsageLogError(f"usage log {path}: short write of an entry (disk full?)")
        os.fsync(fd)
    return entry


def verify_chain(path: str | os.PathLike | None = None) -> ChainReport:
    """Check every line of the log; raises UsageLogTamperedError naming the first line that is wrong and how."""
    path = Path(path) if path is not None else default_log_path()
    if not path.exists():
        return ChainReport(entries=0, head_sha256=GENESIS)
    data = path.read_bytes()
    if data and not data.endswith(b"\n"):
        raise UsageLogTamperedError(f"usage log {path}: the last line is incomplete (no newline)",
                                    line=data.count(b"\n") + 1)
    prev = GENESIS
    lines = data.split(b"\n")[:-1] if data else []
    for number, raw in enumerate(lines, start=1):
        where = f"usage log {path} line {number}"
        try:
            entry = json.loads(raw)
            fields = {k: v for k, v in entry.items() if k != "entry_sha256"}
            own, seq, chained = entry["entry_sha256"], entry["seq"], entry["prev_sha256"]
        except (ValueError, KeyError, TypeError, AttributeError) as e:
            raise UsageLogTamperedError(f"{where}: not a log entry ({e})", line=number) from None
        if _entry_hash(fields) != own:
            raise UsageLogTamperedError(f"{where}: its content does not match its entry_sha256; the entry was edited",
                                        line=number)
        if seq != number:
            raise UsageLogTamperedError(f"{where}: seq is {seq}, expected {number}; an entry before it was removed, "
                                        f"inserted or moved", line=number)
        if chained != prev:
            raise UsageLogTamperedError(f"{where}: prev_sha256 {chained[:16]}... does not match line {number - 1} "
                                        f"({prev[:16]}...); line {number - 1} was edited, or a line between them was "
                                        f"removed or moved", line=number)
        prev = hashlib.sha256(raw).hexdigest()
    return ChainReport(entries=len(lines), head_sha256=prev)
