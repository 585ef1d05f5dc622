"""Training of the default model: resuming from a checkpoint gives the same weights as not stopping, and the
stages chain into a bundle that the pipeline loads and samples from. Toy sizes: a few steps each."""

import argparse
import dataclasses
from pathlib import Path

import numpy as np
import pytest
import torch

from jointav.pipeline import api
from jointav.pipeline.default_model import load_bundle
from jointav.pipeline.types import Decoders
from jointav.toyworld import sample_spec
from jointav.training import stages
from jointav.training.data import step_rng
from jointav.training.loop import checkpoint_path


def _saved(workdir, name):
    return torch.load(checkpoint_path(workdir, name), weights_only=True)


def _assert_same_run(a, b):
    assert a["step"] == b["step"]
    for part in ("model", "ema"):
        if a[part] is None:
            assert b[part] is None
            continue
        assert a[part].keys() == b[part].keys()
        for key in a[part]:
            assert torch.equal(a[part][key], b[part][key]), f"{part}.{key} differs after resume"
    assert [r["loss"] for r in a["curve"]] == [r["loss"] for r in b["curve"]]
    assert a["optimizer"]["state"].keys() == b["optimizer"]["state"].keys()


def _fake_latents(workdir, n=6):
    """A tiny encoded set with the real shapes (the DiT stage only reads this file)."""
    z = stages.default_configs()["video_vae"]["z_dim"]
    gen = torch.Generator().manual_seed(0)
    specs = [dataclasses.asdict(sample_spec(step_rng(0, i), "train")) for i in range(n)]
    torch.save({"video": torch.randn(n, z, 7, 4, 4, generator=gen), "audio": torch.randn(n, 63, 20, generator=gen),
                "specs": specs}, workdir / "latents-0-of-1.pt")


def _with_subject_references(workdir):
    """Give the fake set's object clips reference latents (as run_subject_references does; no audio)."""
    path = workdir / "latents-0-of-1.pt"
    data = torch.load(path, weights_only=True)
    z = data["video"].shape[1]
    gen = torch.Generator().manual_seed(1)
    data["ref_video"] = [None if s["kind"] == "speak" else torch.randn(z, 2, 2, 2, generator=gen) for s in data["specs"]]
    data["ref_audio"] = [None] * len(data["specs"])
    assert any(r is not None for r in data["ref_video"])
    torch.save(data, path)


@pytest.mark.parametrize("stage", ["audio_vae", "dit", "dit long-form holds", "dit subject references"])
def test_half_run_plus_resume_equals_one_run(tmp_path, stage):
    torch.set_num_threads(1)
    one, split = tmp_path / "one", tmp_path / "split"
    for d in (one, split):
        d.mkdir()
    if stage == "dit":
        for d in (one, split):
            _fake_latents(d)

        def run(d, **kw):
            return stages.run_dit(d, 4, None, batch=2, progress=False, **kw)
    elif stage == "dit long-form holds":
        for d in (one, split):
            _fake_latents(d)

        def run(d, **kw):
            return stages.run_dit(d, 4, None, batch=4, progress=False, long_form_holds=stages.LONG_FORM_HOLDS, **kw)
    elif stage == "dit subject references":  # object clips carried by reference, without a voice
        for d in (one, split):
            _fake_latents(d)
            _with_subject_references(d)

        def run(d, **kw):
            return stages.run_dit(d, 4, None, batch=4, progress=False, p_subject=0.9, **kw)
    else:
        def run(d, **kw):
            return stages.run_audio_vae(d, 4, None, batch=2, stats_clips=4, progress=False, **kw)

    run(one, resume=False)
    run(split, resume=False, stop_at=2)
    name = stage.split()[0]
    assert _saved(split, name)["step"] == 2
    run(split, resume=True)
    _assert_same_run(_saved(one, name), _saved(split, name))


def test_hold_masks_mark_what_each_long_form_hold_keeps_clean():
    video, audio = stages.hold_masks(["first_frame", "segment_tail", "whole_audio", "whole_video", None],
                                     video_frames=7, audio_length=63, tail_frames=2, tail_audio=10)
    assert video.tolist()[0] == [True] + [False] * 6 and not audio[0].any()
    assert video.tolist()[1] == [True, True] + [False] * 5 and audio[1].tolist() == [True] * 10 + [False] * 53
    assert not video[2].any() and audio[2].all()
    assert video[3].all() and not audio[3].any()
    assert not video[4].any() and not audio[4].any()
    with pytest.raises(ValueError, match="hold kind 'middle'"):
        stages.hold_masks(["middle"], 7, 63, 2, 10)


def test_long_form_holds_are_drawn_at_their_shares_and_leave_the_shipped_mix_alone():
    shares = {"segment_tail": 0.15, "whole_audio": 0.1, "whole_video": 0.1}
    kinds = stages.draw_holds(np.random.default_rng(0), 20000, 0.2, shares)
    for name, p in shares.items():
        assert abs(kinds.count(name) / len(kinds) - p) < 0.01, name
    assert kinds.count(None) / len(kinds) == pytest.approx(0.65, abs=0.01)  # these keep the first-frame draw
    assert stages.draw_holds(np.random.default_rng(0), 5, 0.2, {}) == [None] * 5


def test_hold_shares_option_takes_known_kinds_and_refuses_what_it_cannot_draw():
    from jointav.training.train_default import hold_shares

    assert hold_shares("whole_video=0.2, whole_audio=0.15") == {"whole_video": 0.2, "whole_audio": 0.15}
    for text, message in [("whole_video", "expected KIND=SHARE"), ("middle=0.1", "expected KIND=SHARE"),
                          ("whole_video=lots", "'lots' is not a number"), ("whole_audio=1.5", "between 0 and 1"),
                          ("whole_video=0.6,whole_audio=0.6", "add up to 1.2"),
                          ("whole_video=0.1,whole_video=0.2", "given twice"), ("", "no KIND=SHARE")]:
        with pytest.raises(argparse.ArgumentTypeError, match=message):
            hold_shares(text)


def test_a_bundle_averaged_with_the_adopted_one_lies_between_them_and_is_refused_without_it(tmp_path):
    from jointav.pipeline.default_model import default_configs, random_default, save_bundle
    from jointav.training.train_default import fine_tune_share

    work = stages.adopt_bundle(tmp_path / "work", save_bundle(random_default(seed=3), tmp_path / "b.safetensors",
                                                              default_configs()))
    adopted = torch.load(work / "init-dit.pt", weights_only=True)
    tuned = {k: v + 1.0 if v.is_floating_point() else v for k, v in adopted.items()}  # a stand-in fine-tune
    mixed = stages.averaged_with_adopted(work, tuned, 0.25)
    for k, v in adopted.items():
        if v.is_floating_point():
            assert torch.allclose(mixed[k], v + 0.25, atol=1e-6), k
        else:
            assert torch.equal(mixed[k], v), k
    assert all(torch.equal(stages.averaged_with_adopted(work, tuned, 1.0)[k], tuned[k]) for k in tuned)
    (work / "init-dit.pt").unlink()
    with pytest.raises(FileNotFoundError, match="init-dit.pt is absent.*--adopt BUNDLE"):
        stages.averaged_with_adopted(work, tuned, 0.25)
    assert fine_tune_share("0.15") == 0.15
    for text, message in [("0", "above 0 and at most 1"), ("1.5", "above 0 and at most 1"), ("some", "not a number")]:
        with pytest.raises(argparse.ArgumentTypeError, match=message):
            fine_tune_share(text)


def test_stages_chain_into_a_bundle_the_pipeline_samples_from(tmp_path):
    torch.set_num_threads(1)
    stages.run_video_vae(tmp_path, 1, None, False, batch=1, crop=5, progress=False)
    stages.run_video_vae(tmp_path, 1, None, False, batch=1, crop=5, progress=False, decoder_only=True)
    stages.run_audio_vae(tmp_path, 1, None, False, batch=2, stats_clips=4, progress=False)
    stages.run_vocoder(tmp_path, 1, None, False, batch=1, length=2048, progress=False)
    stages.run_encode(tmp_path, clips=2)
    stages.run_dit(tmp_path, 1, None, False, batch=2, progress=False)
    path = stages.run_bundle(tmp_path, tmp_path / "bundle.safetensors")
    parts = load_bundle(path)
    model = api.load_joint_model(path)
    assert model.dit.config.video.in_dim == parts.video_vae.config.z_dim == model.spec.video_latent_channels
    cond = api.encode_prompt(model, "a red ball bounces once on the left, a high click, on a black background")
    out = api.sample(model, cond, api.empty_latent(model, "1s", 64, 64), seed=1, steps=2)
    decoders = Decoders(parts.video_vae, parts.audio_vae, parts.vocoder)
    frames = api.decode_video(decoders, out)
    audio = api.decode_audio(decoders, out, sample_rate=16000, channels=1)
    assert frames.shape == (13, 64, 64, 3) and torch.isfinite(frames).all()
    assert audio["waveform"].shape[-1] == out.audio.shape[1] * 512 and torch.isfinite(audio["waveform"]).all()


def test_batches_built_in_worker_processes_train_the_same_weights_as_inline(tmp_path):
    torch.set_num_threads(1)
    inline, workers = tmp_path / "inline", tmp_path / "workers"
    for d, n in ((inline, 0), (workers, 2)):
        stages.run_audio_vae(d, 3, None, False, batch=2, stats_clips=4, progress=False, workers=n)
    _assert_same_run(_saved(inline, "audio_vae"), _saved(workers, "audio_vae"))


class FakeClock:
    """Seconds that pass only when a step says so: the loop's time arithmetic without the machine's speed.
    The tests use binary fractions of a second, so the sums are exact."""

    def __init__(self):
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


TICK = 1 / 64  # seconds per step of the fake machine
CAP_MINUTES = 1 / 16  # 3.75 s


def _timed_run(workdir, seconds_per_step, slow_after=None):
    from jointav.training.loop import LoopConfig, train

    model = torch.nn.Linear(2, 1)
    clock = FakeClock()

    def step(k):
        clock.now += seconds_per_step if slow_after is None or k < slow_after else 10 * seconds_per_step
        return {"loss": model(torch.ones(1, 2)).square().sum()}

    cfg = LoopConfig("timed", steps=None, lr=1e-2, minutes=CAP_MINUTES, warmup=2, plan_after=5)
    state, _ = train(cfg, model, step, workdir, resume=False, show_progress=False, clock=clock)
    return cfg, state


def test_a_time_capped_run_plans_its_schedule_from_its_measured_speed(tmp_path):
    from jointav.training.loop import learning_rate

    cfg, state = _timed_run(tmp_path, seconds_per_step=TICK)
    # Steps 5-9 are timed (the first 5 are not) at 1/64 s; 10/64 s of the 3.75 s cap is spent by then, and 95%
    # of the 230 steps' worth left is 218 more steps.
    assert state.planned == 10 + 218
    assert state.step == state.planned, "the planned schedule ends inside the time cap"
    assert state.curve[-1]["step"] == state.planned and state.curve[-1]["seconds"] == round(228 * TICK, 1)
    assert learning_rate(cfg, state.planned, state.planned) == pytest.approx(1e-2 * cfg.final_lr_fraction)
    assert _saved(tmp_path, "timed")["planned"] == state.planned  # a resumed run keeps the same schedule


def test_a_slower_machine_plans_proportionally_fewer_steps(tmp_path):
    _, state = _timed_run(tmp_path, seconds_per_step=2 * TICK)
    assert state.planned == 10 + 104  # 20/64 s spent by step 10; 95% of the 110 steps' worth left
    assert state.step == state.planned


def test_the_time_cap_ends_a_run_that_slows_down_after_planning(tmp_path):
    _, state = _timed_run(tmp_path, seconds_per_step=TICK, slow_after=100)
    # 100 steps take 100/64 s; each later one 10/64 s, so the 3.75 s cap is reached 14 steps later.
    assert state.planned == 228 and state.step == 114


def test_an_adopted_bundle_is_where_fine_tuning_starts(tmp_path):
    from jointav.pipeline.default_model import default_configs, random_default, save_bundle

    parts = random_default(seed=3)
    bundle = save_bundle(parts, tmp_path / "b.safetensors", default_configs())
    work = stages.adopt_bundle(tmp_path / "work", bundle)
    audio = stages.trained_audio_vae(work)
    for key, value in parts.audio_vae.state_dict().items():
        assert torch.allclose(audio.state_dict()[key], value, atol=1e-3), key
    vocoder = stages.trained_vocoder(work)
    assert all(torch.equal(vocoder.state_dict()[k], v) for k, v in parts.vocoder.state_dict().items())
    # Before any VAE training the workdir's video VAE (what `encode` uses for a DiT fine-tune) is the bundle's.
    adopted = stages.trained_video_vae(work)
    assert all(torch.equal(adopted.state_dict()[k], v) for k, v in parts.video_vae.state_dict().items())
    # One step at a negligible learning rate: the run must have started from the bundle's weights.
    torch.set_num_threads(1)
    stages.run_video_vae(work, 1, None, False, batch=1, crop=5, progress=False, lr=1e-12)
    trained = _saved(work, "video_vae")["model"]
    assert all(torch.allclose(trained[k], v, atol=1e-6) for k, v in parts.video_vae.state_dict().items())


def test_encoding_keeps_cameo_references_of_every_speaking_character(tmp_path):
    torch.set_num_threads(1)
    stages.run_video_vae(tmp_path, 1, None, False, batch=1, crop=5, progress=False)
    stages.run_audio_vae(tmp_path, 1, None, False, batch=2, stats_clips=4, progress=False)
    stages.run_encode(tmp_path, clips=8)
    data = stages.load_latents(tmp_path)
    speaking = [s["kind"] == "speak" for s in data["specs"]]
    assert any(speaking) and not all(speaking)
    z = stages.default_configs()["video_vae"]["z_dim"]
    for is_speaking, video, audio in zip(speaking, data["ref_video"], data["ref_audio"]):
        assert (video is not None) == (audio is not None) == is_speaking
        if is_speaking:  # two 64-pixel face crops, and at least a second of voice (32 latents of 512 samples)
            assert video.shape == (z, 2, 8, 8) and audio.shape[1] == 20 and audio.shape[0] >= 32


def _object_and_speaking_specs(n):
    specs, i = [], 0
    while len(specs) < n:
        spec = sample_spec(step_rng(7, i), "train")
        i += 1
        if (spec.kind == "speak") == (len(specs) % 3 == 2):  # two object clips, then a speaking one
            specs.append(dataclasses.asdict(spec))
    return specs


def test_subject_references_give_every_object_clip_its_subject_whatever_the_sharding(tmp_path):
    """Each object clip gets the crops of another clip of the same object, encoded as pictures; a speaking clip
    keeps what it had (its cameo references); the same clip gets the same references in one shard or two."""
    from jointav.pipeline.default_model import default_configs, random_default, save_bundle

    torch.set_num_threads(1)
    bundle = save_bundle(random_default(seed=3), tmp_path / "b.safetensors", default_configs())
    specs = _object_and_speaking_specs(6)
    z = default_configs()["video_vae"]["z_dim"]
    one, two = stages.adopt_bundle(tmp_path / "one", bundle), stages.adopt_bundle(tmp_path / "two", bundle)
    marker = torch.ones(z, 2, 8, 8)
    refs = [marker if s["kind"] == "speak" else None for s in specs]
    torch.save({"video": torch.zeros(6, z, 7, 8, 8), "audio": torch.zeros(6, 63, 20), "specs": specs,
                "ref_video": refs, "ref_audio": [None] * 6}, one / "latents-0-of-1.pt")
    for shard in (0, 1):  # run_encode's layout: shard k holds clips k, k+2, k+4
        torch.save({"video": torch.zeros(3, z, 7, 8, 8), "audio": torch.zeros(3, 63, 20), "specs": specs[shard::2],
                    "ref_video": refs[shard::2], "ref_audio": [None] * 3}, two / f"latents-{shard}-of-2.pt")
    stages.run_subject_references(one)
    stages.run_subject_references(two)
    whole = stages.load_latents(one)["ref_video"]
    parts = [torch.load(two / f"latents-{k}-of-2.pt", weights_only=True)["ref_video"] for k in (0, 1)]
    sharded = [parts[i % 2][i // 2] for i in range(6)]
    for spec, ref, other in zip(specs, whole, sharded):
        if spec["kind"] == "speak":
            assert ref is marker or torch.equal(ref, marker), "a character's cameo references were replaced"
            continue
        assert ref.dim() == 4 and ref.shape[0] == z and ref.shape[1] in (1, 2), tuple(ref.shape)
        assert ref.shape[2] == ref.shape[3] and ref.shape[2] % 2 == 0, tuple(ref.shape)  # square, DiT patch 2
        assert torch.equal(ref, other), "the sharding changed a clip's references"
    objects = [r for s, r in zip(specs, whole) if s["kind"] != "speak"]
    assert not torch.equal(objects[0], objects[1]), "two object clips got the same references"


def _curve_only_run(step, seconds, loss):
    """A checkpoint as the report reads it: its step, time and a one-row curve."""
    return {"model": {}, "optimizer": None, "ema": None, "step": step, "planned": step, "seconds": seconds,
            "curve": [{"step": step, "seconds": seconds, "loss": loss}], "window": {}}


def test_the_report_lists_an_earlier_run_before_the_current_one_and_counts_its_time(tmp_path):
    from jointav.training.report import curve_tables

    torch.save(_curve_only_run(4509, 600.0, 0.477), tmp_path / "dit-cpu-4509.ckpt")
    torch.save(_curve_only_run(2069, 1200.0, 0.433), tmp_path / "dit.ckpt")
    tables, seconds = curve_tables(tmp_path)
    assert seconds == 1800.0
    earlier, current = tables.index("dit: 4509 steps, 10.0 min (earlier run cpu-4509)"), tables.index("dit: 2069 steps")
    assert earlier < current and "0.477" in tables and "0.433" in tables


def test_a_fine_tune_of_a_reported_bundle_reports_the_runs_that_made_it(tmp_path):
    from jointav.pipeline.default_model import default_configs, random_default, save_bundle
    from jointav.training.report import HISTORY_NAME, curve_tables, write_report

    first, shipped = tmp_path / "first", tmp_path / "shipped"
    first.mkdir()
    shipped.mkdir()
    torch.save(_curve_only_run(4509, 600.0, 0.477), checkpoint_path(first, "dit"))
    write_report(shipped / "TRAINING.md", first, None, "notes", 24)
    assert (shipped / HISTORY_NAME).is_file()
    bundle = save_bundle(random_default(seed=3), shipped / "b.safetensors", default_configs())
    # The first workdir is gone; a fine-tune adopts the shipped bundle and trains on.
    import shutil
    shutil.rmtree(first)
    work = stages.adopt_bundle(tmp_path / "work", bundle)
    torch.save(_curve_only_run(2069, 1200.0, 0.433), checkpoint_path(work, "dit"))
    tables, seconds = curve_tables(work)
    assert seconds == 1800.0
    before = tables.index("dit: 4509 steps, 10.0 min (earlier workdir)")
    assert before < tables.index("dit: 2069 steps, 20.0 min (fine-tune here)")
    assert "0.477" in tables and "0.433" in tables


class _PassThroughVAE:
    """Encodes and decodes a mel to itself: what is left of VAEMelSegments is where it cuts."""

    def encode(self, mel):
        return mel

    def decode(self, z):
        return z


def test_the_vocoder_fine_tune_gets_each_stretch_with_its_own_mel():
    x, mel = stages.VAEMelSegments(seed=0, batch=4, length=4096, audio_vae=_PassThroughVAE())(3)
    hop = stages.MEL.config.hop_length
    assert x.shape == (4, 4096) and mel.shape == (4, stages.MEL.config.n_mels, 4096 // hop)
    own = stages.MEL(x)  # the stretch's own mel: equal away from the edges (reflect padding differs there)
    assert torch.allclose(mel[:, :, 2:-2], own[:, :, 2:-2], atol=1e-4)
    assert not torch.allclose(mel[:, :, 3:-1], own[:, :, 2:-2], atol=1e-2)  # one frame off is seen


def test_the_vocoder_fine_tune_starts_from_the_trained_vocoder_and_replaces_it(tmp_path):
    from jointav.pipeline.default_model import default_configs, random_default, save_bundle

    parts = random_default(seed=3)
    work = stages.adopt_bundle(tmp_path / "work", save_bundle(parts, tmp_path / "b.safetensors", default_configs()))
    torch.set_num_threads(1)
    stages.run_vocoder(work, 1, None, False, batch=2, length=2048, progress=False, lr=1e-12, on_vae_mels=True)
    tuned = _saved(work, "vocoder_finetune")
    assert all(torch.allclose(tuned["model"][k], v, atol=1e-6) for k, v in parts.vocoder.state_dict().items())
    with torch.no_grad():  # the bundle stage takes the fine-tuned vocoder from now on
        tuned["model"]["conv_post.weight"].add_(1.0)
    torch.save({**tuned, "ema": tuned["model"]}, checkpoint_path(work, "vocoder_finetune"))
    assert torch.equal(stages.trained_vocoder(work).state_dict()["conv_post.weight"],
                       tuned["model"]["conv_post.weight"])


def test_a_one_tower_fine_tune_moves_that_tower_alone(tmp_path):
    """--train-towers audio: the audio tower (with its attention to the video tokens) trains; the video tower and
    the text encoder keep their weights bit for bit, in the weights and in the EMA that ships."""
    torch.set_num_threads(1)
    _fake_latents(tmp_path)
    start = stages.JointDenoiser(stages.default_configs(), 4).state_dict()
    stages.run_dit(tmp_path, 3, None, False, batch=2, progress=False, lr=1e-2, towers="audio",
                   long_form_holds={"whole_video": 0.5})
    saved = _saved(tmp_path, "dit")
    for part in ("model", "ema"):
        moved = {key for key, value in saved[part].items() if not torch.equal(value, start[key])}
        assert moved, part
        assert all(key.startswith("dit.audio_model.") for key in moved), sorted(moved)[:3]
        assert any(".cross_attn.k_fusion." in key for key in moved)  # what it reads from the video tokens


def _one_tower_run_on_an_adopted_bundle(tmp_path, tower: str, holds: dict):
    """(bundle, workdir): a random bundle adopted, fake latents, 2 steps of a one-tower dit run with `holds`."""
    from jointav.pipeline.default_model import default_configs, random_default, save_bundle

    torch.set_num_threads(1)
    bundle = save_bundle(random_default(seed=3), tmp_path / "b.safetensors", default_configs())
    work = stages.adopt_bundle(tmp_path / "work", bundle)
    _fake_latents(work)
    stages.run_dit(work, 2, None, False, batch=2, progress=False, lr=1e-2, towers=tower, long_form_holds=holds)
    return bundle, work


def test_the_adapter_stage_writes_a_one_tower_runs_change_for_the_adopted_bundle(tmp_path):
    """--stage adapter: the trained tower's EMA minus the adopted weights, as the foley adapter the pipeline adds to
    exactly that bundle (its base check passes on it, fails on other weights); refused without an adopted bundle."""
    from jointav.pipeline import adapters
    from jointav.pipeline.default_model import default_configs, random_default, save_bundle

    bundle, work = _one_tower_run_on_an_adopted_bundle(tmp_path, "audio", {"whole_video": 0.5})
    path = stages.run_adapter(work, tmp_path / "foley.safetensors", adapter="foley")
    model = api.load_joint_model(bundle)
    read = adapters.read_adapter(path, model.dit)
    ema, adopted = _saved(work, "dit")["ema"], torch.load(work / "init-dit.pt", weights_only=True)
    assert read.hold == "whole_video" and set(read.diffs) == set(adapters.patchable(
        k[len("dit."):] for k in ema if k.startswith("dit.audio_model.")))
    for name, diff in read.diffs.items():
        expected = ema[f"dit.{name}"] - adopted[f"dit.{name}"]
        assert torch.allclose(diff.float(), expected, atol=1e-3 * float(expected.abs().max()) + 1e-6), name
    assert adapters.matches_base(read, model.dit)
    assert not adapters.matches_base(read, api.load_joint_model(save_bundle(
        random_default(seed=4), tmp_path / "other.safetensors", default_configs())).dit)
    with pytest.raises(ValueError, match="the dit run in .* left the video tower as adopted; train it with "
                                         "--stage dit --adapter animate"):
        stages.run_adapter(work, tmp_path / "v.safetensors", adapter="animate")  # (the run trained the audio tower)
    with pytest.raises(FileNotFoundError, match="init-dit.pt is absent.*--stage dit --adapter foley"):
        stages.run_adapter(tmp_path / "scratch", tmp_path / "x.safetensors", adapter="foley")
    with pytest.raises(ValueError, match="adapter='sound': expected one of foley, animate, shots"):
        stages.run_adapter(work, tmp_path / "x.safetensors", adapter="sound")
    folder = tmp_path / "gpu-out"  # (what scripts/finetune_default_gpu.sh passes: the file named as registered)
    folder.mkdir()
    assert stages.run_adapter(work, folder, adapter="foley") == folder / adapters.ADAPTERS["jointav-default"][
        "whole_video"].name


def test_a_warm_started_run_goes_on_from_the_earlier_runs_weights_and_its_adapter_stays_a_difference_to_the_bundle(
        tmp_path):
    """--warm-start DIT_CKPT: a new dit run (new schedule) starts from an earlier run's EMA, not from the adopted
    weights, and the adapter it writes is still the tower's change from the adopted bundle (what the pipeline's
    base check compares with); a missing file or another model's checkpoint is refused naming it, before the
    latents are read."""
    from jointav.pipeline import adapters

    bundle, work = _one_tower_run_on_an_adopted_bundle(tmp_path, "video", {"segment_tail": 0.5})
    earlier = tmp_path / "earlier.ckpt"
    checkpoint_path(work, "dit").rename(earlier)
    earlier_ema = torch.load(earlier, weights_only=True)["ema"]
    adopted = torch.load(work / "init-dit.pt", weights_only=True)
    stages.run_dit(work, 1, None, False, batch=2, progress=False, lr=1e-9, towers="video",
                   long_form_holds={"segment_tail": 0.5}, warm_start=earlier)
    now = _saved(work, "dit")["ema"]
    moved = [k for k in earlier_ema if not torch.allclose(earlier_ema[k], adopted[k], atol=1e-4)]
    assert moved and all(k.startswith("dit.video_model.") for k in moved)
    assert all(torch.allclose(now[k], earlier_ema[k], atol=1e-6) for k in now)  # (lr 1e-9: where it started)
    path = stages.run_adapter(work, tmp_path / "extend.safetensors", adapter="extend")
    bundle_dit = api.load_joint_model(bundle).dit
    read = adapters.read_adapter(path, bundle_dit)
    assert read.hold == "segment_tail" and adapters.matches_base(read, bundle_dit)
    name = moved[0][len("dit."):]
    assert name in read.diffs
    assert torch.allclose(read.diffs[name].float(), now[moved[0]] - adopted[moved[0]], atol=1e-3)

    scratch = stages.adopt_bundle(tmp_path / "scratch", bundle)  # (no latents: the check comes first)
    with pytest.raises(FileNotFoundError, match=r"--warm-start .*nope.ckpt: no such file"):
        stages.run_dit(scratch, 1, None, False, progress=False, warm_start=tmp_path / "nope.ckpt")
    other = tmp_path / "other.ckpt"
    torch.save({"ema": {"dit.video_model.head.weight": torch.zeros(2, 2)}}, other)
    with pytest.raises(ValueError, match=r"other.ckpt: \d+ tensors of this run's DiT are absent .* expected a dit "
                                         r"checkpoint of the same model size"):
        stages.run_dit(scratch, 1, None, False, progress=False, warm_start=other)


def test_each_shipped_adapter_is_trained_on_the_tower_and_holds_its_run_names(tmp_path, monkeypatch):
    """train_default --adapter NAME: the dit stage trains that adapter's tower with its holds and carried-subject
    share (each given flag wins); every run's hold has a file registered for the pipeline to add; --stage adapter
    without a name is refused."""
    from jointav.pipeline import adapters
    from jointav.training import train_default

    seen = []
    monkeypatch.setattr(train_default, "run_stage", lambda stage, *a, **kw: seen.append(
        (kw["towers"], kw["long_form_holds"], kw["p_subject"])))
    base = ["--workdir", str(tmp_path), "--stage", "dit"]
    train_default.main(base + ["--adapter", "animate"])
    train_default.main(base + ["--adapter", "shots"])
    train_default.main(base + ["--adapter", "extend"])
    train_default.main(base + ["--adapter", "foley", "--hold-shares", "whole_video=0.3,segment_tail=0.1"])
    train_default.main(base)
    assert seen == [("video", {"whole_audio": 0.6}, None), ("video", {"segment_tail": 0.15}, 0.75),
                    ("video", {"segment_tail": 0.6}, None),
                    ("audio", {"whole_video": 0.3, "segment_tail": 0.1}, None), (None, None, None)]
    for run in stages.ADAPTER_RUNS.values():
        assert run.hold in adapters.ADAPTERS["jointav-default"] and run.tower in ("audio", "video")
    warm = []
    monkeypatch.setattr(train_default, "run_stage", lambda stage, *a, **kw: warm.append((stage, kw["warm_start"])))
    train_default.main(["--workdir", str(tmp_path), "--stage", "dit", "--adapter", "extend", "--warm-start", "e.ckpt"])
    assert warm == [("dit", Path("e.ckpt"))]
    with pytest.raises(SystemExit):
        train_default.main(["--workdir", str(tmp_path), "--stage", "adapter"])


def test_an_unknown_tower_is_refused_before_the_latents_are_read(tmp_path):
    with pytest.raises(ValueError, match="towers='sound': expected one of both, audio, video"):
        stages.run_dit(tmp_path, 1, None, False, progress=False, towers="sound")  # (no latents there at all)
