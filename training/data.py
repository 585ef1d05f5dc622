"""Toy-world training data: clips rendered on the fly from (seed, step) and the pre-encoded latent set.

Every batch is a pure function of the run seed and the step number (never of earlier draws), so a run
resumed from a checkpoint sees exactly the batches an uninterrupted run would have seen.
"""

from __future__ import annotations

import numpy as np
import torch

from ..toyworld import WorldConfig, caption_for, render_clip, sample_spec
from ..toyworld.scenes import SceneSpec

# Prompts that stand for "no caption" in training (caption dropout): the empty prompt and the negative
# prompts the CLI sends by default, so that classifier-free guidance contrasts the caption with them.
UNCONDITIONAL_PROMPTS = ("", "jitter, bad hands, blur, distortion", "robotic, muffled, echo, distorted")


# Cameo reference recordings: a character saying three syllables, 4 s (the profile's voice stretch needs > 1 s).
RECORDING_WORLD = WorldConfig(duration=4.0)


def step_rng(seed: int, step: int, stream: int = 0) -> np.random.Generator:
    """The numpy generator of one step of one run (stream separates independent uses within a step)."""
    return np.random.default_rng([seed, step, stream])


def step_generator(seed: int, step: int, stream: int = 0) -> torch.Generator:
    """The torch CPU generator of one step of one run."""
    return torch.Generator().manual_seed(int(step_rng(seed, step, stream + 1000).integers(2**62)))


def render_batch(rng: np.random.Generator, n: int, config: WorldConfig = WorldConfig()):
    """n training-split clips (held-out pairings never appear), each with its own render seed."""
    clips = []
    for _ in range(n):
        spec = sample_spec(rng, "train")
        clips.append(render_clip(spec, int(rng.integers(2**31)), config))
    return clips


def frames_to_tensor(frames: np.ndarray) -> torch.Tensor:
    """uint8 `[T, H, W, 3]` -> float `[3, T, H, W]` in -1..1 (the video VAE's input)."""
    return torch.from_numpy(frames).permute(3, 0, 1, 2).float().div(127.5).sub(1.0)


def training_caption(spec: SceneSpec, rng: np.random.Generator) -> str:
    """The caption of a scene in the forms users type: plain (70%) or Ovi markup (30%); the background
    phrase left out 15% of the time, so a prompt without it still works."""
    text = caption_for(spec, markup=bool(rng.random() < 0.3))
    if rng.random() < 0.15:
        bg = f" on a {spec.background} background"
        text = text.replace("," + bg, "").replace(bg, "")
    return text
