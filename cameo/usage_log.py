"""A local, append-only, hash-chained record of every use of a cameo profile.

One JSON object per line. Each entry carries the SHA-256 of the previous line's exact bytes
(`prev_sha256`; 64 zeros for the first) and of its own content (`entry_sha256`), so `verify_chain`
finds an edited, removed, inserted or reordered line and names it. Entries are appended with one
`write` on a file opened with O_APPEND, then fsync'ed, under an exclusive lock where the platform has
one; old lines are never rewritten.

A chain alone cannot show that its newest lines were cut off (truncation leaves a valid shorter chain) or
that the whole file was rewritten with fresh hashes, so copies of its length and head hash are kept
elsewhere: every append records them as this machine's checkpoint (cameo.consent_state), which
`check_log` compares at the next use, and each cameo clip's C2PA manifest records them as they were when
its use was allowed (`LogSnapshot`), which `jointav verify` compares on that clip (`check_snapshot`).
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
from .consent_state import log_checkpoint, record_log_checkpoint

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

    def __init__(self, message: str, line: int = -1):  # a default, so wrappers can re-raise it with one message
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


class UsageLogTruncatedError(UsageLogTamperedError):
    """The log is shorter than a length recorded elsewhere (this machine's checkpoint, a clip's manifest), or no
    longer extends the head recorded there: entries were cut off or the log was rewritten."""


@dataclass(frozen=True)
class ChainReport:
    entries: int
    head_sha256: str  # hash of the last line (GENESIS for an empty log): keep a copy elsewhere to detect truncation
    line_sha256: tuple[str, ...] = ()  # hash of each line's bytes, in order: what line n's `head` was

    def head_at(self, entries: int) -> str:
        """The head hash the log had when it was `entries` lines long (it must be at least that long)."""
        return GENESIS if entries == 0 else self.line_sha256[entries - 1]


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
        checkpoint = log_checkpoint(path)
        if last is None:
            seq, prev = 1, GENESIS
        else:
            try:
                seq = int(json.loads(last)["seq"]) + 1
            except (ValueError, KeyError, TypeError) as e:
                raise UsageLogTamperedError(f"usage log {path}: the last line is not an entry ({e}); not appending",
                                            line=-1) from None
            prev = hashlib.sha256(last).hexdigest()
        if checkpoint is not None and seq - 1 < checkpoint["entries"]:
            cut = checkpoint["entries"] - (seq - 1)
            raise UsageLogTruncatedError(f"usage log {path}: {seq - 1} entries, but this machine recorded it reaching "
                                         f"{checkpoint['entries']}; {cut} entr{'y was' if cut == 1 else 'ies were'} "
                                         f"cut off the end; not appending", line=seq)
        fields = {"version": LOG_VERSION, "seq": seq, "time": format_time(when), "profile_id": profile_id,
                  "operator": operator, "consent_sha256": consent_sha256, "output_sha256": output_sha256,
                  "prev_sha256": prev}
        entry = {**fields, "entry_sha256": _entry_hash(fields)}
        line = canonical_json(entry) + b"\n"
        if os.write(fd, line) != len(line):
            raise UsageLogError(f"usage log {path}: short write of an entry (disk full?)")
        os.fsync(fd)
        record_log_checkpoint(path, seq, hashlib.sha256(canonical_json(entry)).hexdigest())
    return entry


def verify_chain(path: str | os.PathLike | None = None) -> ChainReport:
    """Check every line of the log; raises UsageLogTamperedError naming the first line that is wrong and how."""
    path = Path(path) if path is not None else default_log_path()
    if not path.exists():
        return ChainReport(entries=0, head_sha256=GENESIS)
    hashes = []
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
        hashes.append(prev)
    return ChainReport(entries=len(lines), head_sha256=prev, line_sha256=tuple(hashes))


@dataclass(frozen=True)
class LogSnapshot:
    """A usage log's length and head hash at one moment, as a clip's manifest records it."""

    entries: int
    head_sha256: str

    def to_dict(self) -> dict:
        return {"entries": self.entries, "head_sha256": self.head_sha256}


def _compare(path: Path, report: ChainReport, entries: int, head: str, recorded: str) -> None:
    """Raise UsageLogTruncatedError when the log at `path` (checked: `report`) does not extend `entries` lines
    ending in `head`, as `recorded` says it once had."""
    if report.entries < entries:
        cut = entries - report.entries
        raise UsageLogTruncatedError(f"usage log {path}: {report.entries} entries, but {recorded} {entries}; "
                                     f"{cut} entr{'y was' if cut == 1 else 'ies were'} cut off the end",
                                     line=report.entries + 1)
    if report.head_at(entries) != head:
        raise UsageLogTruncatedError(f"usage log {path}: line {entries} hashes to {report.head_at(entries)[:16]}..., "
                                     f"but {recorded} {entries} entries ending in {head[:16]}...; the log was cut "
                                     f"back and rewritten", line=entries)


def check_log(path: str | os.PathLike | None = None) -> LogSnapshot:
    """Verify the log's chain and that it still extends this machine's checkpoint (the newest length and head an
    append recorded, cameo.consent_state); returns its length and head now, recording them as the checkpoint
    when there was none. UsageLogTamperedError (UsageLogTruncatedError for a cut) says what is wrong."""
    path = Path(path) if path is not None else default_log_path()
    with _locked_append(path):  # no append half-written while it is read
        report = verify_chain(path)
        checkpoint = log_checkpoint(path)
        if checkpoint is not None:
            _compare(path, report, checkpoint["entries"], checkpoint["head_sha256"],
                     f"this machine recorded it reaching ({checkpoint.get('updated', '?')})")
        if checkpoint is None or report.entries > checkpoint["entries"]:
            record_log_checkpoint(path, report.entries, report.head_sha256)
    return LogSnapshot(report.entries, report.head_sha256)


def check_snapshot(snapshot: dict, path: str | os.PathLike | None = None, output_sha256: str | None = None) -> dict:
    """Compare the log at `path` with a clip manifest's `usage_log` snapshot (the log before the clip's use).

    Returns {"checked": False, "note"} when there is no log here (another machine's clip); else {"checked": True,
    "entries", "clip_entry"}: the line after the snapshot that records `output_sha256` (the clip's MP4), or None.
    Raises UsageLogTruncatedError when the log is shorter than the snapshot, no longer extends it, or holds no
    entry after it (the clip's own use was cut off), and UsageLogTamperedError for a broken chain."""
    path = Path(path) if path is not None else default_log_path()
    try:
        entries, head = int(snapshot["entries"]), str(snapshot["head_sha256"])
    except (KeyError, TypeError, ValueError) as e:
        raise UsageLogTamperedError(f"the clip's usage_log record {snapshot!r} is not readable ({e})", line=-1) from e
    if not path.exists():
        if log_checkpoint(path) is not None:
            raise UsageLogTruncatedError(f"usage log {path} is gone, but this machine recorded entries in it; the "
                                         f"clip's manifest records {entries} entries before its use", line=1)
        return {"checked": False, "note": f"no usage log at {path} (made on another machine?)"}
    report = verify_chain(path)
    _compare(path, report, entries, head, "the clip's manifest records that before its use it had")
    if report.entries == entries:
        raise UsageLogTruncatedError(f"usage log {path}: {report.entries} entries, the clip's manifest records "
                                     f"{entries} before its use, so the clip's own entry ({entries + 1}) was cut off",
                                     line=entries + 1)
    clip_entry = None
    if output_sha256 is not None:
        lines = path.read_bytes().split(b"\n")[entries:report.entries]
        for number, raw in enumerate(lines, start=entries + 1):
            if json.loads(raw).get("output_sha256") == output_sha256:
                clip_entry = number
                break
    return {"checked": True, "entries": report.entries, "clip_entry": clip_entry}
