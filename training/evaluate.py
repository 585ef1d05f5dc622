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


def evaluate_default_model(n: int = 20, steps: int | None = None, seed: int = EVAL_SEED) -> dict:
    """metrics.evaluate over n held-out captions, clip i sampled with seed + i."""
    captions = heldout_captions(n, seed)
    clips = [as_eval_clip(generate_clip(c, seed + i, steps)) for i, c in enumerate(captions)]
    return evaluate(clips, captions)
