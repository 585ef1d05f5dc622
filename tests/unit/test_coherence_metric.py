"""Issue 19's coherence measures (metrics.coherence): one subject region per frame, no centre jump outside a
bounce. Right on the toy world's own renders, and they catch a doubled subject and a subject that teleports."""

import numpy as np
import pytest

from jointav.metrics import detect_video_events, evaluate
from jointav.metrics.coherence import (MAX_IMPACT_JUMP, MAX_JUMP, double_exposure, measure_coherence,
                                       subject_regions, time_shuffled)
from jointav.toyworld import render_clip, sample_spec


@pytest.fixture(scope="module")
def clips():
    rng = np.random.default_rng(19)
    return [render_clip(sample_spec(rng), 900 + i) for i in range(24)]


def test_a_rendered_subject_is_one_region_in_every_frame(clips):
    for clip in clips:
        assert subject_regions(clip.frames) == (1,) * clip.frames.shape[0], clip.truth.caption


def test_rendered_motion_never_jumps_more_than_a_quarter_frame_outside_a_bounce(clips):
    measured = [measure_coherence(c.frames, detect_video_events(c.frames, c.truth.spec.kind)) for c in clips]
    assert all(m.smooth for m in measured)
    assert max(m.max_jump for m in measured) <= MAX_JUMP
    assert max(m.impact_jump for m in measured) <= MAX_IMPACT_JUMP
    assert max(m.max_jump for m in measured) > 0.05  # the measure sees real motion (a falling ball moves pixels)


def test_a_doubled_subject_is_two_regions(clips):
    clip = next(c for c in clips if c.truth.spec.kind == "bounce")
    doubled = subject_regions(double_exposure(clip.frames))
    # where the two copies stand apart (the bounce's high and low points) the viewer sees two subjects
    assert doubled.count(2) >= 3, doubled


def test_a_subject_that_teleports_is_caught(clips):
    clip = next(c for c in clips if c.truth.spec.kind == "slide")
    frames = clip.frames.copy()
    mid = frames.shape[0] // 2
    frames[mid:] = frames[mid:][:, :, ::-1]  # the second half mirrored: the subject leaps across the frame
    events = detect_video_events(frames, "slide")
    assert not measure_coherence(frames, events).smooth  # (the leap reads as a wall contact, yet is caught)


def test_a_missing_subject_is_zero_regions(clips):
    frames = clips[0].frames.copy()
    frames[:] = frames[:, :1, :1]  # every pixel the top-left one: background only
    assert set(subject_regions(frames)) == {0}


def test_evaluate_reports_coherence_beside_its_baselines(clips):
    result = evaluate(clips, [c.truth.caption for c in clips], truth=clips)
    co = result["coherence"]
    print("\n" + result["summary"])
    assert co["one_region"] == 1.0 and co["smooth"] == 1.0
    assert co["one_region_double_exposure"] < 0.8 and co["smooth_time_shuffled"] < 0.8
    assert result["ground_truth"]["coherence"]["one_region"] == 1.0
    assert result["adherence"]["bounces"]["accuracy"] == 1.0


def test_time_shuffle_keeps_the_frames():
    frames = np.arange(10 * 2 * 2 * 3, dtype=np.uint8).reshape(10, 2, 2, 3)
    shuffled = time_shuffled(frames, seed=3)
    assert sorted(map(bytes, shuffled)) == sorted(map(bytes, frames)) and not np.array_equal(shuffled, frames)
