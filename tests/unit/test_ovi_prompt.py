import pytest

from jointav.errors import InputValueError
from jointav.text.ovi_prompt import (
    AudioCaptionStyle,
    clean_for_tokenizer,
    compose_prompt,
    convert_caption_style,
    speech_lines_in,
)


def test_speech_lines_reach_the_prompt_verbatim_and_in_order():
    lines = ["AI declares: humans obsolete now.", "We fight back, with courage!"]
    text = compose_prompt("A singer on a stage.", lines, "cheering crowd")
    assert speech_lines_in(text) == lines
    assert text == (
        "A singer on a stage. <S>AI declares: humans obsolete now.<E> <S>We fight back, with courage!<E> "
        "<AUDCAP>cheering crowd<ENDAUDCAP>"
    )


def test_inline_speech_in_the_video_prompt_is_kept():
    text = compose_prompt("He says <S>Hello.<E> and leaves.", "Goodbye.", "")
    assert speech_lines_in(text) == ["Hello.", "Goodbye."]


@pytest.mark.parametrize("style", list(AudioCaptionStyle))
def test_each_model_gets_its_own_caption_style(style):
    text = compose_prompt("A dog runs.", [], "barking, wind", style=style)
    if style == AudioCaptionStyle.TAGS:
        assert text.endswith("<AUDCAP>barking, wind<ENDAUDCAP>") and "Audio:" not in text
    else:
        assert text.endswith("Audio: barking, wind") and "<AUDCAP>" not in text


def test_conversion_between_styles_matches_the_reference_formatters():
    tagged = "A man talks. <S>Hi.<E> <AUDCAP>male voice<ENDAUDCAP>"
    prefixed = convert_caption_style(tagged, AudioCaptionStyle.AUDIO_PREFIX)
    assert prefixed == "A man talks. <S>Hi.<E> Audio: male voice"
    assert convert_caption_style(prefixed, AudioCaptionStyle.TAGS) == tagged
    # speech survives both conversions untouched
    assert speech_lines_in(prefixed) == ["Hi."]


def test_empty_prompt_is_refused_with_a_clear_message():
    with pytest.raises(InputValueError, match="all empty"):
        compose_prompt("  ", [], "")


def test_markup_inside_a_speech_line_is_refused():
    with pytest.raises(InputValueError, match="<E>"):
        compose_prompt("x", ["bad <E> line"], "")


def test_tokenizer_cleaning_collapses_whitespace_and_entities():
    assert clean_for_tokenizer("  a &amp;amp;  b\n\tc ") == "a & b c"
