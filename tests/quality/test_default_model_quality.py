"""The shipped default model, judged as a user meets it: 20 held-out captions (colour pairings no training
clip has, so none was seen verbatim) through the CLI's pipeline, decoded and scored by `metrics.evaluate`.

Targets (issue 5): median |audio-video offset| <= 1 frame with the shuffled pairing clearly worse,
requested colour right in >= 80% of clips, requested pitch class right in >= 80% of the speaking clips.
Targets (issue 19, what a viewer sees): one subject region in >= 95% of frames (every toy-world caption has one
subject), no centre jump over a quarter frame outside a bounce in >= 95% of clips, bounce count as captioned in
>= 80% of bounce clips, colour >= 90%. Each is checked on the toy world's own renders of the same captions first
(the measure must pass the ground truth) and against its baseline (double exposure, time-shuffled frames,
shuffled captions). Targets the shipped bundle does not meet yet are strict xfails with the measured figure:
a better bundle flips them (and must then drop the mark), a worse one fails the issue-5 floors beside them.
Sampling uses the CLI's defaults (UniPC, shift 5, guidance 4/3, no skip-layer guidance) with EVAL_STEPS steps.
"""

import math

import pytest
import torch

from jointav.pipeline.default_model import BUNDLE_DIR, BUNDLE_NAME
from jointav.training.evaluate import evaluate_bounces, evaluate_default_model, generate_clip, heldout_captions

BUNDLE = BUNDLE_DIR / BUNDLE_NAME
EVAL_STEPS = 24  # the default model's own default (DEFAULT_SPEC.default_steps)
N_CLIPS = 20
N_BOUNCES = 12  # held-out bounce captions asking for 1, 2, 3, 1, ... bounces

if not BUNDLE.is_file():
    pytest.skip(f"NO TRAINED DEFAULT MODEL: {BUNDLE} is absent, so its quality cannot be measured; build it with "
                f"`python -m jointav.training.train_default --stage all --resume`", allow_module_level=True)


@pytest.fixture(scope="module")
def figures():
    return evaluate_default_model(N_CLIPS, steps=EVAL_STEPS)


@pytest.fixture(scope="module")
def bounces():
    return evaluate_bounces(N_BOUNCES, steps=EVAL_STEPS)


def test_prints_the_figures(figures, capsys):
    with capsys.disabled():
        print(f"\n{figures['summary']}\n  ({N_CLIPS} held-out captions, {EVAL_STEPS} UniPC steps, bundle {BUNDLE.name})")
        for row in figures["per_clip"]:
            print(f"    {row['caption'][:70]:<70} offset {row['offset']:>5}  colour {row['colour']}  "
                  f"pitch {row['pitch_class']}")
    assert figures["n_clips"] == N_CLIPS


def test_sound_lands_on_its_visual_event(figures):
    sync = figures["sync"]
    real, shuffled = sync["median_abs_offset"], sync["shuffled"]["median_abs_offset"]
    assert sync["n_defined"] >= N_CLIPS // 2, f"only {sync['n_defined']} clips had both a visual event and a sound"
    assert real <= 1.0, f"median |AV offset| {real:.2f} frames, expected <= 1"
    # The shuffled pairing must be clearly worse: more than a frame further off, or far fewer clips in sync.
    assert shuffled >= real + 1.0 or sync["in_sync_fraction"] >= sync["shuffled"]["in_sync_fraction"] + 0.3, (
        f"shuffled baseline {shuffled:.2f} frames vs real {real:.2f}: the measure does not separate them")


def test_requested_colour_is_shown(figures):
    colour = figures["adherence"]["colour"]
    assert colour["accuracy"] >= 0.8, f"colour right in {colour['accuracy']:.0%} of {colour['n']}, expected >= 80%"


def test_requested_pitch_class_is_heard(figures):
    pitch = figures["adherence"]["pitch"]
    assert pitch["n"] >= 5 and not math.isnan(pitch["accuracy"])
    assert pitch["accuracy"] >= 0.8, f"pitch class right in {pitch['accuracy']:.0%} of {pitch['n']}, expected >= 80%"


def test_prints_the_coherence_of_every_clip(figures, capsys):
    with capsys.disabled():
        for row in figures["per_clip"]:
            print(f"    {row['caption'][:60]:<60} regions {row['regions']}  jump {row['max_jump']:.2f} "
                  f"(impact {row['impact_jump']:.2f})  count {row['count']}")
    assert all(len(row["regions"]) == 25 for row in figures["per_clip"])


def test_the_coherence_measures_pass_the_ground_truth_and_fail_their_baselines(figures):
    truth, co = figures["ground_truth"]["coherence"], figures["coherence"]
    assert truth["one_region"] >= 0.95 and truth["smooth"] >= 0.95, truth
    assert figures["ground_truth"]["adherence"]["bounces"]["accuracy"] >= 0.8
    assert co["one_region_double_exposure"] <= truth["one_region"] - 0.3, co
    assert co["smooth_time_shuffled"] <= truth["smooth"] - 0.3, co


def test_one_subject_region_in_95_percent_of_frames(figures):
    co = figures["coherence"]
    assert co["one_region"] >= 0.95, f"one subject region in {co['one_region']:.0%} of frames, expected >= 95%"


def test_no_centre_jump_outside_a_bounce_in_95_percent_of_clips(figures):
    co = figures["coherence"]
    assert co["smooth"] >= 0.95, (f"no jump over a quarter frame outside a bounce in {co['smooth']:.0%} of clips "
                                  f"(largest {co['largest_jump']:.2f}), expected >= 95%")


def test_prints_the_bounce_set(bounces, capsys):
    with capsys.disabled():
        print(f"\n{N_BOUNCES} held-out bounce captions (1, 2, 3 bounces in turn):\n{bounces['summary']}")
        for row in bounces["per_clip"]:
            print(f"    {row['caption'][:60]:<60} regions {row['regions']}  count {row['count']}")
    assert bounces["n_clips"] == N_BOUNCES


def test_the_bounce_set_s_measures_pass_the_ground_truth_and_fail_their_baselines(bounces):
    truth = bounces["ground_truth"]
    assert truth["adherence"]["bounces"]["accuracy"] == 1.0 and truth["adherence"]["bounces"]["shuffled"] <= 0.5
    assert truth["coherence"]["one_region"] >= 0.95 and truth["coherence"]["smooth"] >= 0.95
    co = bounces["coherence"]
    assert co["one_region_double_exposure"] <= 0.6 and co["smooth_time_shuffled"] <= 0.3, co


@pytest.mark.xfail(strict=True, reason="issue 19: bounce count as captioned in 58% (7 of 12) of the balanced "
                   "held-out bounce set (its clips scored against shuffled captions: 17%), target 80%")
def test_bounce_count_as_captioned_in_80_percent_of_clips(bounces):
    got = bounces["adherence"]["bounces"]
    assert got["accuracy"] >= 0.8, f"bounce count right in {got['accuracy']:.0%} of {got['n']}, expected >= 80%"


@pytest.mark.xfail(strict=True, reason="issue 19: one subject region in 77% of the frames of the balanced "
                   "held-out bounce set (doubled subjects), target 95%")
def test_a_bouncing_subject_is_one_region_in_95_percent_of_frames(bounces):
    co = bounces["coherence"]
    assert co["one_region"] >= 0.95, f"one subject region in {co['one_region']:.0%} of frames, expected >= 95%"


@pytest.mark.xfail(strict=True, reason="issue 19: no centre jump over a quarter frame outside a bounce in 58% "
                   "(7 of 12) of the balanced bounce set (largest 0.42 frame; 0.47 at a detected impact), target 95%")
def test_a_bouncing_subject_never_jumps_in_95_percent_of_clips(bounces):
    co = bounces["coherence"]
    assert co["smooth"] >= 0.95, f"no jump over a quarter frame in {co['smooth']:.0%} of clips, expected >= 95%"


@pytest.mark.xfail(strict=True, reason="issue 19: colour right in 80% of held-out clips (the four 'white "
                   "triangle' captions, a held-out pairing, come out purple), target 90%")
def test_requested_colour_is_shown_in_90_percent_of_clips(figures):
    colour = figures["adherence"]["colour"]
    assert colour["accuracy"] >= 0.9, f"colour right in {colour['accuracy']:.0%} of {colour['n']}, expected >= 90%"


def test_same_seed_and_caption_give_the_same_clip_bit_for_bit():
    caption = heldout_captions(1)[0]
    a, b = generate_clip(caption, 11, steps=4), generate_clip(caption, 11, steps=4)
    assert torch.equal(a.frames, b.frames)
    assert torch.equal(a.audio["waveform"], b.audio["waveform"])


def test_the_shipped_audio_decoders_keep_a_voice_s_pitch_class():
    """Held-out speaking clips encoded by the bundle's audio VAE and decoded by its VAE and vocoder, as a
    generated latent is: the pitch class heard must stay the one spoken (a vocoder trained on exact mels alone
    moved 3 of these 24 up an octave, all of them low voices)."""
    import numpy as np

    from jointav.audio.mmaudio_vae import decode_audio_latent, encode_audio
    from jointav.metrics.audio_events import detect_audio_events
    from jointav.pipeline.default_model import load_bundle
    from jointav.toyworld import WorldConfig, render_clip, sample_spec

    parts, world, rng = load_bundle(BUNDLE), WorldConfig(), np.random.default_rng(99)
    kept = []
    while len(kept) < 24:
        spec = sample_spec(rng, "heldout")
        if spec.kind != "speak":
            continue
        clip = render_clip(spec, int(rng.integers(2**31)), world)
        latent = encode_audio(parts.audio_vae, torch.from_numpy(clip.audio)[None], world.sample_rate)
        heard = detect_audio_events(decode_audio_latent(parts.audio_vae, parts.vocoder, latent)[0].numpy(),
                                    world.sample_rate).pitch_class
        kept.append((spec.voice, heard))
    wrong = [(asked, heard) for asked, heard in kept if asked != heard]
    assert len(wrong) <= 1, f"{len(wrong)} of {len(kept)} round trips changed the pitch class (asked, heard): {wrong}"
