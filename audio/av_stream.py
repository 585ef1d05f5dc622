"""Media in and out for long-form work: read any video or sound file as frames and 16 kHz mono sound, and write an
MP4 a piece at a time so that memory follows the piece, not the film.

`StreamingMP4Writer` encodes frames and sound as they come into a temporary file beside the output and renames it
into place only on `commit()`; `abort()` (or leaving its `with` block by an exception) removes it, so a failed or
refused run never leaves a file under the output name. A run that is interrupted commits what it has finished,
which is a whole, playable file.
"""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import torch

from ..errors import InputShapeError, InputValueError
from .finishing import resample

MODEL_RATE = 16_000  # the audio VAE's rate; long-form files carry their sound at it (AAC takes 16 kHz)


@dataclass(frozen=True, eq=False)
class MediaClip:
    """A clip read from a file: frames uint8 `[T, H, W, 3]` (None for a sound file), sound float32 mono `[S]` at
    16 kHz (None for a silent video), the frame rate (None for a sound file) and where it came from."""

    frames: np.ndarray | None
    sound: np.ndarray | None
    fps: float | None
    path: Path

    @property
    def sound_seconds(self) -> float:
        return 0.0 if self.sound is None else len(self.sound) / MODEL_RATE


def _as_model_sound(waveform: np.ndarray, rate: int) -> np.ndarray:
    mono = np.asarray(waveform, dtype=np.float32).reshape(waveform.shape[0], -1).mean(axis=0)
    if rate != MODEL_RATE:
        mono = resample(torch.from_numpy(mono)[None, None], rate, MODEL_RATE)[0, 0].numpy()
    return np.ascontiguousarray(mono, dtype=np.float32)


def read_media(path: str | os.PathLike, what: str = "input") -> MediaClip:
    """Frames and/or sound of a video (MP4, MOV, WebM, ...) or sound file (WAV, FLAC, MP3, ...), decoded with PyAV.

    Errors name `what` and the file: missing, not a media file, or holding neither video nor sound."""
    path = Path(path)
    if not path.is_file():
        raise InputValueError(f"{what} {path}: no such file")
    frames, chunks, fps, rate = None, [], None, None
    try:
        with av.open(str(path)) as container:
            if container.streams.video:
                stream = container.streams.video[0]
                fps = float(stream.average_rate) if stream.average_rate else None
                decoded = [f.to_ndarray(format="rgb24") for f in container.decode(stream)]
                frames = np.stack(decoded) if decoded else None
        with av.open(str(path)) as container:
            if container.streams.audio:
                stream = container.streams.audio[0]
                rate = stream.codec_context.sample_rate
                for f in container.decode(stream):
                    data = f.to_ndarray()
                    if not f.format.is_planar:  # packed: [1, S*C] interleaved
                        data = data.reshape(-1, len(f.layout.channels)).T
                    if data.dtype.kind in "iu":
                        data = data.astype(np.float32) / float(np.iinfo(data.dtype).max)
                    chunks.append(data.astype(np.float32))
    except (av.error.FFmpegError, ValueError) as e:
        raise InputValueError(f"{what} {path}: cannot be read as a video or sound file ({e})") from e
    if frames is None and not chunks:
        raise InputValueError(f"{what} {path}: holds neither video frames nor sound")
    if frames is not None and not fps:
        raise InputValueError(f"{what} {path}: its video stream has no frame rate")
    sound = _as_model_sound(np.concatenate(chunks, axis=-1), rate) if chunks else None
    return MediaClip(frames=frames, sound=sound, fps=fps, path=path)


class StreamingMP4Writer:
    """An H.264 + AAC MP4 written a piece at a time under a temporary name; `commit()` renames it into place.

    frames: uint8 `[T, H, W, 3]`; sound: float32 mono `[S]` at `sample_rate`. `watermark(frames) -> frames` (when
    given) is applied to every piece before encoding. Use as a context manager: an exception leaving the block
    removes the temporary file unless `commit()` ran.
    """

    def __init__(self, path: str | os.PathLike, fps: float, height: int, width: int, *,
                 sample_rate: int = MODEL_RATE, watermark=None, metadata: dict | None = None, crf: int = 18):
        self.path = Path(path)
        if self.path.suffix.lower() != ".mp4":
            raise InputValueError(f"--out {self.path}: expected a file name ending in .mp4")
        if height % 2 or width % 2:
            raise InputShapeError(f"mp4 frames {width}x{height}: H.264 yuv420p needs even sizes")
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd, name = tempfile.mkstemp(prefix=f".{self.path.name}.", suffix=".mp4", dir=self.path.parent)
        os.close(fd)
        self.temp = Path(name)
        self.size = (height, width)
        self.sample_rate = sample_rate
        self.watermark = watermark
        self.frames_written = 0
        self.samples_written = 0
        self._done = False
        self._container = av.open(str(self.temp), "w", format="mp4")
        for key, value in (metadata or {}).items():
            self._container.metadata[key] = str(value)
        self._video = self._container.add_stream("libx264", rate=Fraction(fps).limit_denominator(1001))
        self._video.width, self._video.height = width, height
        self._video.pix_fmt, self._video.profile = "yuv420p", "High"
        self._video.options = {"crf": str(crf), "preset": "medium"}
        self._audio = self._container.add_stream("aac", rate=sample_rate)
        self._audio.layout = "mono"
        self._audio.bit_rate = 128_000

    def write_frames(self, frames: np.ndarray) -> None:
        frames = np.asarray(frames)
        if frames.dtype != np.uint8 or frames.ndim != 4 or tuple(frames.shape[1:]) != (*self.size, 3):
            raise InputShapeError(f"mp4 frames: {frames.dtype} {tuple(frames.shape)}, expected uint8 "
                                  f"[T, {self.size[0]}, {self.size[1]}, 3]")
        if self.watermark is not None:
            frames = np.asarray(self.watermark(frames))
        for frame in frames:
            for packet in self._video.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")):
                self._container.mux(packet)
        self.frames_written += len(frames)

    def write_sound(self, sound: np.ndarray) -> None:
        sound = np.asarray(sound, dtype=np.float32).reshape(-1)
        if not len(sound):
            return
        if not np.isfinite(sound).all():
            raise InputValueError("mp4 sound: the waveform holds NaN or inf values")
        frame = av.AudioFrame.from_ndarray(np.clip(sound, -1, 1)[None], format="fltp", layout="mono")
        frame.sample_rate = self.sample_rate
        frame.pts = self.samples_written
        frame.time_base = Fraction(1, self.sample_rate)
        for packet in self._audio.encode(frame):
            self._container.mux(packet)
        self.samples_written += len(sound)

    def commit(self) -> Path:
        """Flush the encoders, close the file and rename it to `path`; returns `path`."""
        if self._done:
            raise InputValueError(f"{self.path}: the writer is already closed")
        try:
            for stream in (self._video, self._audio):
                for packet in stream.encode():
                    self._container.mux(packet)
            self._container.close()
            mask = os.umask(0)
            os.umask(mask)
            os.chmod(self.temp, 0o666 & ~mask)
            os.replace(self.temp, self.path)
        except BaseException:
            self.abort()
            raise
        self._done = True
        return self.path

    def abort(self) -> None:
        """Drop the temporary file; nothing appears under `path`."""
        if self._done:
            return
        self._done = True
        try:
            self._container.close()
        except Exception:  # a half-written container may refuse to close; it is deleted either way
            pass
        self.temp.unlink(missing_ok=True)

    def __enter__(self) -> StreamingMP4Writer:
        return self

    def __exit__(self, kind, value, tb) -> None:
        if not self._done:
            self.abort()
