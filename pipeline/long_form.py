"""Beyond one clip: extension, audio-to-video, video-to-audio (foley) and multi-shot films.

Each is a composition of conditioning items (samplers.conditioning), not a new sampler:
- extension: the next segment holds the previous one's last latent frames and the audio span covering them
  (`SegmentTail`); the held span is shared and nothing is cross-faded;
- audio-to-video: the whole audio latent held (`WholeAudio`); foley: the whole video latent held (`WholeVideo`);
- multi-shot: every shot after the first carries the subject of the first as reference tokens (its face crops
  and voice, picked the way a cameo profile's are), joined with hard cuts.

Long runs stream through pipeline.segments: each segment is decoded and appended to a `StreamingMP4Writer` and
only its tail (a few frames and a fraction of a second of sound) is kept for the next one, so memory follows the
segment, not the film. Graph (node) versions of the same compositions are in pipeline.graph_latents.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch

from ..audio.av_stream import MediaClip, StreamingMP4Writer
from ..audio.mmaudio_vae import encode_audio
from ..errors import GenerationInterrupted, InputValueError
from ..samplers import ReferenceTokens
from .segments import (DEFAULT_HOLD, DEFAULT_TRAINED_HOLDS, HOLD_MODES, MAX_SECONDS, TRAINED_HOLDS, LongProgress, RunReport,
                       Settings, _check_hold, _check_prompts, _film, _first_tail, _Given, _Run, _segment,
                       _sample_at, _total_frames, _usable_frames, check_media_fits, held_frames, hold_mode_for, parse_seconds,
                       plan_segments)
from .types import Decoders, JointModel

log = logging.getLogger(__name__)

__all__ = ["DEFAULT_HOLD", "DEFAULT_TRAINED_HOLDS", "HOLD_MODES", "MAX_SECONDS", "TRAINED_HOLDS", "RunReport", "Settings", "Shot",
           "animate", "check_media_fits", "extend", "foley", "hold_mode_for", "parse_seconds", "parse_shot",
           "parse_shot_list", "shots", "subject_crops", "subject_reference"]


def extend(model: JointModel, decoders: Decoders, writer: StreamingMP4Writer, *, to_seconds: float,
           prompts: Sequence[str], source: MediaClip | None = None, hold_latent_frames: int = DEFAULT_HOLD,
           settings: Settings | None = None, progress: LongProgress | None = None,
           cancel: Callable[[], bool] | None = None) -> RunReport:
    """Write a film of `to_seconds` to `writer`: `source` (a clip read from a file; None: a first segment generated
    from prompts[0]) followed by segments each holding the previous one's last `hold_latent_frames` latent frames
    and the audio span covering them. prompts: one per generated segment (the last repeats).

    Interruption (cancel() true, or GenerationInterrupted) stops between steps; the report says so and the writer
    holds every finished segment (the caller commits it). Other errors propagate (the caller aborts the writer).
    """
    settings = settings or Settings()
    prompts = _check_prompts(prompts)
    _check_hold(model, hold_latent_frames)
    total = _total_frames(model, to_seconds)
    if source is not None:
        check_media_fits(model, source, "extend: input", need_sound=True,
                         min_frames=held_frames(hold_latent_frames, model))
        if total <= source.frames.shape[0]:
            raise InputValueError(f"--to {to_seconds:g} s: the input {source.path} already lasts "
                                  f"{source.frames.shape[0] / model.spec.fps:.2f} s; expected a longer target")
    start = source.frames.shape[0] if source is not None else 0
    run = _Run(model, decoders, settings, writer, progress, cancel,
               plan_segments(model, start, total, hold_latent_frames))
    try:
        tail = None
        if source is not None:
            usable, tail = _first_tail(source.frames, source.sound, model, hold_latent_frames,
                                       f"extend: input {source.path}")
            run.write(source.frames[:usable], source.sound)
        _film(run, prompts, total, hold_latent_frames, writer.size, tail=tail)
    except GenerationInterrupted:
        run.report.interrupted = True
    return run.report


# --------------------------------------------------------------------------------------------- A2V and foley

def animate(model: JointModel, decoders: Decoders, writer: StreamingMP4Writer, sound: MediaClip,
            prompts: Sequence[str], *, to_seconds: float | None = None, hold_latent_frames: int = DEFAULT_HOLD,
            settings: Settings | None = None, progress: LongProgress | None = None,
            cancel: Callable[[], bool] | None = None) -> RunReport:
    """Audio-to-video: the given sound's audio latent held clean for every segment (a longer sound is covered by
    segments chained as in `extend`, each also holding the previous one's last frames); frames generated to follow
    it. The file carries the given sound (not its re-synthesis). to_seconds: default the sound's length."""
    settings = settings or Settings()
    prompts = _check_prompts(prompts)
    _check_hold(model, hold_latent_frames)
    if sound.sound is None:
        raise InputValueError(f"animate: --audio {sound.path}: has no sound")
    seconds = sound.sound_seconds if to_seconds is None else to_seconds
    total = _total_frames(model, seconds)
    if _sample_at(total, model.spec.fps) > len(sound.sound) + 1:
        raise InputValueError(f"animate: --audio {sound.path} lasts {sound.sound_seconds:.2f} s, shorter than the "
                              f"asked duration {seconds:g} s; give a longer sound or a shorter --to")
    run = _Run(model, decoders, settings, writer, progress, cancel, plan_segments(model, 0, total, hold_latent_frames))
    try:
        _film(run, prompts, total, hold_latent_frames, writer.size, given=_Given(sound=sound.sound))
    except GenerationInterrupted:
        run.report.interrupted = True
    return run.report


def foley(model: JointModel, decoders: Decoders, writer: StreamingMP4Writer, video: MediaClip,
          prompts: Sequence[str], *, to_seconds: float | None = None, hold_latent_frames: int = DEFAULT_HOLD,
          settings: Settings | None = None, progress: LongProgress | None = None,
          cancel: Callable[[], bool] | None = None) -> RunReport:
    """Video-to-audio: the given video's latent held clean for every segment (a longer video is covered by segments
    chained as in `extend`, each also holding the sound under the previous one's last frames); its sound generated.
    The file carries the given frames and the generated sound. to_seconds: default the video's length."""
    settings = settings or Settings()
    prompts = _check_prompts(prompts)
    _check_hold(model, hold_latent_frames)
    check_media_fits(model, video, "foley: input", need_sound=False)
    available = video.frames.shape[0]
    total = _total_frames(model, available / model.spec.fps if to_seconds is None else to_seconds)
    if total > available:
        raise InputValueError(f"foley: input {video.path}: {available} frames ({available / model.spec.fps:.2f} s), "
                              f"shorter than the asked duration {to_seconds:g} s ({total} frames); give a longer "
                              f"video or a shorter --to")
    run = _Run(model, decoders, settings, writer, progress, cancel, plan_segments(model, 0, total, hold_latent_frames))
    try:
        _film(run, prompts, total, hold_latent_frames, writer.size, given=_Given(frames=video.frames))
    except GenerationInterrupted:
        run.report.interrupted = True
    return run.report


# --------------------------------------------------------------------------------------------- multi-shot

@dataclass(frozen=True)
class Shot:
    prompt: str
    seconds: float


def parse_shot(text: str, what: str = "--shot") -> Shot:
    """'PROMPT@DURATION' (e.g. 'a red ball bounces@2s') -> Shot; the last '@' splits. `what` names the input in
    errors (the CLI's --shot; a node's 'shots line 2')."""
    if "@" not in text:
        raise InputValueError(f"{what} {text!r}: expected PROMPT@DURATION, e.g. 'a red ball bounces@2s'")
    prompt, _, duration = text.rpartition("@")
    if not prompt.strip():
        raise InputValueError(f"{what} {text!r}: the prompt is empty; expected PROMPT@DURATION")
    try:
        seconds = parse_seconds(duration, f"{what} duration")
    except InputValueError:
        raise InputValueError(f"{what} {text!r}: duration {duration!r} is not a duration above zero; expected e.g. "
                              f"2s or 1.5") from None
    if seconds > MAX_SECONDS:
        raise InputValueError(f"{what} {text!r}: duration {seconds:g} s, expected at most {MAX_SECONDS:g} s")
    return Shot(prompt.strip(), seconds)


def parse_shot_list(text: str, what: str = "shots") -> list[Shot]:
    """One PROMPT@DURATION per line (blank lines skipped) -> shots, each line checked as the CLI's --shot is; the
    errors name the line ('shots line 2 ...')."""
    shot_list = [parse_shot(line, f"{what} line {n}") for n, line in enumerate(str(text).splitlines(), 1)
                 if line.strip()]
    if not shot_list:
        raise InputValueError(f"{what}: no shot given; expected one PROMPT@DURATION per line, e.g. "
                              f"'a red ball bounces@2s'")
    return shot_list


CARRY_CHOICES = ("subject", "none")


def subject_crops(frames: np.ndarray, fps: float, grid: int) -> np.ndarray:
    """The subject of a shot as pictures, picked the way a cameo profile's are (cameo.reference_media): its two
    sharpest centred-subject crops, their side a multiple of `grid` pixels (the whole middle frame when no subject
    is centred). uint8 `[k, S, S, 3]`. Training carries subjects across clips with the same pictures."""
    from ..cameo.encode import MAX_REFERENCE_SIZE
    from ..cameo.reference_media import crop_side, pick_frames, square_crop

    times = np.arange(len(frames)) / fps
    try:
        picks = pick_frames(frames, times, 2)
        side = min(MAX_REFERENCE_SIZE, max(grid, math.ceil(crop_side(frames.shape[1:], picks[0].box) / grid) * grid))
        return np.stack([square_crop(frames[p.index], p.box, side) for p in picks])
    except InputValueError as e:
        log.info("shots: no centred subject picked (%s); carrying the whole middle frame", e)
        return frames[len(frames) // 2][None]


def subject_reference(model: JointModel, decoders: Decoders, frames: np.ndarray, sound: np.ndarray) -> ReferenceTokens:
    """The subject of a shot as reference tokens: its look (`subject_crops`) and its longest voiced stretch (none
    when the shot has no voice: then only its look is carried)."""
    from ..cameo.conditioning import encode_pictures
    from ..cameo.encode import reference_grid
    from ..cameo.reference_media import VOICE_RATE, voiced_segment

    crops = subject_crops(frames, model.spec.fps, reference_grid(decoders.video_vae))
    audio = None
    try:
        segment = voiced_segment(sound, 0.5, 2.0)
        audio = encode_audio(decoders.audio_vae, torch.from_numpy(segment.waveform)[None], VOICE_RATE).float().cpu()
    except InputValueError as e:
        log.info("shots: no voice carried from the shot (%s); carrying its look only", e)
    return ReferenceTokens(video=encode_pictures(decoders.video_vae, crops)[None], audio=audio,
                           guided=model.spec.reference_guidance, carried=True)


def shots(model: JointModel, decoders: Decoders, writer: StreamingMP4Writer, shot_list: Sequence[Shot], *,
          carry: str = "subject", hold_latent_frames: int = DEFAULT_HOLD, settings: Settings | None = None,
          progress: LongProgress | None = None, cancel: Callable[[], bool] | None = None) -> RunReport:
    """A film of several shots joined with hard cuts. carry="subject": every shot after the first holds the first
    shot's subject (look and voice) as reference tokens; "none": each shot stands alone. A shot longer than one
    segment is extended (as `extend`) with its own prompt."""
    settings = settings or Settings()
    if not shot_list:
        raise InputValueError("--shot: expected at least one PROMPT@DURATION")
    if carry not in CARRY_CHOICES:
        raise InputValueError(f"carry={carry!r}: expected one of {', '.join(CARRY_CHOICES)}")
    for i, shot in enumerate(shot_list):
        if not shot.prompt.strip():
            raise InputValueError(f"--shot {i + 1}: the prompt is empty")
        if not 0 < shot.seconds <= MAX_SECONDS:
            raise InputValueError(f"--shot {i + 1} ({shot.prompt!r}): duration {shot.seconds:g} s, expected more "
                                  f"than 0 and at most {MAX_SECONDS:g} s")
    fps = model.spec.fps
    planned = sum(plan_segments(model, 0, round(s.seconds * fps), hold_latent_frames) for s in shot_list)
    run = _Run(model, decoders, settings, writer, progress, cancel, planned)
    references = None
    try:
        for i, shot in enumerate(shot_list):
            start = run.writer.frames_written
            end = start + max(1, round(shot.seconds * fps))
            if i:
                run.report.cuts.append(start)
            if i == 0 and carry == "subject":
                # the first shot's first segment is sampled alone, so its subject can be carried from it
                frames, sound = _segment(run, shot.prompt, _Given(), 0, None, hold_latent_frames, None, writer.size)
                references = subject_reference(model, decoders, frames, sound)
                whole = _usable_frames(len(frames), len(sound), fps, 0, 0)
                if whole >= end:  # the shot ends in this segment
                    run.write(frames[:whole], sound, limit_frames=end)
                    run.report.segments += 1
                    continue
                usable, tail = _first_tail(frames, sound, model, hold_latent_frames, "shot 1")
                run.write(frames[:usable], sound, limit_frames=end)
                run.report.segments += 1
                _film(run, [shot.prompt], end, hold_latent_frames, writer.size, tail=tail)
            else:
                _film(run, [shot.prompt], end, hold_latent_frames, writer.size, references=references)
    except GenerationInterrupted:
        run.report.interrupted = True
    return run.report
