"""Sequence parallel (Ulysses all-to-all over heads) on gloo: the split forward equals the single-process one."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import torch.distributed as dist

from jointav.errors import InputValueError
from jointav.models.config import FusionConfig, TowerConfig
from jointav.models.fusion_dit import FusionDiT
from jointav.parity.sequence_parallel import SP_TOLERANCE, run_sequence_parallel, spawn

from conftest import fixture_dir

# 6 heads and 18 text rows split over 3 processes; token counts below are not multiples of 3
SIX_HEADS = FusionConfig(
    video=TowerConfig(patch_size=(1, 2, 2), in_dim=6, out_dim=6, dim=48, ffn_dim=64, freq_dim=32, num_heads=6,
                      num_layers=2, text_len=18, text_dim=24),
    audio=TowerConfig(patch_size=(1,), in_dim=5, out_dim=5, dim=48, ffn_dim=64, freq_dim=32, num_heads=6,
                      num_layers=2, text_len=18, text_dim=24, temporal_rope_scaling_factor=0.19676),
)


def _ragged_inputs():
    g = torch.Generator().manual_seed(7)
    video = [torch.randn(6, 5, 2, 4, generator=g), torch.randn(6, 3, 2, 4, generator=g)]  # 10 and 6 tokens
    audio = [torch.randn(10, 5, generator=g), torch.randn(13, 5, generator=g)]  # ragged audio lengths
    ctx = [torch.randn(5, 24, generator=g), torch.randn(9, 24, generator=g)]
    return dict(video=video, audio=audio, t=torch.tensor([700.0, 300.0]), video_context=ctx, audio_context=ctx,
                first_frame_is_clean=True, skip_layer=None)


def _tiny_worker(rank: int, world_size: int, out: str) -> None:
    from jointav.models import fusion_dit as fusion_module
    from jointav.models.sequence_parallel import sequence_parallel

    torch.manual_seed(0)
    model = FusionDiT(SIX_HEADS).eval()
    kwargs = _ragged_inputs()
    seen = []
    inner = fusion_module.attention

    def spy(q, k, v, key_lens=None, backend="sdpa"):  # what the kernel sees inside the all-to-all
        seen.append((q.shape[1], q.shape[2], k.shape[1]))
        return inner(q, k, v, key_lens, backend)

    fusion_module.attention = spy
    try:
        with torch.no_grad(), sequence_parallel(model):
            split = model(**kwargs)
    finally:
        fusion_module.attention = inner
    with torch.no_grad():
        single = model(**kwargs)
    errors = [float((a - b).abs().max()) for s, p in zip(split, single) for a, b in zip(s, p)]
    if rank == 0:
        Path(out).write_text(json.dumps({"errors": errors, "seen": sorted(set(seen))}))


def test_three_processes_give_the_single_process_forward_with_ragged_audio(tmp_path):
    out = tmp_path / "result.json"
    spawn(3, _tiny_worker, str(out))
    result = json.loads(out.read_text())
    assert len(result["errors"]) == 4 and max(result["errors"]) <= SP_TOLERANCE  # 2 samples x 2 towers
    # every attention ran on all tokens with 2 of the 6 heads: video 10 -> 12 tokens, audio 13 -> 15 positions,
    # text 18 rows: (queries, heads, keys) of self-, text- and cross-modal attention in both towers
    assert set(map(tuple, result["seen"])) == {(12, 2, 12), (12, 2, 18), (12, 2, 15),
                                               (15, 2, 15), (15, 2, 18), (15, 2, 12)}


def test_fixture_parity_over_two_processes():
    folder = fixture_dir("fusion_dit")
    results = run_sequence_parallel(folder, 2)
    failed = [r.line() for r in results if not r.passed]
    assert not failed, "\n".join(failed)
    split_vs_single = [r for r in results if r.case.endswith("@sp2")]
    assert len(split_vs_single) == 10  # 5 cases x (video, audio), each also checked against the reference
    assert max(r.max_abs for r in split_vs_single) <= SP_TOLERANCE


def test_a_world_size_that_does_not_split_the_heads_is_refused():
    from jointav.models.sequence_parallel import _check

    with pytest.raises(InputValueError, match="6 heads do not split over 4 processes"):
        _check(FusionDiT(SIX_HEADS), 4)
    assert not dist.is_initialized()


def _pipeline_worker(rank: int, world_size: int, out: str) -> None:
    from jointav.pipeline import api

    model = api.load_joint_model(None, device="cpu")
    conditioning = api.encode_prompt(model, "a red ball bounces", "", "thud")
    latent = api.empty_latent(model, "1s", 32, 48)
    split = api.sample(model, conditioning, latent, seed=2, steps=2)  # split: a process group is initialised
    if rank == 0:
        dist.destroy_process_group()  # the same call in one process
        single = api.sample(model, conditioning, latent, seed=2, steps=2)
        dist.init_process_group("gloo", init_method="file://" + out + ".again", rank=0, world_size=1)
        errors = [float((split.video - single.video).abs().max()), float((split.audio - single.audio).abs().max())]
        Path(out).write_text(json.dumps(errors))


def test_pipeline_sampling_is_split_when_launched_in_a_process_group(tmp_path):
    out = tmp_path / "errors.json"
    spawn(2, _pipeline_worker, str(out))
    errors = json.loads(out.read_text())
    # two guided steps: the forward's float rounding (<= 1e-6 here) is scaled by the guidance (4x video) and
    # carried through the solver, so the sampled latents agree to 1e-4 rather than the forward's 1e-5
    assert max(errors) <= 1e-4
