"""The toy world the default model learns from: exact sound timing, captions both ways, a clean held-out split."""

import numpy as np
import pytest

from jointav.errors import InputValueError
from jointav.toyworld import (
    HELDOUT_CHARACTER_PAIRS,
    HELDOUT_OBJECT_PAIRS,
    SceneSpec,
    WorldConfig,
    caption_for,
    parse_caption,
    render_clip,
    sample_spec,
)
from jointav.toyworld.vocabulary import OBJECT_COLOURS, SHAPES, VOICES


def _clips(kinds, n=12, seed=0, config=WorldConfig()):
    rng = np.random.default_rng(seed)
    specs = [s for s in (sample_spec(rng) for _ in range(10 * n)) if s.kind in kinds][:n]
    return [render_clip(s, 1000 + i, config) for i, s in enumerate(specs)]


def _sound_starts(audio: np.ndarray, quiet: int = 64) -> list[int]:
    """Samples where sound begins after at least `quiet` silent samples."""
    loud = np.flatnonzero(audio != 0)
    return [int(s) for k, s in enumerate(loud) if k == 0 or s - loud[k - 1] > quiet]


def test_same_seed_same_clip_other_seed_other_clip():
    spec = SceneSpec("bounce", "red", "ball", 2, "black", position="left", sound="thud")
    a, b, c = render_clip(spec, 7), render_clip(spec, 7), render_clip(spec, 8)
    assert np.array_equal(a.frames, b.frames) and np.array_equal(a.audio, b.audio)
    assert a.truth.event_frames == b.truth.event_frames
    assert not np.array_equal(a.audio, c.audio)


OTHER_CONFIG = WorldConfig(width=80, height=48, fps=24, duration=1, sample_rate=22050)


@pytest.mark.parametrize("config", [WorldConfig(), OTHER_CONFIG])
def test_clip_layout_follows_the_config(config):
    clip = _clips(("bounce", "speak"), n=2, config=config)[0]
    steps = round(config.duration * config.fps)
    assert clip.frames.dtype == np.uint8 and clip.frames.shape == (1 + steps, config.height, config.width, 3)
    assert (clip.frames.shape[0] - 1) % 4 == 0  # 1+4k frames for a 4x-temporal video VAE
    assert clip.audio.dtype == np.float32 and clip.audio.shape == (round(config.duration * config.sample_rate),)
    assert clip.fps == config.fps and clip.sample_rate == config.sample_rate


def test_a_config_without_1_plus_4k_frames_is_refused():
    with pytest.raises(InputValueError, match="multiple of 4"):
        WorldConfig(fps=12, duration=1.5)


@pytest.mark.parametrize("config", [WorldConfig(), OTHER_CONFIG])
def test_impact_sounds_start_on_the_sample_of_the_impact_frame(config):
    for clip in _clips(("bounce", "slide"), config=config):
        t = clip.truth
        for f, s in zip(t.event_frames, t.event_samples):
            assert abs(s - f * clip.sample_rate / clip.fps) <= 1
        # The waveform is silent right before each impact and sounding from its first sample on, nowhere else.
        assert _sound_starts(clip.audio) == list(t.event_samples)


def _reach(object_mask: np.ndarray, spec: SceneSpec) -> int:
    """How far the object gets toward its surface in one frame: its lowest row, or its column nearest the wall."""
    if spec.kind == "bounce":
        return int(np.flatnonzero(object_mask.any(1))[-1])
    cols = np.flatnonzero(object_mask.any(0))
    return int(cols[-1]) if spec.direction == "right" else -int(cols[0])


def test_impact_frames_are_where_the_object_touches_floor_or_wall():
    for clip in _clips(("bounce", "slide")):
        t = clip.truth
        own = np.abs(clip.frames.astype(int) - t.colour_rgb).sum(-1) < 40  # pixels fully covered by the object
        reach = np.array([_reach(m, t.spec) for m in own])
        for f in t.event_frames:
            assert reach[f] == reach.max(), (t.caption, f)  # as low / as far into the wall as it ever gets
            assert reach[f - 1] < reach[f] and reach[f + 1] < reach[f], (t.caption, f)


def test_mouth_is_open_exactly_while_the_voice_sounds():
    for clip in _clips(("speak",)):
        t = clip.truth
        per_frame = clip.sample_rate / clip.fps
        assert t.tone_samples == tuple((round(a * per_frame), round(b * per_frame)) for a, b in t.mouth_open_frames)
        voiced = np.zeros(clip.audio.size, bool)
        for a, b in t.tone_samples:
            voiced[a:b] = True
        assert np.array_equal(clip.audio != 0, voiced)
        # In the pixels: frames with a big dark mouth are exactly the open ones.
        dark = (clip.frames.astype(int).sum(-1) < 120).sum((1, 2))
        open_frames = {f for a, b in t.mouth_open_frames for f in range(a, b)}
        assert set(np.flatnonzero(dark > (dark.min() + dark.max()) / 2)) == open_frames
        assert len(t.mouth_open_frames) == t.spec.count


def test_caption_parser_round_trips_every_sampled_spec():
    rng = np.random.default_rng(3)
    for split in ("train", "heldout"):
        for _ in range(300):
            spec = sample_spec(rng, split)
            assert parse_caption(caption_for(spec)) == spec
            assert parse_caption(caption_for(spec, markup=True)) == spec


def test_parser_reads_free_wording_and_refuses_unclear_captions():
    spec = parse_caption("On a GREY background: a Red ball, bouncing three times in the center (low thuds).")
    assert spec == SceneSpec("bounce", "red", "ball", 3, "gray", position="centre", sound="thud")
    with pytest.raises(InputValueError, match="a red ball bounces twice"):  # no background, names the caption
        parse_caption("a red ball bounces twice on the left, low thuds")
    with pytest.raises(InputValueError, match="several"):
        parse_caption("a red blue ball bounces twice on the left, low thuds, on a black background")


def test_heldout_combinations_never_appear_in_training():
    rng = np.random.default_rng(11)
    train = [sample_spec(rng, "train") for _ in range(2000)]
    heldout = [sample_spec(rng, "heldout") for _ in range(20)]
    assert not any(s.is_heldout for s in train) and all(s.is_heldout for s in heldout)
    train_captions = {caption_for(s) for s in train} | {caption_for(s, markup=True) for s in train}
    assert not {caption_for(s) for s in heldout} & train_captions
    # Each word of a held-out caption is still seen in training, only not in that pairing.
    objects = {(s.colour, s.shape) for s in train if s.kind != "speak"}
    characters = {(s.colour, s.voice) for s in train if s.kind == "speak"}
    assert not objects & HELDOUT_OBJECT_PAIRS and not characters & HELDOUT_CHARACTER_PAIRS
    assert {c for c, _ in objects} == set(OBJECT_COLOURS) and {s for _, s in objects} == set(SHAPES)
    assert {v for _, v in characters} == set(VOICES)


def test_a_cameo_caption_leaves_the_look_and_the_voice_to_the_cameo():
    from jointav.toyworld import cameo_caption
    from jointav.toyworld.vocabulary import OBJECT_COLOURS, VOICES

    spec = SceneSpec("speak", "purple", "character", 2, "gray", voice="high")
    for markup in (False, True):
        words = set(cameo_caption(spec, markup).replace("<", " <").replace(">", "> ").split())
        assert not words & (set(OBJECT_COLOURS) | set(VOICES)), words
        assert "gray" in words and ("two" in words or cameo_caption(spec, markup).count("la") == 2)
    with pytest.raises(InputValueError, match="speaking character"):
        cameo_caption(SceneSpec("bounce", "red", "ball", 1, "black", position="left", sound="thud"))


def test_a_carried_subject_caption_names_what_the_reference_does_not_carry():
    """A later shot's caption leaves the object's colour to the carried reference ("it" leaves the shape too),
    keeps the action, sound and background, and reads as the same scene otherwise."""
    from jointav.toyworld import cameo_caption, subject_caption, subject_recording_spec

    rng = np.random.default_rng(3)
    seen = set()
    for _ in range(40):
        spec = sample_spec(rng, "train")
        if spec.kind == "speak":
            assert subject_caption(spec, "same") == cameo_caption(spec)
            continue
        seen.add(spec.kind)
        it, same = subject_caption(spec, "it"), subject_caption(spec, "same", markup=True)
        assert spec.colour not in it.split() and spec.shape not in it.split() and it.startswith("it ")
        assert spec.colour not in same.split() and same.startswith(f"the same {spec.shape} ")
        assert it[len("it"):] == caption_for(spec)[len(f"a {spec.colour} {spec.shape}"):]
        rec = subject_recording_spec(spec, rng)
        assert (rec.colour, rec.shape) == (spec.colour, spec.shape) and rec.kind in ("bounce", "slide")
    assert seen == {"bounce", "slide"}
    with pytest.raises(InputValueError, match="form"):
        subject_caption(SceneSpec("bounce", "red", "ball", 2, "gray", position="left", sound="thud"), "that")
