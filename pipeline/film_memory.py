"""A film kept in memory: the writer the long-form functions stream into, for callers that want the frames and
sound back as arrays (the Shot List node hands them on as core IMAGE and AUDIO) instead of an MP4 on disk."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ..audio.av_stream import MODEL_RATE
from ..errors import InputShapeError


class FilmInMemory:
    """What `StreamingMP4Writer` offers the long-form functions (size, frames_written, samples_written,
    write_frames, write_sound), kept as arrays. Memory follows the whole film, as an IMAGE output must."""

    def __init__(self, height: int, width: int, sample_rate: int = MODEL_RATE):
        self.size = (height, width)
        self.sample_rate = sample_rate
        self._frames: list[np.ndarray] = []
        self._sound: list[np.ndarray] = []
        self.frames_written = 0
        self.samples_written = 0

    def write_frames(self, frames: np.ndarray) -> None:
        """uint8 `[T, H, W, 3]` at this film's size."""
        if frames.dtype != np.uint8 or frames.ndim != 4 or tuple(frames.shape[1:]) != (*self.size, 3):
            raise InputShapeError(f"film frames {frames.dtype} {tuple(frames.shape)}: expected uint8 "
                                  f"[T, {self.size[0]}, {self.size[1]}, 3]")
        self._frames.append(np.array(frames))
        self.frames_written += len(frames)

    def write_sound(self, sound: np.ndarray) -> None:
        """float32 mono `[S]` at sample_rate."""
        sound = np.asarray(sound, dtype=np.float32).reshape(-1)
        self._sound.append(sound.copy())
        self.samples_written += len(sound)

    def frames(self) -> np.ndarray:
        """All frames so far, uint8 `[T, H, W, 3]`."""
        if not self._frames:
            return np.zeros((0, *self.size, 3), np.uint8)
        return np.concatenate(self._frames)

    def sound(self) -> np.ndarray:
        """All sound so far, float32 mono `[S]`."""
        return np.concatenate(self._sound) if self._sound else np.zeros(0, np.float32)


@dataclass(eq=False)
class FilmRecord:
    """What made a film assembled from several samplings (a shot list): the frame rate and the provenance a signed
    save records, in the two fields a sampled JointLatent offers JointAV Save Video. No cameo is ever used."""

    fps: float
    provenance: dict
    conditionings: list = field(default_factory=list)
