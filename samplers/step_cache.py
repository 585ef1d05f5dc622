"""Step caching: skip a DiT forward when the step barely changes its input, reusing the last output.

EasyCache-style, training-free and runtime-adaptive. For each kind of pass (the conditional pass and the
negative pass are told apart by their skip-layer and text contexts) the cache keeps the input and output
of the last computed forward and the model's measured "transformation rate" k = (|Δy| / |y|) / (|Δx| / |x|)
between its last two computed forwards. At a new step the output's relative change since the last computed
forward is predicted as k · |x - x_last| / |x_last| (per modality, the larger of video and audio); while
that stays under `threshold` (for every pass: the passes of one step are skipped or run together) the last
outputs are reused, otherwise the model runs. The first `warmup` fraction of the steps (where the velocity field turns fastest) and the
last `keep_last` steps are always computed, and no more than `max_skips` forwards in a row are skipped.

Off by default (`sample(step_cache=None)`); `threshold=0` never skips, so the output is the uncached one.
`computed` and `skipped` count forwards; `jointav bench cache` measures the effect on the output.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Callable

import torch

from ..errors import InputValueError


@dataclass
class _PassState:
    x: tuple[torch.Tensor, torch.Tensor] | None = None  # input at the last computed forward
    y: tuple[torch.Tensor, torch.Tensor] | None = None  # its output
    rates: tuple[float, float] | None = None  # per modality: relative |Δy| per relative |Δx|, last two computed
    skips_in_a_row: int = 0


def _rel(a: torch.Tensor, b: torch.Tensor, scale: torch.Tensor) -> float:
    return float((a.float() - b.float()).norm() / scale.float().norm().clamp(min=1e-12))


@dataclass
class StepCache:
    threshold: float = 0.1
    warmup: float = 0.1
    keep_last: int = 1
    max_skips: int = 3
    computed: int = 0
    skipped: int = 0
    _steps: int = field(default=0, repr=False)
    _step: int = field(default=0, repr=False)
    _passes: dict = field(default_factory=dict, repr=False)
    _decided_step: int = field(default=-1, repr=False)
    _skip: bool = field(default=False, repr=False)

    def __post_init__(self) -> None:
        if not (isinstance(self.threshold, (int, float)) and math.isfinite(self.threshold) and self.threshold >= 0):
            raise InputValueError(f"step cache threshold: got {self.threshold!r}, expected a number >= 0 (0 = off)")
        if not 0 <= self.warmup <= 1:
            raise InputValueError(f"step cache warmup: got {self.warmup!r}, expected a fraction of the steps in 0..1")
        if self.max_skips < 0 or self.keep_last < 0:
            raise InputValueError(f"step cache: max_skips={self.max_skips}, keep_last={self.keep_last}; expected >= 0")

    def start(self, steps: int) -> None:
        """A new sampling run of `steps` steps: forget everything cached."""
        self._steps, self._step, self._passes, self._decided_step = steps, 0, {}, -1
        self.computed = self.skipped = 0

    def begin_step(self, index: int) -> None:
        self._step = index

    def _may_skip(self) -> bool:
        return (self._step >= math.ceil(self.warmup * self._steps)
                and self._step < self._steps - self.keep_last and self.threshold > 0)

    def _decide(self, x: tuple[torch.Tensor, torch.Tensor]) -> bool:
        """Skip this step's passes? Decided once per step for all passes together: a conditional output
        reused next to a fresh negative one would have its error multiplied by the guidance scale."""
        states = list(self._passes.values())
        if not states or not self._may_skip() or any(s.rates is None for s in states):
            return False
        if any(s.skips_in_a_row >= self.max_skips for s in states):
            return False
        # predicted relative change of each pass's output since its last computed forward
        predicted = max(r * _rel(x[i], s.x[i], s.x[i]) for s in states for i, r in enumerate(s.rates))
        return predicted < self.threshold

    def wrap(self, model: Callable[..., Any]) -> Callable[..., Any]:
        """The model call with caching; same arguments and outputs as `model`."""

        def cached(video, audio, t, video_context, audio_context, *, skip_layer=None, **kwargs):
            key = (skip_layer, id(video_context), id(audio_context))
            x = (video, audio)
            if self._decided_step != self._step:
                self._decided_step, self._skip = self._step, self._decide(x)
            state = self._passes.get(key)
            if self._skip and state is not None:
                state.skips_in_a_row += 1
                self.skipped += 1
                return state.y
            state = self._passes.setdefault(key, _PassState())
            y = model(video, audio, t, video_context, audio_context, skip_layer=skip_layer, **kwargs)
            self.computed += 1
            if state.y is not None:
                state.rates = tuple(_rel(y[i], state.y[i], state.y[i]) / max(_rel(x[i], state.x[i], state.x[i]), 1e-12)
                                    for i in range(2))
            state.x, state.y = (video.detach(), audio.detach()), (y[0].detach(), y[1].detach())
            state.skips_in_a_row = 0
            return y

        return cached
