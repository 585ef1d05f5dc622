"""The default model judged the way a user meets it: held-out captions through the CLI's own pipeline
(`pipeline.generate.generate`), decoded clips scored by `metrics.evaluate`.

The captions come from the held-out split of the toy world (colour pairings no training clip ever has),
one kind after another, so every kind is represented and no caption was seen verbatim in training.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..metrics import evaluate
from ..pipeline.generate import GeneratedClip, GenerationRequest, generate
from ..toyworld import caption_for, sample_spec
from ..toyworld.vocabulary import KINDS

EVAL_SEED = 2024


@dataclass(frozen=True)
class EvalClip:
    """What metrics.evaluate reads from a clip."""

    frames: np.ndarray  # [T, H, W, 3] float 0..1
    audio: np.ndarray  # [C, S]
    fps: float
    sample_rate: int


def heldout_captions(n: int = 20, seed: int = EVAL_SEED) -> list[str]:
    """n held-out captions, kinds in turn (bounce, slide, speak, bounce, ...)."""
    rng = np.random.default_rng(seed)
    captions: list[str] = []
    while len(captions) < n:
        spec = sample_spec(rng, "heldout")
        if spec.kind == KINDS[len(captions) % len(KINDS)]:
            captions.append(caption_for(spec))
    return captions


def generate_clip(caption: str, seed: int, steps: int | None = None) -> GeneratedClip:
    """One clip from the embedded default model with the CLI's defaults (solver, guidance, negatives)."""
    return generate(GenerationRequest(prompt=caption, seed=seed, steps=steps))


def as_eval_clip(clip: GeneratedClip) -> EvalClip:
    return EvalClip(frames=clip.frames.numpy(), audio=clip.audio["waveform"][0].numpy(), fps=clip.fps,
                    sample_rate=clip.audio["sample_rate"])


def bounce_captions(n: int = 12, seed: int = EVAL_SEED) -> list[str]:
    """n held-out bounce captions, asking for 1, 2, 3, 1, ... bounces: the held-out set above is mostly "once",
    where a model that always bounces once would look right (issue 19: "bounces twice" gave one or three)."""
    rng = np.random.default_rng(seed + 19)
    captions: list[str] = []
    while len(captions) < n:
        spec = sample_spec(rng, "heldout")
        if spec.kind == "bounce" and spec.count == len(captions) % 3 + 1:
            captions.append(caption_for(spec))
    return captions


def evaluate_bounces(n: int = 12, steps: int | None = None, seed: int = EVAL_SEED) -> dict:
    """metrics.evaluate over bounce_captions (clip i with seed + 100 + i), beside the toy world's renders."""
    captions = bounce_captions(n, seed)
    clips = [as_eval_clip(generate_clip(c, seed + 100 + i, steps)) for i, c in enumerate(captions)]
    return evaluate(clips, captions, truth=truth_clips(captions, seed + 100))


def truth_clips(captions: list[str], seed: int = EVAL_SEED) -> list:
    """The toy world's own render of each caption (clip i with seed + i): the ground truth of every measure."""
    from ..toyworld import render_clip
    from ..toyworld.scenes import parse_caption

    return [render_clip(parse_caption(c), seed + i) for i, c in enumerate(captions)]


def evaluate_default_model(n: int = 20, steps: int | None = None, seed: int = EVAL_SEED) -> dict:
    """metrics.evaluate over n held-out captions, clip i sampled with seed + i, beside the toy world's renders
    of the same captions (result["ground_truth"])."""
    captions = heldout_captions(n, seed)
    clips = [as_eval_clip(generate_clip(c, seed + i, steps)) for i, c in enumerate(captions)]
    return evaluate(clips, captions, truth=truth_clips(captions, seed))


# ------------------------------------------------------------------------------------------- cameo

CAMEO_CHARACTERS = (("purple", "high"), ("yellow", "low"), ("green", "mid"), ("blue", "high"))


@dataclass(frozen=True)
class CameoTrial:
    caption: str
    seed: int
    character: tuple[str, str]  # the cameo's (colour, voice)
    with_cameo: tuple[str | None, str | None]  # (colour, pitch class) measured in the clip made with the cameo
    without: tuple[str | None, str | None]  # the same, for the clip made from the same caption and seed without


def cameo_profiles(model, decoders, folder, characters=CAMEO_CHARACTERS, seed: int = EVAL_SEED) -> list:
    """One profile per character, made the way a user makes one: a recording of the character speaking,
    written as an MP4 (H.264 + AAC) and read back by pipeline.cameo.create_profile."""
    from ..audio.mp4 import write_mp4
    from ..pipeline.cameo import create_profile
    from ..toyworld import cameo_recording_spec, render_clip
    from .data import RECORDING_WORLD

    rng = np.random.default_rng(seed)
    profiles = []
    for colour, voice in characters:
        clip = render_clip(cameo_recording_spec(colour, voice, rng), int(rng.integers(2**31)), RECORDING_WORLD)
        path = write_mp4(f"{folder}/{colour}-{voice}.mp4", clip.frames, clip.fps, clip.audio, clip.sample_rate)
        profiles.append(create_profile(decoders, recording=path, name=f"{colour} {voice}", family=model.spec.family))
    return profiles


def cameo_captions(n: int = 20, seed: int = EVAL_SEED) -> list[str]:
    """n speaking-scene captions that name neither colour nor voice (toyworld.cameo_caption), plain and markup."""
    from ..toyworld import cameo_caption

    rng = np.random.default_rng(seed + 1)
    out = []
    while len(out) < n:
        spec = sample_spec(rng, "train")
        if spec.kind == "speak":
            out.append(cameo_caption(spec, markup=len(out) % 4 == 3))
    return out


def evaluate_cameo(folder, n: int = 20, steps: int = 24, seed: int = EVAL_SEED, mode: str = "auto") -> dict:
    """n cameo captions, caption i with profile i mod len(CAMEO_CHARACTERS), each sampled with and without the
    cameo from the same seed; the look (colour) and voice (pitch class) of every clip, read by the metrics.
    Returns per-trial results and the rates against the chance rates (1 in 6 colours, 1 in 3 voices)."""
    from ..metrics.audio_events import detect_audio_events
    from ..metrics.video_events import detect_video_events
    from ..pipeline import api
    from ..pipeline.cameo import apply_cameo
    from ..toyworld.vocabulary import OBJECT_COLOURS, VOICES

    model, decoders = api.load_joint_model(device="cpu"), api.load_decoders(device="cpu")
    if mode == "auto":  # (what apply_cameo would pick, named in the summary)
        mode = model.spec.cameo_mode
    profiles = cameo_profiles(model, decoders, folder)
    trials = []
    for i, caption in enumerate(cameo_captions(n, seed)):
        character = CAMEO_CHARACTERS[i % len(CAMEO_CHARACTERS)]
        conditioning = api.encode_prompt(model, caption)
        measured = []
        for use in (True, False):
            latent = api.empty_latent(model, model.spec.durations[0].name, *model.spec.resolutions[0])
            if use:
                latent = apply_cameo(model, decoders, latent, profiles[i % len(profiles)], mode=mode)
            latent = api.sample(model, conditioning, latent, seed=seed + i, steps=steps)
            frames = api.decode_video(decoders, latent)  # [T, H, W, 3] for one clip
            audio = api.decode_audio(decoders, latent, sample_rate=16000, channels=1)
            video = detect_video_events(frames.numpy(), "speak")
            sound = detect_audio_events(audio["waveform"][0].numpy(), audio["sample_rate"])
            measured.append((video.colour, sound.pitch_class))
        trials.append(CameoTrial(caption, seed + i, character, measured[0], measured[1]))

    def rate(which: str, index: int) -> float:
        return float(np.mean([getattr(t, which)[index] == t.character[index] for t in trials]))

    figures = {"colour_with": rate("with_cameo", 0), "colour_without": rate("without", 0),
               "pitch_with": rate("with_cameo", 1), "pitch_without": rate("without", 1),
               "colour_chance": 1 / len(OBJECT_COLOURS), "pitch_chance": 1 / len(VOICES)}
    lines = [f"cameo evaluation, {len(trials)} captions x (with, without) the cameo ({mode})",
             f"  look (colour)  with {figures['colour_with']:6.1%}  without {figures['colour_without']:6.1%}  "
             f"chance {figures['colour_chance']:6.1%}",
             f"  voice (pitch)  with {figures['pitch_with']:6.1%}  without {figures['pitch_without']:6.1%}  "
             f"chance {figures['pitch_chance']:6.1%}"]
    lines += [f"  {t.character} {t.caption!r}: with {t.with_cameo}, without {t.without}" for t in trials]
    return {**figures, "trials": trials, "summary": "\n".join(lines)}
