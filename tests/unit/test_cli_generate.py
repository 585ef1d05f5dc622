"""The README's first command: an MP4 with one H.264 and one AAC stream of the requested duration, and a WAV."""

import numpy as np
import pytest
import soundfile as sf

from jointav.audio.mp4 import probe_mp4, read_mp4
from jointav.cli import build_parser, main
from jointav.errors import InputValueError
from jointav.pipeline import api
from jointav.pipeline.generate import GenerationRequest, generate
from jointav.provenance import verify_file


def test_generate_writes_mp4_and_wav_of_the_requested_duration(tmp_path, capsys):
    out = tmp_path / "clip.mp4"
    rc = main(["generate", "--prompt", "a red ball bounces twice on the left", "--audio-description", "low thuds",
               "--seed", "7", "--steps", "3", "--duration", "2s", "--out", str(out)])
    assert rc == 0
    info = probe_mp4(out)
    assert [v["codec"] for v in info["video"]] == ["h264"] and [a["codec"] for a in info["audio"]] == ["aac"]
    video, audio = info["video"][0], info["audio"][0]
    fps = 12.0
    assert video["fps"] == fps and video["frames"] == 25
    assert abs(video["duration"] - 25 / fps) <= 1 / fps
    assert abs(audio["duration"] - 25 / fps) <= 1 / fps
    assert audio["sample_rate"] == 44100 and audio["channels"] == 2
    assert "seed=7" in info["metadata"].get("comment", "")
    wav, rate = sf.read(out.with_suffix(".wav"))
    assert rate == 44100 and wav.shape[1] == 2 and abs(len(wav) / rate - 25 / fps) <= 1 / fps
    # both files carry a valid C2PA manifest, and the frames the watermark it records
    for path in (out, out.with_suffix(".wav")):
        assert main(["verify", str(path)]) == 0
    report = verify_file(out)
    assert report.valid and report.watermark.present and "seed" in str(report.to_dict())


def test_the_same_request_gives_the_same_frames_and_sound(tmp_path):
    args = ["generate", "--prompt", "a blue character speaks in a high voice", "--seed", "3", "--steps", "2",
            "--duration", "1s"]
    assert main([*args, "--out", str(tmp_path / "a.mp4")]) == 0
    assert main([*args, "--out", str(tmp_path / "b.mp4")]) == 0
    frames_a, wave_a, _, _ = read_mp4(tmp_path / "a.mp4")
    frames_b, wave_b, _, _ = read_mp4(tmp_path / "b.mp4")
    assert np.array_equal(frames_a, frames_b) and np.array_equal(wave_a, wave_b)
    assert sf.read(tmp_path / "a.wav")[0].tobytes() == sf.read(tmp_path / "b.wav")[0].tobytes()


def test_generate_reports_bad_input_without_a_traceback(tmp_path, capsys):
    rc = main(["generate", "--prompt", "x", "--size", "70x64", "--out", str(tmp_path / "c.mp4")])
    assert rc == 2
    assert "height=70" in capsys.readouterr().err
    assert not list(tmp_path.iterdir())


def test_steps_zero_is_refused_not_read_as_the_default(tmp_path, capsys):
    out = tmp_path / "z.mp4"
    with pytest.raises(SystemExit) as exit_info:
        main(["generate", "--prompt", "a red ball bounces", "--steps", "0", "--out", str(out)])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert "--steps" in err and "'0'" in err and ">= 1" in err
    assert not list(tmp_path.iterdir())
    with pytest.raises(InputValueError, match=r"steps=0: expected a whole number >= 1"):
        generate(GenerationRequest(prompt="a red ball bounces", steps=0))


def _help_of(option: str) -> str:
    parser = build_parser()
    generate_parser = next(a for a in parser._subparsers._group_actions[0].choices.values() if a.prog.endswith("generate"))
    action = next(a for a in generate_parser._actions if option in a.option_strings)
    return action.help


def test_size_help_states_the_step_the_loaded_model_enforces(capsys):
    model = api.load_joint_model(device="cpu")
    step = api.spatial_multiple(model)
    assert f"{step} for the embedded model" in _help_of("--size")
    api.empty_latent(model, "1s", 80, 48)  # 80x48: multiples of 16, so accepted, as the help says
    with pytest.raises(InputValueError) as refused:
        api.empty_latent(model, "1s", 65, 65)
    assert api.size_rule(step) in str(refused.value) and "height=65" in str(refused.value)
    with pytest.raises(SystemExit):
        main(["generate", "--prompt", "x", "--size", "96by64", "--out", "never.mp4"])
    assert "HEIGHTxWIDTH" in capsys.readouterr().err


def test_the_wrote_line_gives_the_size_as_it_was_asked_for_height_first(tmp_path, capsys):
    out = tmp_path / "tall.mp4"
    assert main(["generate", "--prompt", "a red ball bounces", "--size", "96x64", "--steps", "1", "--duration", "1s",
                 "--out", str(out)]) == 0
    video = probe_mp4(out)["video"][0]
    assert (video["height"], video["width"]) == (96, 64)
    assert "96x64 (height x width)" in capsys.readouterr().out


def test_an_unknown_duration_is_named_as_such_with_the_models_durations(tmp_path, capsys):
    rc = main(["generate", "--prompt", "a red ball bounces", "--duration", "banana", "--out", str(tmp_path / "d.mp4")])
    err = capsys.readouterr().err
    assert rc == 2 and "duration='banana' is not a duration of model" in err and "2s, 1s, 3s" in err
    assert "beyond" not in err and not list(tmp_path.iterdir())


def test_words_and_options_the_default_model_ignores_are_named_on_stderr(tmp_path, capsys):
    rc = main(["generate", "--prompt", "a purple dragon sings opera in the rain", "--speech", "hello there",
               "--audio-description", "low thuds, room tone", "--steps", "1", "--duration", "1s",
               "--out", str(tmp_path / "dragon.mp4")])
    assert rc == 0
    err = capsys.readouterr().err
    warnings = [line for line in err.splitlines() if line.startswith("warning: ")]
    assert any(all(w in line for w in ("dragon", "sings", "opera", "rain")) for line in warnings), err
    assert any("speech line 'hello there' is ignored" in line for line in warnings), err
    assert any("audio description" in line and "room" in line for line in warnings), err
    assert any("the words this model knows" in line and "bounces" in line for line in warnings), err


def test_vocabulary_command_lists_what_the_default_model_reads(capsys):
    assert main(["vocabulary"]) == 0
    listed = set(capsys.readouterr().out.split())
    known = api.vocabulary(api.load_joint_model(device="cpu"))
    assert set(known) <= listed and "dragon" not in listed
    assert "jointav vocabulary" in _help_of("--prompt")
