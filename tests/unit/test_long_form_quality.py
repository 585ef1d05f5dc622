"""Issue 18's figures on the shipped default model, printed, with the targets as assertions. The shipped bundle was
fine-tuned for these keep-masks and carried subjects only 40 minutes on a CPU (default_model/TRAINING.md), so
targets it does not meet yet are strict xfails naming issue 18: when a better model passes, the XPASS fails the run
and the marker must go.

Audio-to-video and video-to-audio run the issue's 20 clips (one 2 s segment each: a smaller set misstates them; 6
clips put A2V at 83% where 20 give 70%). Multi-shot and extension are cut for the CPU tier (JOINTAV_LONG_FORM_FILMS
sets the films; `python -m jointav.training.evaluate_long` gives the closing figures: 20 films, 20 s and 60 s
extensions). Sampling uses the model's own 24 UniPC steps.
"""

from __future__ import annotations

import math
import os

import pytest

from jointav.pipeline.default_model import BUNDLE_DIR, BUNDLE_NAME
from jointav.training import evaluate_long

if not (BUNDLE_DIR / BUNDLE_NAME).is_file():
    pytest.skip(f"NO TRAINED DEFAULT MODEL: {BUNDLE_DIR / BUNDLE_NAME} is absent, so its long-form quality cannot be "
                f"measured", allow_module_level=True)

pytestmark = pytest.mark.slow
N = 20
FILMS = int(os.environ.get("JOINTAV_LONG_FORM_FILMS", "4"))


@pytest.fixture(scope="module")
def a2v():
    result = evaluate_long.evaluate_a2v(N)
    print("\n" + evaluate_long.summary("a2v", result))
    return result


@pytest.fixture(scope="module")
def v2a():
    result = evaluate_long.evaluate_v2a(N)
    print("\n" + evaluate_long.summary("v2a", result))
    return result


@pytest.fixture(scope="module")
def shots():
    result = evaluate_long.evaluate_shots(FILMS)
    print("\n" + evaluate_long.summary("shots", result))
    return result


@pytest.fixture(scope="module")
def extension():
    result = evaluate_long.evaluate_extension(films=1, to_seconds=10.0)
    print("\n" + evaluate_long.summary("extend", result))
    return result


def test_prints_the_figures(a2v, v2a, shots, extension, capsys):
    with capsys.disabled():
        for name, result in (("a2v", a2v), ("v2a", v2a), ("shots", shots), ("extend", extension)):
            print("\n" + evaluate_long.summary(name, result))
    assert a2v["n"] == N and v2a["n"] == N


def test_audio_to_video_events_land_on_the_given_onsets(a2v):
    assert a2v["within_one_frame"] >= 0.8, f"{a2v['within_one_frame']:.0%} of clips within 1 frame, expected >= 80%"


def test_audio_to_video_shuffled_pairing_is_clearly_worse(a2v):
    s = a2v["sync"]
    assert s["shuffled"]["median_abs_offset"] >= s["median_abs_offset"] + 1.0 \
        or s["in_sync_fraction"] >= s["shuffled"]["in_sync_fraction"] + 0.3


def test_video_to_audio_onsets_land_on_the_given_events(v2a):
    assert v2a["within_one_frame"] >= 0.8, f"{v2a['within_one_frame']:.0%} of clips within 1 frame, expected >= 80%"


def test_video_to_audio_voice_follows_the_prompt(v2a):
    assert v2a["n_speaking"] >= 1 and not math.isnan(v2a["pitch_follows_prompt"])
    assert v2a["pitch_follows_prompt"] >= 0.8


def test_extension_keeps_the_subjects_colour_at_every_seam(extension):
    assert extension["colour_kept"] >= 0.8, f"colour kept in {extension['colour_kept']:.0%} of later segments"


def test_extension_seams_change_no_more_than_frames_inside_segments(extension):
    assert extension["seams_within_range"] == 1.0, f"{extension['seams_within_range']:.0%} of seams within range"


def test_extended_part_stays_in_sync(extension):
    assert extension["extended_median_abs_offset"] <= 1.0


def test_multi_shot_keeps_colour_more_often_with_the_carried_subject_than_without(shots):
    assert shots["subject"]["colour_kept"] >= shots["none"]["colour_kept"] + 0.3


# (The closing figure is `evaluate_long --what shots` over 20 films: with the shots adapter 80% of the tests' films
# and 95% of validation films, README, TRAINING.md; the tier's cut-down set is the more lenient judge.)
def test_multi_shot_keeps_colour_in_four_films_of_five(shots):
    assert shots["subject"]["colour_kept"] >= 0.8


def test_multi_shot_keeps_the_voice_with_the_carried_subject(shots):
    carried, alone = shots["subject"], shots["none"]
    assert carried["n_speaking"] >= 1
    assert carried["voice_kept"] >= 0.8 and carried["voice_kept"] >= alone["voice_kept"] + 0.3
