"""The cameo pathway of the shipped default model, judged as a user meets it (issue 6): four characters
(a colour and a voice each) are recorded as MP4 files and made into profiles with pipeline.cameo.create_profile;
20 captions that name neither colour nor voice are sampled with a profile's reference tokens and, from the
same seed, without any cameo. The metrics read the character's colour and voice pitch from each clip.

Targets: the cameo's look and voice appear in >= 80% of the clips made with it, and in at most the chance
rate (1 in 6 colours, 1 in 3 voices) of the clips made without it.
"""

import pytest

from jointav.pipeline.default_model import BUNDLE_DIR, BUNDLE_NAME
from jointav.training.evaluate import evaluate_cameo

BUNDLE = BUNDLE_DIR / BUNDLE_NAME
N_CAPTIONS = 20

if not BUNDLE.is_file():
    pytest.skip(f"NO TRAINED DEFAULT MODEL: {BUNDLE} is absent, so its cameo pathway cannot be measured",
                allow_module_level=True)

# The shipped bundle's cameo pathway is below these targets (default_model/TRAINING.md says why). strict=True:
# once a retrained bundle meets one, the XPASS fails the run and the marker must go.
BELOW_TARGET = pytest.mark.xfail(strict=True, reason="the shipped bundle's cameo pathway is below this target")


@pytest.fixture(scope="module")
def figures(tmp_path_factory):
    return evaluate_cameo(tmp_path_factory.mktemp("cameo-eval"), n=N_CAPTIONS)


def test_prints_the_figures(figures, capsys):
    with capsys.disabled():
        print(f"\n{figures['summary']}")
    assert len(figures["trials"]) == N_CAPTIONS


@BELOW_TARGET
def test_the_cameo_look_appears_with_it_and_not_without(figures):
    assert figures["colour_with"] >= 0.8, f"cameo colour in {figures['colour_with']:.0%} of clips, expected >= 80%"
    assert figures["colour_without"] <= figures["colour_chance"], (
        f"without the cameo its colour still shows in {figures['colour_without']:.0%}, above chance "
        f"{figures['colour_chance']:.0%}")


@BELOW_TARGET
def test_the_cameo_voice_is_heard_with_it_and_not_without(figures):
    assert figures["pitch_with"] >= 0.8, f"cameo voice in {figures['pitch_with']:.0%} of clips, expected >= 80%"
    assert figures["pitch_without"] <= figures["pitch_chance"], (
        f"without the cameo its voice still shows in {figures['pitch_without']:.0%}, above chance "
        f"{figures['pitch_chance']:.0%}")
