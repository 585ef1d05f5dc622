"""Cameo end to end on the embedded default model: a person's recording becomes a profile, the person grants this
machine's operator key, `jointav generate --cameo` makes a clip whose manifest records the consent, and each use
is logged. Every refusal of the consent gate, and the binding of a record to exactly one profile."""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import shutil

import cv2
import numpy as np
import pytest
import soundfile as sf
from safetensors.torch import load_file, save_file

from jointav.audio.mp4 import write_mp4
from jointav.cameo.consent import (ConsentExpiredError, ConsentMissingError, ConsentNotGrantedError, ConsentRolledBackError,
                                   ConsentRevokedError, ConsentTamperedError, load_consent)
from jointav.cameo.consent_gate import consent_check_for, grant_for_profile
from jointav.cameo.keys import (default_operator_key_path, fingerprint, generate_key, operator_key, public_path_for,
                               save_key)
from jointav.cameo.profile import (MANIFEST_NAME, TENSORS_NAME, digest_tensors, file_digest, read_profile,
                                   set_consent_record)
from jointav.cameo.usage_log import default_log_path, sha256_file, verify_chain
from jointav.cli import main
from jointav.errors import InputValueError
from jointav.pipeline import api
from jointav.pipeline.cameo import apply_cameo, cameo_provenance
from jointav.pipeline.generate import provenance_info
from jointav.provenance import WatermarkKey, verify_file
from jointav.toyworld import SceneSpec, render_clip

NAME = "Blue Character"
FAST = ["--steps", "2", "--duration", "1s", "--size", "64x64"]


@pytest.fixture(scope="module")
def toy_clip():
    return render_clip(SceneSpec(kind="speak", colour="blue", shape="character", count=3, background="black",
                                 voice="high"), seed=3)


@pytest.fixture(scope="module")
def recording(tmp_path_factory, toy_clip):
    """The person's recording: a toy-world character speaking, as an MP4 with sound."""
    return write_mp4(tmp_path_factory.mktemp("rec") / "character.mp4", toy_clip.frames, toy_clip.fps,
                     toy_clip.audio, toy_clip.sample_rate)


@pytest.fixture(scope="module")
def subject_key(tmp_path_factory):
    path = tmp_path_factory.mktemp("subject") / "subject.key"
    assert main(["cameo", "keygen", "--out", str(path)]) == 0
    return path


@pytest.fixture(scope="module")
def operator():
    """This machine's operator key (the test session's, from $JOINTAV_OPERATOR_KEY)."""
    return operator_key()


@pytest.fixture(scope="module")
def granted(tmp_path_factory, recording, subject_key, operator):
    """A profile made by `jointav cameo create` and granted to the operator by `jointav cameo grant --profile`."""
    out = tmp_path_factory.mktemp("cameos")
    assert main(["cameo", "create", "--recording", str(recording), "--name", NAME, "--out", str(out)]) == 0
    (folder,) = out.iterdir()
    operator_pem = tmp_path_factory.mktemp("operator") / "operator.pub.pem"
    shutil.copy(public_path_for(default_operator_key_path()), operator_pem)
    # The profile id follows the recording, so another test module in the same run may have bound the same id
    # to another person's key on this "machine": the first grant is made on a machine of this module's own.
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("JOINTAV_CAMEO_STATE", str(tmp_path_factory.mktemp("granting-machine") / "consent-state.json"))
        assert main(["cameo", "grant", "--subject-key", str(subject_key), "--subject-id", "blue", "--profile",
                     str(folder), "--operator-key", str(operator_pem), "--days", "30"]) == 0
    return read_profile(folder)


@pytest.fixture(autouse=True)
def machine_state(tmp_path, monkeypatch):
    """Each test on a machine of its own as far as consent history and the usage log go: the copies of one
    profile that tests revoke or re-grant would otherwise be (rightly) refused as rollbacks in the next test."""
    path = tmp_path / "machine" / "consent-state.json"
    monkeypatch.setenv("JOINTAV_CAMEO_STATE", str(path))
    monkeypatch.setenv("JOINTAV_CAMEO_LOG", str(tmp_path / "machine" / "usage.jsonl"))
    return path


def copy_profile(profile, tmp_path, name="copy"):
    return read_profile(shutil.copytree(profile.path, tmp_path / name))


def log_entries() -> list[dict]:
    path = default_log_path()
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def test_create_grant_generate_and_verify_through_the_command_line(granted, operator, tmp_path, capsys):
    record = load_consent(granted.path / granted.consent["file"])
    assert granted.consent["file"] == "consent.json" and granted.consent["sha256"] == file_digest(
        granted.path / "consent.json")
    # the reconciled identity: the record names the profile by its id, and the id is the digest of its tensors
    assert record.grant.profile_id == record.grant.profile_sha256 == granted.id == digest_tensors(granted.tensors)

    before = log_entries()
    outputs = [tmp_path / "a.mp4", tmp_path / "b.mp4"]
    for seed, out in enumerate(outputs):
        assert main(["generate", "--prompt", "a blue character speaks three syllables in a high voice", "--seed",
                     str(seed), *FAST, "--cameo", str(granted.path), "--out", str(out)]) == 0
    capsys.readouterr()

    assert main(["verify", str(outputs[0])]) == 0
    text = capsys.readouterr().out
    assert f"cameo:       profile {granted.id}, consent record sha256 {record.record_sha256}" in text, text
    for out in outputs:
        report = verify_file(out)
        assert report.valid, report.text()
        cameo = report.generation["cameo"]
        assert (cameo["profile_id"], cameo["consent_sha256"], cameo["record_version"], cameo["subject_fingerprint"]) == (
            granted.id, record.record_sha256, 1, record.grant.subject_fingerprint)
        assert report.generation["extra"]["cameo_operator"] == fingerprint(operator)
        assert verify_file(out.with_suffix(".wav")).generation["cameo"]["profile_id"] == granted.id

    # one entry per use, after the file was written: it names the finished MP4 by its hash
    new = log_entries()[len(before):]
    assert [(e["profile_id"], e["operator"], e["consent_sha256"], e["output_sha256"]) for e in new] == [
        (granted.id, fingerprint(operator), record.record_sha256, sha256_file(out)) for out in outputs]
    assert verify_chain().entries == len(before) + 2


def test_a_clip_without_a_cameo_records_none_and_logs_nothing(tmp_path):
    before = log_entries()
    out = tmp_path / "plain.mp4"
    assert main(["generate", "--prompt", "a red ball bounces twice on the left", *FAST, "--out", str(out)]) == 0
    assert "cameo" not in verify_file(out).generation
    assert log_entries() == before


def test_an_image_and_a_wav_make_a_profile_through_the_command_line(tmp_path, toy_clip, capsys):
    image = tmp_path / "face.png"
    cv2.imwrite(str(image), cv2.cvtColor(toy_clip.frames[6], cv2.COLOR_RGB2BGR))
    sf.write(tmp_path / "voice.wav", toy_clip.audio, toy_clip.sample_rate)
    assert main(["cameo", "create", "--image", str(image), "--voice", str(tmp_path / "voice.wav"), "--name", "Pic",
                 "--out", str(tmp_path / "cameos")]) == 0
    (folder,) = (tmp_path / "cameos").iterdir()
    profile = read_profile(folder)
    assert profile.frames.shape[0] == 1 and np.array_equal(profile.frames[0].numpy(), toy_clip.frames[6])
    assert [s["kind"] for s in profile.manifest["source"]["inputs"]] == ["image", "voice"]
    assert profile.id in capsys.readouterr().out

    assert main(["cameo", "create", "--image", str(image), "--name", "Pic", "--out", str(tmp_path / "x")]) == 2
    assert "--image needs --voice" in capsys.readouterr().err


def test_a_record_binds_to_exactly_the_profile_it_was_granted_for(granted, operator, tmp_path, toy_clip):
    gate = consent_check_for()
    decision = gate(granted)
    assert decision.profile_id == granted.id and decision.operator == fingerprint(operator)

    # profile B (another picture of the same character) with A's record copied in
    image = tmp_path / "b.png"
    cv2.imwrite(str(image), cv2.cvtColor(toy_clip.frames[12], cv2.COLOR_RGB2BGR))
    sf.write(tmp_path / "b.wav", toy_clip.audio, toy_clip.sample_rate)
    assert main(["cameo", "create", "--image", str(image), "--voice", str(tmp_path / "b.wav"), "--name", NAME,
                 "--out", str(tmp_path / "b")]) == 0
    (b_folder,) = (tmp_path / "b").iterdir()
    b = set_consent_record(read_profile(b_folder), shutil.copy(granted.path / "consent.json", b_folder))
    assert b.id != granted.id
    with pytest.raises(ConsentTamperedError, match=f"is for profile '{granted.id}', not '{b.id}'"):
        gate(b)

    # A with one tensor changed in memory: the manifest still carries A's id, the tensors do not hash to it
    changed = dataclasses.replace(granted, tensors={**granted.tensors, "voice": granted.voice + 1e-3})
    with pytest.raises(ConsentTamperedError, match="tensors were changed"):
        gate(changed)

    # A with one tensor changed on disk and its manifest re-hashed to match (so the profile itself loads)
    copy = copy_profile(granted, tmp_path)
    tensors = load_file(str(copy.path / TENSORS_NAME))
    tensors["video_latents"][0, 0, 0, 0] += 1.0
    save_file(tensors, str(copy.path / TENSORS_NAME))
    manifest = json.loads((copy.path / MANIFEST_NAME).read_text())
    manifest["profile_id"] = digest_tensors(tensors)
    (copy.path / MANIFEST_NAME).write_text(json.dumps(manifest))
    with pytest.raises(ConsentTamperedError, match=r"refused \(consent record tampered with or for another"):
        gate(read_profile(copy.path))

    # and no one can sign consent for a profile whose tensors do not match its id
    with pytest.raises(InputValueError, match="modified or damaged"):
        grant_for_profile(changed, generate_key(), subject_id="x", operators=[operator.public_key()],
                          valid_until=dt.datetime.now(dt.timezone.utc) + dt.timedelta(days=1))


def test_missing_consent_is_refused_naming_the_profile_and_where_it_looked(granted, operator, tmp_path):
    copy = copy_profile(granted, tmp_path)
    manifest = json.loads((copy.path / MANIFEST_NAME).read_text())
    manifest["consent"] = {"file": None, "sha256": None}
    (copy.path / MANIFEST_NAME).write_text(json.dumps(manifest))
    with pytest.raises(ConsentMissingError) as e:
        consent_check_for()(copy)
    message = str(e.value)
    assert message.startswith(f"cameo '{NAME}' ({granted.id[:12]}) refused (no consent record) for operator "
                              f"{fingerprint(operator)}")  # the fingerprint the person has to grant
    assert str(copy.path / MANIFEST_NAME) in message and "jointav cameo grant --profile" in message

    manifest["consent"] = {"file": "consent-2027.json", "sha256": None}
    (copy.path / MANIFEST_NAME).write_text(json.dumps(manifest))
    with pytest.raises(ConsentMissingError, match=f"{copy.path / 'consent-2027.json'} does not exist"):
        consent_check_for()(copy)
    unsaved = dataclasses.replace(granted, path=None)
    with pytest.raises(ConsentMissingError, match="not saved in a folder"):
        consent_check_for()(unsaved)


def test_expired_consent_is_refused(granted):
    later = dt.datetime.now(dt.timezone.utc) + dt.timedelta(days=31)
    with pytest.raises(ConsentExpiredError, match=r"refused \(consent expired or not yet valid\) for .*expired at"):
        consent_check_for(now=later)(granted)


def test_revoked_consent_is_refused_and_generation_stops(granted, subject_key, tmp_path, capsys):
    copy = copy_profile(granted, tmp_path)
    assert main(["cameo", "revoke", str(copy.path), "--subject-key", str(subject_key), "--reason", "no more"]) == 0
    with pytest.raises(ConsentRevokedError, match=r"refused \(consent revoked\) for .*revoked the whole grant") as e:
        consent_check_for()(copy)
    assert str(e.value).endswith("(no more)")  # the person's reason
    assert read_profile(copy.path).consent["sha256"] == file_digest(copy.path / "consent.json")  # slot kept current

    before = log_entries()
    capsys.readouterr()
    out = tmp_path / "refused.mp4"
    assert main(["generate", "--prompt", "a blue character speaks", *FAST, "--cameo", str(copy.path),
                 "--out", str(out)]) == 2
    assert "refused (consent revoked)" in capsys.readouterr().err
    assert not out.exists() and log_entries() == before


def test_a_record_edited_after_signing_is_refused_as_tampered(granted, tmp_path):
    copy = copy_profile(granted, tmp_path)
    data = json.loads((copy.path / "consent.json").read_text())
    data["grant"]["valid_until"] = "2099-01-01T00:00:00Z"
    (copy.path / "consent.json").write_text(json.dumps(data))
    with pytest.raises(ConsentTamperedError, match="signature does not verify"):
        consent_check_for()(copy)


def test_another_operator_is_refused_naming_both_keys(granted, operator, tmp_path):
    other_path = tmp_path / "other.key"
    other = generate_key()
    save_key(other, other_path)
    with pytest.raises(ConsentNotGrantedError) as e:
        consent_check_for(other_path)(granted)
    message = str(e.value)
    assert "refused (consent not granted to this operator)" in message
    assert fingerprint(other) in message and fingerprint(operator) in message


def test_one_cameo_per_clip_and_its_consent_survives_sampling(granted):
    model, decoders = api.load_joint_model(device="cpu"), api.load_decoders(device="cpu")
    latent = api.empty_latent(model, "1s", 64, 64)
    applied = apply_cameo(model, decoders, latent, granted, consent_check=consent_check_for())
    assert applied.provenance["cameo_profile_id"] == granted.id
    with pytest.raises(InputValueError, match="one cameo per clip"):
        apply_cameo(model, decoders, applied, granted, consent_check=consent_check_for())

    sampled = api.sample(model, api.encode_prompt(model, "a blue character speaks"), applied, steps=1)
    info = provenance_info({**sampled.provenance, **cameo_provenance(sampled)})
    assert info.cameo_profile_id == granted.id
    assert info.consent_sha256 == load_consent(granted.path / "consent.json").record_sha256


def test_reference_guidance_follows_the_model_unless_the_user_chooses(granted):
    from jointav.cameo.conditioning import CameoReference
    from jointav.pipeline.specs import FAMILIES

    model, decoders = api.load_joint_model(device="cpu"), api.load_decoders(device="cpu")
    latent = api.empty_latent(model, "1s", 64, 64)

    def guided(on_model, **kwargs) -> bool:
        applied = apply_cameo(on_model, decoders, latent, granted, mode="reference_tokens", **kwargs)
        return next(c for c in applied.conditionings if isinstance(c, CameoReference)).guided

    assert model.spec.reference_guidance is True  # the default model was trained with reference dropout
    assert guided(model) is True and guided(model, reference_guidance=False) is False
    not_trained_for_it = dataclasses.replace(model, spec=dataclasses.replace(model.spec, reference_guidance=False))
    assert guided(not_trained_for_it) is False and guided(not_trained_for_it, reference_guidance=True) is True
    for family, spec in FAMILIES.items():  # Ovi's weights never saw reference tokens: first frame, unguided
        if family.startswith("ovi"):
            assert spec.reference_guidance is False and spec.cameo_mode == "first_frame", family


def test_a_reference_guidance_choice_other_than_auto_on_off_is_refused_by_name():
    from jointav.pipeline.cameo import reference_guidance_choice

    assert [reference_guidance_choice(c) for c in ("auto", "on", "off")] == [None, True, False]
    with pytest.raises(InputValueError, match=r"cameo_reference_guidance='maybe': expected one of auto, on, off"):
        reference_guidance_choice("maybe", "cameo_reference_guidance")


# ---- consent that holds (issue 20): rollback, key swap, log truncation, revoked-since, audit ----

OTHER_OPERATOR = "ed25519:" + "1" * 32


@pytest.fixture(scope="module")
def engine():
    return api.load_joint_model(device="cpu"), api.load_decoders(device="cpu")


def cli(args, capsys) -> tuple[int, str, str]:
    capsys.readouterr()
    rc = main([str(a) for a in args])
    out = capsys.readouterr()
    return rc, out.out, out.err


def generate(profile_path, out, capsys, seed=0):
    return cli(["generate", "--prompt", "a blue character speaks", "--seed", seed, *FAST, "--cameo", profile_path,
                "--out", out], capsys)


def grant_cli(folder, subject_key, *extra):
    operator_pem = public_path_for(default_operator_key_path())
    return ["cameo", "grant", "--profile", folder, "--subject-key", subject_key, "--subject-id", "blue",
            "--operator-key", operator_pem, *extra]


@pytest.mark.parametrize("undone", ["a revocation", "a narrowing of operators", "an expiry change"])
def test_a_record_copied_back_is_refused_by_the_cli_and_the_apply_cameo_path(granted, subject_key, engine, tmp_path,
                                                                           capsys, undone):
    copy = copy_profile(granted, tmp_path)
    record_path = copy.path / "consent.json"
    if undone == "a narrowing of operators":  # granted to this machine and another, then only to the other
        assert cli(grant_cli(copy.path, subject_key, "--operator", OTHER_OPERATOR, "--days", 30, "--force"),
                   capsys)[0] == 0
    old = record_path.read_bytes()
    assert generate(copy.path, tmp_path / "before.mp4", capsys)[0] == 0  # allowed now; this machine sees version n
    if undone == "a revocation":
        assert cli(["cameo", "revoke", copy.path, "--subject-key", subject_key, "--reason", "no more"], capsys)[0] == 0
    elif undone == "a narrowing of operators":
        assert cli(["cameo", "grant", "--profile", copy.path, "--subject-key", subject_key, "--subject-id", "blue",
                    "--operator", OTHER_OPERATOR, "--days", 30, "--force"], capsys)[0] == 0
    else:
        assert cli(grant_cli(copy.path, subject_key, "--days", 1, "--force"), capsys)[0] == 0
    newer = load_consent(record_path)
    record_path.write_bytes(old)  # the operator copies the earlier record back
    old_version = load_consent(record_path).version

    out = tmp_path / "after.mp4"
    rc, _, err = generate(copy.path, out, capsys)
    assert rc == 2 and not out.exists()
    assert f"cameo '{NAME}' ({copy.id[:12]}) refused (consent record rolled back)" in err, err
    assert f"consent record {record_path} is record version {old_version}" in err
    assert f"already seen version {newer.version}" in err and "rolled back to an earlier copy" in err
    expected = {"a revocation": "the newer record revokes the whole grant", "an expiry change": "valid until",
                "a narrowing of operators": f"the newer record grants operators {OTHER_OPERATOR}"}[undone]
    assert expected in err, err
    if undone == "a revocation":
        assert "(no more), so a revocation was rolled back" in err
    rc, text, _ = cli(["cameo", "show", copy.path], capsys)
    assert rc == 1 and "REFUSED" in text and "consent record rolled back" in text

    # what JointAV Apply Cameo runs: the same gate, before anything is conditioned
    model, decoders = engine
    latent = api.empty_latent(model, "1s", 64, 64)
    with pytest.raises(ConsentRolledBackError, match=r"refused \(consent record rolled back\)"):
        apply_cameo(model, decoders, latent, read_profile(copy.path), consent_check=consent_check_for())


def test_a_new_key_cannot_take_over_a_profile_even_with_force(granted, subject_key, tmp_path, capsys):
    copy = copy_profile(granted, tmp_path)
    person = load_consent(copy.path / "consent.json").grant.subject_fingerprint
    assert cli(["cameo", "revoke", copy.path, "--subject-key", subject_key], capsys)[0] == 0
    mallory = tmp_path / "mallory.key"
    assert main(["cameo", "keygen", "--out", str(mallory)]) == 0
    from jointav.cameo.keys import load_private_key

    intruder = fingerprint(load_private_key(mallory))
    before = (copy.path / "consent.json").read_bytes()
    for args in (grant_cli(copy.path, mallory, "--days", 30, "--force"),
                 ["cameo", "revoke", copy.path, "--subject-key", mallory],
                 ["cameo", "grant", "--profile-id", copy.id, "--out", tmp_path / "swap.json", "--subject-key", mallory,
                  "--subject-id", "blue", "--operator", fingerprint(operator_key()), "--days", 30, "--force"]):
        rc, _, err = cli(args, capsys)
        assert rc == 2, err
        assert intruder in err and person in err and "bound to its person's key" in err, err
    assert (copy.path / "consent.json").read_bytes() == before and not (tmp_path / "swap.json").exists()
    assert read_profile(copy.path).manifest["subject"]["fingerprint"] == person
    rc, _, err = generate(copy.path, tmp_path / "x.mp4", capsys)
    assert rc == 2 and "refused (consent revoked)" in err

    # a record signed by the new key, dropped into the folder by hand, is refused at use
    from jointav.cameo.consent import grant_consent, save_consent

    forged = grant_consent(load_private_key(mallory), subject_id="blue", profile_id=copy.id, profile_sha256=copy.id,
                           operators=[fingerprint(operator_key())], record_version=50,
                           valid_until=dt.datetime.now(dt.timezone.utc) + dt.timedelta(days=3))
    save_consent(forged, copy.path / "consent.json")
    rc, _, err = generate(copy.path, tmp_path / "y.mp4", capsys)
    assert rc == 2 and "refused (signed by a key other than the profile's person's)" in err, err
    save_consent(forged, tmp_path / "sent.json")
    rc, _, err = cli(["cameo", "revoke", copy.path, "--from", tmp_path / "sent.json"], capsys)
    assert rc == 2 and intruder in err


def test_a_revocation_the_person_sends_is_imported(granted, subject_key, tmp_path, capsys, monkeypatch,
                                                  machine_state):
    copy = copy_profile(granted, tmp_path)
    theirs = shutil.copy(copy.path / "consent.json", tmp_path / "blue-consent.json")  # the person's own copy
    monkeypatch.setenv("JOINTAV_CAMEO_STATE", str(tmp_path / "persons-machine" / "state.json"))
    rc, text, _ = cli(["cameo", "revoke", theirs, "--subject-key", subject_key, "--reason", "by mail"], capsys)
    assert rc == 0 and f"send {theirs} to the operators" in text and "record version 2" in text
    monkeypatch.setenv("JOINTAV_CAMEO_STATE", str(machine_state))  # back on the operator's machine
    assert generate(copy.path, tmp_path / "a.mp4", capsys)[0] == 0  # the operator's folder does not know yet
    rc, text, _ = cli(["cameo", "revoke", copy.path, "--from", theirs], capsys)
    assert rc == 0 and "imported record version 2" in text
    rc, _, err = generate(copy.path, tmp_path / "b.mp4", capsys)
    assert rc == 2 and "refused (consent revoked)" in err and "by mail" in err


def test_a_cut_usage_log_is_reported_by_verify_on_each_clip_and_by_the_gate(granted, tmp_path, capsys):
    copy = copy_profile(granted, tmp_path)
    clips = [tmp_path / f"clip{i}.mp4" for i in range(3)]
    for i, clip in enumerate(clips):
        assert generate(copy.path, clip, capsys, seed=i)[0] == 0
    log = default_log_path()
    lines = log.read_bytes().split(b"\n")[:-1]
    assert len(lines) == 3
    chain = verify_chain(log)
    for i, clip in enumerate(clips):  # each manifest proves the log's length and head before the clip's use
        report = verify_file(clip)
        assert report.valid, report.text()
        assert report.generation["cameo"]["usage_log"] == {"entries": i, "head_sha256": chain.head_at(i)}
        assert report.cameo["usage_log"] == "intact" and f"its entry is line {i + 1}" in report.cameo["usage_log_note"]

    for cut in (1, 2, 3):
        log.write_bytes(b"".join(line + b"\n" for line in lines[:3 - cut]))
        for i, clip in enumerate(clips):
            rc, text, _ = cli(["verify", clip], capsys)
            if i < 3 - cut:
                assert rc == 0 and "usage log:   intact" in text, text
            else:
                assert rc == 1 and "usage log:   CUT OR TAMPERED" in text and "NOT VALID" in text, text
                assert "the usage log no longer holds this clip's use" in text
        rc, _, err = generate(copy.path, tmp_path / "next.mp4", capsys)
        assert rc == 2 and "refused (usage log cut back)" in err and f"{cut} entr" in err, err
    # a verifier on another machine (another watermark key) does not hold this machine's log against the clip
    elsewhere = verify_file(clips[2], watermark_key=WatermarkKey(b"another machine's key!!"))
    assert elsewhere.cameo["usage_log"] == "not checked" and "another machine" in elsewhere.cameo["usage_log_note"]
    assert elsewhere.valid, elsewhere.text()


def test_verify_says_a_clip_was_made_before_a_later_revocation(granted, subject_key, tmp_path, capsys, monkeypatch):
    copy = copy_profile(granted, tmp_path)
    theirs = shutil.copy(copy.path / "consent.json", tmp_path / "blue-consent.json")
    clip = tmp_path / "before.mp4"
    assert generate(copy.path, clip, capsys)[0] == 0
    rc, text, _ = cli(["verify", clip], capsys)
    assert rc == 0 and "consent:     record version 1" in text and ": not revoked: as of record version 1" in text

    assert cli(["cameo", "revoke", copy.path, "--subject-key", subject_key, "--reason", "no more"], capsys)[0] == 0
    rc, text, _ = cli(["verify", clip], capsys)  # this machine has seen the revocation
    assert rc == 0, text
    assert "REVOKED since: the person revoked the whole grant" in text and "(no more)" in text
    assert "the clip was made before it" in text

    # on another machine (no consent state), from the file the person sends
    monkeypatch.setenv("JOINTAV_CAMEO_STATE", str(tmp_path / "elsewhere" / "state.json"))
    assert cli(["cameo", "revoke", theirs, "--subject-key", subject_key, "--reason", "sent"], capsys)[0] == 0
    monkeypatch.setenv("JOINTAV_CAMEO_STATE", str(tmp_path / "verifier" / "state.json"))
    rc, text, _ = cli(["verify", clip], capsys)
    assert rc == 0 and "revocation status unknown" in text and "--revocation FILE" in text
    rc, text, _ = cli(["verify", clip, "--revocation", theirs], capsys)
    assert rc == 0 and "REVOKED since" in text and "(sent)" in text and str(theirs) in text, text
    report = verify_file(clip, revocation=load_consent(theirs))
    assert report.valid and report.cameo["consent"] == "revoked"


def test_a_clip_made_after_its_revocation_on_a_machine_that_lost_its_state_is_caught(granted, subject_key, tmp_path,
                                                                                   capsys, monkeypatch):
    from jointav.cameo.consent import revoke, save_consent
    from jointav.cameo.keys import load_private_key

    copy = copy_profile(granted, tmp_path)
    old = (copy.path / "consent.json").read_bytes()
    an_hour_ago = dt.datetime.now(dt.timezone.utc) - dt.timedelta(hours=1)
    revoked = revoke(load_consent(copy.path / "consent.json"), load_private_key(subject_key), reason="stop",
                     now=an_hour_ago)
    save_consent(revoked, tmp_path / "revocation.json")
    # the operator never imports it, and even deletes this machine's consent state: the gate cannot know
    monkeypatch.setenv("JOINTAV_CAMEO_STATE", str(tmp_path / "wiped" / "state.json"))
    (copy.path / "consent.json").write_bytes(old)
    clip = tmp_path / "after.mp4"
    assert generate(copy.path, clip, capsys)[0] == 0
    rc, text, _ = cli(["verify", clip, "--revocation", tmp_path / "revocation.json"], capsys)
    assert rc == 1 and "made under a revoked consent" in text and "AFTER it" in text and "NOT VALID" in text, text
    rc, text, _ = cli(["cameo", "audit", tmp_path, "--profile", copy.path, "--revocation",
                       tmp_path / "revocation.json"], capsys)
    assert rc == 0 and "MADE AFTER ITS REVOCATION" in text


def test_cameo_audit_finds_every_clip_of_a_profile_in_a_mixed_folder(granted, subject_key, tmp_path, toy_clip,
                                                                    capsys):
    a = copy_profile(granted, tmp_path)
    image = tmp_path / "b.png"
    cv2.imwrite(str(image), cv2.cvtColor(toy_clip.frames[12], cv2.COLOR_RGB2BGR))
    sf.write(tmp_path / "b.wav", toy_clip.audio, toy_clip.sample_rate)
    assert main(["cameo", "create", "--image", str(image), "--voice", str(tmp_path / "b.wav"), "--name", "Other",
                 "--out", str(tmp_path / "b")]) == 0
    (b,) = (tmp_path / "b").iterdir()
    assert cli(grant_cli(b, subject_key, "--days", 30), capsys)[0] == 0
    clips = tmp_path / "clips"
    (clips / "day2").mkdir(parents=True)
    made = {"a": [], "b": []}
    for name, folder, out in (("a", a.path, clips / "a1.mp4"), ("b", b, clips / "b1.mp4"),
                              ("a", a.path, clips / "day2" / "a2.mp4")):
        assert generate(folder, out, capsys)[0] == 0
        made[name] += [out, out.with_suffix(".wav")]  # the WAV beside it carries the same manifest entry
    assert main(["generate", "--prompt", "a red ball bounces", *FAST, "--out", str(clips / "plain.mp4")]) == 0
    (clips / "notes.txt").write_text("not a clip")
    shutil.copy(clips / "plain.mp4", clips / "day2" / "unsigned.m4v")

    rc, text, _ = cli(["cameo", "audit", clips, "--profile", a.path, "--json"], capsys)
    listed = json.loads(text)
    assert rc == 0 and sorted(c["path"] for c in listed["clips"]) == sorted(map(str, made["a"]))
    assert {c["profile_id"] for c in listed["clips"]} == {a.id} and listed["subject_keys"] == [
        load_consent(a.path / "consent.json").grant.subject_fingerprint]
    b_id = read_profile(b).id
    rc, text, _ = cli(["cameo", "audit", clips, "--profile-id", b_id], capsys)
    assert rc == 0 and text.startswith(f"2 clip(s) in {clips} made with profile {b_id}")
    assert all(str(p) in text for p in made["b"]) and "a1.mp4" not in text
    rc, text, _ = cli(["cameo", "audit", clips], capsys)
    assert text.startswith("6 clip(s)")


def test_audit_shows_a_key_swap_that_a_wiped_machine_let_through(granted, subject_key, tmp_path, capsys, monkeypatch):
    copy = copy_profile(granted, tmp_path)
    clips = tmp_path / "clips"
    assert generate(copy.path, clips / "a.mp4", capsys)[0] == 0
    # the operator deletes this machine's consent state and the profile's subject slot, then grants with a new key
    monkeypatch.setenv("JOINTAV_CAMEO_STATE", str(tmp_path / "wiped" / "state.json"))
    manifest = json.loads((copy.path / MANIFEST_NAME).read_text())
    manifest["subject"] = None
    (copy.path / MANIFEST_NAME).write_text(json.dumps(manifest))
    mallory = tmp_path / "mallory.key"
    assert main(["cameo", "keygen", "--out", str(mallory)]) == 0
    assert cli(grant_cli(copy.path, mallory, "--days", 30, "--force"), capsys)[0] == 0
    assert generate(copy.path, clips / "b.mp4", capsys)[0] == 0
    rc, text, _ = cli(["cameo", "audit", clips, "--profile", copy.path], capsys)
    person = load_consent(granted.path / "consent.json").grant.subject_fingerprint
    from jointav.cameo.keys import load_private_key

    assert rc == 0 and "clips made under 2 different person keys" in text and "the profile's key was swapped" in text
    assert person in text and fingerprint(load_private_key(mallory)) in text


def test_revoking_a_profiles_record_file_by_its_path_keeps_the_folder_current(granted, subject_key, tmp_path, capsys):
    copy = copy_profile(granted, tmp_path)
    rc, text, _ = cli(["cameo", "revoke", copy.path / "consent.json", "--subject-key", subject_key], capsys)
    assert rc == 0 and "send" not in text  # revoked as the folder's record, not as a person's copy
    assert read_profile(copy.path).consent["sha256"] == file_digest(copy.path / "consent.json")
    with pytest.raises(ConsentRevokedError):
        consent_check_for()(read_profile(copy.path))


def test_a_person_making_their_own_profile_binds_it_at_creation(subject_key, operator, tmp_path, toy_clip, capsys):
    from jointav.cameo.keys import load_private_key

    image = tmp_path / "face.png"
    cv2.imwrite(str(image), cv2.cvtColor(toy_clip.frames[9], cv2.COLOR_RGB2BGR))
    sf.write(tmp_path / "voice.wav", toy_clip.audio, toy_clip.sample_rate)
    person = fingerprint(load_private_key(subject_key))
    rc, text, _ = cli(["cameo", "create", "--image", image, "--voice", tmp_path / "voice.wav", "--name", "Own",
                       "--out", tmp_path / "cameos", "--subject-key", public_path_for(subject_key)], capsys)
    assert rc == 0 and f"person  {person}" in text
    (folder,) = (tmp_path / "cameos").iterdir()
    assert read_profile(folder).manifest["subject"]["fingerprint"] == person
    other = tmp_path / "other.key"
    assert main(["cameo", "keygen", "--out", str(other)]) == 0
    rc, _, err = cli(grant_cli(folder, other, "--days", 3), capsys)  # the very first grant, by someone else
    assert rc == 2 and "bound to its person's key" in err and person in err
    assert cli(grant_cli(folder, subject_key, "--days", 3), capsys)[0] == 0
