"""Step caching: off by default, skips forwards when steps change little, and never skips when told not to."""

from __future__ import annotations

import pytest
import torch

from jointav.errors import InputValueError
from jointav.samplers import PromptContexts, sample
from jointav.samplers.step_cache import StepCache

from .test_fusion_dit import TINY, _model


class Counting:
    def __init__(self, model):
        self.model, self.calls = model, 0

    def __call__(self, *args, **kwargs):
        self.calls += 1
        return self.model(*args, **kwargs)


@pytest.fixture(scope="module")
def model():
    return _model(seed=4)


def _run(model, steps=12, cache=None):
    g = torch.Generator().manual_seed(0)
    ctx = torch.randn(1, 7, TINY.video.text_dim, generator=g)
    neg = torch.randn(1, 7, TINY.video.text_dim, generator=g)
    counting = Counting(model)
    out = sample(counting, (1, TINY.video.in_dim, 3, 4, 4), (1, 11, TINY.audio.in_dim), PromptContexts.shared(ctx),
                 PromptContexts.shared(neg), steps=steps, slg_layer=1, seed=3, audio_per_video_frame=None,
                 step_cache=cache)
    return out, counting.calls


def test_a_loose_threshold_skips_forwards_and_the_counts_add_up(model):
    _, uncached_calls = _run(model)
    cache = StepCache(threshold=10.0, warmup=0.25, keep_last=2, max_skips=2)
    _, calls = _run(model, cache=cache)
    assert uncached_calls == 24  # two passes a step
    assert cache.skipped > 0 and calls == cache.computed == 24 - cache.skipped
    # warm-up (3 of 12 steps) and the last 2 steps always run, and at most 2 skips in a row per pass:
    # of the 7 steps in between each pass skips at most 5 (run, skip, skip, run, skip, skip, run)
    assert cache.skipped <= 2 * 5


def test_threshold_zero_never_skips_and_gives_the_uncached_output(model):
    (v0, a0), _ = _run(model)
    cache = StepCache(threshold=0.0)
    (v1, a1), calls = _run(model, cache=cache)
    assert cache.skipped == 0 and calls == 24
    assert torch.equal(v0, v1) and torch.equal(a0, a1)


def test_a_tight_threshold_skips_less_than_a_loose_one(model):
    loose, tight = StepCache(threshold=1.0), StepCache(threshold=0.01)
    _run(model, cache=loose)
    _run(model, cache=tight)
    assert tight.skipped < loose.skipped


def test_default_threshold_on_the_default_model_skips_a_third_and_stays_close():
    # measured by `jointav bench cache`: threshold 0.1 skips 16 of 48 passes, latents within 4% (video) / 2% (audio)
    from jointav.pipeline import api

    model = api.load_joint_model(None, device="cpu")
    conditioning = api.encode_prompt(model, "a red ball bounces twice on the left, a blue cube slides right", "", "")
    latent = api.empty_latent(model, "2s", 64, 64)
    base = api.sample(model, conditioning, latent, seed=1, steps=24)
    cache = StepCache()
    cached = api.sample(model, conditioning, latent, seed=1, steps=24, step_cache=cache)
    assert cache.threshold == 0.1 and cache.skipped >= 8 and cache.computed + cache.skipped == 48
    assert cached.provenance["sampler"]["step_cache"]["skipped"] == cache.skipped
    for x, y in ((cached.video, base.video), (cached.audio, base.audio)):
        assert float((x - y).norm() / y.norm()) < 0.1


@pytest.mark.parametrize("kwargs", [{"threshold": -1}, {"threshold": float("nan")}, {"warmup": 2}, {"max_skips": -1}])
def test_bad_settings_are_named(kwargs):
    with pytest.raises(InputValueError, match="step cache"):
        StepCache(**kwargs)
