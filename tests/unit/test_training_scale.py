"""Scaling the default model's DiT training: a DiT grown to more blocks per tower computes what the smaller
one did until it trains, and data-parallel processes keep one set of weights."""

import os
import socket

import pytest
import torch
import torch.multiprocessing as mp

from jointav.pipeline.default_model import default_configs
from jointav.training import stages
from jointav.training.loop import Collective, LoopConfig, train


def _denoiser(layers, seed):
    return stages.JointDenoiser(default_configs(layers), seed).eval()


def _outputs(model):
    gen = torch.Generator().manual_seed(3)
    video = torch.randn(2, 16, 7, 8, 8, generator=gen)
    audio = torch.randn(2, 63, 20, generator=gen)
    context = model.text_encoder.encode(["a red ball bounces twice", "a blue cube slides, a soft hiss"])
    with torch.no_grad():
        return model.dit(video, audio, torch.tensor([700.0, 200.0]), context, context)


def _perturbed(model, seed):
    """A smaller model whose every block does something (fresh zero-free weights, as a trained one)."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.05 * torch.randn(p.shape, generator=gen))
    return model


def test_grown_positions_keep_first_and_last_blocks():
    assert stages.grown_positions(4, 6) == [0, 2, 3, 5]
    assert stages.grown_positions(4, 4) == [0, 1, 2, 3]
    with pytest.raises(ValueError, match="4 blocks per tower cannot grow to 3"):
        stages.grown_positions(4, 3)


def test_grown_dit_computes_what_the_smaller_one_did():
    torch.set_num_threads(1)
    small = _perturbed(_denoiser(4, 0), 1)
    big = _denoiser(6, 7)
    grown = stages.grow_dit_state(small.state_dict(), big.state_dict())
    assert stages.dit_layers_of(grown) == 6
    big.load_state_dict(grown)
    for a, b in zip(_outputs(small), _outputs(big)):
        torch.testing.assert_close(b, a, rtol=0, atol=1e-5)
    # The added blocks are not inert: their inputs are live, so training moves their zeroed outputs.
    assert big.dit.video_model.blocks[1].self_attn.q.weight.abs().sum() > 0


def test_average_with_a_smaller_adopted_dit_interpolates_from_its_function(tmp_path):
    torch.set_num_threads(1)
    small = _perturbed(_denoiser(4, 0), 1)
    torch.save(small.state_dict(), tmp_path / stages.ADOPTED_DIT)
    trained = _perturbed(_denoiser(6, 7), 2).state_dict()
    whole = stages.averaged_with_adopted(tmp_path, trained, 1.0)
    assert all(torch.equal(whole[k], trained[k]) for k in trained)
    tiny_share = _denoiser(6, 0)
    tiny_share.load_state_dict(stages.averaged_with_adopted(tmp_path, trained, 1e-6))
    for a, b in zip(_outputs(small), _outputs(tiny_share)):
        torch.testing.assert_close(b, a, rtol=0, atol=1e-3)


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _data_parallel_rank(rank, world, port, workdir):
    import torch.distributed as dist

    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=world)
    try:
        torch.manual_seed(100 + rank)  # (different starting weights: the run must make them one)
        model = torch.nn.Linear(3, 1)

        def step(k):
            gen = torch.Generator().manual_seed(1000 * k + rank)  # each process its own data
            x = torch.randn(8, 3, generator=gen)
            y = x @ torch.tensor([[1.0], [-2.0], [0.5]])
            return {"loss": (model(x) - y).square().mean()}

        cfg = LoopConfig("toy", steps=150, lr=0.1, warmup=1, ema_decay=0.9, checkpoint_every_s=1e9)
        train(cfg, model, step, workdir, resume=False, show_progress=False, collective=Collective())
        torch.save(model.state_dict(), os.path.join(workdir, f"rank{rank}.pt"))
    finally:
        dist.destroy_process_group()


def test_data_parallel_processes_hold_one_set_of_weights_and_one_checkpoint(tmp_path):
    mp.spawn(_data_parallel_rank, args=(2, _free_port(), str(tmp_path)), nprocs=2, join=True)
    a, b = (torch.load(tmp_path / f"rank{r}.pt", weights_only=True) for r in (0, 1))
    for key in a:
        assert torch.equal(a[key], b[key]), f"{key}: the processes drifted apart"
    saved = torch.load(tmp_path / "toy.ckpt", weights_only=True)
    assert saved["step"] == 150 and torch.equal(saved["model"]["weight"], a["weight"])
    # Trained on both processes' data towards the one target.
    assert torch.allclose(a["weight"], torch.tensor([[1.0, -2.0, 0.5]]), atol=0.2)


def test_a_fine_tune_that_would_drop_blocks_is_refused_before_reading_data(tmp_path, capsys):
    torch.save(_denoiser(4, 0).state_dict(), tmp_path / stages.ADOPTED_DIT)
    adopted = stages.load_adopted_dit(tmp_path)
    assert stages.dit_layers_to_train(adopted, None, tmp_path) == 4
    assert stages.dit_layers_to_train(adopted, 6, tmp_path) == 6
    # No latents in the workdir: a refusal that came after reading them would name the missing set instead.
    with pytest.raises(ValueError, match=r"--dit-layers 3: the adopted DiT .* has 4 blocks per tower"):
        stages.run_dit(tmp_path, 2, None, False, dit_layers=3, progress=False)
    from jointav.training.train_default import main

    with pytest.raises(SystemExit):
        main(["--stage", "dit", "--workdir", str(tmp_path), "--data-parallel", "0"])
    assert "--data-parallel: 0: expected at least 1" in capsys.readouterr().err
