import dataclasses
import datetime as dt
import json
import stat

import pytest
import torch
from safetensors.torch import save_file

from jointav.cameo.consent import (
    ConsentExpiredError,
    ConsentMissingError,
    ConsentNotGrantedError,
    ConsentRecord,
    ConsentRevokedError,
    ConsentTamperedError,
    ConsentWrongKeyError,
    check_consent,
    grant_consent,
    load_consent,
    profile_file_sha256,
    profile_tensors_sha256,
    revoke,
    save_consent,
)
from jointav.cameo.keys import fingerprint, generate_key, load_private_key, operator_key, save_key
from jointav.errors import InputValueError, JointAVError

NOW = dt.datetime(2026, 6, 1, 12, 0, tzinfo=dt.timezone.utc)


@pytest.fixture
def world():
    subject, operator, other = generate_key(), generate_key(), generate_key()
    tensors = {"face": torch.arange(24, dtype=torch.float32).reshape(2, 3, 4),
               "voice": torch.ones(5, dtype=torch.bfloat16)}
    profile_hash = profile_tensors_sha256(tensors)
    record = grant_consent(subject, subject_id="alice", profile_id="alice-v1", profile_sha256=profile_hash,
                           operators=[operator.public_key()], valid_from=NOW - dt.timedelta(days=1),
                           valid_until=NOW + dt.timedelta(days=30), now=NOW - dt.timedelta(days=1))
    return dict(subject=subject, operator=operator, other=other, tensors=tensors, hash=profile_hash, record=record)


def test_a_granted_operator_is_allowed_and_gets_the_record_hash(world):
    decision = check_consent(world["record"], world["hash"], world["operator"], NOW, profile_id="alice-v1")
    assert decision.operator == fingerprint(world["operator"])
    assert decision.subject_id == "alice" and decision.profile_id == "alice-v1"
    assert decision.record_sha256 == world["record"].record_sha256


def test_missing_record_is_refused_naming_the_profile_and_operator(world, tmp_path):
    with pytest.raises(ConsentMissingError, match="alice-v1") as e:
        check_consent(None, world["hash"], world["operator"], NOW, profile_id="alice-v1")
    assert fingerprint(world["operator"]) in str(e.value)
    with pytest.raises(ConsentMissingError, match="does not exist"):
        load_consent(tmp_path / "consent.json", profile_id="alice-v1")


@pytest.mark.parametrize("when, words", [(NOW + dt.timedelta(days=31), "expired at"),
                                         (NOW - dt.timedelta(days=2), "not valid before")])
def test_outside_the_validity_window_is_refused(world, when, words):
    with pytest.raises(ConsentExpiredError, match=words) as e:
        check_consent(world["record"], world["hash"], world["operator"], when)
    assert "alice-v1" in str(e.value)


def test_another_operator_is_refused_naming_who_was_granted(world):
    with pytest.raises(ConsentNotGrantedError) as e:
        check_consent(world["record"], world["hash"], world["other"], NOW)
    message = str(e.value)
    assert fingerprint(world["other"]) in message and fingerprint(world["operator"]) in message
    assert "alice-v1" in message


@pytest.mark.parametrize("field, value", [
    ("valid_until", dt.datetime(2036, 1, 1, tzinfo=dt.timezone.utc)),
    ("operators", ("ed25519:" + "0" * 32,)),
    ("subject_id", "mallory"),
    ("profile_id", "bob-v1"),
])
def test_a_field_changed_after_signing_is_tampering(world, field, value, tmp_path):
    rec = world["record"]
    forged = dataclasses.replace(rec, grant=dataclasses.replace(rec.grant, **{field: value}))
    path = save_consent(forged, tmp_path / "c.json")  # the change survives a trip through the file
    with pytest.raises(ConsentTamperedError, match="signature does not verify"):
        check_consent(load_consent(path), world["hash"], world["operator"], NOW)


def test_a_record_moved_to_another_profile_is_tampering(world):
    other_tensors = dict(world["tensors"], face=world["tensors"]["face"] + 1)
    with pytest.raises(ConsentTamperedError, match="another profile"):
        check_consent(world["record"], profile_tensors_sha256(other_tensors), world["operator"], NOW)


def test_a_record_signed_by_someone_else_than_the_pinned_subject_is_tampering(world):
    with pytest.raises(ConsentTamperedError, match="expected subject key"):
        check_consent(world["record"], world["hash"], world["operator"], NOW, subject=fingerprint(world["other"]))


def test_an_edited_file_is_tampering(world, tmp_path):
    path = save_consent(world["record"], tmp_path / "c.json")
    data = json.loads(path.read_text())
    data["grant"]["valid_until"] = "2099-01-01T00:00:00Z"
    path.write_text(json.dumps(data))
    with pytest.raises(ConsentTamperedError):
        check_consent(load_consent(path), world["hash"], world["operator"], NOW)
    path.write_text("{not json")
    with pytest.raises(ConsentTamperedError, match="not JSON"):
        load_consent(path)


def test_revoking_the_grant_refuses_everyone_and_survives_the_file(world, tmp_path):
    other_ok = grant_consent(world["subject"], subject_id="alice", profile_id="alice-v1", profile_sha256=world["hash"],
                             operators=[world["operator"].public_key(), world["other"].public_key()],
                             valid_until=NOW + dt.timedelta(days=3), now=NOW - dt.timedelta(hours=1))
    path = save_consent(revoke(other_ok, world["subject"], reason="no longer", now=NOW), tmp_path / "c.json")
    record = load_consent(path)
    for op in (world["operator"], world["other"]):
        with pytest.raises(ConsentRevokedError, match="the whole grant") as e:
            check_consent(record, world["hash"], op, NOW + dt.timedelta(minutes=1))
        assert "no longer" in str(e.value) and "alice" in str(e.value)


def test_revoking_one_operator_leaves_the_others(world):
    record = grant_consent(world["subject"], subject_id="alice", profile_id="alice-v1", profile_sha256=world["hash"],
                           operators=[world["operator"].public_key(), world["other"].public_key()],
                           valid_until=NOW + dt.timedelta(days=3), now=NOW - dt.timedelta(hours=1))
    record = revoke(record, world["subject"], operator=world["other"].public_key(), now=NOW)
    with pytest.raises(ConsentRevokedError, match=f"operator {fingerprint(world['other'])}: .* revoked this operator"):
        check_consent(record, world["hash"], world["other"], NOW)
    assert check_consent(record, world["hash"], world["operator"], NOW).record_sha256 == record.record_sha256


def test_only_the_subject_can_revoke_and_forged_revocations_are_tampering(world):
    with pytest.raises(ConsentWrongKeyError, match="not the subject's key"):
        revoke(world["record"], world["other"])
    # a revocation signed for another grant of the same subject cannot be pasted into this one
    second = grant_consent(world["subject"], subject_id="alice", profile_id="alice-v1", profile_sha256=world["hash"],
                           operators=["someone"], valid_until=NOW + dt.timedelta(days=3), now=NOW)
    moved = dataclasses.replace(world["record"], revocations=revoke(second, world["subject"], now=NOW).revocations)
    with pytest.raises(ConsentTamperedError, match="revocation #1"):
        check_consent(moved, world["hash"], world["operator"], NOW)


def test_every_refusal_is_a_jointav_error_of_its_own_type():
    kinds = {ConsentMissingError, ConsentExpiredError, ConsentRevokedError, ConsentTamperedError,
             ConsentNotGrantedError}
    assert all(issubclass(k, JointAVError) for k in kinds)
    assert all(not issubclass(a, b) for a in kinds for b in kinds if a is not b)


def test_profile_hash_follows_the_tensors_not_the_file(world, tmp_path):
    tensors = world["tensors"]
    reordered = {k: tensors[k] for k in reversed(list(tensors))}
    assert profile_tensors_sha256(reordered) == world["hash"]
    save_file(tensors, str(tmp_path / "p.safetensors"), metadata={"note": "anything"})
    assert profile_file_sha256(tmp_path / "p.safetensors") == world["hash"]
    changed = dict(tensors, voice=tensors["voice"].clone())
    changed["voice"][2] = 0.5
    assert profile_tensors_sha256(changed) != world["hash"]


def test_keys_are_private_files_that_are_never_silently_replaced(tmp_path, monkeypatch):
    key = generate_key()
    private, public = save_key(key, tmp_path / "alice.key")
    assert stat.S_IMODE(private.stat().st_mode) == 0o600 and public.name == "alice.pub.pem"
    assert fingerprint(load_private_key(private)) == fingerprint(key)
    with pytest.raises(InputValueError, match="already exists"):
        save_key(generate_key(), private)
    monkeypatch.setenv("JOINTAV_OPERATOR_KEY", str(tmp_path / "op" / "operator.key"))
    assert fingerprint(operator_key()) == fingerprint(operator_key())  # made once, then reused


def test_record_round_trips_through_json_unchanged(world, tmp_path):
    record = revoke(world["record"], world["subject"], operator="someone-else", now=NOW)
    loaded = load_consent(save_consent(record, tmp_path / "c.json"))
    assert isinstance(loaded, ConsentRecord) and loaded.record_sha256 == record.record_sha256
    assert check_consent(loaded, world["hash"], world["operator"], NOW).record_sha256 == record.record_sha256


def test_a_record_made_before_record_versions_still_reads_and_a_revocation_moves_it_forward(world):
    from jointav.cameo.consent import GRANT_DOMAIN, canonical_json
    from jointav.cameo.keys import sign_b64

    grant = dataclasses.replace(world["record"].grant, version=1, record_version=0)
    assert "record_version" not in grant.to_dict()  # what the first format signed
    old = ConsentRecord(grant=grant, signature=sign_b64(world["subject"], GRANT_DOMAIN + canonical_json(grant.to_dict())))
    loaded = ConsentRecord.from_dict(json.loads(json.dumps(old.to_dict())))
    assert loaded.version == 0 and check_consent(loaded, world["hash"], world["operator"], NOW)
    revoked = ConsentRecord.from_dict(revoke(loaded, world["subject"], now=NOW).to_dict())
    assert revoked.version == 1
    with pytest.raises(ConsentRevokedError):
        check_consent(revoked, world["hash"], world["operator"], NOW)


def test_record_versions_are_signed_and_must_rise(world):
    record = revoke(revoke(world["record"], world["subject"], operator="a", now=NOW), world["subject"], operator="b",
                    now=NOW)
    assert [world["record"].version, *(r.record_version for r in record.revocations)] == [1, 2, 3]
    assert record.version == 3
    bumped = dataclasses.replace(record, grant=dataclasses.replace(record.grant, record_version=7))
    with pytest.raises(ConsentTamperedError, match="signature does not verify"):  # a version cannot be edited
        check_consent(bumped, world["hash"], world["operator"], NOW)
    swapped = dataclasses.replace(record, revocations=record.revocations[::-1])
    with pytest.raises(ConsentTamperedError, match="reordered"):
        check_consent(swapped, world["hash"], world["operator"], NOW)
