"""The long-form measures judge what they claim: a continuous film's seams fall inside its frame-change range and a
spliced one's do not; colour kept is read per segment; the synthetic A2V / V2A inputs (a click track and a plain
moving disc the toy world never renders) have events the detectors find where they were put."""

from __future__ import annotations

import numpy as np

from jointav.metrics.audio_events import detect_audio_events
from jointav.metrics.long_form import kept_across, seam_figures, shot_traits
from jointav.metrics.video_events import detect_video_events
from jointav.toyworld import WorldConfig, parse_caption, render_clip
from jointav.training.evaluate_long import click_track, moving_disc

FPS, RATE = 12.0, 16000
RED = "a red ball bounces three times in the centre, low thuds, on a gray background"
BLUE = "a blue ball bounces three times in the centre, low thuds, on a gray background"


def test_a_continuous_film_has_its_seams_in_range_and_its_colour_kept():
    clip = render_clip(parse_caption(RED), seed=2, config=WorldConfig(duration=4.0))
    figures = seam_figures(clip.frames, clip.audio, FPS, RATE, seams=[24], kind="bounce")
    assert figures["colour_kept"] == 1.0 and figures["seams_within_range"] == 1.0
    assert [row["colour"] for row in figures["segments"]] == ["red", "red"]


def test_a_spliced_film_shows_a_seam_out_of_range_and_a_colour_change():
    red, blue = (render_clip(parse_caption(c), seed=2) for c in (RED, BLUE))
    frames = np.concatenate([red.frames[:24], blue.frames[:24]])
    frames[24:] = 255 - frames[24:]  # a different picture entirely after the seam
    sound = np.concatenate([red.audio[:32000], blue.audio[:32000]])
    figures = seam_figures(frames, sound, FPS, RATE, seams=[24], kind="bounce")
    assert figures["seams_within_range"] == 0.0
    assert figures["seam_changes"][0] > 3 * figures["inside_changes_median"]


def test_shot_traits_read_each_shots_colour():
    red, blue = (render_clip(parse_caption(c), seed=4) for c in (RED, BLUE))
    frames = np.concatenate([red.frames[:24], blue.frames[:24], red.frames[:24]])
    sound = np.concatenate([red.audio[:32000], blue.audio[:32000], red.audio[:32000]])
    traits = shot_traits(frames, sound, FPS, RATE, cuts=[24, 48], kind="bounce")
    assert [t["colour"] for t in traits] == ["red", "blue", "red"]
    assert kept_across(traits, "colour") is False and kept_across([traits[0], traits[2]], "colour") is True


def test_the_click_track_onsets_are_where_the_clicks_were_put():
    for seed in range(4):
        track, frames = click_track(np.random.default_rng(seed))
        onsets = detect_audio_events(track, RATE).onset_frames(FPS)
        assert len(onsets) == len(frames)
        assert np.abs(onsets - np.asarray(frames)).max() <= 0.5


def test_the_moving_disc_bounces_are_seen_where_they_were_drawn():
    for seed in range(4):
        frames, impacts = moving_disc(np.random.default_rng(seed))
        events = detect_video_events(frames, kind="bounce")
        assert events.colour == "white"
        assert len(events.event_frames) == len(impacts)
        assert np.abs(np.asarray(events.event_frames) - np.asarray(impacts)).max() <= 1
