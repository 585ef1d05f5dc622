"""The README's first command: an MP4 with one H.264 and one AAC stream of the requested duration, and a WAV."""

import soundfile as sf

import numpy as np

from jointav.audio.mp4 import probe_mp4, read_mp4
from jointav.cli import main
from jointav.provenance import verify_file


def test_generate_writes_mp4_and_wav_of_the_requested_duration(tmp_path, capsys):
    out = tmp_path / "clip.mp4"
    rc = main(["generate", "--prompt", "a red ball bounces twice on the left", "--audio-description", "low thuds",
               "--seed", "7", "--steps", "3", "--duration", "2s", "--out", str(out)])
    assert rc == 0
    info = probe_mp4(out)
    assert [v["codec"] for v in info["video"]] == ["h264"] and [a["codec"] for a in info["audio"]] == ["aac"]
    video, audio = info["video"][0], info["audio"][0]
    fps = 12.0
    assert video["fps"] == fps and video["frames"] == 25
    assert abs(video["duration"] - 25 / fps) <= 1 / fps
    assert abs(audio["duration"] - 25 / fps) <= 1 / fps
    assert audio["sample_rate"] == 44100 and audio["channels"] == 2
    assert "seed=7" in info["metadata"].get("comment", "")
    wav, rate = sf.read(out.with_suffix(".wav"))
    assert rate == 44100 and wav.shape[1] == 2 and abs(len(wav) / rate - 25 / fps) <= 1 / fps
    # both files carry a valid C2PA manifest, and the frames the watermark it records
    for path in (out, out.with_suffix(".wav")):
        assert main(["verify", str(path)]) == 0
    report = verify_file(out)
    assert report.valid and report.watermark.present and "seed" in str(report.to_dict())


def test_the_same_request_gives_the_same_frames_and_sound(tmp_path):
    args = ["generate", "--prompt", "a blue character speaks in a high voice", "--seed", "3", "--steps", "2",
            "--duration", "1s"]
    assert main([*args, "--out", str(tmp_path / "a.mp4")]) == 0
    assert main([*args, "--out", str(tmp_path / "b.mp4")]) == 0
    frames_a, wave_a, _, _ = read_mp4(tmp_path / "a.mp4")
    frames_b, wave_b, _, _ = read_mp4(tmp_path / "b.mp4")
    assert np.array_equal(frames_a, frames_b) and np.array_equal(wave_a, wave_b)
    assert sf.read(tmp_path / "a.wav")[0].tobytes() == sf.read(tmp_path / "b.wav")[0].tobytes()


def test_generate_reports_bad_input_without_a_traceback(tmp_path, capsys):
    rc = main(["generate", "--prompt", "x", "--size", "70x64", "--out", str(tmp_path / "c.mp4")])
    assert rc == 2
    assert "height=70" in capsys.readouterr().err
    assert not list(tmp_path.iterdir())
