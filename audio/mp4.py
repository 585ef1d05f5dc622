"""Write a clip (frames + sound) as an MP4 with H.264 High video and AAC audio, via PyAV.

The file is written next to its final name and renamed into place only when complete, so a failure
never leaves a half-written MP4 where a user expects a clip.
"""

from __future__ import annotations

import os
from fractions import Fraction
from pathlib import Path

import av
import numpy as np

from ..atomic import atomic_path
from ..errors import InputShapeError, InputValueError

AAC_RATES = (8000, 11025, 16000, 22050, 24000, 32000, 44100, 48000)


def _as_uint8_frames(frames: np.ndarray) -> np.ndarray:
    frames = np.asarray(frames)
    if frames.ndim != 4 or frames.shape[-1] != 3:
        raise InputShapeError(f"mp4 frames: expected [T, H, W, 3], found shape {list(frames.shape)}")
    if frames.shape[0] == 0:
        raise InputShapeError("mp4 frames: the clip has no frames")
    if frames.dtype != np.uint8:
        frames = np.clip(np.rint(np.asarray(frames, dtype=np.float32) * 255.0), 0, 255).astype(np.uint8)
    # yuv420p needs even sizes; repeat the last row/column rather than refuse an odd-sized clip
    pad_h, pad_w = frames.shape[1] % 2, frames.shape[2] % 2
    if pad_h or pad_w:
        frames = np.pad(frames, ((0, 0), (0, pad_h), (0, pad_w), (0, 0)), mode="edge")
    return frames


def _as_planar_audio(waveform: np.ndarray) -> np.ndarray:
    waveform = np.asarray(waveform, dtype=np.float32)
    if waveform.ndim == 1:
        waveform = waveform[None]
    if waveform.ndim != 2 or waveform.shape[0] not in (1, 2):
        raise InputShapeError(f"mp4 audio: expected [channels(1|2), samples], found shape {list(waveform.shape)}")
    if not np.isfinite(waveform).all():
        raise InputValueError("mp4 audio: the waveform holds NaN or inf values")
    return np.ascontiguousarray(np.clip(waveform, -1.0, 1.0))


def _fit_to_video(audio: np.ndarray, frame_count: int, rate: Fraction, sample_rate: int) -> np.ndarray:
    """Pad with silence or trim so the sound lasts exactly as long as the frames (to the nearest sample).

    The pipeline's sound is a whole number of audio latents, which need not end on the last frame's end (the
    default model's 2 s clip: 2.016 s of sound under 2.083 s of video), and a player then shows the last frames
    in silence or cuts the sound short."""
    samples = round(frame_count * sample_rate / rate)
    if audio.shape[1] >= samples:
        return np.ascontiguousarray(audio[:, :samples])
    return np.pad(audio, ((0, 0), (0, samples - audio.shape[1])))


def write_mp4(
    path: str | os.PathLike,
    frames: np.ndarray,
    fps: float | Fraction,
    waveform: np.ndarray | None = None,
    sample_rate: int | None = None,
    *,
    crf: int = 18,
    audio_bitrate: int = 192_000,
    metadata: dict[str, str] | None = None,
) -> Path:
    """Encode `frames` ([T,H,W,3] uint8, or float in 0..1) and an optional `waveform` ([C,S] or [S]) to `path`."""
    path = Path(path)
    frames = _as_uint8_frames(frames)
    rate = Fraction(fps).limit_denominator(1001)
    if rate <= 0:
        raise InputValueError(f"mp4 fps: expected a positive frame rate, found {fps}")
    audio = None
    if waveform is not None:
        if sample_rate not in AAC_RATES:
            raise InputValueError(f"mp4 sample_rate: AAC needs one of {AAC_RATES}, found {sample_rate}; resample first")
        audio = _fit_to_video(_as_planar_audio(waveform), frames.shape[0], rate, sample_rate)

    # The edit lists that trim AAC's priming samples are written in the movie's timescale; at the default
    # 1/1000 s the sound's end is rounded to the millisecond, at 1/sample_rate it is kept to the sample.
    options = {"movie_timescale": str(sample_rate)} if audio is not None else {}
    with atomic_path(path, suffix=".mp4") as tmp:
        with av.open(str(tmp), "w", format="mp4", options=options) as container:
            for key, value in (metadata or {}).items():
                container.metadata[key] = str(value)
            video = container.add_stream("libx264", rate=rate)
            video.width, video.height = frames.shape[2], frames.shape[1]
            video.pix_fmt = "yuv420p"
            video.profile = "High"
            # mbtree=0: with x264's macroblock-tree rate control on, the same frames encoded differently from run
            # to run (22 of 100 encodes of one array decoded up to 45/255 apart, with one encoder thread; shorter
            # lookahead, no weighted prediction or no adaptive quantisation did not help); without it, every encode
            # of the same frames gave the same file. It costs a little compression at the same CRF.
            video.options = {"crf": str(crf), "preset": "medium", "x264-params": "mbtree=0"}
            astream = None
            if audio is not None:
                astream = container.add_stream("aac", rate=sample_rate)
                astream.layout = "stereo" if audio.shape[0] == 2 else "mono"
                astream.bit_rate = audio_bitrate
            for frame in frames:
                for packet in video.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")):
                    container.mux(packet)
            for packet in video.encode():
                container.mux(packet)
            if astream is not None:
                aframe = av.AudioFrame.from_ndarray(audio, format="fltp", layout=astream.layout.name)
                aframe.sample_rate = sample_rate
                # A timestamped first frame lets the encoder mark its 1024 priming samples (negative pts, an
                # edit list in the MP4), so players start the sound on time instead of 1024 samples late.
                aframe.pts = 0
                aframe.time_base = Fraction(1, sample_rate)
                for packet in astream.encode(aframe):
                    container.mux(packet)
                for packet in astream.encode():
                    container.mux(packet)
    return path


def probe_mp4(path: str | os.PathLike) -> dict:
    """Streams of an MP4 as plain values (codec, profile, size, fps, frames, sample rate, duration)."""
    info: dict = {"video": [], "audio": []}
    with av.open(str(path)) as container:
        info["metadata"] = dict(container.metadata)
        for s in container.streams:
            duration = float(s.duration * s.time_base) if s.duration is not None else None
            entry = {"codec": s.codec_context.name, "profile": s.codec_context.profile, "duration": duration}
            if s.type == "video":
                entry.update(width=s.codec_context.width, height=s.codec_context.height,
                             fps=float(s.average_rate) if s.average_rate else None, frames=s.frames)
                info["video"].append(entry)
            elif s.type == "audio":
                entry.update(sample_rate=s.codec_context.sample_rate, channels=s.codec_context.channels)
                info["audio"].append(entry)
    return info


def read_mp4(path: str | os.PathLike) -> tuple[np.ndarray, np.ndarray | None, float, int | None]:
    """Decode an MP4 back to (frames uint8 [T,H,W,3], waveform float32 [C,S] or None, fps, sample_rate)."""
    with av.open(str(path)) as container:
        vstream = container.streams.video[0]
        fps = float(vstream.average_rate)
        frames = np.stack([f.to_ndarray(format="rgb24") for f in container.decode(vstream)])
    waveform, sr = None, None
    with av.open(str(path)) as container:
        if container.streams.audio:
            astream = container.streams.audio[0]
            chunks = [f.to_ndarray() for f in container.decode(astream)]
            sr = astream.codec_context.sample_rate
            waveform = np.concatenate(chunks, axis=-1).astype(np.float32) if chunks else None
    return frames, waveform, fps, sr
