import json
import stat
import struct

import numpy as np
import pytest
import soundfile as sf
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from jointav.audio.mp4 import read_mp4, write_mp4
from jointav.cli import main
from jointav.errors import InputValueError
from jointav.provenance import (
    ProvenanceInfo,
    embed_watermark,
    local_identity,
    local_watermark_key,
    sign_output,
    verify_file,
)
from jointav.provenance.c2pa_manifest import TRAINED_ALGORITHMIC_MEDIA

FPS, SR = 12, 44100
CONSENT = "5" * 64


@pytest.fixture
def prov_dir(tmp_path, monkeypatch):
    folder = tmp_path / "provenance"
    monkeypatch.setenv("JOINTAV_PROVENANCE_DIR", str(folder))
    return folder


def _frames(t=13, h=64, w=64, seed=0):
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:h, 0:w] / max(h, w)
    base = np.stack([0.5 + 0.3 * np.sin(6 * x + seed), 0.4 + 0.3 * y, 0.6 - 0.2 * x * y], -1)
    return np.stack([np.clip(base + 0.1 * np.sin(i / 2) + rng.normal(0, 0.01, base.shape), 0, 1)
                     for i in range(t)]).astype(np.float32)


def _tone(n_frames):
    n = int(n_frames / FPS * SR)
    tone = 0.3 * np.sin(2 * np.pi * 440 * np.arange(n) / SR).astype(np.float32)
    return np.stack([tone, tone])


def _signed_clip(path, *, mark=True, identity=None):
    key = local_watermark_key()
    info = ProvenanceInfo(model="jointav-toy", prompt="a red ball bounces twice", seed=7,
                          sampler={"solver": "unipc", "steps": 24, "shift": 5.0}, consent_sha256=CONSENT,
                          cameo_profile_id="alice-v1", watermark_key_id=key.key_id)
    frames = _frames()
    if mark:
        frames = embed_watermark(frames, key, info.clip_id)
    write_mp4(path, frames, FPS, _tone(len(frames)), SR)
    sign_output(path, info, identity=identity)
    return path, info


def _boxes(data):
    offset, boxes = 0, {}
    while offset < len(data):
        size, kind = struct.unpack(">I4s", data[offset:offset + 8])
        boxes[kind.decode()] = (offset, size)
        offset += size
    return boxes


def _flip(src, dst, position):
    data = bytearray(src.read_bytes())
    data[position] ^= 0x01
    dst.write_bytes(bytes(data))
    return dst


def test_a_signed_clip_verifies_and_reports_what_made_it(prov_dir, tmp_path, capsys):
    path, info = _signed_clip(tmp_path / "clip.mp4")
    assert main(["verify", str(path)]) == 0
    assert "VALID" in capsys.readouterr().out
    assert main(["verify", str(path), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["valid"] and report["trusted"] and report["signature_valid"] and report["hash_binding_valid"]
    g = report["generation"]
    assert (g["model"], g["prompt"], g["seed"]) == ("jointav-toy", "a red ball bounces twice", 7)
    assert g["sampler"]["steps"] == 24 and g["cameo"]["consent_sha256"] == CONSENT
    assert report["digital_source_type"] == TRAINED_ALGORITHMIC_MEDIA
    assert report["claim_generator"].startswith("ComfyUI-JointAV")
    w = report["watermark"]
    assert w["checked"] and w["present"] and w["payload"] == info.clip_id == w["expected_payload"]
    frames, wave, fps, sr = read_mp4(path)  # still an ordinary MP4 for decoders
    assert frames.shape == (13, 64, 64, 3) and sr == SR and fps == FPS


def test_one_flipped_byte_in_the_media_data_is_reported(prov_dir, tmp_path, capsys):
    path, _ = _signed_clip(tmp_path / "clip.mp4")
    offset, size = _boxes(path.read_bytes())["mdat"]
    bad = _flip(path, tmp_path / "bad.mp4", offset + size // 2)
    assert main(["verify", str(bad)]) == 1
    out = capsys.readouterr().out
    assert "NOT VALID" in out and "tampered" in out
    assert verify_file(bad).hash_binding_valid is False


@pytest.mark.parametrize("target", ["prompt", "certificate"])
def test_one_flipped_byte_in_the_manifest_is_reported(prov_dir, tmp_path, capsys, target):
    path, _ = _signed_clip(tmp_path / "clip.mp4")
    data = path.read_bytes()
    offset, size = _boxes(data)["uuid"]  # the C2PA manifest store lives in a uuid box
    if target == "prompt":  # an assertion's content: the recorded prompt
        needle = b"a red ball bounces twice"
    else:  # the signing certificate embedded in the claim signature
        pem = local_identity().chain_pem.split(b"-----END CERTIFICATE-----")[0] + b"-----END CERTIFICATE-----\n"
        needle = x509.load_pem_x509_certificate(pem).public_bytes(serialization.Encoding.DER)
    position = data.index(needle, offset, offset + size) + len(needle) // 2
    bad = _flip(path, tmp_path / "bad.mp4", position)
    assert main(["verify", str(bad)]) == 1
    assert "NOT VALID" in capsys.readouterr().out


def test_an_unsigned_file_is_not_valid_and_its_frames_are_still_checked(prov_dir, tmp_path, capsys):
    local_identity()  # this machine has a watermark key
    path = write_mp4(tmp_path / "plain.mp4", _frames(), FPS)
    assert main(["verify", str(path)]) == 1
    out = capsys.readouterr().out
    assert "no C2PA manifest" in out and "ABSENT" in out


def test_frames_without_the_promised_watermark_are_not_valid(prov_dir, tmp_path):
    path, _ = _signed_clip(tmp_path / "clip.mp4", mark=False)
    report = verify_file(path)
    assert report.signature_valid and report.hash_binding_valid and not report.watermark.present
    assert not report.valid and any("absent" in p for p in report.problems)


def test_wav_and_flac_are_signed_and_checked(prov_dir, tmp_path):
    info = ProvenanceInfo(model="jointav-toy", prompt="a click", seed=1)
    for name in ("sound.wav", "sound.flac"):
        path = tmp_path / name
        sf.write(str(path), _tone(12).T, SR)
        sign_output(path, info)
        report = verify_file(path)
        assert report.valid and report.watermark is None and report.generation["prompt"] == "a click"
        assert sf.read(str(path))[0].shape == (SR, 2)
        bad = _flip(path, tmp_path / f"bad-{name}", path.stat().st_size // 2)  # inside the audio data
        assert verify_file(bad).hash_binding_valid is False and not verify_file(bad).valid


def test_a_file_signed_elsewhere_is_valid_but_untrusted_unless_its_ca_is_given(prov_dir, tmp_path, capsys):
    other = local_identity(tmp_path / "other-machine")
    path, _ = _signed_clip(tmp_path / "clip.mp4", identity=other)
    assert main(["verify", str(path), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["trusted"] is False
    assert main(["verify", str(path), "--require-trusted"]) == 1
    capsys.readouterr()
    ca = tmp_path / "other-ca.pem"
    ca.write_bytes(other.ca_pem)
    assert main(["verify", str(path), "--require-trusted", "--trust-anchor", str(ca)]) == 0


def test_identity_is_made_once_with_private_files(prov_dir):
    first, second = local_identity(), local_identity()
    assert first.ca_pem == second.ca_pem and first.watermark_secret == second.watermark_secret
    key_file = first.folder / "signer.key"
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600


def test_unsupported_files_are_an_error_not_a_verdict(prov_dir, tmp_path, capsys):
    path = tmp_path / "picture.bmp"
    path.write_bytes(b"BM")
    assert main(["verify", str(path)]) == 2
    assert main(["verify", str(tmp_path / "missing.mp4")]) == 2
    assert "does not exist" in capsys.readouterr().err


def test_a_random_file_named_mp4_is_said_to_be_no_mp4(prov_dir, tmp_path, capsys):
    path = tmp_path / "random.mp4"
    path.write_bytes(np.random.default_rng(0).integers(0, 256, 3000, dtype=np.uint8).tobytes())
    assert main(["verify", str(path)]) == 2
    captured = capsys.readouterr()
    assert "not a readable MP4" in captured.err
    assert "trust-anchor" not in captured.out + captured.err and "altered" not in captured.out + captured.err
    with pytest.raises(InputValueError, match="not a readable MP4"):
        verify_file(path)
