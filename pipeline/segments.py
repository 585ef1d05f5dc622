"""The segment chain under every long-form run (pipeline.long_form): sample a segment with its conditioning items,
decode it, append its new frames and sound to a streaming writer, keep only its tail for the next one.

Timeline: video frame i of a segment lasts from i/fps to (i+1)/fps; the segment's sound (L audio latents of
512 samples at 16 kHz) ends a little before its last frame does, so a segment's frames are used only as far as
its sound reaches ("usable" frames, `_usable_frames`). The next segment starts at the first of the last n usable
frames (n = 1 + 4(k-1) for k held latent frames), and the sound switches from the old segment to the new one at
the end of those frames, which lies inside the held audio span. Media given for the whole film (a sound for
audio-to-video, frames for foley) is held in every segment in place of the generated modality.
"""

from __future__ import annotations

import logging
import math
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch

from ..audio.av_stream import MODEL_RATE, MediaClip, StreamingMP4Writer
from ..audio.mmaudio_vae import decode_audio_latent, encode_audio
from ..errors import GenerationInterrupted, InputShapeError, InputValueError
from ..samplers import (AudioSpan, ReferenceTokens, SegmentTail, VideoFrames, WholeAudio, WholeVideo,
                        audio_positions_covering)
from . import adapters, api
from .types import Decoders, JointLatent, JointModel

log = logging.getLogger(__name__)

# The holds each family's weights are held clean for (Ovi: a clean first frame only). The embedded default was
# fine-tuned with every long-form hold (default_model/TRAINING.md); measured on its 20 test and 20 validation clips,
# a clean whole video beats replacement for video-to-audio (55% vs 50% and 50% vs 40% within a frame), while a clean
# whole audio ties replacement for audio-to-video (85%) but loses the shuffled baseline's margin (1.00 vs 1.99
# frames), so its whole-audio hold stays noised.
TRAINED_HOLDS: dict[str, frozenset[str]] = {"jointav-default": frozenset({"first_frame", "whole_video"})}
DEFAULT_TRAINED_HOLDS = frozenset({"first_frame"})
HOLD_MODES = ("auto", "clean", "noised")
# Latent frames a segment holds from the one before (5 video frames): on 4 films extended to 20 s it kept the
# subject's colour at every seam and the sound in sync (0.62 frames), where holding 1 frame kept 80% / 1.09.
DEFAULT_HOLD = 2


def hold_mode_for(model: JointModel, hold: str, adapter: str = "auto") -> str:
    """"clean" when the model was trained with holds of kind `hold` ("segment_tail", "whole_audio",
    "whole_video"), or adds a hold adapter trained with them (`adapter` "auto"), else "noised". A segment tail is
    held clean by a model trained with a clean first frame: its video part is a run of leading clean frames
    (measured: colour kept at every seam, sound in sync); whole-sound and whole-video holds are far from that, and
    on weights not trained with them replacement measured better (an early default: A2V 70% vs 40% within a
    frame, V2A 35% vs 20%, on 20 clips each)."""
    trained = TRAINED_HOLDS.get(model.spec.family, DEFAULT_TRAINED_HOLDS)
    if hold in trained or (hold == "segment_tail" and "first_frame" in trained):
        return "clean"
    if adapter == "auto" and adapters.adapter_for(model, hold) is not None:
        return "clean"
    return "noised"


# (segment, segments, step, steps); segment is 1-based, segments may be 0 when unknown
LongProgress = Callable[[int, int, int, int], None]
MAX_SECONDS = 600.0  # a sanity bound on --to; the default model is measured to 60 s (bench/long_form.py)


@dataclass
class Settings:
    """Sampling settings shared by every segment of a long-form run."""

    seed: int = 0
    steps: int | None = None  # None: the model's own
    solver: str = "unipc"
    shift: float = 5.0
    video_guidance: float = 4.0
    audio_guidance: float = 3.0
    skip_layer: int | str | None = "default"
    video_negative: str = "jitter, bad hands, blur, distortion"
    audio_negative: str = "robotic, muffled, echo, distorted"
    # samplers.sample's "clean" (timestep-0 tokens) or "noised" (replacement), or "auto": clean where the model's
    # weights were trained with that kind of hold (TRAINED_HOLDS), noised where not
    hold_mode: str = "auto"
    # "auto": the model family's hold adapter where it ships one for a segment's hold (pipeline/adapters.py: the
    # embedded default's foley adapter while the picture is given, its animate adapter while the sound is, its
    # shots adapter while a film's later shot holds the carried subject);
    # "off": the base weights everywhere
    adapter: str = "auto"

    def record(self, model: JointModel) -> dict:
        return {"solver": self.solver, "steps": self.steps or model.spec.default_steps, "shift": self.shift,
                "video_guidance": self.video_guidance, "audio_guidance": self.audio_guidance,
                "skip_layer": self.skip_layer, "video_negative": self.video_negative,
                "audio_negative": self.audio_negative, "hold_mode": self.hold_mode, "adapter": self.adapter}


@dataclass
class RunReport:
    """What a long-form run wrote: frames and sound samples, segments finished, and whether it was interrupted."""

    frames: int = 0
    samples: int = 0
    segments: int = 0
    planned_segments: int = 0
    interrupted: bool = False
    seams: list[int] = field(default_factory=list)  # output frame index of the first new frame of each segment
    cuts: list[int] = field(default_factory=list)  # output frame index where each shot after the first starts


# --------------------------------------------------------------------------------------------- small pieces

def parse_seconds(text: str | float, what: str = "--to") -> float:
    """'20s', '20', '1.5s', '1m' -> seconds (> 0)."""
    if isinstance(text, (int, float)) and not isinstance(text, bool):
        seconds = float(text)
    else:
        match = re.fullmatch(r"\s*([0-9]*\.?[0-9]+)\s*(s|sec|m|min)?\s*", str(text))
        if not match:
            raise InputValueError(f"{what}={text!r}: expected a duration such as 20s, 1.5s or 1m")
        seconds = float(match.group(1)) * (60.0 if match.group(2) in ("m", "min") else 1.0)
    if not math.isfinite(seconds) or seconds <= 0:
        raise InputValueError(f"{what}={text!r}: expected a duration above zero")
    return seconds


def segment_frames(model: JointModel) -> int:
    """Video frames of one generated segment: the model's default preset (25 = 2 s on the default model)."""
    return model.spec.durations[0].frames


def held_frames(hold_latent_frames: int, model: JointModel) -> int:
    return 1 + model.spec.vae_time_factor * (hold_latent_frames - 1)


def _audio_seconds_per_latent(model: JointModel) -> float:
    return model.spec.audio_samples_per_latent / model.spec.audio_sample_rate


def _held_audio(model: JointModel, hold_latent_frames: int) -> int:
    """Audio latents the next segment holds: the fewest that cover its held video frames."""
    return audio_positions_covering(hold_latent_frames, model.spec.vae_time_factor, model.spec.fps,
                                    _audio_seconds_per_latent(model))


def _sample_at(frame: int, fps: float) -> int:
    return round(frame * MODEL_RATE / fps)


def _usable_frames(frames: int, sound_samples: int, fps: float, n_held: int, held_samples: int) -> int:
    """The most leading frames e of a segment such that the last n_held of them, with the held audio span that
    starts where they start, lie inside the segment's sound (0 when no e works)."""
    for e in range(frames, n_held - 1, -1):
        if _sample_at(e - n_held, fps) + held_samples <= sound_samples:
            return e
    return 0


def to_uint8(frames: torch.Tensor) -> np.ndarray:
    """ComfyUI IMAGE [T, H, W, 3] in 0..1 -> uint8 frames."""
    return (frames.clamp(0, 1) * 255).round().to(torch.uint8).numpy()


def encode_frames(decoders: Decoders, frames: np.ndarray) -> torch.Tensor:
    """uint8 frames [1 + 4k, H, W, 3] -> video latent [1, C, 1 + k, h, w] (the VAE's causal encoding)."""
    vae = decoders.video_vae
    if vae is None or getattr(vae, "parts", "both") == "decoder":
        raise InputValueError("decoders: no video VAE encoder is loaded; encoding a clip needs it")
    ref = next(vae.parameters())
    pixels = torch.from_numpy(np.ascontiguousarray(frames)).permute(3, 0, 1, 2).float().div(127.5).sub(1.0)[None]
    with torch.no_grad():
        return vae.encode(pixels.to(ref.device, ref.dtype)).float().cpu()


def encode_sound(decoders: Decoders, sound: np.ndarray) -> torch.Tensor:
    """16 kHz mono [S] -> audio latent [1, ceil(S / 512), C]."""
    if decoders.audio_vae is None or not decoders.audio_vae.has_encoder:
        raise InputValueError("decoders: no audio VAE encoder is loaded; encoding a sound needs it")
    return encode_audio(decoders.audio_vae, torch.from_numpy(np.ascontiguousarray(sound))[None, None],
                        MODEL_RATE).float().cpu()


def decode_segment(decoders: Decoders, latent: JointLatent) -> tuple[np.ndarray, np.ndarray]:
    """A sampled latent -> (uint8 frames [T, H, W, 3], 16 kHz mono sound [S], clipped to [-1, 1])."""
    frames = to_uint8(api.decode_video(decoders, latent))
    sound = decode_audio_latent(decoders.audio_vae, decoders.vocoder, latent.audio)[0, 0].float().cpu().numpy()
    return frames, np.clip(sound, -1.0, 1.0)


# --------------------------------------------------------------------------------------------- input checks

def check_media_fits(model: JointModel, clip: MediaClip, what: str, *, need_sound: bool, min_frames: int = 1) -> None:
    """A clip read from a file must have the model's frame rate and a frame size it takes (and sound if needed)."""
    if clip.frames is None:
        raise InputValueError(f"{what} {clip.path}: holds no video frames; expected a video file (MP4, MOV, WebM)")
    if need_sound and clip.sound is None:
        raise InputValueError(f"{what} {clip.path}: has no sound; extension continues picture and sound together, "
                              f"so it needs a video with an audio track")
    if abs(clip.fps - model.spec.fps) > 1e-3:
        raise InputValueError(f"{what} {clip.path}: {clip.fps:g} fps, expected the model's {model.spec.fps:g} fps "
                              f"(model {model.name}); convert it first, e.g. ffmpeg -i IN -r {model.spec.fps:g} OUT.mp4")
    height, width = clip.frames.shape[1:3]
    try:
        api.frame_size(model, int(height), int(width))
    except InputValueError as e:
        raise InputValueError(f"{what} {clip.path}: frames of {width}x{height} do not fit the model: {e}") from None
    if clip.frames.shape[0] < min_frames:
        raise InputValueError(f"{what} {clip.path}: {clip.frames.shape[0]} frames, expected at least {min_frames}")


# --------------------------------------------------------------------------------------------- segments

class _Run:
    """One model, its decoders and settings; generates segments and writes them to one writer."""

    def __init__(self, model: JointModel, decoders: Decoders, settings: Settings, writer: StreamingMP4Writer,
                 progress: LongProgress | None, cancel: Callable[[], bool] | None, planned: int):
        self.model, self.decoders, self.settings, self.writer = model, decoders, settings, writer
        self.progress, self.cancel = progress, cancel
        self.report = RunReport(planned_segments=planned)
        self._prompts: dict[str, object] = {}

    def conditioning(self, prompt: str):
        if prompt not in self._prompts:
            self._prompts[prompt] = api.encode_prompt(self.model, prompt, video_negative=self.settings.video_negative,
                                                      audio_negative=self.settings.audio_negative)
        return self._prompts[prompt]

    def sample(self, prompt: str, items: list, height: int, width: int, frames_preset: str | None = None,
               seed_offset: int = 0, hold: str = "segment_tail") -> JointLatent:
        if self.cancel is not None and self.cancel():
            raise GenerationInterrupted(f"stopped before segment {self.report.segments + 1}")
        latent = api.empty_latent(self.model, frames_preset or api.MODEL_DURATION, height, width)
        latent.conditionings.extend(items)
        segment = self.report.segments + 1

        def step(done: int, total: int) -> None:
            if self.progress is not None:
                self.progress(segment, self.report.planned_segments, done, total)

        s = self.settings
        if s.hold_mode not in HOLD_MODES:
            raise InputValueError(f"hold_mode={s.hold_mode!r}: expected one of {', '.join(HOLD_MODES)}")
        mode = hold_mode_for(self.model, hold, s.adapter) if s.hold_mode == "auto" else s.hold_mode
        return api.sample(self.model, self.conditioning(prompt), latent, seed=s.seed + seed_offset,
                          steps=s.steps or self.model.spec.default_steps, solver=s.solver, shift=s.shift,
                          video_guidance=s.video_guidance, audio_guidance=s.audio_guidance, skip_layer=s.skip_layer,
                          progress=step, cancel=self.cancel, hold_mode=mode, adapter=s.adapter)

    def write(self, frames: np.ndarray, sound: np.ndarray, limit_frames: int | None = None) -> None:
        """Append frames and the sound that goes with them (sound trimmed or padded to the frames' duration)."""
        if limit_frames is not None:
            frames = frames[:max(0, limit_frames - self.writer.frames_written)]
        if not len(frames):
            return
        start = self.writer.frames_written
        end_sample = _sample_at(start + len(frames), self.writer_fps)
        want = end_sample - self.writer.samples_written
        sound = sound[:want]
        if len(sound) < want:  # the last few samples a rounding leaves out: silence, never a gap in time
            sound = np.pad(sound, (0, want - len(sound)))
        self.writer.write_frames(frames)
        self.writer.write_sound(sound)
        self.report.frames, self.report.samples = self.writer.frames_written, self.writer.samples_written

    @property
    def writer_fps(self) -> float:
        return self.model.spec.fps


@dataclass(eq=False)
class _Tail:
    """What the next segment needs from the film so far: the last n usable frames and the sound from their start."""

    frames: np.ndarray  # uint8 [n, H, W, 3]
    sound: np.ndarray  # 16 kHz from the first of those frames to the end of the segment's sound


@dataclass(eq=False)
class _Given:
    """Media held for the whole film: a sound (audio-to-video) or frames (foley), on the film's timeline."""

    frames: np.ndarray | None = None  # uint8 [T, H, W, 3]
    sound: np.ndarray | None = None  # 16 kHz mono


def _window(given: _Given, start_frame: int, frames: int, samples: int, fps: float) -> tuple[np.ndarray | None, np.ndarray | None]:
    """The given media under one segment starting at `start_frame`, padded past the end (repeated last frame,
    silence); what lies past the end is never written, the film ends with the given media."""
    video = sound = None
    if given.frames is not None:
        video = given.frames[start_frame:start_frame + frames]
        if len(video) < frames:
            video = np.concatenate([video, np.repeat(given.frames[-1:], frames - len(video), axis=0)])
    if given.sound is not None:
        a0 = _sample_at(start_frame, fps)
        sound = given.sound[a0:a0 + samples]
        sound = np.pad(sound, (0, samples - len(sound)))
    return video, sound



def _segment(run: _Run, prompt: str, given: _Given, start_frame: int, tail: _Tail | None, hold: int,
             references: ReferenceTokens | None, size: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """Sample and decode one segment that starts at film frame `start_frame`; returns its frames and sound, with
    the given media in place of the generated where given."""
    model = run.model
    m = _held_audio(model, hold)
    spl = model.spec.audio_samples_per_latent
    frames_n = segment_frames(model)
    length = api.empty_latent(model, api.MODEL_DURATION, *size).audio.shape[1]
    given_video, given_sound = _window(given, start_frame, frames_n, length * spl, model.spec.fps)
    items: list = []
    if given_sound is not None:
        items.append(WholeAudio(encode_sound(run.decoders, given_sound)[:, :length]))
    if given_video is not None:
        items.append(WholeVideo(encode_frames(run.decoders, given_video)))
    if tail is not None:
        if len(tail.sound) < m * spl:
            raise InputShapeError(f"extension: {len(tail.sound)} samples of sound after the held frames, expected "
                                  f"at least {m * spl} to cover them")
        video = encode_frames(run.decoders, tail.frames) if given_video is None else None
        audio = encode_sound(run.decoders, tail.sound[:m * spl]) if given_sound is None else None
        if video is not None and audio is not None:
            items.append(SegmentTail(video, audio, min_audio=m))
        elif video is not None:
            items.append(VideoFrames(video, 0))
        elif audio is not None:
            items.append(AudioSpan(audio, 0))
    if references is not None:
        items.append(references)
    hold_kind = "whole_audio" if given_sound is not None else "whole_video" if given_video is not None \
        else "segment_tail"
    latent = run.sample(prompt, items, *size, seed_offset=run.report.segments, hold=hold_kind)
    frames, sound = decode_segment(run.decoders, latent)
    if given_video is not None:
        frames = given_video
    if given_sound is not None:
        sound = given_sound
    return frames, sound


def _film(run: _Run, prompts: Sequence[str], total_frames: int, hold: int, size: tuple[int, int], *,
          given: _Given | None = None, tail: _Tail | None = None, references: ReferenceTokens | None = None) -> None:
    """Write segments until the film reaches `total_frames`: the first from nothing (or continuing `tail`, the end
    of what is written), each next one holding the previous one's tail."""
    model = run.model
    given = given or _Given()
    n, m = held_frames(hold, model), _held_audio(model, hold)
    held_samples = m * model.spec.audio_samples_per_latent
    fps = model.spec.fps
    index = 0
    while run.writer.frames_written < total_frames:
        prompt = prompts[min(index, len(prompts) - 1)]
        start = run.writer.frames_written - (n if tail is not None else 0)
        frames, sound = _segment(run, prompt, given, start, tail, hold, references, size)
        usable = _usable_frames(len(frames), len(sound), fps, n, held_samples)
        first_new = n if tail is not None else 0
        whole = _usable_frames(len(frames), len(sound), fps, 0, 0)  # every frame its sound reaches
        if run.writer.frames_written + whole - first_new >= total_frames:
            usable = whole  # the film ends in this segment: no tail to keep, so its sound's reach is the limit
        if usable <= first_new or (tail is None and usable < n):
            raise InputShapeError(f"a segment of {len(frames)} frames has too little sound to hold its last {n}")
        if tail is not None:
            # the held frames were written already (they are the previous segment's); the sound switches at their end
            run.report.seams.append(run.writer.frames_written)
        run.write(frames[first_new:usable], sound[_sample_at(first_new, fps):], limit_frames=total_frames)
        run.report.segments += 1
        index += 1
        tail = _Tail(frames[usable - n:usable].copy(), sound[_sample_at(usable - n, fps):].copy())


def _first_tail(frames: np.ndarray, sound: np.ndarray, model: JointModel, hold: int, what: str) -> tuple[int, _Tail]:
    """(usable frames, tail) of a clip that starts the film."""
    n, m = held_frames(hold, model), _held_audio(model, hold)
    held_samples = m * model.spec.audio_samples_per_latent
    usable = _usable_frames(len(frames), len(sound), model.spec.fps, n, held_samples)
    if usable < n:
        need = (_sample_at(len(frames) - n, model.spec.fps) + held_samples) / MODEL_RATE
        raise InputValueError(f"{what}: its sound lasts {len(sound) / MODEL_RATE:.2f} s, too short to cover its last "
                              f"{n} frame(s); expected about {need:.2f} s of sound")
    start = _sample_at(usable - n, model.spec.fps)
    return usable, _Tail(frames[usable - n:usable].copy(), sound[start:].copy())



def plan_segments(model: JointModel, start_frames: int, total_frames: int, hold: int) -> int:
    """Segments needed to grow a film of `start_frames` to `total_frames` (a planning figure for progress)."""
    n = held_frames(hold, model)
    per = segment_frames(model) - n - 2  # a segment's sound ends 1-2 frames before its last frame
    first = 0
    if start_frames == 0:
        first, start_frames = 1, segment_frames(model) - 1
    return first + max(0, math.ceil((total_frames - start_frames) / max(1, per)))


def _check_hold(model: JointModel, hold: int) -> None:
    if isinstance(hold, bool) or not isinstance(hold, int) \
            or not 1 <= hold < (segment_frames(model) - 1) // model.spec.vae_time_factor:
        raise InputValueError(f"hold_latent_frames={hold!r}: expected a small integer >= 1 (less than half a segment)")


def _check_prompts(prompts: Sequence[str]) -> list[str]:
    prompts = [prompts] if isinstance(prompts, str) else list(prompts)
    if not prompts or any(not isinstance(p, str) or not p.strip() for p in prompts):
        raise InputValueError("--prompt: expected at least one prompt, none of them empty")
    return prompts


def _total_frames(model: JointModel, to_seconds: float, what: str = "--to") -> int:
    if not 0 < to_seconds <= MAX_SECONDS:
        raise InputValueError(f"{what} {to_seconds:g} s: expected more than 0 and at most {MAX_SECONDS:g} s")
    return max(1, round(to_seconds * model.spec.fps))
