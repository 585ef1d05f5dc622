"""Samplers without fixtures: solver exactness on straight flows, joint guidance, keep-masks, seeds, progress,
cancellation and the errors users see. The model is a small fake with the FusionDiT call signature."""

from __future__ import annotations

import math

import pytest
import torch

from jointav.errors import GenerationInterrupted, InputShapeError, InputValueError
from jointav.samplers import (SOLVERS, AudioSpan, FirstFrame, JointGuidance, KeepMask, PromptContexts, VideoFrames,
                              audio_latent_length, combine, guided_velocity, initial_noise, make_solver, sample)

C_VIDEO, C_AUDIO, TEXT_DIM = 4, 3, 8
FRAMES, HEIGHT, WIDTH = 3, 2, 2
AUDIO_LEN = audio_latent_length(FRAMES)


class FakeModel:
    """Velocity depends on the sample, the contexts, t and skip_layer, so each ingredient shows in the output."""

    def __init__(self):
        self.calls = []

    def __call__(self, video, audio, t, video_context, audio_context, *, video_clean=None, audio_clean=None,
                 skip_layer=None):
        self.calls.append({"video": video.clone(), "audio": audio.clone(), "t": t.clone(),
                           "video_context": video_context, "audio_context": audio_context,
                           "video_clean": video_clean, "audio_clean": audio_clean, "skip_layer": skip_layer})
        shift = 0.25 if skip_layer is not None else 0.0
        tv = t.to(video.dtype) / 1000
        v = 0.3 * video + video_context.mean(dim=(1, 2)).view(-1, 1, 1, 1, 1) + tv.view(-1, 1, 1, 1, 1) + shift
        a = -0.2 * audio + 2 * audio_context.mean(dim=(1, 2)).view(-1, 1, 1) - shift
        return v, a


def contexts(batch=1, seed=0):
    g = torch.Generator().manual_seed(seed)
    pos = PromptContexts.shared(torch.randn(batch, 5, TEXT_DIM, generator=g))
    neg = PromptContexts(video=torch.randn(batch, 5, TEXT_DIM, generator=g), audio=torch.randn(batch, 5, TEXT_DIM, generator=g))
    return pos, neg


def shapes(batch=1):
    return (batch, C_VIDEO, FRAMES, HEIGHT, WIDTH), (batch, AUDIO_LEN, C_AUDIO)


def run_sample(model=None, steps=3, **kwargs):
    pos, neg = contexts(kwargs.pop("batch", 1))
    video_shape, audio_shape = shapes(pos.video.shape[0])
    kwargs.setdefault("seed", 1)
    return sample(model or FakeModel(), kwargs.pop("video", video_shape), kwargs.pop("audio", audio_shape), pos, neg,
                  steps=steps, **kwargs)


# --- solvers -------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("name", sorted(SOLVERS))
@pytest.mark.parametrize("steps, shift", [(1, 5.0), (7, 3.0), (20, 5.0)])
def test_solver_follows_a_straight_flow_to_its_clean_end(name, steps, shift):
    # x_sigma = (1 - sigma) x0 + sigma n has constant velocity n - x0; every solver must stay on that line
    g = torch.Generator().manual_seed(2)
    x0, noise = torch.randn(2, 3, 4, generator=g), torch.randn(2, 3, 4, generator=g)
    solver = make_solver(name, steps, shift)
    x = (1 - solver.sigmas[0]) * x0 + solver.sigmas[0] * noise
    for i in range(steps):
        x = solver.step(noise - x0, i, x)
        on_line = (1 - solver.sigmas[i + 1]) * x0 + solver.sigmas[i + 1] * noise
        torch.testing.assert_close(x, on_line, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(x, x0, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("name, min_ratio", [("unipc", 6.0), ("dpm++", 3.0), ("euler", 1.8)])
def test_solver_accuracy_order(name, min_ratio):
    # dx/dsigma = a x + b sigma has a closed form; halving the step must shrink the error at mid-schedule by about
    # 2^order: UniPC (order-2 predictor + UniC corrector) is third order, DPM++ 2M second, Euler first. The fixture's
    # velocity is so smooth that a wrong corrector coefficient stays below the 1e-4 parity tolerance; this does not.
    a, b, x_start = -0.7, 0.9, 1.3

    def error(steps):
        solver = make_solver(name, steps, 1.0)
        x = torch.tensor([x_start], dtype=torch.float64)
        for i in range(steps // 2):
            x = solver.step(a * x + b * solver.sigma(i), i, x)
        s0, s = solver.sigma(0), solver.sigma(steps // 2)
        c = (x_start + b / a * s0 + b / a**2) / math.exp(a * s0)
        return abs(float(x) - (c * math.exp(a * s) - b / a * s - b / a**2))

    errors = [error(n) for n in (20, 40, 80)]
    assert errors[0] / errors[1] > min_ratio and errors[1] / errors[2] > min_ratio, errors


@pytest.mark.parametrize("name", sorted(SOLVERS))
def test_schedules_fall_from_near_one_to_zero(name):
    for steps, shift in [(1, 1.0), (10, 3.0), (50, 5.0)]:
        solver = make_solver(name, steps, shift)
        assert solver.timesteps.shape == (steps,) and solver.sigmas.shape == (steps + 1,)
        assert solver.sigmas.dtype == torch.float32 and solver.sigmas[-1] == 0
        assert bool((solver.sigmas[1:] < solver.sigmas[:-1]).all())
        assert 0.99 <= float(solver.sigmas[0]) <= 1.0


def test_integer_timesteps_for_unipc_and_dpmpp_float_for_euler():
    assert make_solver("unipc", 10, 5.0).timesteps.dtype == torch.int64
    assert make_solver("dpm++", 10, 5.0).timesteps.dtype == torch.int64
    assert make_solver("euler", 10, 5.0).timesteps.dtype == torch.float32


@pytest.mark.parametrize("name", ["unipc", "dpm++"])
def test_a_handed_in_reference_table_gets_the_reference_timesteps(name):
    # a ComfyUI SIGMAS carries only float32 sigmas; the integer timesteps the model must see come back from them
    from jointav.samplers.schedules import schedule_for_sigmas

    for steps in (1, 2, 9, 24, 50, 121):
        for shift in (1.0, 3.0, 5.0, 7.5, 12.0):
            reference = make_solver(name, steps, shift)
            schedule, recognised = schedule_for_sigmas(name, reference.sigmas.clone())
            assert recognised, (steps, shift)
            assert torch.equal(schedule.timesteps, reference.timesteps) and torch.equal(schedule.sigmas, reference.sigmas)


def test_any_other_table_is_stepped_as_given_at_sigma_times_1000():
    from jointav.samplers.schedules import schedule_for_sigmas

    table = torch.tensor([1.0, 0.8, 0.45, 0.3, 0.1, 0.0])  # not a shifted linspace: no table the reference builds
    for name in ("unipc", "dpm++", "euler"):
        schedule, recognised = schedule_for_sigmas(name, table)
        assert not recognised
        assert torch.equal(schedule.sigmas, table) and torch.equal(schedule.timesteps, table[:-1] * 1000)
    euler = make_solver("euler", 24, 5.0)  # Euler's reference timesteps are sigma * 1000 already
    assert torch.equal(schedule_for_sigmas("euler", euler.sigmas)[0].timesteps, euler.timesteps)
    with pytest.raises(InputValueError, match="solver: got 'heun'"):
        schedule_for_sigmas("heun", table)
    with pytest.raises(InputShapeError, match=r"unipc solver: sigmas \(1,\)"):
        schedule_for_sigmas("unipc", torch.ones(1))


def test_solver_keeps_the_sample_dtype():
    solver = make_solver("unipc", 4, 5.0)
    x = torch.randn(2, 3, dtype=torch.bfloat16)
    for i in range(4):
        x = solver.step(-x, i, x)
        assert x.dtype == torch.bfloat16


def test_solver_refuses_out_of_order_steps_and_wrong_velocity_shape():
    solver = make_solver("unipc", 4, 5.0)
    x = torch.randn(2, 3)
    with pytest.raises(InputValueError, match="out of order"):
        solver.step(x, 1, x)
    with pytest.raises(InputShapeError, match=r"velocity has shape \(3, 2\)"):
        solver.step(torch.randn(3, 2), 0, x)


@pytest.mark.parametrize("bad", [dict(name="heun"), dict(steps=0), dict(steps=-3), dict(steps=2.5), dict(shift=0.0),
                                 dict(shift=float("nan"))])
def test_bad_solver_settings_are_named(bad):
    settings = {"name": "unipc", "steps": 10, "shift": 5.0, **bad}
    key = next(iter(bad))
    with pytest.raises(InputValueError, match="solver" if key == "name" else key):
        make_solver(settings["name"], settings["steps"], settings["shift"])


# --- guidance ------------------------------------------------------------------------------------------------

def guidance_inputs(batch=2):
    pos, neg = contexts(batch)
    video = torch.randn(*shapes(batch)[0])
    audio = torch.randn(*shapes(batch)[1])
    return video, audio, torch.full((batch,), 500), pos, neg


def test_scale_one_gives_the_positive_prediction():
    video, audio, t, pos, neg = guidance_inputs()
    got = guided_velocity(FakeModel(), video, audio, t, pos, neg, JointGuidance(1.0, 1.0, 11))
    expected = FakeModel()(video, audio, t, pos.video, pos.audio)
    torch.testing.assert_close(got[0], expected[0], atol=1e-6, rtol=0)
    torch.testing.assert_close(got[1], expected[1], atol=1e-6, rtol=0)


def test_each_scale_acts_on_its_own_modality_only():
    video, audio, t, pos, neg = guidance_inputs()
    model = FakeModel()
    base = guided_velocity(model, video, audio, t, pos, neg, JointGuidance(4.0, 3.0, 11))
    more_video = guided_velocity(model, video, audio, t, pos, neg, JointGuidance(6.0, 3.0, 11))
    more_audio = guided_velocity(model, video, audio, t, pos, neg, JointGuidance(4.0, 5.0, 11))
    assert torch.equal(base[1], more_video[1]) and not torch.equal(base[0], more_video[0])
    assert torch.equal(base[0], more_audio[0]) and not torch.equal(base[1], more_audio[1])
    pos_v, pos_a = model(video, audio, t, pos.video, pos.audio)
    neg_v, neg_a = model(video, audio, t, neg.video, neg.audio, skip_layer=11)
    torch.testing.assert_close(base[0], neg_v + 4.0 * (pos_v - neg_v))
    torch.testing.assert_close(base[1], neg_a + 3.0 * (pos_a - neg_a))


def test_negative_pass_alone_gets_the_skip_layer_and_the_negative_prompts():
    video, audio, t, pos, neg = guidance_inputs()
    model = FakeModel()
    guided_velocity(model, video, audio, t, pos, neg, JointGuidance(4.0, 3.0, 9))
    positive_call, negative_call = model.calls
    assert positive_call["skip_layer"] is None and negative_call["skip_layer"] == 9
    assert positive_call["video_context"] is pos.video and positive_call["audio_context"] is pos.audio
    assert negative_call["video_context"] is neg.video and negative_call["audio_context"] is neg.audio


@pytest.mark.parametrize("off", [None, False, 0])
def test_skip_layer_guidance_can_be_turned_off(off):
    video, audio, t, pos, neg = guidance_inputs()
    model = FakeModel()
    guided_velocity(model, video, audio, t, pos, neg, JointGuidance(4.0, 3.0, off))
    assert [call["skip_layer"] for call in model.calls] == [None, None]


def test_model_output_of_the_wrong_shape_is_reported():
    video, audio, t, pos, neg = guidance_inputs()

    def bad_model(video, audio, *args, **kwargs):
        return video[:, :, :1], audio

    with pytest.raises(InputShapeError, match="video velocity"):
        guided_velocity(bad_model, video, audio, t, pos, neg, JointGuidance())


# --- keep-mask conditioning ----------------------------------------------------------------------------------

def test_first_frame_is_held_before_every_call_and_at_the_end():
    model = FakeModel()
    image = torch.randn(C_VIDEO, 1, HEIGHT, WIDTH)
    video, _ = run_sample(model, steps=4, conditioning=FirstFrame(image))
    assert torch.equal(video[0, :, 0], image[:, 0])
    assert len(model.calls) == 8
    for call in model.calls:
        assert torch.equal(call["video"][0, :, 0], image[:, 0])
        assert call["video_clean"].tolist() == [[True] + [False] * (FRAMES - 1)]
        assert call["audio_clean"] is None
    assert not torch.equal(video[0, :, 1:], model.calls[0]["video"][0, :, 1:])  # the rest was generated


def test_video_frames_and_audio_span_combine_into_one_keep_mask():
    frames = torch.randn(C_VIDEO, 2, HEIGHT, WIDTH)
    sound = torch.randn(1, 4, C_AUDIO)
    model = FakeModel()
    video, audio = run_sample(model, steps=3, conditioning=[VideoFrames(frames, start=1), AudioSpan(sound, start=2)])
    assert torch.equal(video[0, :, 1:3], frames)
    assert torch.equal(audio[0, 2:6], sound[0])
    assert model.calls[0]["video_clean"].tolist() == [[False, True, True]]
    assert model.calls[0]["audio_clean"][0].tolist() == [2 <= i < 6 for i in range(AUDIO_LEN)]


def test_overlapping_conditionings_later_one_wins():
    video_shape, audio_shape = shapes()
    first, second = torch.zeros(C_VIDEO, 2, HEIGHT, WIDTH), torch.ones(C_VIDEO, 1, HEIGHT, WIDTH)
    keep = combine([VideoFrames(first, start=0), VideoFrames(second, start=1)], video_shape, audio_shape)
    assert keep.video_mask.tolist() == [[True, True, False]]
    assert torch.equal(keep.video_values[0, :, 0], first[:, 0]) and torch.equal(keep.video_values[0, :, 1], second[:, 0])
    assert keep.audio_mask is None


def test_keep_mask_with_per_item_masks():
    video_shape, audio_shape = shapes(batch=2)
    values = torch.randn(video_shape)
    mask = torch.tensor([[True, False, False], [False, False, True]])
    model = FakeModel()
    pos, neg = contexts(2)
    video, _ = sample(model, video_shape, audio_shape, pos, neg, steps=2, seed=0,
                      conditioning=KeepMask(video_values=values, video_mask=mask))
    assert torch.equal(video[0, :, 0], values[0, :, 0]) and torch.equal(video[1, :, 2], values[1, :, 2])
    assert torch.equal(model.calls[0]["video_clean"], mask)


@pytest.mark.parametrize("conditioning, message", [
    (FirstFrame(torch.randn(C_VIDEO, 1, HEIGHT + 1, WIDTH)), "FirstFrame latent"),
    (FirstFrame(torch.randn(C_VIDEO, 2, HEIGHT, WIDTH)), "one encoded frame"),
    (VideoFrames(torch.randn(C_VIDEO, 2, HEIGHT, WIDTH), start=2), "outside the latent's 3 positions"),
    (AudioSpan(torch.randn(3, C_AUDIO + 1)), "AudioSpan latent"),
    (KeepMask(video_values=torch.randn(1, C_VIDEO, FRAMES, HEIGHT, WIDTH), video_mask=torch.ones(1, FRAMES)),
     "expected torch.bool"),
])
def test_bad_conditioning_shapes_are_named(conditioning, message):
    with pytest.raises(InputShapeError, match=message):
        run_sample(conditioning=conditioning)


# --- noise, seeds, progress, cancellation ---------------------------------------------------------------------

def test_noise_is_torch_randn_from_a_fresh_generator_per_item():
    video_shape, audio_shape = shapes(batch=2)
    video = initial_noise(video_shape, 42)
    audio = initial_noise(audio_shape, 42)
    for b in range(2):
        fresh = torch.Generator("cpu").manual_seed(42 + b)
        assert torch.equal(video[b], torch.randn(video_shape[1:], generator=fresh))
        fresh = torch.Generator("cpu").manual_seed(42 + b)
        assert torch.equal(audio[b], torch.randn(audio_shape[1:], generator=fresh))


def test_sampling_starts_from_the_seeded_noise():
    model = FakeModel()
    run_sample(model, seed=42)
    video_shape, audio_shape = shapes()
    assert torch.equal(model.calls[0]["video"], initial_noise(video_shape, 42))
    assert torch.equal(model.calls[0]["audio"], initial_noise(audio_shape, 42))


def test_same_seed_same_result_other_seed_other_result():
    first, again, other = run_sample(seed=5), run_sample(seed=5), run_sample(seed=6)
    assert torch.equal(first[0], again[0]) and torch.equal(first[1], again[1])
    assert not torch.equal(first[0], other[0]) and not torch.equal(first[1], other[1])


def test_model_sees_the_solver_timesteps_per_batch_item():
    model = FakeModel()
    run_sample(model, steps=4, batch=2, solver="dpm++", shift=3.0)
    expected = make_solver("dpm++", 4, 3.0).timesteps
    positive_calls = model.calls[::2]
    assert [call["t"].tolist() for call in positive_calls] == [[int(t)] * 2 for t in expected]
    assert all(call["t"].dtype == torch.int64 for call in positive_calls)


def test_progress_reports_every_step():
    seen = []
    run_sample(steps=5, progress=lambda done, total: seen.append((done, total)))
    assert seen == [(i, 5) for i in range(1, 6)]


def test_cancel_stops_before_the_next_step():
    model, seen = FakeModel(), []
    answers = iter([False, False, True])
    with pytest.raises(GenerationInterrupted, match="before step 3 of 5"):
        run_sample(model, steps=5, cancel=lambda: next(answers), progress=lambda d, t: seen.append(d))
    assert len(model.calls) == 4 and seen == [1, 2]


# --- lengths and shapes ----------------------------------------------------------------------------------------

def test_ovi_audio_lengths():
    assert audio_latent_length(31) == 157 and audio_latent_length(61) == 314


def test_mismatched_audio_length_names_both_lengths():
    video_shape, audio_shape = shapes()
    with pytest.raises(InputShapeError, match=rf"audio latent length {AUDIO_LEN + 1} .* {FRAMES} video latent frames"):
        run_sample(audio=(1, AUDIO_LEN + 1, C_AUDIO))
    video, audio = run_sample(audio=(1, AUDIO_LEN + 1, C_AUDIO), audio_per_video_frame=None)
    assert audio.shape == (1, AUDIO_LEN + 1, C_AUDIO)


@pytest.mark.parametrize("kwargs, error, message", [
    (dict(video=(C_VIDEO, FRAMES, HEIGHT, WIDTH)), InputShapeError, "video noise shape"),
    (dict(audio=torch.randn(AUDIO_LEN, C_AUDIO)), InputShapeError, "audio latent"),
    (dict(audio=(2, AUDIO_LEN, C_AUDIO)), InputShapeError, "batch"),
    (dict(solver="ddim"), InputValueError, "solver"),
    (dict(steps=0), InputValueError, "steps"),
    (dict(slg_layer="11"), InputValueError, "slg_layer"),
    (dict(seed=2**64), InputValueError, "seed"),
])
def test_bad_sample_arguments_are_named(kwargs, error, message):
    with pytest.raises(error, match=message):
        run_sample(**kwargs)


def test_context_batch_must_match():
    pos, neg = contexts(batch=3)
    video_shape, audio_shape = shapes(batch=2)
    with pytest.raises(InputShapeError, match="positive.video context: batch 3, expected 2"):
        sample(FakeModel(), video_shape, audio_shape, pos, neg, steps=2)
