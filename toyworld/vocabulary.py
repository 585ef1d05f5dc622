"""The closed vocabulary of the toy world: every attribute a caption can name, and how words map to it.

One table per attribute, so that the renderer, the caption parser, the metrics and the tiny text encoder
all read the same names. The order of every tuple here is part of the trained default model (token ids and
class indices derive from it): append, never reorder.
"""

from __future__ import annotations

import re

# Object and character colours: saturated and far apart in RGB, so a blurry generated clip still lands on
# the right name by nearest colour.
OBJECT_COLOURS: dict[str, tuple[int, int, int]] = {
    "red": (220, 40, 40),
    "green": (40, 200, 70),
    "blue": (50, 90, 235),
    "yellow": (235, 215, 40),
    "white": (240, 240, 240),
    "purple": (165, 60, 205),
}

# Backgrounds: dark or neutral, each at least ~130 RGB units away from every object colour.
BACKGROUND_COLOURS: dict[str, tuple[int, int, int]] = {
    "black": (12, 12, 16),
    "gray": (105, 105, 110),
    "brown": (85, 55, 35),
}

# Floor and wall are drawn this much lighter than the background: visible, yet well under the metrics'
# foreground threshold, so they never count as "the object".
STRUCTURE_SHADE = 28

SHAPES = ("ball", "square", "triangle")
KINDS = ("bounce", "slide", "speak")
POSITIONS = ("left", "centre", "right")  # where a bouncing object bounces
DIRECTIONS = ("left", "right")  # which way a sliding object goes (and which wall it hits)
SOUNDS = ("thud", "click")  # impact timbre: low damped sine vs high noise burst
SOUND_PITCH_WORD = {"thud": "low", "click": "high"}
VOICES = ("low", "mid", "high")
VOICE_HZ: dict[str, float] = {"low": 220.0, "mid": 440.0, "high": 880.0}  # an octave apart
COUNTS = (1, 2, 3)
COUNT_ADVERB = {1: "once", 2: "twice", 3: "three times"}
COUNT_WORD = {1: "one", 2: "two", 3: "three"}
SYLLABLE = "la"  # what the character "says" inside <S>...<E> in the markup form of a caption

# Ovi prompt markup: speech between <S> and <E>, the sound description between <AUDCAP> and <ENDAUDCAP>.
MARKUP_TOKENS = ("<S>", "<E>", "<AUDCAP>", "<ENDAUDCAP>")

# Words a user may type for the same thing; the parser and the tokenizer read them as the canonical word.
SYNONYMS = {"grey": "gray", "center": "centre", "middle": "centre", "medium": "mid", "violet": "purple"}

# Every word the captions use, plus a few common fillers; the text encoder's word list starts from this.
CAPTION_WORDS: tuple[str, ...] = (
    *OBJECT_COLOURS, *BACKGROUND_COLOURS, *SHAPES, "character", "face",
    "bounces", "bounce", "bouncing", "slides", "slide", "sliding", "speaks", "speak", "says", "talks",
    "once", "twice", "times", "one", "two", "three", "syllable", "syllables",
    *POSITIONS,
    "thud", "thuds", "click", "clicks", "low", "mid", "high", "voice", "tone", "sound", "audio",
    "a", "an", "the", "on", "in", "of", "and", "with", "into", "to", "hits", "hit", "wall", "floor", "background",
    SYLLABLE,
)  # fmt: skip

_MARKUP_RE = re.compile("(" + "|".join(re.escape(t) for t in MARKUP_TOKENS) + ")", re.IGNORECASE)
_WORD_RE = re.compile(r"[a-z0-9]+")


def split_words(text: str) -> list[str]:
    """Lower-cased words with punctuation dropped; Ovi markup tags survive as single tokens in canonical case.

    "A red ball. <AUDCAP>Low thuds<ENDAUDCAP>" -> ["a", "red", "ball", "<AUDCAP>", "low", "thuds", "<ENDAUDCAP>"]
    """
    words: list[str] = []
    for piece in _MARKUP_RE.split(text):
        if not piece:
            continue
        upper = piece.upper()
        if upper in MARKUP_TOKENS:
            words.append(upper)
        else:
            words.extend(_WORD_RE.findall(piece.lower()))
    return words


def canonical(word: str) -> str:
    """The vocabulary's own spelling of a word ("grey" -> "gray", "center" -> "centre")."""
    return SYNONYMS.get(word, word)


def nearest_colour(rgb, palette: dict[str, tuple[int, int, int]]) -> str:
    """Name of the palette colour closest to `rgb` in RGB distance."""
    r, g, b = (float(c) for c in rgb)
    return min(palette, key=lambda n: (palette[n][0] - r) ** 2 + (palette[n][1] - g) ** 2 + (palette[n][2] - b) ** 2)
