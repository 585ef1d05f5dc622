"""Long-form work on the embedded default model (issue 18), at few steps: extension, audio-to-video, foley and
multi-shot through the library and the CLI; held spans equal their clean inputs after sampling; seams and cuts land
where reported; written files have the asked duration; bad input is refused naming the input, with nothing under
--out; an interrupted run keeps its finished segments as a valid file."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from jointav.audio.av_stream import MODEL_RATE, StreamingMP4Writer
from jointav.audio.io import write_audio
from jointav.audio.mp4 import probe_mp4, read_mp4, write_mp4
from jointav.cli import build_parser
from jointav.errors import InputValueError
from jointav.pipeline import adapters, api, graph_latents, long_form
from jointav.pipeline.default_model import BUNDLE_DIR, BUNDLE_NAME
from jointav.pipeline.film_memory import FilmInMemory
from jointav.provenance import verify_file
from jointav.samplers import SegmentTail, WholeAudio, WholeVideo
from jointav.toyworld import parse_caption, render_clip

FPS = 12.0
BOUNCE = "a red ball bounces twice on the left, low thuds, on a gray background"


@pytest.fixture(scope="module")
def parts():
    return api.load_joint_model(device="cpu"), api.load_decoders(device="cpu")


@pytest.fixture(scope="module")
def toy_clip():
    return render_clip(parse_caption(BOUNCE), seed=5)


def write_toy(path: Path, clip, *, fps=FPS, sound=True, frames=None) -> Path:
    frames = clip.frames if frames is None else frames
    write_mp4(path, frames, fps, clip.audio[None] if sound else None, MODEL_RATE if sound else None)
    return path


class SampleSpy:
    """Wraps pipeline.api.sample to keep each call's conditionings and sampled latent."""

    def __init__(self, monkeypatch):
        self.calls = []
        original = api.sample

        def spy(model, conditioning, latent, **kwargs):
            out = original(model, conditioning, latent, **kwargs)
            self.calls.append((list(latent.conditionings), out))
            return out

        monkeypatch.setattr(api, "sample", spy)  # pipeline.segments calls api.sample


def cli(*argv, cancel=None) -> int:
    args = build_parser().parse_args([str(a) for a in argv])
    return args.func(args, cancel) if cancel is not None else args.func(args)


def only_inputs(folder: Path, *inputs: str) -> None:
    assert sorted(p.name for p in folder.iterdir()) == sorted(inputs), "something was written beside the inputs"


# --------------------------------------------------------------------------------------------- extension

def test_extend_from_a_prompt_holds_each_segment_tail_and_writes_the_asked_duration(tmp_path, monkeypatch, parts):
    spy = SampleSpy(monkeypatch)
    out = tmp_path / "long.mp4"
    rc = cli("extend", "--to", "5s", "--prompt", BOUNCE, "--steps", "2", "--hold", "1", "--out", out)
    assert rc == 0
    info = probe_mp4(out)
    assert info["video"][0]["frames"] == 60 and abs(info["video"][0]["duration"] - 5.0) < 1e-6
    assert abs(info["audio"][0]["duration"] - 5.0) <= 1 / FPS
    assert verify_file(out).valid
    assert len(spy.calls) == 3  # 24 usable frames, then 23 new frames per segment
    first_items, _ = spy.calls[0]
    assert first_items == []
    for items, latent in spy.calls[1:]:
        tail = next(i for i in items if isinstance(i, SegmentTail))
        k, m = tail.video.shape[2], tail.audio.shape[1]
        assert (k, m) == (1, 3)  # one latent frame (the last frame) and the 3 audio latents that cover it
        assert torch.equal(latent.video[:, :, :k], tail.video) and torch.equal(latent.audio[:, :m], tail.audio)


def test_extend_library_reports_its_seams_and_writes_frames_and_sound_of_one_length(tmp_path, parts):
    model, decoders = parts
    with StreamingMP4Writer(tmp_path / "x.mp4", FPS, 64, 64) as writer:
        report = long_form.extend(model, decoders, writer, to_seconds=4.0, prompts=[BOUNCE, "a red ball slides"],
                                  hold_latent_frames=1, settings=long_form.Settings(steps=2))
        writer.commit()
    # 24 usable frames of the first segment, then 23 new ones per segment (its held frame is the previous last)
    assert report.frames == 48 and report.seams == [24, 47] and report.segments == 3 and not report.interrupted
    assert report.samples == round(48 / FPS * MODEL_RATE)


def test_extend_an_mp4_with_sound_starts_with_its_frames(tmp_path, toy_clip):
    source = write_toy(tmp_path / "in.mp4", toy_clip)
    out = tmp_path / "out.mp4"
    assert cli("extend", source, "--to", "4s", "--prompt", BOUNCE, "--steps", "2", "--hold", "1", "--out", out) == 0
    frames_in, _, _, _ = read_mp4(source)
    frames_out, sound, fps, rate = read_mp4(out)
    assert fps == FPS and len(frames_out) == 48 and rate == MODEL_RATE
    # the input's usable frames come first (24 of 25: its sound ends before its last frame does)
    diff = np.abs(frames_out[:24].astype(float) - frames_in[:24].astype(float)).mean()
    assert diff < 4.0, f"input frames changed by {diff:.2f} levels on average"


def test_extend_holds_five_frames_and_their_sound_by_default(tmp_path, monkeypatch):
    spy = SampleSpy(monkeypatch)
    assert cli("extend", "--to", "3s", "--prompt", BOUNCE, "--steps", "2", "--out", tmp_path / "h.mp4") == 0
    items, latent = spy.calls[1]
    tail = items[0]
    assert tail.video.shape[2] == 2 and tail.audio.shape[1] == 14  # 5 frames = 417 ms -> 14 latents of 32 ms
    assert torch.equal(latent.video[:, :, :2], tail.video) and torch.equal(latent.audio[:, :14], tail.audio)
    assert probe_mp4(tmp_path / "h.mp4")["video"][0]["frames"] == 36


def test_interrupted_extension_keeps_the_finished_segments_as_a_valid_file(tmp_path, monkeypatch):
    spy = SampleSpy(monkeypatch)

    def cancel():  # a stop request once the first segment is sampled: the second one stops before its first step
        return len(spy.calls) >= 1

    out = tmp_path / "cut.mp4"
    assert cli("extend", "--to", "10s", "--prompt", BOUNCE, "--steps", "2", "--hold", "1", "--out", out,
               cancel=cancel) == 130
    only_inputs(tmp_path, "cut.mp4")
    info = probe_mp4(out)
    assert info["video"][0]["frames"] == 24  # the first segment's usable frames, whole
    assert abs(info["audio"][0]["duration"] - 2.0) <= 1 / FPS
    frames, sound, _, _ = read_mp4(out)
    assert len(frames) == 24 and sound is not None
    assert verify_file(out).valid


def test_interrupted_before_any_segment_writes_nothing(tmp_path):
    assert cli("extend", "--to", "5s", "--prompt", BOUNCE, "--steps", "2", "--out", tmp_path / "n.mp4",
               cancel=lambda: True) == 130
    only_inputs(tmp_path)


def test_extend_takes_the_prompt_a_jointav_file_records_and_asks_for_one_otherwise(tmp_path, capsys, toy_clip):
    made = tmp_path / "made.mp4"
    assert cli("extend", "--to", "2s", "--prompt", BOUNCE, "--steps", "1", "--out", made) == 0
    assert cli("extend", made, "--to", "3s", "--steps", "1", "--out", tmp_path / "more.mp4") == 0
    assert probe_mp4(tmp_path / "more.mp4")["metadata"]["title"] == BOUNCE
    plain = write_toy(tmp_path / "plain.mp4", toy_clip)
    assert cli("extend", plain, "--to", "3s", "--out", tmp_path / "o.mp4") == 2
    assert "plain.mp4 records no prompt in its metadata; expected at least one --prompt" in capsys.readouterr().err


# --------------------------------------------------------------------------------------------- A2V and foley

def test_animate_holds_the_given_sound_and_writes_it(tmp_path, monkeypatch, toy_clip):
    spy = SampleSpy(monkeypatch)
    wav = tmp_path / "in.wav"
    write_audio(wav, {"waveform": torch.from_numpy(toy_clip.audio)[None, None], "sample_rate": MODEL_RATE})
    out = tmp_path / "a.mp4"
    assert cli("animate", "--audio", wav, "--prompt", BOUNCE, "--steps", "2", "--out", out) == 0
    items, latent = spy.calls[0]
    held = next(i for i in items if isinstance(i, WholeAudio))
    assert torch.equal(latent.audio, held.latent)
    frames, sound, fps, rate = read_mp4(out)
    assert len(frames) == 24 and rate == MODEL_RATE  # 2.0 s of sound at 12 fps
    n = min(len(toy_clip.audio), sound.shape[1]) - 2048
    corr = np.corrcoef(sound[0, 1024:n], toy_clip.audio[1024:n])[0, 1]
    assert corr > 0.9, f"the written sound is not the given one (correlation {corr:.2f})"


def test_foley_holds_the_given_frames_and_writes_them(tmp_path, monkeypatch, toy_clip):
    spy = SampleSpy(monkeypatch)
    source = write_toy(tmp_path / "silent.mp4", toy_clip, sound=False)
    out = tmp_path / "f.mp4"
    assert cli("foley", source, "--prompt", BOUNCE, "--steps", "2", "--out", out) == 0
    items, latent = spy.calls[0]
    held = next(i for i in items if isinstance(i, WholeVideo))
    assert torch.equal(latent.video, held.latent)
    frames_in, _, _, _ = read_mp4(source)
    frames_out, sound, _, rate = read_mp4(out)
    assert len(frames_out) == 25 and sound is not None and rate == MODEL_RATE
    assert np.abs(frames_out.astype(float) - frames_in.astype(float)).mean() < 4.0


def test_foley_adds_the_default_models_foley_adapter_unless_told_off(tmp_path, monkeypatch, toy_clip):
    if not (BUNDLE_DIR / BUNDLE_NAME).is_file():
        pytest.skip(f"NO TRAINED DEFAULT MODEL: {BUNDLE_DIR / BUNDLE_NAME} is absent, and its foley adapter with it")
    spy = SampleSpy(monkeypatch)
    source = write_toy(tmp_path / "silent.mp4", toy_clip, sound=False)
    assert cli("foley", source, "--prompt", BOUNCE, "--steps", "1", "--out", tmp_path / "a.mp4") == 0
    assert spy.calls[-1][1].provenance["sampler"]["adapter"]["name"] == "jointav-default-foley"
    assert cli("foley", source, "--prompt", BOUNCE, "--steps", "1", "--adapter", "off",
               "--out", tmp_path / "b.mp4") == 0
    assert "adapter" not in spy.calls[-1][1].provenance["sampler"]
    assert cli("extend", "--to", "2s", "--prompt", BOUNCE, "--steps", "1", "--out", tmp_path / "c.mp4") == 0
    assert "adapter" not in spy.calls[-1][1].provenance["sampler"]  # no given picture: the base weights


def test_a_long_sound_is_animated_in_segments_each_holding_its_sound_and_the_last_frame(tmp_path, monkeypatch,
                                                                                       toy_clip):
    spy = SampleSpy(monkeypatch)
    wav = tmp_path / "long.wav"
    sound = np.concatenate([toy_clip.audio, toy_clip.audio])
    write_audio(wav, {"waveform": torch.from_numpy(sound)[None, None], "sample_rate": MODEL_RATE})
    assert cli("animate", "--audio", wav, "--prompt", BOUNCE, "--steps", "1", "--hold", "1",
               "--out", tmp_path / "a.mp4") == 0
    assert probe_mp4(tmp_path / "a.mp4")["video"][0]["frames"] == 48 and len(spy.calls) == 3
    items, latent = spy.calls[1]
    kinds = sorted(type(i).__name__ for i in items)
    assert kinds == ["VideoFrames", "WholeAudio"]
    for item in items:
        if isinstance(item, WholeAudio):
            assert torch.equal(latent.audio, item.latent)
        else:
            assert torch.equal(latent.video[:, :, :1], item.latent)


def test_a_long_video_gets_its_sound_in_segments_each_holding_its_frames_and_the_sound_before(tmp_path, monkeypatch,
                                                                                           toy_clip):
    spy = SampleSpy(monkeypatch)
    source = write_toy(tmp_path / "long.mp4", toy_clip, sound=False,
                       frames=np.concatenate([toy_clip.frames, toy_clip.frames[1:]]))
    assert cli("foley", source, "--prompt", BOUNCE, "--steps", "1", "--hold", "1", "--out", tmp_path / "f.mp4") == 0
    info = probe_mp4(tmp_path / "f.mp4")
    assert info["video"][0]["frames"] == 49 and abs(info["audio"][0]["duration"] - 49 / FPS) <= 1 / FPS
    items, latent = spy.calls[1]
    assert sorted(type(i).__name__ for i in items) == ["AudioSpan", "WholeVideo"]
    for item in items:
        if isinstance(item, WholeVideo):
            assert torch.equal(latent.video, item.latent)
        else:
            assert torch.equal(latent.audio[:, :3], item.latent)


# --------------------------------------------------------------------------------------------- multi-shot

def test_shots_join_with_hard_cuts_and_carry_the_first_subject(tmp_path, monkeypatch, parts):
    spy = SampleSpy(monkeypatch)
    model, decoders = parts
    shots = [long_form.parse_shot(s) for s in (f"{BOUNCE}@2s", "the same ball slides@1s", "it bounces@2.5s")]
    with StreamingMP4Writer(tmp_path / "film.mp4", FPS, 64, 64) as writer:
        report = long_form.shots(model, decoders, writer, shots, hold_latent_frames=1,
                                 settings=long_form.Settings(steps=2))
        writer.commit()
    assert report.cuts == [24, 36] and report.frames == 66
    assert probe_mp4(tmp_path / "film.mp4")["video"][0]["frames"] == 66
    refs = [[i for i in items if hasattr(i, "reference_tokens")] for items, _ in spy.calls]
    assert refs[0] == [] and all(len(r) == 1 for r in refs[1:])  # shots 2, 3 (and shot 3's extension) carry it
    assert refs[1][0].video.shape[2] >= 1


def test_shots_without_carry_hold_nothing(tmp_path, monkeypatch):
    spy = SampleSpy(monkeypatch)
    assert cli("shots", "--shot", f"{BOUNCE}@1s", "--shot", "it bounces@1s", "--carry", "none", "--steps", "2",
               "--out", tmp_path / "f.mp4") == 0
    assert all(items == [] for items, _ in spy.calls)


def test_shots_add_the_default_models_shots_adapter_to_the_later_shots_unless_told_off(tmp_path, monkeypatch):
    path = adapters.ADAPTERS["jointav-default"]["carried_subject"]
    if not (BUNDLE_DIR / BUNDLE_NAME).is_file() or not path.is_file():
        pytest.skip(f"NO TRAINED DEFAULT MODEL OR SHOTS ADAPTER: {BUNDLE_DIR / BUNDLE_NAME}, {path}")
    spy = SampleSpy(monkeypatch)

    def adapters_used(*extra):
        spy.calls.clear()
        assert cli("shots", "--shot", f"{BOUNCE}@1s", "--shot", "it bounces@1s", "--steps", "1", *extra,
                   "--out", tmp_path / "f.mp4") == 0
        return [latent.provenance["sampler"].get("adapter", {}).get("name") for _, latent in spy.calls]

    assert adapters_used() == [None, "jointav-default-shots"]  # the first shot has no carried subject
    assert adapters_used("--adapter", "off") == [None, None]
    assert adapters_used("--carry", "none") == [None, None]


# --------------------------------------------------------------------------------------------- bad input

def garbage(path: Path) -> Path:
    path.write_bytes(b"not a video at all" * 50)
    return path


@pytest.mark.parametrize("case, message", [
    ("no_sound", "has no sound"),
    ("fps", "24 fps, expected the model's 12 fps"),
    ("size", "frames of 72x64 do not fit the model"),
    ("unreadable", "cannot be read as a video or sound file"),
    ("missing", "no such file"),
])
def test_extend_refuses_bad_input_naming_it(tmp_path, capsys, toy_clip, case, message):
    name = "in.mp4"
    if case == "no_sound":
        write_toy(tmp_path / name, toy_clip, sound=False)
    elif case == "fps":
        write_toy(tmp_path / name, toy_clip, fps=24.0)
    elif case == "size":
        write_toy(tmp_path / name, toy_clip, frames=np.pad(toy_clip.frames, ((0, 0), (0, 0), (0, 8), (0, 0))))
    elif case == "unreadable":
        garbage(tmp_path / name)
    inputs = [p.name for p in tmp_path.iterdir()]
    rc = cli("extend", tmp_path / name, "--to", "4s", "--prompt", BOUNCE, "--steps", "1", "--out", tmp_path / "o.mp4")
    err = capsys.readouterr().err
    assert rc == 2 and message in err and f"in.mp4" in err, err
    only_inputs(tmp_path, *inputs)


def test_animate_refuses_sound_shorter_than_the_asked_duration(tmp_path, capsys, toy_clip):
    wav = tmp_path / "short.wav"
    write_audio(wav, {"waveform": torch.from_numpy(toy_clip.audio[:MODEL_RATE])[None, None], "sample_rate": MODEL_RATE})
    rc = cli("animate", "--audio", wav, "--prompt", BOUNCE, "--to", "2s", "--out", tmp_path / "o.mp4")
    err = capsys.readouterr().err
    assert rc == 2 and "short.wav lasts 1.00 s, shorter than the asked duration 2 s" in err, err
    only_inputs(tmp_path, "short.wav")


def test_foley_refuses_a_video_shorter_than_the_asked_duration(tmp_path, capsys, toy_clip):
    source = write_toy(tmp_path / "short.mp4", toy_clip, frames=toy_clip.frames[:13])
    rc = cli("foley", source, "--prompt", BOUNCE, "--to", "2s", "--out", tmp_path / "o.mp4")
    err = capsys.readouterr().err
    assert rc == 2 and "short.mp4: 13 frames" in err and "shorter than the asked duration 2 s" in err, err
    only_inputs(tmp_path, "short.mp4")


@pytest.mark.parametrize("shot, message", [
    ("@2s", "the prompt is empty"),
    ("a red ball bounces@0s", "not a duration above zero"),
    ("a red ball bounces", "expected PROMPT@DURATION"),
    ("a red ball bounces@soon", "not a duration above zero"),
])
def test_shots_refuse_bad_shot_lists(tmp_path, capsys, shot, message):
    rc = cli("shots", "--shot", f"{BOUNCE}@1s", "--shot", shot, "--out", tmp_path / "o.mp4")
    err = capsys.readouterr().err
    assert rc == 2 and message in err and repr(shot) in err, err
    only_inputs(tmp_path)


def test_unreadable_inputs_of_animate_and_foley_are_named(tmp_path, capsys):
    bad = garbage(tmp_path / "bad.mp4")
    assert cli("animate", "--audio", bad, "--prompt", BOUNCE, "--out", tmp_path / "o.mp4") == 2
    err = capsys.readouterr().err
    assert "animate: --audio" in err and "bad.mp4: cannot be read" in err, err
    assert cli("foley", bad, "--prompt", BOUNCE, "--out", tmp_path / "o.mp4") == 2
    err = capsys.readouterr().err
    assert "foley: input" in err and "bad.mp4: cannot be read" in err, err
    only_inputs(tmp_path, "bad.mp4")


def test_parse_seconds():
    assert long_form.parse_seconds("20s") == 20 and long_form.parse_seconds("1m") == 60
    assert long_form.parse_seconds("1.5") == 1.5
    with pytest.raises(Exception, match="--to='-3s'"):
        long_form.parse_seconds("-3s")


# --------------------------------------------------------------------------------------------- graph latents

def test_graph_latents_hold_what_they_were_given(parts, toy_clip):
    model, decoders = parts
    images = torch.from_numpy(toy_clip.frames).float() / 255
    audio = {"waveform": torch.from_numpy(toy_clip.audio)[None, None], "sample_rate": MODEL_RATE}
    a2v = graph_latents.audio_to_video_latent(model, decoders, audio)
    assert isinstance(a2v.conditionings[0], WholeAudio) and a2v.conditionings[0].latent.shape[1] == a2v.audio.shape[1]
    v2a = graph_latents.video_to_audio_latent(model, decoders, images)
    assert isinstance(v2a.conditionings[0], WholeVideo) and v2a.conditionings[0].latent.shape == v2a.video.shape
    ext, usable, held = graph_latents.extension_latent(model, decoders, images, audio, hold_latent_frames=1)
    tail = ext.conditionings[0]
    # 2.0 s of sound: frame 22 is the last whose 3 held audio latents (96 ms) fit inside it
    assert (usable, held) == (23, 1) and tail.video.shape[2] == 1 and tail.audio.shape[1] == 3
    sampled = api.sample(model, api.encode_prompt(model, BOUNCE), ext, steps=1)
    assert torch.equal(sampled.video[:, :, :1], tail.video) and torch.equal(sampled.audio[:, :3], tail.audio)


def test_graph_latents_refuse_short_inputs(parts, toy_clip):
    model, decoders = parts
    short = {"waveform": torch.from_numpy(toy_clip.audio[:8000])[None, None], "sample_rate": MODEL_RATE}
    with pytest.raises(Exception, match="audio: 0.50 s of sound, shorter than the asked duration"):
        graph_latents.audio_to_video_latent(model, decoders, short)
    with pytest.raises(Exception, match="images: 10 frames, fewer than the asked duration"):
        graph_latents.video_to_audio_latent(model, decoders, torch.rand(10, 64, 64, 3))


def test_auto_hold_mode_is_clean_only_for_holds_the_model_was_trained_with(parts, monkeypatch, tmp_path):
    model, _ = parts
    monkeypatch.setitem(adapters.ADAPTERS, model.spec.family, {})  # no adapters: the weights' own training decides
    assert long_form.hold_mode_for(model, "segment_tail") == "clean"  # leading clean frames, as the trained first frame
    assert long_form.hold_mode_for(model, "whole_audio") == "noised"
    assert long_form.hold_mode_for(model, "whole_video") == "clean"  # measured better for foley (TRAINED_HOLDS)
    monkeypatch.setitem(long_form.TRAINED_HOLDS, model.spec.family, frozenset({"first_frame", "whole_audio"}))
    assert long_form.hold_mode_for(model, "whole_audio") == "clean"
    assert long_form.hold_mode_for(model, "whole_video") == "noised"
    monkeypatch.delitem(long_form.TRAINED_HOLDS, model.spec.family)
    assert long_form.hold_mode_for(model, "segment_tail") == "clean"  # a family registered with nothing: first frame
    assert long_form.hold_mode_for(model, "whole_video") == "noised"
    # an adapter trained with the hold held clean makes it clean, unless the adapter is turned off
    tower = {k: v.detach().clone() for k, v in model.dit.state_dict().items() if k.startswith("video_model.")}
    path = adapters.save_adapter(tmp_path / "animate.safetensors", tower, {k: v + 0.01 for k, v in tower.items()},
                                 name="animate", family=model.spec.family, hold="whole_audio")
    monkeypatch.setitem(adapters.ADAPTERS, model.spec.family, {"whole_audio": path})
    assert long_form.hold_mode_for(model, "whole_audio") == "clean"
    assert long_form.hold_mode_for(model, "whole_audio", adapter="off") == "noised"


def test_animate_records_the_hold_mode_and_adapter_it_used(tmp_path, monkeypatch, toy_clip):
    if not (BUNDLE_DIR / BUNDLE_NAME).is_file():
        pytest.skip(f"NO TRAINED DEFAULT MODEL: {BUNDLE_DIR / BUNDLE_NAME} is absent, and its animate adapter with it")
    spy = SampleSpy(monkeypatch)
    wav = tmp_path / "in.wav"
    write_audio(wav, {"waveform": torch.from_numpy(toy_clip.audio)[None, None], "sample_rate": MODEL_RATE})
    # the default ships an animate adapter trained with the whole sound held clean: auto holds it clean, adds it
    assert cli("animate", "--audio", wav, "--prompt", BOUNCE, "--steps", "1", "--out", tmp_path / "a.mp4") == 0
    sampler = spy.calls[-1][1].provenance["sampler"]
    assert "hold_mode" not in sampler and sampler["adapter"]["name"] == "jointav-default-animate"
    # without it the base weights hold the sound noised (replacement measured better for them)
    assert cli("animate", "--audio", wav, "--prompt", BOUNCE, "--steps", "1", "--adapter", "off",
               "--out", tmp_path / "b.mp4") == 0
    sampler = spy.calls[-1][1].provenance["sampler"]
    assert sampler["hold_mode"] == "noised" and "adapter" not in sampler
    assert cli("animate", "--audio", wav, "--prompt", BOUNCE, "--steps", "1", "--hold-mode", "noised",
               "--out", tmp_path / "c.mp4") == 0  # an adapter is added only to the clean hold it was trained with
    sampler = spy.calls[-1][1].provenance["sampler"]
    assert sampler["hold_mode"] == "noised" and "adapter" not in sampler


def test_the_last_segment_of_a_film_uses_every_frame_its_sound_reaches(tmp_path, monkeypatch):
    spy = SampleSpy(monkeypatch)
    # 2 s = 24 frames: one segment whose sound reaches frame 24, though with a 5-frame tail to keep it would stop at 23
    assert cli("extend", "--to", "2s", "--prompt", BOUNCE, "--steps", "1", "--out", tmp_path / "o.mp4") == 0
    assert len(spy.calls) == 1 and probe_mp4(tmp_path / "o.mp4")["video"][0]["frames"] == 24


# --------------------------------------------------------------------------------------------- shot list (node)

def test_a_shot_list_is_one_cli_shot_a_line():
    shot_list = long_form.parse_shot_list(f"{BOUNCE}@2s\n\n  the same ball slides@1.5\nit bounces@1m\n")
    assert [(s.prompt, s.seconds) for s in shot_list] == [(BOUNCE, 2.0), ("the same ball slides", 1.5),
                                                          ("it bounces", 60.0)]


@pytest.mark.parametrize("text, message", [
    (f"{BOUNCE}@1s\n@2s", "shots line 2 '@2s': the prompt is empty"),
    (f"{BOUNCE}@1s\na red ball@0s", "shots line 2 'a red ball@0s': duration '0s' is not a duration above zero"),
    ("a red ball@soon", "shots line 1 'a red ball@soon': duration 'soon' is not a duration above zero"),
    ("a red ball bounces", "expected PROMPT@DURATION"),
    ("a red ball@700s", "expected at most 600 s"),
    ("\n  \n", "shots: no shot given"),
])
def test_a_bad_shot_list_is_refused_with_the_clis_wording_naming_the_line(text, message):
    with pytest.raises(InputValueError) as info:
        long_form.parse_shot_list(text)
    assert message in str(info.value), str(info.value)


def test_a_film_in_memory_holds_what_the_mp4_writer_would(parts):
    """The Shot List node's path: long_form.shots into FilmInMemory gives the cut film's frames and its sound."""
    model, decoders = parts
    film = FilmInMemory(64, 64)
    shot_list = long_form.parse_shot_list(f"{BOUNCE}@1s\nthe same ball slides@1s")
    report = long_form.shots(model, decoders, film, shot_list, hold_latent_frames=1,
                             settings=long_form.Settings(steps=2))
    frames, sound = film.frames(), film.sound()
    assert report.cuts == [FPS] and frames.shape == (2 * FPS, 64, 64, 3) and frames.dtype == np.uint8
    assert len(sound) == round(2 * MODEL_RATE) and sound.dtype == np.float32 and np.abs(sound).max() > 0
    n = int(FPS)
    assert frames[:n].std() > 0 and frames[n:].std() > 0  # both shots hold pictures, not blank frames
