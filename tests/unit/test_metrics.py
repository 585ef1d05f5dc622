"""The measures that will judge generated clips: right on ground truth, clearly worse on shuffled pairs,
and they see a shifted soundtrack for what it is."""

import dataclasses

import numpy as np
import pytest

from jointav.metrics import detect_audio_events, detect_video_events, evaluate
from jointav.metrics.audio_events import estimate_f0
from jointav.metrics.sync import clip_offset, derangement
from jointav.toyworld import caption_for, render_clip, sample_spec
from jointav.toyworld.sound import voice


@pytest.fixture(scope="module")
def clips():
    rng = np.random.default_rng(2024)
    return [render_clip(sample_spec(rng), 500 + i) for i in range(30)]


@pytest.fixture(scope="module")
def figures(clips):
    result = evaluate(clips, [c.truth.caption for c in clips])
    print("\nground truth vs shuffled:\n" + result["summary"])
    return result


def _shift(clip, frames: int):
    """The same clip with its soundtrack moved by `frames` video frames (positive: later)."""
    n = round(abs(frames) * clip.sample_rate / clip.fps)
    a = clip.audio
    silence = np.zeros(n, a.dtype)
    moved = np.concatenate([silence, a[:-n]]) if frames > 0 else np.concatenate([a[n:], silence])
    return dataclasses.replace(clip, audio=moved)


def test_ground_truth_is_in_sync_and_shuffled_pairs_are_not(figures):
    sync = figures["sync"]
    assert sync["n_defined"] == figures["n_clips"]
    assert sync["median_abs_offset"] <= 0.5 and sync["in_sync_fraction"] >= 0.95 and sync["event_hit_rate"] >= 0.95
    shuffled = sync["shuffled"]
    assert shuffled["median_abs_offset"] >= 1.5
    assert shuffled["in_sync_fraction"] <= 0.5 and shuffled["event_hit_rate"] <= 0.5


def test_ground_truth_follows_its_captions_and_shuffled_captions_do_not(figures):
    adherence = figures["adherence"]
    for name in ("colour", "count", "pitch", "timbre", "background"):
        a = adherence[name]
        assert a["n"] > 0 and a["accuracy"] >= 0.95, (name, a)
        assert a["shuffled"] <= a["accuracy"] - 0.3, (name, a)


def test_detected_events_are_the_true_ones(clips, figures):
    exact = sum(row["video_events"] == list(c.truth.event_frames) for row, c in zip(figures["per_clip"], clips))
    assert exact >= 0.95 * len(clips)
    for clip in clips:
        onsets = detect_audio_events(clip.audio, clip.sample_rate).onset_frames(clip.fps)
        assert np.allclose(onsets, clip.truth.event_frames, atol=0.1), clip.truth.caption


@pytest.mark.parametrize("lag", [3, -2])
def test_a_shifted_soundtrack_reports_its_shift(clips, lag):
    offsets = []
    for clip in clips[:15]:
        moved = _shift(clip, lag)
        video = detect_video_events(moved.frames, moved.truth.spec.kind)
        audio = detect_audio_events(moved.audio, moved.sample_rate)
        offsets.append(clip_offset(video.event_frames, audio.onset_frames(moved.fps)))
    offsets = np.array(offsets)
    print(f"\naudio shifted by {lag} frames -> per-clip offsets {np.round(offsets, 2).tolist()}")
    assert abs(np.nanmedian(offsets) - lag) <= 0.5
    assert np.mean(np.abs(offsets - lag) <= 0.5) >= 0.9


def test_metrics_take_generated_style_output(clips):
    """Float frames in 0..1, blur and noise, stereo audio with hiss: the figures still hold."""
    rng = np.random.default_rng(0)
    degraded = []
    for clip in clips[:12]:
        f = clip.frames.astype(np.float32)
        f = (f + np.roll(f, 1, 1) + np.roll(f, 1, 2) + np.roll(f, (1, 1), (1, 2))) / 4  # a 2x2 blur
        f = np.clip(f + rng.normal(0, 10, f.shape), 0, 255) / 255
        hiss = rng.normal(0, 0.02, clip.audio.shape).astype(np.float32)
        degraded.append(dataclasses.replace(clip, frames=f, audio=np.stack([clip.audio + hiss, clip.audio - hiss])))
    result = evaluate(degraded, [c.truth.caption for c in degraded])
    assert result["sync"]["median_abs_offset"] <= 0.5
    for name in ("colour", "count", "pitch"):
        assert result["adherence"][name]["accuracy"] >= 0.9, result["summary"]


def test_an_empty_clip_fails_every_check(clips):
    blank = dataclasses.replace(clips[0], frames=np.zeros_like(clips[0].frames), audio=np.zeros_like(clips[0].audio))
    result = evaluate([blank], [clips[0].truth.caption])
    assert np.isnan(result["sync"]["offsets"][0]) and result["sync"]["in_sync_fraction"] == 0
    assert result["adherence"]["colour"]["accuracy"] == 0


def test_a_wrong_colour_is_caught(clips):
    clip = next(c for c in clips if c.truth.colour_name != "green")
    wrong = dataclasses.replace(clip.truth.spec, colour="green")
    assert evaluate([clip], [caption_for(wrong)])["adherence"]["colour"]["accuracy"] == 0


@pytest.mark.parametrize("hz", [220.0, 440.0, 880.0])
def test_pitch_of_a_harmonic_tone(hz):
    assert estimate_f0(voice(hz, 4000, 16000), 16000) == pytest.approx(hz, rel=0.02)


def test_shuffled_pairing_never_pairs_a_clip_with_itself():
    for n in (2, 3, 30):
        perm = derangement(n)
        assert sorted(perm) == list(range(n)) and all(i != j for i, j in enumerate(perm))
