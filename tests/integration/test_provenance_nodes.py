"""JointAV Save Video writes a watermarked, C2PA-signed MP4 inside ComfyUI; JointAV Verify reports on it."""

from __future__ import annotations

import json

from .comfy_server import saved_files
from .mp4_checks import check_clip
from .workflows import api_workflow, expected_clip, node_id_of, variant


def _signed_save_graph(seed: int, prefix: str) -> dict:
    """The default text-to-AV example as shipped: it saves through JointAV Save Video."""
    prompt = variant(api_workflow("jointav_default_text_to_av"), seed=seed, prefix=prefix)
    assert node_id_of(prompt, "JointAVSaveVideo")
    return prompt


def test_signed_save_and_verify(comfy, default_spec):
    from jointav.provenance import verify_file

    prompt = _signed_save_graph(seed=77, prefix="it_signed/clip")
    entry = comfy.run(prompt)
    assert entry["status"]["status_str"] == "success", json.dumps(entry["status"], indent=1)[:4000]
    files = saved_files(entry, comfy.base)
    assert len(files) == 1 and files[0].suffix == ".mp4"
    check_clip(files[0], **expected_clip(api_workflow("jointav_default_text_to_av"), default_spec))
    report = verify_file(files[0])  # same provenance folder as the server (the test session's)
    assert report.valid, report.text()
    # presence is what survives any content; the 32-bit payload can fail its checksum on 64x64 frames of
    # noise-like texture (the random stand-in model), see tests/unit/test_watermark.py for payload round trips
    assert report.watermark.present, report.text()
    assert "seed" in json.dumps(report.to_dict()) and "77" in json.dumps(report.to_dict())

    relative = files[0].relative_to(comfy.base / "output").as_posix()
    entry = comfy.run({"1": {"class_type": "JointAVVerify", "inputs": {"path": relative}}})
    assert entry["status"]["status_str"] == "success"
    text = entry["outputs"]["1"]["text"][0]
    assert "VALID" in text.upper() and relative.split("/")[-1] in text

    tampered = files[0].with_name("tampered.mp4")
    data = bytearray(files[0].read_bytes())
    data[len(data) // 2] ^= 0xFF
    tampered.write_bytes(bytes(data))
    assert not verify_file(tampered).valid
