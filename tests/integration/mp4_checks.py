"""Read back an MP4 that Save Video wrote: streams, timing and whether picture and sound carry content."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import av
import numpy as np


@dataclass
class ClipFacts:
    video_codecs: list[str]
    audio_codecs: list[str]
    frames: int
    fps: float
    width: int
    height: int
    video_seconds: float
    sample_rate: int
    channels: int
    audio_seconds: float
    frame_spread: float  # largest mean absolute difference of any frame from the first, 0..255
    audio_peak: float
    audio_std: float


def read_clip(path: Path) -> ClipFacts:
    with av.open(str(path)) as container:
        video = [s for s in container.streams if s.type == "video"]
        audio = [s for s in container.streams if s.type == "audio"]
        video_codecs = [s.codec_context.name for s in video]
        audio_codecs = [s.codec_context.name for s in audio]
        fps = float(video[0].average_rate)
        width, height = video[0].codec_context.width, video[0].codec_context.height
        sample_rate, channels = audio[0].codec_context.sample_rate, audio[0].codec_context.channels
        frames = [f.to_ndarray(format="rgb24").astype(np.float32) for f in container.decode(video=0)]
    with av.open(str(path)) as container:
        # planar (channels, n) arrays; one row per channel
        chunks = [f.to_ndarray().reshape(channels, -1) for f in container.decode(audio=0)]
    samples = np.concatenate(chunks, axis=1) if chunks else np.zeros((channels, 0))
    spread = max(float(np.abs(f - frames[0]).mean()) for f in frames) if frames else 0.0
    return ClipFacts(
        video_codecs=video_codecs, audio_codecs=audio_codecs, frames=len(frames), fps=fps, width=width,
        height=height, video_seconds=len(frames) / fps, sample_rate=sample_rate, channels=channels,
        audio_seconds=samples.shape[1] / sample_rate, frame_spread=spread,
        audio_peak=float(np.abs(samples).max()) if samples.size else 0.0,
        audio_std=float(samples.std()) if samples.size else 0.0,
    )


def check_clip(path: Path, *, fps: float, frames: int, sample_rate: int, channels: int, width: int,
               height: int) -> ClipFacts:
    """Assert what a user of the workflow expects of its MP4; returns the facts for further checks."""
    facts = read_clip(path)
    one_frame = 1.0 / fps
    assert facts.video_codecs == ["h264"], f"{path.name}: video streams {facts.video_codecs}, expected one h264"
    assert facts.audio_codecs == ["aac"], f"{path.name}: audio streams {facts.audio_codecs}, expected one aac"
    assert abs(facts.fps - fps) < 1e-3, f"{path.name}: {facts.fps} fps, expected the model's {fps}"
    assert facts.frames == frames, f"{path.name}: {facts.frames} frames, expected {frames}"
    requested = frames / fps
    assert abs(facts.video_seconds - requested) <= one_frame, f"{path.name}: video {facts.video_seconds:.3f} s"
    assert abs(facts.audio_seconds - requested) <= one_frame, (
        f"{path.name}: audio lasts {facts.audio_seconds:.3f} s, expected {requested:.3f} s within one frame")
    assert (facts.width, facts.height) == (width, height), f"{path.name}: {facts.width}x{facts.height}"
    assert facts.sample_rate == sample_rate, f"{path.name}: {facts.sample_rate} Hz, expected {sample_rate}"
    assert facts.channels == channels, f"{path.name}: {facts.channels} channels, expected {channels}"
    assert facts.frame_spread > 1.0, f"{path.name}: every frame equals the first (spread {facts.frame_spread:.3f})"
    assert facts.audio_std > 1e-4 and facts.audio_peak > 1e-3, f"{path.name}: the audio is constant or silent"
    return facts
