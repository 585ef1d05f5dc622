"""Consent that holds against undoing it without a signature: a profile keeps its person's key, records only move
forward (an earlier copy of consent.json is refused, whichever change it undoes), a person's revocation can be
imported from the file they send, and the usage log cannot shrink unseen. Small profiles made in memory, so these
run in a second; the command-line and clip-level proofs are in test_cameo_flow.py."""

from __future__ import annotations

import datetime as dt
import json
import shutil

import pytest
import torch

from jointav.cameo.consent import (ConsentMissingError, ConsentNotGrantedError, ConsentRevokedError,
                                   ConsentRolledBackError, ConsentWrongKeyError, grant_consent,
                                   load_consent, revoke, save_consent)
from jointav.cameo.consent_gate import (CONSENT_NAME, bound_key, check_profile_consent, grant_for_profile,
                                        import_record, revoke_profile)
from jointav.cameo.consent_state import default_state_path, profile_entry
from jointav.cameo.keys import fingerprint, generate_key, public_key_b64
from jointav.cameo.profile import MANIFEST_NAME, new_profile, read_profile, save_profile
from jointav.cameo.usage_log import (UsageLogTruncatedError, append_use, check_log, check_snapshot, verify_chain)

NOW = dt.datetime(2026, 6, 1, 12, 0, tzinfo=dt.timezone.utc)
HOUR = dt.timedelta(hours=1)
CONSENT = "c" * 64


@pytest.fixture(autouse=True)
def machine(tmp_path, monkeypatch):
    """A machine of its own: consent state and usage log in this test's folder."""
    monkeypatch.setenv("JOINTAV_CAMEO_STATE", str(tmp_path / "state" / "consent-state.json"))
    monkeypatch.setenv("JOINTAV_CAMEO_LOG", str(tmp_path / "state" / "usage.jsonl"))
    return tmp_path / "state"


def make_profile(folder, seed=0, subject=None):
    g = torch.Generator().manual_seed(seed)
    tensors = {"frames": torch.randint(0, 255, (1, 8, 8, 3), dtype=torch.uint8, generator=g),
               "video_latents": torch.randn(4, 1, 2, 2, generator=g), "voice": torch.randn(32, generator=g),
               "audio_latents": torch.randn(3, 5, generator=g)}
    profile = new_profile("Alice", tensors, encoder={}, source={}, frames=[{"box": [0, 0, 8, 8]}], voice={},
                          subject=subject)
    return save_profile(profile, folder)


@pytest.fixture
def people():
    return {"alice": generate_key(), "mallory": generate_key(), "op": generate_key(), "op2": generate_key()}


@pytest.fixture
def profile(tmp_path):
    return make_profile(tmp_path / "cameos")


def grant(profile, key, operators, days=30, now=NOW):
    record, _ = grant_for_profile(profile, key, subject_id="alice", operators=[o.public_key() for o in operators],
                                  valid_until=now + dt.timedelta(days=days), valid_from=now - HOUR, now=now - HOUR)
    return record


def snapshot(profile):
    return (profile.path / CONSENT_NAME).read_bytes()


def restore(profile, data):
    (profile.path / CONSENT_NAME).write_bytes(data)


# Each history: the steps the person takes after a first grant to operators op and op2 (30 days). After every
# step, every earlier copy of consent.json must be refused as a rollback, for every operator, with the reason.
# The operators the newest record still allows come last.
HISTORIES = {
    "revocation of the grant": ([("revoke", None)], []),
    "revocation of one operator": ([("revoke", "op")], ["op2"]),
    "narrowing of operators": ([("grant", {"operators": ["op2"]})], ["op2"]),
    "expiry change": ([("grant", {"operators": ["op", "op2"], "days": 1})], ["op", "op2"]),
    "a longer history": ([("revoke", "op2"), ("grant", {"operators": ["op"], "days": 2}), ("revoke", None)], []),
}


@pytest.mark.parametrize("history", list(HISTORIES))
def test_every_earlier_record_is_refused_as_rolled_back_naming_what_it_undoes(profile, people, history):
    grant(profile, people["alice"], [people["op"], people["op2"]])
    copies = [snapshot(profile)]
    steps, allowed = HISTORIES[history]
    for action, arg in steps:
        if action == "revoke":
            revoke_profile(profile, people["alice"], operator=None if arg is None else people[arg].public_key(),
                           reason="changed my mind", now=NOW)
        else:
            grant(profile, people["alice"], [people[o] for o in arg["operators"]], days=arg.get("days", 30))
        copies.append(snapshot(profile))
    newest = load_consent(profile.path / CONSENT_NAME)
    assert newest.version == len(copies)  # one version per change: 1, 2, ...
    entry = profile_entry(profile.id)
    assert entry["newest"]["record_version"] == newest.version
    assert not default_state_path().resolve().is_relative_to(profile.path.resolve())  # kept outside the folder

    for old in copies[:-1]:
        restore(profile, old)
        version = load_consent(profile.path / CONSENT_NAME).version
        for op in ("op", "op2"):
            with pytest.raises(ConsentRolledBackError) as e:
                check_profile_consent(profile, people[op].public_key(), NOW)
            message = str(e.value)
            assert message.startswith(f"cameo 'Alice' ({profile.id[:12]}) refused (consent record rolled back)")
            assert str(profile.path / CONSENT_NAME) in message  # the record
            assert f"record version {version}" in message and f"already seen version {newest.version}" in message
            if any(r.record_version > version for r in newest.revocations):
                assert "so a revocation was rolled back" in message, message
            else:
                assert "the newer record grants" in message, message
    restore(profile, copies[-1])  # the newest record still decides as it says
    for op in ("op", "op2"):
        if op in allowed:
            assert check_profile_consent(profile, people[op].public_key(), NOW).record_version == newest.version
        else:
            with pytest.raises((ConsentRevokedError, ConsentNotGrantedError)):
                check_profile_consent(profile, people[op].public_key(), NOW)


def test_the_newest_record_still_allows_what_it_grants(profile, people):
    grant(profile, people["alice"], [people["op"], people["op2"]])
    revoke_profile(profile, people["alice"], operator=people["op2"].public_key(), now=NOW)
    decision = check_profile_consent(profile, people["op"].public_key(), NOW)
    assert decision.record_version == 2 and decision.subject_fingerprint == fingerprint(people["alice"])
    with pytest.raises(ConsentRevokedError):
        check_profile_consent(profile, people["op2"].public_key(), NOW)


def test_a_different_record_claiming_the_same_version_is_refused(profile, people):
    grant(profile, people["alice"], [people["op"]])
    seen = load_consent(profile.path / CONSENT_NAME)
    check_profile_consent(profile, people["op"].public_key(), NOW)
    # the person's own key signs another version-1 record (say, from an old copy of their grant tool): not both
    other = grant_consent(people["alice"], subject_id="alice", profile_id=profile.id, profile_sha256=profile.id,
                          operators=[people["op"].public_key()], valid_until=NOW + dt.timedelta(days=300), now=NOW)
    assert other.version == seen.version
    save_consent(other, profile.path / CONSENT_NAME)
    with pytest.raises(ConsentRolledBackError, match="two different records claim one version"):
        check_profile_consent(profile, people["op"].public_key(), NOW)


def test_the_first_grant_binds_the_profile_to_its_persons_key(profile, people):
    assert bound_key(profile) is None
    grant(profile, people["alice"], [people["op"]])
    alice = public_key_b64(people["alice"].public_key())
    assert bound_key(profile) == alice and profile_entry(profile.id)["subject_public_key"] == alice
    assert read_profile(profile.path).manifest["subject"]["fingerprint"] == fingerprint(people["alice"])


@pytest.mark.parametrize("lost", ["nothing", "the manifest's subject slot", "this machine's consent state"])
def test_a_grant_by_another_key_is_refused_wherever_the_binding_is_kept(profile, people, lost):
    grant(profile, people["alice"], [people["op"]])
    revoke_profile(profile, people["alice"], now=NOW)
    before = snapshot(profile)
    if lost == "the manifest's subject slot":
        manifest = json.loads((profile.path / MANIFEST_NAME).read_text())
        manifest["subject"] = None
        (profile.path / MANIFEST_NAME).write_text(json.dumps(manifest))
    elif lost == "this machine's consent state":
        default_state_path().unlink()
    with pytest.raises(ConsentWrongKeyError) as e:
        grant(profile, people["mallory"], [people["op"]])
    message = str(e.value)
    assert profile.id[:12] in message and fingerprint(people["mallory"]) in message
    assert fingerprint(people["alice"]) in message and "new profile" in message
    assert snapshot(profile) == before  # nothing written
    with pytest.raises(ConsentWrongKeyError):
        revoke_profile(profile, people["mallory"], now=NOW)


def test_a_record_by_another_key_written_into_the_folder_is_refused(profile, people):
    grant(profile, people["alice"], [people["op"]])
    forged = grant_consent(people["mallory"], subject_id="alice", profile_id=profile.id, profile_sha256=profile.id,
                           operators=[people["op"].public_key()], valid_until=NOW + dt.timedelta(days=9), now=NOW,
                           record_version=99)
    save_consent(forged, profile.path / CONSENT_NAME)
    with pytest.raises(ConsentWrongKeyError, match=r"refused \(signed by a key other than the profile's person's\)"):
        check_profile_consent(profile, people["op"].public_key(), NOW)
    manifest = json.loads((profile.path / MANIFEST_NAME).read_text())  # and the manifest made to name the new key
    mallory = people["mallory"].public_key()
    manifest["subject"] = {"public_key": public_key_b64(mallory), "fingerprint": fingerprint(mallory)}
    (profile.path / MANIFEST_NAME).write_text(json.dumps(manifest))
    with pytest.raises(ConsentWrongKeyError, match=f"its manifest binds it to key {fingerprint(mallory)}, but this "
                                                   f"machine bound it to its person's key {fingerprint(people['alice'])}"):
        check_profile_consent(profile, people["op"].public_key(), NOW)
    shutil.copy(profile.path / CONSENT_NAME, profile.path / "sent.json")
    with pytest.raises(ConsentWrongKeyError, match="import refused|bound to its person's key"):
        import_record(profile, forged, "sent.json")


def test_a_profile_made_by_its_person_is_bound_before_any_grant(tmp_path, people):
    alice = people["alice"].public_key()
    profile = make_profile(tmp_path / "own", seed=1,
                           subject={"public_key": public_key_b64(alice), "fingerprint": fingerprint(alice)})
    with pytest.raises(ConsentWrongKeyError, match=fingerprint(people["alice"])):
        grant(profile, people["mallory"], [people["op"]])
    assert grant(profile, people["alice"], [people["op"]]).version == 1


def test_a_revocation_sent_by_the_person_is_imported_and_counts(profile, people, tmp_path):
    grant(profile, people["alice"], [people["op"]])
    theirs = tmp_path / "alice-copy.json"
    shutil.copy(profile.path / CONSENT_NAME, theirs)  # the person keeps their record
    save_consent(revoke(load_consent(theirs), people["alice"], reason="please stop", now=NOW), theirs)
    assert check_profile_consent(profile, people["op"].public_key(), NOW)  # the folder does not know yet
    path, changed = import_record(profile, load_consent(theirs), str(theirs))
    assert changed and path == profile.path / CONSENT_NAME
    with pytest.raises(ConsentRevokedError, match="please stop"):
        check_profile_consent(profile, people["op"].public_key(), NOW)
    assert import_record(profile, load_consent(theirs), str(theirs)) == (path, False)  # twice is once
    # and an older record sent later is not imported
    grant(profile, people["alice"], [people["op"]])
    with pytest.raises(ConsentRolledBackError, match="only a newer record is imported"):
        import_record(profile, load_consent(theirs), str(theirs))


def test_a_revocation_counts_even_on_a_rolled_back_folder(profile, people):
    grant(profile, people["alice"], [people["op"]])
    old = snapshot(profile)
    revoke_profile(profile, people["alice"], operator="someone", now=NOW)
    restore(profile, old)
    _, record = revoke_profile(profile, people["alice"], reason="again", now=NOW)  # on the rolled-back copy
    assert record.version == 3
    with pytest.raises(ConsentRevokedError, match="again"):
        check_profile_consent(profile, people["op"].public_key(), NOW)


def test_no_record_stays_no_record(profile, people):
    with pytest.raises(ConsentMissingError):
        check_profile_consent(profile, people["op"].public_key(), NOW)


def _five_uses(log):
    for i in range(5):
        append_use(log, profile_id="p", operator="op", consent_sha256=CONSENT)
    return log.read_bytes().split(b"\n")[:-1]


@pytest.mark.parametrize("cut", [1, 2, 3, 4, 5])
def test_a_log_cut_by_any_number_of_lines_is_refused_at_the_next_use(profile, people, machine, cut):
    grant(profile, people["alice"], [people["op"]])
    log = machine / "usage.jsonl"
    lines = _five_uses(log)
    assert check_log(log).entries == 5
    log.write_bytes(b"".join(line + b"\n" for line in lines[:5 - cut]))
    assert verify_chain(log).entries == 5 - cut  # the chain alone sees nothing wrong
    with pytest.raises(UsageLogTruncatedError) as e:
        check_profile_consent(profile, people["op"].public_key(), NOW)
    message = str(e.value)
    assert message.startswith(f"cameo 'Alice' ({profile.id[:12]}) refused (usage log cut back)")
    assert f"{5 - cut} entries, but this machine recorded it reaching" in message and f" 5; {cut} entr" in message
    with pytest.raises(UsageLogTruncatedError, match="not appending"):  # nor is it appended to
        append_use(log, profile_id="p", operator="op", consent_sha256=CONSENT)


def test_a_log_cut_and_grown_again_is_refused(machine):
    log = machine / "usage.jsonl"
    _five_uses(log)
    other = machine / "other.jsonl"
    for _ in range(6):  # longer than before, but not the log that was checkpointed
        append_use(other, profile_id="q", operator="op", consent_sha256=CONSENT)
    shutil.copy(other, log)
    with pytest.raises(UsageLogTruncatedError, match="line 5 hashes to .* cut back and rewritten"):
        check_log(log)


def test_a_clip_snapshot_proves_the_log_length_at_its_time(machine):
    log = machine / "usage.jsonl"
    lines = _five_uses(log)
    snap = {"entries": 3, "head_sha256": verify_chain(log).head_at(3)}  # a clip whose use is entry 4
    assert check_snapshot(snap, log)["entries"] == 5
    for keep in (4, 3, 2, 0):
        log.write_bytes(b"".join(line + b"\n" for line in lines[:keep]))
        if keep == 4:
            assert check_snapshot(snap, log)["checked"]
            continue
        with pytest.raises(UsageLogTruncatedError) as e:
            check_snapshot(snap, log)
        assert ("own entry (4) was cut off" if keep == 3 else f"{keep} entries, but the clip's manifest records that "
                f"before its use it had 3") in str(e.value)
    log.unlink()
    with pytest.raises(UsageLogTruncatedError, match="is gone"):
        check_snapshot(snap, log)


def test_an_unreadable_consent_state_refuses_rather_than_starting_over(profile, people):
    from jointav.cameo.consent_state import ConsentStateError

    grant(profile, people["alice"], [people["op"]])
    default_state_path().write_text("{damaged")
    with pytest.raises(ConsentStateError, match=f"consent state {default_state_path()}: cannot be read"):
        check_profile_consent(profile, people["op"].public_key(), NOW)
    assert default_state_path().read_text() == "{damaged"  # kept for the operator to look at


def test_a_cut_log_error_can_be_re_raised_with_one_message_keeping_its_type(machine):
    """nodes.failures.node_errors re-raises `type(e)(message)` with the node's name in front (nodes/ needs ComfyUI,
    so the same call is made here): the error must keep its type in ComfyUI's report."""
    log = machine / "usage.jsonl"
    lines = _five_uses(log)
    log.write_bytes(lines[0] + b"\n")
    with pytest.raises(UsageLogTruncatedError) as e:
        check_log(log)
    wrapped = type(e.value)(f"JointAV Apply Cameo: {e.value}")
    assert type(wrapped) is UsageLogTruncatedError and "4 entries were cut off" in str(wrapped)


def test_clips_of_a_profile_show_a_swapped_key_and_a_record_put_back():
    from jointav.cameo.clip_consent import history_warnings

    def clip(made, version, key="ed25519:aa"):
        return {"profile_id": "p1", "checked_at": made, "record_version": version, "subject_fingerprint": key}

    forward = [("a.mp4", clip("2026-06-01T10:00:00Z", 1)), ("b.mp4", clip("2026-06-01T11:00:00Z", 2)),
               ("c.mp4", clip("2026-06-01T11:00:00Z", 1))]  # same second as b: not ordered, not a rollback
    assert history_warnings(forward) == []
    back = forward + [("d.mp4", clip("2026-06-02T09:00:00Z", 1))]
    (warning,) = history_warnings(back)
    assert warning == ("profile p1: d.mp4 was made at 2026-06-02T09:00:00Z under record version 1, after b.mp4 was "
                       "made at 2026-06-01T11:00:00Z under version 2: an earlier record was put back (a rollback)")
    swapped = forward + [("e.mp4", clip("2026-06-03T09:00:00Z", 3, key="ed25519:bb"))]
    assert history_warnings(swapped) == ["profile p1: clips made under 2 different person keys (ed25519:aa, "
                                         "ed25519:bb): the profile's key was swapped"]
