"""Compose prompts in the markup Ovi was trained on, and convert between the two release styles.

Ovi reads one prompt for both towers. Spoken lines are wrapped as `<S>...<E>` where they occur in the
scene; the sound description is `<AUDCAP>...<ENDAUDCAP>` for the 720x720 5 s model, but a trailing
`Audio: ...` for the 960x960 5 s and 10 s models. Sending the wrong style makes the model treat the
description as ordinary scene text, so the conversion happens per model, as the reference engine does.
"""

from __future__ import annotations

import html
import re
from enum import Enum

from ..errors import InputValueError

SPEECH_OPEN, SPEECH_CLOSE = "<S>", "<E>"
AUDCAP_OPEN, AUDCAP_CLOSE = "<AUDCAP>", "<ENDAUDCAP>"


class AudioCaptionStyle(str, Enum):
    TAGS = "audcap_tags"  # Ovi 1.0 720x720 5 s
    AUDIO_PREFIX = "audio_prefix"  # Ovi 960x960 5 s and 960x960 10 s (1.1)


def speech(line: str) -> str:
    """One spoken line in Ovi's markup; the tag characters themselves may not appear inside it."""
    line = " ".join(line.split())
    for tag in (SPEECH_OPEN, SPEECH_CLOSE, AUDCAP_OPEN, AUDCAP_CLOSE):
        if tag in line:
            raise InputValueError(f"speech line {line!r}: contains the markup tag {tag}; give the words only")
    return f"{SPEECH_OPEN}{line}{SPEECH_CLOSE}"


def compose_prompt(
    video_prompt: str,
    speech_lines: list[str] | str = (),
    audio_description: str = "",
    style: AudioCaptionStyle = AudioCaptionStyle.TAGS,
) -> str:
    """The one prompt string Ovi expects: scene text, spoken lines, then the sound description.

    `video_prompt` may already carry `<S>...<E>` inline (as Ovi's own examples do); extra `speech_lines`
    (a list, or one line per text line) are appended after it in order.
    """
    if isinstance(speech_lines, str):
        speech_lines = [s for s in speech_lines.splitlines() if s.strip()]
    parts = [" ".join(video_prompt.split())]
    parts += [speech(s) for s in speech_lines if s.strip()]
    text = " ".join(p for p in parts if p)
    description = " ".join(audio_description.split())
    if description:
        if style == AudioCaptionStyle.TAGS:
            text = f"{text} {AUDCAP_OPEN}{description}{AUDCAP_CLOSE}".strip()
        else:
            text = f"{text} Audio: {description}".strip()
    if not text:
        raise InputValueError("prompt: the video prompt, speech lines and audio description are all empty; give at least one")
    return convert_caption_style(text, style)


def convert_caption_style(text: str, style: AudioCaptionStyle) -> str:
    """Rewrite the sound description into the style a model was trained on (the reference's per-model formatter)."""
    if style == AudioCaptionStyle.TAGS:
        return re.sub(r"Audio:\s*(.*)", rf"{AUDCAP_OPEN}\1{AUDCAP_CLOSE}", text, flags=re.S)
    return re.sub(rf"{AUDCAP_OPEN}(.*?){AUDCAP_CLOSE}", r"Audio: \1", text, flags=re.S)


def clean_for_tokenizer(text: str) -> str:
    """The whitespace cleaning the reference applies before umT5 tokenisation (HTML entities, runs of spaces)."""
    text = html.unescape(html.unescape(text)).strip()
    return re.sub(r"\s+", " ", text).strip()


def speech_lines_in(text: str) -> list[str]:
    """The spoken lines a prompt carries, in order (used to check that speech reaches the encoder intact)."""
    return re.findall(rf"{re.escape(SPEECH_OPEN)}(.*?){re.escape(SPEECH_CLOSE)}", text, flags=re.S)
