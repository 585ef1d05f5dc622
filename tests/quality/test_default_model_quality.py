"""The shipped default model, judged as a user meets it: 20 held-out captions (colour pairings no training
clip has, so none was seen verbatim) through the CLI's pipeline, decoded and scored by `metrics.evaluate`.

Targets (issue 5): median |audio-video offset| <= 1 frame with the shuffled pairing clearly worse,
requested colour right in >= 80% of clips, requested pitch class right in >= 80% of the speaking clips.
Sampling uses the CLI's defaults (UniPC, shift 5, guidance 4/3, no skip-layer guidance) with EVAL_STEPS steps.
"""

import math

import pytest
import torch

from jointav.pipeline.default_model import BUNDLE_DIR, BUNDLE_NAME
from jointav.training.evaluate import evaluate_default_model, generate_clip, heldout_captions

BUNDLE = BUNDLE_DIR / BUNDLE_NAME
EVAL_STEPS = 24  # the default model's own default (DEFAULT_SPEC.default_steps)
N_CLIPS = 20

if not BUNDLE.is_file():
    pytest.skip(f"NO TRAINED DEFAULT MODEL: {BUNDLE} is absent, so its quality cannot be measured; build it with "
                f"`python -m jointav.training.train_default --stage all --resume`", allow_module_level=True)


@pytest.fixture(scope="module")
def figures():
    return evaluate_default_model(N_CLIPS, steps=EVAL_STEPS)


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
