"""The joint sampling loop: seeded noise, two solvers (video, audio) on one schedule, guidance, keep-masks.

Per step i (as Ovi's OviFusionEngine.generate): check cancel; overwrite held frames/positions with their clean
values; one positive and one negative model pass at timestep[i]; combine per modality; advance the video and the
audio solver; report progress. After the last step the held entries are overwritten once more.

Conditionings are conditioning items (samplers.conditioning): each applies itself to the latent as a keep mask,
and an item with a `reference_tokens(video_shape, audio_shape)` method (guidance.ReferenceTokens,
cameo.conditioning.CameoReference) also adds clean tokens that both guidance passes receive at every step; at
most one such item per clip. `conditioning.resolve` makes the one `Held` the loop uses.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from fractions import Fraction

import torch

from ..errors import GenerationInterrupted, InputShapeError, InputValueError
from .conditioning import Conditioning, resolve
from .dpmpp import DPMPPSolver
from .euler import EulerSolver
from .guidance import (DEFAULT_AUDIO_GUIDANCE, DEFAULT_SLG_LAYER, DEFAULT_VIDEO_GUIDANCE, JointGuidance, JointModel,
                       PromptContexts, ReferenceTokens, guided_velocity)
from .schedules import FlowSolver
from .step_cache import StepCache
from .unipc import UniPCSolver

SOLVERS: dict[str, type[FlowSolver]] = {"unipc": UniPCSolver, "dpm++": DPMPPSolver, "euler": EulerSolver}
DEFAULT_SOLVER, DEFAULT_STEPS, DEFAULT_SHIFT = "unipc", 50, 5.0
HOLD_MODES = ("clean", "noised")

# Ovi pairs 31 video latent frames with 157 audio latents (5 s) and 61 with 314 (10 s): a fixed table in its
# engine, which is the same ratio in both models: 157 audio latents per 30 latent-frame intervals (5 s at 24 fps
# with 4x temporal compression, 1 + 4*(F-1) frames). See audio_latent_length.
OVI_AUDIO_PER_VIDEO_FRAME = Fraction(157, 30)

_SEED_RANGE = (-(2**63), 2**64 - 1)  # what torch.Generator.manual_seed accepts


def make_solver(name: str = DEFAULT_SOLVER, steps: int = DEFAULT_STEPS, shift: float = DEFAULT_SHIFT) -> FlowSolver:
    """A fresh solver: "unipc" (Ovi's default), "dpm++" or "euler"."""
    if name not in SOLVERS:
        raise InputValueError(f"solver: got {name!r}, expected one of {', '.join(repr(n) for n in SOLVERS)}")
    return SOLVERS[name](steps, shift)


def audio_latent_length(video_latent_frames: int,
                        audio_per_video_frame: Fraction | float = OVI_AUDIO_PER_VIDEO_FRAME) -> int:
    """Audio latent positions that go with `video_latent_frames` latent frames.

    round((F - 1) * ratio), halves rounded up. F - 1 because the first latent frame is a single video frame and
    each further one covers 4 frames. Ovi: 31 -> 157, 61 -> 314.
    """
    if isinstance(video_latent_frames, bool) or not isinstance(video_latent_frames, int) or video_latent_frames < 2:
        raise InputValueError(f"video_latent_frames: got {video_latent_frames!r}, expected an integer >= 2")
    ratio = Fraction(audio_per_video_frame)
    if ratio <= 0:
        raise InputValueError(f"audio_per_video_frame: got {audio_per_video_frame!r}, expected a ratio > 0")
    return int((video_latent_frames - 1) * ratio + Fraction(1, 2))


def initial_noise(shape: Sequence[int], seed: int, *, device: torch.device | str | None = None,
                  dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """Standard normal noise `[B, *item]`, as Ovi's engine draws it, per batch item.

    Item b is torch.randn(item, generator=torch.Generator(device).manual_seed(seed + b)) with a FRESH generator;
    so item 0 is exactly Ovi's noise for `seed` and item b of a batch equals a batch-1 run with seed + b. The
    video and the audio noise each start from their own fresh generator with the same seed, as in Ovi. The draw
    depends on device and dtype (Ovi draws in the model dtype on the GPU).
    """
    if isinstance(seed, bool) or not isinstance(seed, int) or not _SEED_RANGE[0] <= seed <= _SEED_RANGE[1]:
        raise InputValueError(f"seed: got {seed!r}, expected an integer in [{_SEED_RANGE[0]}, {_SEED_RANGE[1]}]")
    device = torch.device(device if device is not None else "cpu")
    items = []
    for b in range(shape[0]):
        generator = torch.Generator(device=device).manual_seed((seed + b) % 2**64)
        items.append(torch.randn(tuple(shape[1:]), generator=generator, device=device, dtype=dtype))
    return torch.stack(items)


def _latent(value, name: str, layout: str, seed: int, device, dtype) -> torch.Tensor:
    ndim = layout.count(",") + 1
    if isinstance(value, torch.Tensor):
        latent = value
    else:
        shape = tuple(value)
        if len(shape) != ndim or not all(isinstance(n, int) and not isinstance(n, bool) and n > 0 for n in shape):
            raise InputShapeError(f"{name} noise shape: got {shape}, expected positive sizes {layout}")
        latent = initial_noise(shape, seed, device=device, dtype=dtype)
    if latent.ndim != ndim or latent.numel() == 0:
        raise InputShapeError(f"{name} latent: shape {tuple(latent.shape)}, expected non-empty {layout}")
    return latent


def _check_lengths(video: torch.Tensor, audio: torch.Tensor, ratio: Fraction | float | None) -> None:
    if video.shape[0] != audio.shape[0]:
        raise InputShapeError(f"batch: video latent has {video.shape[0]} items, audio latent {audio.shape[0]}; expected equal")
    if ratio is None:
        return
    frames, length = video.shape[2], audio.shape[1]
    expected = audio_latent_length(frames, ratio)
    if length != expected:
        raise InputShapeError(
            f"audio latent length {length} does not match {frames} video latent frames: expected {expected} "
            f"audio latents (round((F - 1) * {Fraction(ratio)}))"
        )


def sample(
    model: JointModel,
    video: torch.Tensor | Sequence[int],
    audio: torch.Tensor | Sequence[int],
    positive: PromptContexts,
    negative: PromptContexts,
    *,
    solver: str = DEFAULT_SOLVER,
    steps: int = DEFAULT_STEPS,
    shift: float = DEFAULT_SHIFT,
    video_guidance: float = DEFAULT_VIDEO_GUIDANCE,
    audio_guidance: float = DEFAULT_AUDIO_GUIDANCE,
    slg_layer: int | bool | None = DEFAULT_SLG_LAYER,
    conditioning: Conditioning | Sequence[Conditioning] | None = None,
    seed: int = 0,
    audio_per_video_frame: Fraction | float | None = OVI_AUDIO_PER_VIDEO_FRAME,
    device: torch.device | str | None = None,
    dtype: torch.dtype = torch.float32,
    progress: Callable[[int, int], None] | None = None,
    cancel: Callable[[], bool] | None = None,
    step_cache: StepCache | None = None,
    hold_mode: str = "clean",
) -> tuple[torch.Tensor, torch.Tensor]:
    """Generate (video latent `[B, C, F, H, W]`, audio latent `[B, L, C]`).

    video/audio: the initial noise tensors, or their shapes, in which case the noise is drawn with `seed` on
    `device` in `dtype` (see initial_noise; seed is unused for given tensors). The latent stays in that dtype
    between steps. positive/negative: text contexts per tower (PromptContexts.shared(emb) for one prompt).
    audio_per_video_frame: the model's temporal ratio for the length check (None skips it).
    conditioning: conditioning items (FirstFrame, VideoFrames, AudioSpan, SegmentTail, WholeVideo, WholeAudio,
    KeepMask) and at most one reference-token item (ReferenceTokens, CameoReference), in any order.
    progress(done, total) is called after each step with done = 1..total; cancel() is checked before each step
    and True raises GenerationInterrupted.
    step_cache: skip model passes whose step barely changes their input (samplers/step_cache.py); None = off.
    hold_mode: how held entries are held. "clean" (the reference's i2v): set to their clean values before every
    step and flagged to the model, which gives them timestep 0; needs a model trained with such masks.
    "noised" (replacement, for weights never trained with a mask of that kind): set before every step to the clean
    value noised to the step's sigma, (1 - sigma) * clean + sigma * noise with the run's initial noise, and not
    flagged, so the model sees an ordinary noisy latent whose held part follows the clean one. Both end with the
    clean values.
    """
    guidance = JointGuidance(video_guidance, audio_guidance, slg_layer)
    video_solver = make_solver(solver, steps, shift)
    audio_solver = make_solver(solver, steps, shift)  # separate history per modality, same timesteps (as Ovi)
    video = _latent(video, "video", "[B, C, F, H, W]", seed, device, dtype)
    audio = _latent(audio, "audio", "[B, L, C]", seed, device, dtype)
    _check_lengths(video, audio, audio_per_video_frame)
    batch = video.shape[0]
    for name, contexts in (("positive", positive), ("negative", negative)):
        if not isinstance(contexts, PromptContexts):
            raise InputValueError(f"{name}: got {type(contexts).__name__}, expected PromptContexts(video=..., audio=...)")
    positive = positive.for_batch(batch, "positive")
    negative = negative.for_batch(batch, "negative")
    if hold_mode not in HOLD_MODES:
        raise InputValueError(f"hold_mode: got {hold_mode!r}, expected one of {', '.join(HOLD_MODES)}")
    held = resolve(conditioning, tuple(video.shape), tuple(audio.shape))
    keep = held.keep
    masks = {"video_clean": None, "audio_clean": None}
    if keep is not None:
        keep = keep.to(video.device, video.dtype)
        if hold_mode == "clean":
            masks = {"video_clean": keep.video_mask, "audio_clean": keep.audio_mask}
    noise = (video.clone(), audio.clone()) if keep is not None and hold_mode == "noised" else None
    references: ReferenceTokens | None = None
    if held.references is not None:
        references = held.references.to(video.device, video.dtype)

    if step_cache is not None:
        step_cache.start(steps)
        model = step_cache.wrap(model)
    with torch.no_grad():
        for i in range(steps):
            if step_cache is not None:
                step_cache.begin_step(i)
            if cancel is not None and cancel():
                raise GenerationInterrupted(f"sampling cancelled before step {i + 1} of {steps} ({solver})")
            if noise is not None:
                video, audio = keep.apply_noised(video, audio, *noise, float(video_solver.sigma(i)))
            elif keep is not None:
                video, audio = keep.apply(video, audio)
            t = video_solver.timesteps[i].repeat(batch).to(video.device)
            video_velocity, audio_velocity = guided_velocity(
                model, video, audio, t, positive, negative, guidance, **masks, references=references)
            video = video_solver.step(video_velocity, i, video)
            audio = audio_solver.step(audio_velocity, i, audio)
            if progress is not None:
                progress(i + 1, steps)
        if keep is not None:
            video, audio = keep.apply(video, audio)
    return video, audio
