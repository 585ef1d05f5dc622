import hashlib
import json
import multiprocessing

import pytest

from jointav.cameo.usage_log import (
    GENESIS,
    UsageLogTamperedError,
    append_use,
    sha256_file,
    verify_chain,
)
from jointav.errors import InputValueError

CONSENT = "c" * 64


def _log(path, n=4):
    for i in range(n):
        append_use(path, profile_id=f"profile-{i % 2}", operator="ed25519:" + f"{i:032x}", consent_sha256=CONSENT,
                   output_sha256=hashlib.sha256(str(i).encode()).hexdigest())
    return path


def _lines(path):
    return path.read_bytes().split(b"\n")[:-1]


def _write(path, lines):
    path.write_bytes(b"".join(line + b"\n" for line in lines))


def test_each_use_adds_one_line_chained_to_the_previous(tmp_path):
    path = _log(tmp_path / "usage.jsonl", 3)
    before = path.read_bytes()
    entry = append_use(path, profile_id="p", operator="op", consent_sha256=CONSENT)
    assert path.read_bytes().startswith(before)  # old entries are never rewritten
    lines = _lines(path)
    assert len(lines) == 4 and json.loads(lines[0])["prev_sha256"] == GENESIS
    assert entry["prev_sha256"] == hashlib.sha256(lines[2]).hexdigest() and entry["output_sha256"] is None
    report = verify_chain(path)
    assert report.entries == 4 and report.head_sha256 == hashlib.sha256(lines[3]).hexdigest()


def test_an_edited_entry_is_found_on_its_line(tmp_path):
    path = _log(tmp_path / "usage.jsonl")
    lines = _lines(path)
    lines[1] = lines[1].replace(b"profile-1", b"profile-9")
    _write(path, lines)
    with pytest.raises(UsageLogTamperedError, match="line 2: .*edited") as e:
        verify_chain(path)
    assert e.value.line == 2


def test_an_edit_that_recomputes_the_entry_hash_breaks_the_chain_at_the_next_line(tmp_path):
    path = _log(tmp_path / "usage.jsonl")
    lines = _lines(path)
    entry = json.loads(lines[1])
    entry["operator"] = "someone else"
    fields = {k: v for k, v in entry.items() if k != "entry_sha256"}
    canonical = json.dumps(fields, sort_keys=True, separators=(",", ":")).encode()
    entry["entry_sha256"] = hashlib.sha256(canonical).hexdigest()
    lines[1] = json.dumps(entry, sort_keys=True, separators=(",", ":")).encode()
    _write(path, lines)
    with pytest.raises(UsageLogTamperedError, match="line 3: .*line 2 was edited") as e:
        verify_chain(path)
    assert e.value.line == 3


def test_an_edited_last_entry_is_found(tmp_path):
    path = _log(tmp_path / "usage.jsonl")
    lines = _lines(path)
    lines[-1] = lines[-1].replace(CONSENT.encode(), b"d" * 64)
    _write(path, lines)
    with pytest.raises(UsageLogTamperedError) as e:
        verify_chain(path)
    assert e.value.line == 4


def test_a_removed_entry_is_found(tmp_path):
    path = _log(tmp_path / "usage.jsonl")
    lines = _lines(path)
    _write(path, lines[:1] + lines[2:])
    with pytest.raises(UsageLogTamperedError, match="removed") as e:
        verify_chain(path)
    assert e.value.line == 2


def test_a_reordered_pair_is_found(tmp_path):
    path = _log(tmp_path / "usage.jsonl")
    lines = _lines(path)
    lines[1], lines[2] = lines[2], lines[1]
    _write(path, lines)
    with pytest.raises(UsageLogTamperedError) as e:
        verify_chain(path)
    assert e.value.line == 2


def test_nothing_is_appended_after_a_cut_off_line(tmp_path):
    path = _log(tmp_path / "usage.jsonl", 2)
    path.write_bytes(path.read_bytes()[:-10])
    with pytest.raises(UsageLogTamperedError, match="incomplete"):
        append_use(path, profile_id="p", operator="op", consent_sha256=CONSENT)
    with pytest.raises(UsageLogTamperedError, match="incomplete"):
        verify_chain(path)


def test_hashes_are_checked_and_file_hashes_match_sha256(tmp_path):
    with pytest.raises(InputValueError, match="consent_sha256"):
        append_use(tmp_path / "u.jsonl", profile_id="p", operator="op", consent_sha256="not-a-hash")
    f = tmp_path / "out.bin"
    f.write_bytes(b"clip bytes")
    assert sha256_file(f) == hashlib.sha256(b"clip bytes").hexdigest()
    assert verify_chain(tmp_path / "absent.jsonl").entries == 0


def _append_many(path, who, n):
    for _ in range(n):
        append_use(path, profile_id="p", operator=who, consent_sha256=CONSENT)


def test_concurrent_writers_keep_one_valid_chain(tmp_path):
    path = tmp_path / "usage.jsonl"
    ctx = multiprocessing.get_context("fork")
    procs = [ctx.Process(target=_append_many, args=(path, f"op{i}", 15)) for i in range(2)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(30)
    assert all(p.exitcode == 0 for p in procs)
    assert verify_chain(path).entries == 30
