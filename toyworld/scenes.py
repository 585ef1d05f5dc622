"""What a toy-world clip shows, as data (`SceneSpec`), and the caption that says it, both ways.

Three kinds of scene, one subject each, on a plain background:
  bounce  "a red ball bounces twice on the left, low thuds, on a black background"
  slide   "a green square slides right and hits a wall, a high click, on a gray background"
  speak   "a blue character speaks three syllables in a high voice on a black background"
`caption_for(spec, markup=True)` gives the Ovi-style form of the same scene, sound description in
<AUDCAP>...<ENDAUDCAP> and the character's speech in <S>...<E>; `parse_caption` reads both forms.

Held-out rule (compositional generalisation): some colour pairings are never sampled for training.
  objects (bounce, slide): (colour, shape) in HELDOUT_OBJECT_PAIRS
  characters (speak):      (colour, voice) in HELDOUT_CHARACTER_PAIRS
whatever the other attributes. Every colour, shape and voice still occurs in training, only not in these
pairings, so a held-out caption is new as a combination while each of its words is known.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..errors import InputValueError
from .vocabulary import (
    BACKGROUND_COLOURS,
    COUNT_ADVERB,
    COUNT_WORD,
    COUNTS,
    DIRECTIONS,
    KINDS,
    OBJECT_COLOURS,
    POSITIONS,
    SHAPES,
    SOUND_PITCH_WORD,
    SOUNDS,
    SYLLABLE,
    VOICES,
    canonical,
    split_words,
)

HELDOUT_OBJECT_PAIRS = frozenset({("red", "square"), ("green", "triangle"), ("blue", "ball"), ("white", "triangle")})
HELDOUT_CHARACTER_PAIRS = frozenset({("yellow", "low"), ("purple", "high"), ("red", "mid")})
SPLITS = ("train", "heldout")


@dataclass(frozen=True)
class SceneSpec:
    """Everything a caption states. Fields that do not apply to the kind are None.

    kind: "bounce" | "slide" | "speak"; colour: object or head colour; shape: "ball" | "square" | "triangle"
    ("character" for speak); count: bounces (bounce), 1 (slide) or syllables (speak); position: where it bounces;
    direction: which way it slides; sound: "thud" | "click" (bounce, slide); voice: "low" | "mid" | "high" (speak).
    """

    kind: str
    colour: str
    shape: str
    count: int
    background: str
    position: str | None = None
    direction: str | None = None
    sound: str | None = None
    voice: str | None = None

    def __post_init__(self):
        _check("kind", self.kind, KINDS)
        _check("colour", self.colour, tuple(OBJECT_COLOURS))
        _check("background", self.background, tuple(BACKGROUND_COLOURS))
        _check("count", self.count, (1,) if self.kind == "slide" else COUNTS)
        is_obj = self.kind != "speak"
        _check("shape", self.shape, SHAPES if is_obj else ("character",))
        _check("position", self.position, POSITIONS if self.kind == "bounce" else (None,))
        _check("direction", self.direction, DIRECTIONS if self.kind == "slide" else (None,))
        _check("sound", self.sound, SOUNDS if is_obj else (None,))
        _check("voice", self.voice, (None,) if is_obj else VOICES)

    @property
    def is_heldout(self) -> bool:
        if self.kind == "speak":
            return (self.colour, self.voice) in HELDOUT_CHARACTER_PAIRS
        return (self.colour, self.shape) in HELDOUT_OBJECT_PAIRS


def _check(name: str, value, allowed: tuple) -> None:
    if value not in allowed:
        raise InputValueError(f"SceneSpec.{name}: found {value!r}, expected one of {allowed}")


def caption_for(spec: SceneSpec, markup: bool = False) -> str:
    """The caption of a scene. markup=True: Ovi form, sound in <AUDCAP>...<ENDAUDCAP>, speech in <S>...<E>."""
    bg = f"on a {spec.background} background"
    if spec.kind == "speak":
        if markup:
            speech = " ".join([SYLLABLE] * spec.count)
            return f"a {spec.colour} character says <S>{speech}<E> {bg}. <AUDCAP>a {spec.voice} voice<ENDAUDCAP>"
        syllables = f"{COUNT_WORD[spec.count]} syllable{'s' if spec.count > 1 else ''}"
        return f"a {spec.colour} character speaks {syllables} in a {spec.voice} voice {bg}"
    pitch = SOUND_PITCH_WORD[spec.sound]
    sound = f"a {pitch} {spec.sound}" if spec.count == 1 else f"{pitch} {spec.sound}s"
    if spec.kind == "bounce":
        where = "in the centre" if spec.position == "centre" else f"on the {spec.position}"
        action = f"a {spec.colour} {spec.shape} bounces {COUNT_ADVERB[spec.count]} {where}"
    else:
        action = f"a {spec.colour} {spec.shape} slides {spec.direction} and hits a wall"
    if markup:
        return f"{action} {bg}. <AUDCAP>{sound}<ENDAUDCAP>"
    return f"{action}, {sound}, {bg}"


def cameo_caption(spec: SceneSpec, markup: bool = False) -> str:
    """The caption of a speaking scene whose character is a cameo: what the character looks and sounds like
    (colour, voice) is left out, since the cameo's reference supplies it."""
    if spec.kind != "speak":
        raise InputValueError(f"cameo_caption: a cameo is a speaking character; found a {spec.kind} scene")
    bg = f"on a {spec.background} background"
    if markup:
        return f"a character says <S>{' '.join([SYLLABLE] * spec.count)}<E> {bg}."
    return f"a character speaks {COUNT_WORD[spec.count]} syllable{'s' if spec.count > 1 else ''} {bg}"


def cameo_recording_spec(colour: str, voice: str, rng: np.random.Generator) -> SceneSpec:
    """The scene of a cameo's reference recording: the character (colour, voice) saying three syllables on a
    random background."""
    return SceneSpec("speak", colour, "character", 3, BACKGROUNDS[int(rng.integers(len(BACKGROUNDS)))], voice=voice)


BACKGROUNDS = tuple(BACKGROUND_COLOURS)


SUBJECT_FORMS = ("it", "same")


def subject_caption(spec: SceneSpec, form: str = "it", markup: bool = False) -> str:
    """The caption of an object scene in a later shot of a film, whose subject is carried from an earlier shot by
    reference: its colour is left out, and its shape too in the "it" form ("it bounces twice ..."); the "same"
    form names the shape ("the same ball bounces ..."). A speaking scene's is its cameo caption."""
    if spec.kind == "speak":
        return cameo_caption(spec, markup)
    _check("form", form, SUBJECT_FORMS)
    caption = caption_for(spec, markup)
    named = f"a {spec.colour} {spec.shape}"
    if not caption.startswith(named):
        raise InputValueError(f"subject_caption: caption {caption!r} does not start with {named!r}")
    return ("it" if form == "it" else f"the same {spec.shape}") + caption[len(named):]


def subject_recording_spec(spec: SceneSpec, rng: np.random.Generator) -> SceneSpec:
    """Another scene of the same object (colour and shape; a bounce or a slide on a random background): the earlier
    shot a carried subject is taken from, in training."""
    if spec.kind == "speak":
        raise InputValueError("subject_recording_spec: a speaking character's recording is cameo_recording_spec's")
    background = BACKGROUNDS[int(rng.integers(len(BACKGROUNDS)))]
    sound = SOUNDS[int(rng.integers(len(SOUNDS)))]
    if rng.random() < 0.5:
        return SceneSpec("slide", spec.colour, spec.shape, 1, background,
                         direction=DIRECTIONS[int(rng.integers(len(DIRECTIONS)))], sound=sound)
    return SceneSpec("bounce", spec.colour, spec.shape, int(COUNTS[int(rng.integers(len(COUNTS)))]), background,
                     position=POSITIONS[int(rng.integers(len(POSITIONS)))], sound=sound)

_VERBS = {
    **dict.fromkeys(("bounces", "bounce", "bouncing"), "bounce"),
    **dict.fromkeys(("slides", "slide", "sliding"), "slide"),
    **dict.fromkeys(("speaks", "speak", "says", "talks"), "speak"),
}
_SOUND_WORDS = {"thud": "thud", "thuds": "thud", "click": "click", "clicks": "click"}
_ADVERB_COUNTS = {"once": 1, "twice": 2}
_NUMBER_WORDS = {COUNT_WORD[n]: n for n in COUNTS}


def parse_caption(text: str) -> SceneSpec:
    """Read a caption (either form of `caption_for`, or free word order with the same keywords) into a spec.

    Raises InputValueError naming the caption and the attribute that is missing or stated twice.
    """
    words = [canonical(w) for w in split_words(text)]
    speech = _speech_words(words)
    plain = [w for w in words if not w.startswith("<")]

    def one_of(name: str, meaning: dict, pool: list[str] = plain):
        found = sorted({meaning[w] for w in pool if w in meaning}, key=str)
        if len(found) != 1:
            what = "no" if not found else f"several ({', '.join(map(str, found))})"
            raise InputValueError(f"caption {text!r}: {what} {name} stated; expected one of {sorted(set(meaning))}")
        return found[0]

    kind = one_of("action", _VERBS)
    # The background colour is the colour word right before "background"; the other colour is the subject's.
    bg_at = [i for i, w in enumerate(plain) if w == "background"]
    if len(bg_at) != 1 or bg_at[0] == 0 or plain[bg_at[0] - 1] not in BACKGROUND_COLOURS:
        raise InputValueError(
            f"caption {text!r}: expected one '<colour> background' with a colour in {sorted(BACKGROUND_COLOURS)}"
        )
    background = plain[bg_at[0] - 1]
    subject = plain[: bg_at[0] - 1] + plain[bg_at[0] + 1 :]
    colour = one_of("colour", {c: c for c in OBJECT_COLOURS}, subject)

    if kind == "speak":
        voice = one_of("voice", {v: v for v in VOICES})
        stated = _counted(plain, _NUMBER_WORDS, ("syllable", "syllables"))
        count = len(speech) if speech else one_of("syllable count", stated)
        if count not in COUNTS:
            raise InputValueError(f"caption {text!r}: {count} syllables spoken; expected one of {COUNTS}")
        return SceneSpec("speak", colour, "character", count, background, voice=voice)
    shape = one_of("shape", {s: s for s in SHAPES})
    sound = one_of("sound", _SOUND_WORDS)
    if kind == "slide":
        direction = one_of("direction", {d: d for d in DIRECTIONS})
        return SceneSpec("slide", colour, shape, 1, background, direction=direction, sound=sound)
    counts = {**{w: n for w, n in _ADVERB_COUNTS.items() if w in plain}, **_counted(plain, _NUMBER_WORDS, ("times",))}
    count = one_of("bounce count", counts)
    position = one_of("position", {p: p for p in POSITIONS})
    return SceneSpec("bounce", colour, shape, count, background, position=position, sound=sound)


def _counted(words: list[str], numbers: dict[str, int], unit: tuple[str, ...]) -> dict[str, int]:
    # Number words that are followed by their unit ("three times", "two syllables"), as a word -> count map.
    return {w: numbers[w] for w, nxt in zip(words, words[1:]) if w in numbers and nxt in unit}


def _speech_words(words: list[str]) -> list[str]:
    # Words between <S> and <E>: in the markup form, one per syllable.
    out, inside = [], False
    for w in words:
        if w in ("<S>", "<E>"):
            inside = w == "<S>"
        elif inside:
            out.append(w)
    return out


def sample_spec(rng: np.random.Generator, split: str = "train") -> SceneSpec:
    """A random scene of the given split; the held-out split only yields the reserved pairings above."""
    _check("split", split, SPLITS)
    want_heldout = split == "heldout"
    while True:  # rejection: about a quarter of draws are held-out, so this ends after a few tries
        spec = _draw(rng)
        if spec.is_heldout == want_heldout:
            return spec


def _draw(rng: np.random.Generator) -> SceneSpec:
    def pick(options):
        return options[int(rng.integers(len(options)))]

    kind = pick(KINDS)
    colour, background = pick(tuple(OBJECT_COLOURS)), pick(tuple(BACKGROUND_COLOURS))
    if kind == "speak":
        return SceneSpec("speak", colour, "character", pick(COUNTS), background, voice=pick(VOICES))
    shape, sound = pick(SHAPES), pick(SOUNDS)
    if kind == "slide":
        return SceneSpec("slide", colour, shape, 1, background, direction=pick(DIRECTIONS), sound=sound)
    return SceneSpec("bounce", colour, shape, pick(COUNTS), background, position=pick(POSITIONS), sound=sound)
