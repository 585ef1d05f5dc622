import numpy as np
import pytest

from jointav.audio.mp4 import probe_mp4, read_mp4, write_mp4
from jointav.errors import InputShapeError, InputValueError


def _clip(t=25, h=32, w=48):
    x = np.linspace(0, 1, w, dtype=np.float32)
    frames = np.stack([np.broadcast_to(((x + i / t) % 1.0)[None, :, None], (h, w, 3)) for i in range(t)])
    return frames


def test_mp4_has_one_h264_high_and_one_aac_stream_of_the_clip_duration(tmp_path):
    sr, fps, frames = 44100, 12, _clip()
    duration = len(frames) / fps
    tone = 0.3 * np.sin(2 * np.pi * 440 * np.arange(int(duration * sr)) / sr).astype(np.float32)
    out = write_mp4(tmp_path / "clip.mp4", frames, fps, np.stack([tone, tone]), sr, metadata={"comment": "seed=3"})
    info = probe_mp4(out)
    assert len(info["video"]) == 1 and len(info["audio"]) == 1
    v, a = info["video"][0], info["audio"][0]
    assert (v["codec"], v["profile"], v["width"], v["height"]) == ("h264", "High", 48, 32)
    assert v["frames"] == len(frames)
    assert abs(v["duration"] - duration) <= 1 / fps
    assert (a["codec"], a["sample_rate"], a["channels"]) == ("aac", sr, 2)
    assert abs(a["duration"] - duration) <= 1 / fps
    assert info["metadata"].get("comment") == "seed=3"


def test_frames_and_tone_survive_the_round_trip(tmp_path):
    sr, fps, frames = 48000, 12, _clip()
    n = int(len(frames) / fps * sr)
    tone = 0.5 * np.sin(2 * np.pi * 1000 * np.arange(n) / sr).astype(np.float32)
    out = write_mp4(tmp_path / "c.mp4", frames, fps, tone, sr)
    got_frames, wave, got_fps, got_sr = read_mp4(out)
    assert got_frames.shape == (len(frames), 32, 48, 3) and got_fps == fps and got_sr == sr
    assert np.abs(got_frames.astype(np.float32) / 255 - frames).mean() < 0.02
    spectrum = np.abs(np.fft.rfft(wave[0, sr // 4 : sr // 4 + sr // 2]))
    assert abs(np.argmax(spectrum) * 2 - 1000) <= 4  # bin width 2 Hz for a 0.5 s window


def test_bad_input_is_refused_and_nothing_is_left_behind(tmp_path):
    with pytest.raises(InputShapeError, match=r"\[T, H, W, 3\]"):
        write_mp4(tmp_path / "a.mp4", np.zeros((4, 8, 8)), 12)
    with pytest.raises(InputValueError, match="sample_rate"):
        write_mp4(tmp_path / "b.mp4", _clip(), 12, np.zeros(100, np.float32), 12345)
    with pytest.raises(InputValueError, match="NaN"):
        write_mp4(tmp_path / "c.mp4", _clip(), 12, np.full(1000, np.nan, np.float32), 44100)
    assert list(tmp_path.iterdir()) == []


def test_sound_starts_on_time_despite_aac_priming(tmp_path):
    """AAC encoders prepend 1024 priming samples; the MP4 must tell players to skip them, or every sound
    lands 23 ms (at 44.1 kHz) after its picture."""
    sr, fps, frames = 44100, 12, _clip(t=13)
    wave = np.zeros(sr, np.float32)
    wave[10_000:10_400] = 0.8
    _, decoded, _, _ = read_mp4(write_mp4(tmp_path / "burst.mp4", frames, fps, wave, sr))
    onset = int(np.argmax(np.abs(decoded[0]) > 0.2))
    assert abs(onset - 10_000) <= 8, f"burst written at sample 10000 decodes at {onset}"


def _textured_clip(t=25, h=64, w=96, seed=0):
    """Moving stripes of random widths: enough detail that the encoder's rate control has decisions to make."""
    rng = np.random.default_rng(seed)
    steps = rng.integers(0, 255, size=(t, h, w, 3))
    return (np.cumsum(steps, axis=2) // 40 % 256).astype(np.uint8)


def test_the_same_clip_decodes_to_the_same_frames_every_time_it_is_written(tmp_path):
    """Same seed and prompt must give the same pictures: x264's macroblock-tree rate control once made
    about one encode in five of the same array decode differently (pixels up to 45/255 apart)."""
    sr, fps, frames = 16000, 12, _textured_clip(h=32, w=48)  # 16 kHz mono: the sound is cheap to encode
    wave = (0.1 * np.random.default_rng(1).standard_normal((1, 2 * sr))).astype(np.float32)
    first = write_mp4(tmp_path / "0.mp4", frames, fps, wave, sr).read_bytes()
    for i in range(1, 40):  # before the fix, 39 writes held a differing one in 10 of 10 test runs
        path = write_mp4(tmp_path / f"{i}.mp4", frames, fps, wave, sr)
        if path.read_bytes() != first:  # (no time stamps are written: the same pictures give the same bytes)
            decoded, reference = read_mp4(path)[0], read_mp4(tmp_path / "0.mp4")[0]
            worst = int(np.abs(decoded.astype(np.int16) - reference.astype(np.int16)).max())
            raise AssertionError(f"write {i} differs from write 0; its frames decode up to {worst}/255 away")
    frames_a, wave_a, _, _ = read_mp4(tmp_path / "0.mp4")
    frames_b, wave_b, _, _ = read_mp4(tmp_path / "39.mp4")
    assert np.array_equal(frames_a, frames_b) and np.array_equal(wave_a, wave_b)


@pytest.mark.parametrize("sound_seconds", [2.016, 2.5])  # the default model's 2 s clip: 63 latents of 512 at 16 kHz
def test_sound_and_picture_streams_end_together(tmp_path, sound_seconds):
    sr, fps, frames = 44100, 12, _clip(t=25)
    wave = np.full((2, round(sound_seconds * sr)), 0.1, np.float32)
    info = probe_mp4(write_mp4(tmp_path / "clip.mp4", frames, fps, wave, sr))
    video, audio = info["video"][0]["duration"], info["audio"][0]["duration"]
    assert video == pytest.approx(25 / 12)
    assert abs(audio - video) <= 1 / sr, f"sound lasts {audio:.4f} s, picture {video:.4f} s"
