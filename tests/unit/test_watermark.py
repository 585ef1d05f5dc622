from fractions import Fraction

import av
import numpy as np
import pytest
import torch

from jointav.audio.mp4 import read_mp4, write_mp4
from jointav.errors import InputShapeError, InputValueError
from jointav.provenance.watermark import (
    PRESENCE_THRESHOLD,
    WatermarkKey,
    detect_watermark,
    detect_watermark_file,
    embed_watermark,
)
from jointav.toyworld import WorldConfig, render_clip, sample_spec

KEY = WatermarkKey(bytes(range(32)))


def _psnr(a, b, peak):
    mse = np.mean((np.asarray(a, np.float64) - np.asarray(b, np.float64)) ** 2)
    return 10 * np.log10(peak ** 2 / mse)


def _toy(seed, size=64):
    clip = render_clip(sample_spec(np.random.default_rng(seed)), seed, WorldConfig(width=size, height=size))
    return clip.frames, clip.fps


def _natural(t, h, w, seed):
    """Frames with a 1/f spectrum (like photographs), slowly panning."""
    rng = np.random.default_rng(seed)
    f = np.hypot(*np.meshgrid(np.fft.fftfreq(h), np.fft.fftfreq(w), indexing="ij"))
    f[0, 0] = 1.0
    planes = [np.real(np.fft.ifft2((rng.normal(size=(h, w)) + 1j * rng.normal(size=(h, w))) / f)) for _ in range(3)]
    base = np.stack([(p - p.mean()) / p.std() for p in planes], -1) * 40 + 128
    return np.clip(np.stack([np.roll(base, (i, 2 * i), (0, 1)) for i in range(t)]), 0, 255).astype(np.uint8)


def _reencode(frames, fps, crf, path):
    """Somebody else's H.264 re-encode: libx264 with its own defaults (not the pack's writer settings)."""
    with av.open(str(path), "w", format="mp4") as container:
        stream = container.add_stream("libx264", rate=Fraction(fps).limit_denominator(1001))
        stream.width, stream.height, stream.pix_fmt = frames.shape[2], frames.shape[1], "yuv420p"
        stream.options = {"crf": str(crf)}
        for frame in frames:
            container.mux(stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")))
        container.mux(stream.encode())
    return read_mp4(path)[0]


@pytest.mark.parametrize("seed", [0, 1, 2, 3, 4])
def test_mark_and_payload_survive_the_pack_encode_and_an_h264_reencode_at_crf23(tmp_path, seed):
    frames, fps = _toy(seed)
    payload = int(np.random.default_rng(100 + seed).integers(0, 2 ** 32))
    first = tmp_path / "clip.mp4"
    write_mp4(first, embed_watermark(frames, KEY, payload), fps)  # the pack writes at CRF 18
    assert detect_watermark_file(first, KEY).payload == payload
    reading = detect_watermark(_reencode(read_mp4(first)[0], fps, 23, tmp_path / "again.mp4"), KEY)
    assert reading.present and reading.score >= PRESENCE_THRESHOLD
    assert reading.payload_ok and reading.payload == payload and reading.bit_errors(payload) == 0


def test_no_false_positives_on_unmarked_or_foreign_marked_clips(tmp_path):
    scores = []
    for seed in range(6):
        frames, fps = _toy(10 + seed)
        if seed % 2:  # marked, but with somebody else's key
            frames = embed_watermark(frames, WatermarkKey(bytes([seed]) * 32), 12345)
        reading = detect_watermark(_reencode(frames, fps, 23, tmp_path / f"{seed}.mp4"), KEY)
        assert not reading.present and reading.payload is None
        scores.append(reading.score)
    noise = np.random.default_rng(0).integers(0, 256, (8, 64, 64, 3), dtype=np.uint8)
    scores.append(detect_watermark(noise, KEY).score)
    assert max(abs(s) for s in scores) < PRESENCE_THRESHOLD - 1  # unmarked scores are about N(0, 1)


def test_psnr_stays_above_38_db_on_toy_and_real_size_frames():
    toy, _ = _toy(3)
    assert _psnr(toy, embed_watermark(toy, KEY, 7), 255) >= 38
    as_float = toy.astype(np.float32) / 255
    assert _psnr(as_float, embed_watermark(as_float, KEY, 7), 1.0) >= 38
    real = _natural(2, 720, 1280, seed=0)
    assert _psnr(real, embed_watermark(real, KEY, 7), 255) >= 38


def test_real_size_textured_frames_carry_the_payload_through_crf28(tmp_path):
    frames = _natural(12, 720, 720, seed=1)
    reading = detect_watermark(_reencode(embed_watermark(frames, KEY, 0xC0FFEE), 24, 28, tmp_path / "r.mp4"), KEY)
    assert reading.present and reading.payload_ok and reading.payload == 0xC0FFEE


def test_torch_images_keep_type_device_and_range_and_are_read_back():
    frames = torch.from_numpy(_toy(5)[0]).float() / 255
    marked = embed_watermark(frames, KEY, 99)
    assert marked.dtype == frames.dtype and marked.shape == frames.shape
    assert 0 <= marked.min() and marked.max() <= 1 and not torch.equal(marked, frames)
    assert detect_watermark(marked, KEY).payload == 99
    assert not detect_watermark(frames, KEY).present


def test_cropping_at_the_bottom_right_keeps_the_mark():
    frames, _ = _toy(6, size=96)
    marked = embed_watermark(frames, KEY, 4242)
    assert detect_watermark(marked[:, :-10, :-6], KEY).payload == 4242


def test_bad_inputs_are_refused():
    with pytest.raises(InputShapeError, match=r"\[T, H, W, 3\]"):
        embed_watermark(np.zeros((4, 8, 8)), KEY, 1)
    with pytest.raises(InputValueError, match="payload"):
        embed_watermark(np.zeros((1, 8, 8, 3), np.uint8), KEY, 2 ** 32)
    with pytest.raises(InputShapeError, match="cells"):
        detect_watermark(np.zeros((1, 8, 8, 3), np.uint8), KEY)
    with pytest.raises(InputValueError, match="at least 16"):
        WatermarkKey(b"short")
