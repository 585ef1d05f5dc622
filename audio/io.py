"""Reading and writing WAV/FLAC for ComfyUI AUDIO dicts, with soundfile.

Writes go to a temporary file in the destination folder that is renamed over the target only once it
is complete, so a crash or a full disk never leaves a half-written file under the final name.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import soundfile as sf
import torch

from ..atomic import atomic_path
from ..errors import InputShapeError, InputValueError
from .finishing import AudioDict

# suffix -> (soundfile format, default sample encoding)
FORMATS = {
    ".wav": ("WAV", "PCM_16"),
    ".flac": ("FLAC", "PCM_24"),
}


def _format_for(path: Path) -> tuple[str, str]:
    try:
        return FORMATS[path.suffix.lower()]
    except KeyError:
        raise InputValueError(
            f"audio file {path}: suffix {path.suffix!r} is not supported; expected one of {', '.join(FORMATS)}"
        ) from None


def write_audio(path: str | os.PathLike, audio: AudioDict, *, index: int = 0, subtype: str | None = None) -> Path:
    """Write clip `index` of a ComfyUI AUDIO dict to `path` (.wav or .flac, chosen by suffix); returns the path.

    `subtype` is a soundfile encoding (default PCM_16 for WAV, PCM_24 for FLAC). Integer encodings cannot
    hold samples beyond full scale, so those are clipped to [-1, 1]; float encodings keep them.
    """
    path = Path(path)
    fmt, default_subtype = _format_for(path)
    subtype = subtype or default_subtype
    if not sf.check_format(fmt, subtype):
        raise InputValueError(f"write_audio {path}: subtype {subtype!r} cannot be written as {fmt}")
    waveform, rate = audio.get("waveform"), audio.get("sample_rate")
    if not isinstance(waveform, torch.Tensor) or waveform.ndim != 3:
        shape = tuple(waveform.shape) if isinstance(waveform, torch.Tensor) else type(waveform).__name__
        raise InputShapeError(f"write_audio {path}: audio['waveform'] is {shape}, expected a tensor [B, C, S]")
    if not 0 <= index < waveform.shape[0]:
        raise InputValueError(f"write_audio {path}: index={index}, expected 0 <= index < {waveform.shape[0]} (batch size)")
    if not isinstance(rate, (int, np.integer)) or rate <= 0:
        raise InputValueError(f"write_audio {path}: audio['sample_rate']={rate!r}, expected a positive integer")
    data = waveform[index].detach().to(device="cpu", dtype=torch.float32).numpy().T  # soundfile wants [S, C]
    if not np.isfinite(data).all():
        raise InputValueError(f"write_audio {path}: waveform has non-finite values (NaN/inf); expected all finite")
    if subtype.startswith("PCM"):
        data = np.clip(data, -1.0, 1.0)

    with atomic_path(path) as tmp:
        sf.write(str(tmp), data, int(rate), format=fmt, subtype=subtype)
    return path


def read_audio(path: str | os.PathLike) -> AudioDict:
    """Read a sound file into a ComfyUI AUDIO dict: waveform `[1, C, S]` float32 in [-1, 1]."""
    path = Path(path)
    if not path.is_file():
        raise InputValueError(f"read_audio: {path} does not exist or is not a file")
    data, rate = sf.read(str(path), dtype="float32", always_2d=True)
    waveform = torch.from_numpy(np.ascontiguousarray(data.T)).unsqueeze(0)
    return {"waveform": waveform, "sample_rate": int(rate)}
