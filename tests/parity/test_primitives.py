"""RoPE tables, RoPE application and the timestep sinusoid against the reference (`primitives/`, head_dim 128)."""

from __future__ import annotations

import json
import math

import pytest
import torch

from jointav.models.config import FusionConfig
from jointav.models.rope import (
    apply_rope,
    audio_rope_table,
    sinusoidal_embedding,
    time_rope_dim,
    video_pair_split,
    video_rope_table,
)
from jointav.parity.primitives import run

from conftest import fixture_dir, load_tensors

AUDIO_SCALE = FusionConfig.ovi().audio.temporal_rope_scaling_factor


@pytest.fixture(scope="module")
def folder():
    return fixture_dir("primitives")


@pytest.fixture(scope="module")
def data(folder):
    return load_tensors(folder / "primitives.safetensors")


@pytest.fixture(scope="module")
def head_dim(folder):
    return int(json.loads((folder / "config.json").read_text())["head_dim"])


def _rope_groups(data) -> dict[str, int]:
    """RoPE application groups in the file → grid width (3 video, 1 audio)."""
    return {k[: -len(".grid_sizes")]: data[k].shape[-1] for k in data if k.endswith(".grid_sizes")}


def test_every_primitive_matches_the_reference(folder, data):
    results = run(folder)
    for r in results:
        print(r.line())
    failed = [r.line() for r in results if not r.passed]
    assert not failed, "\n".join(failed)
    # every table, every RoPE application and every sinusoid in the file was compared
    compared = {r.case for r in results}
    expected = {k for k in data if k.startswith("freqs_") or k.endswith(".out") or ".out_" in k}
    assert expected <= compared, expected - compared


def test_padding_positions_pass_through_unrotated(data, head_dim):
    """Tokens past the sample's grid are padding: the reference leaves them as they are, and so do we."""
    tables = {3: video_rope_table(head_dim), 1: audio_rope_table(head_dim, AUDIO_SCALE)}
    for group, width in _rope_groups(data).items():
        x, grid = data[f"{group}.x"], data[f"{group}.grid_sizes"]
        valid = math.prod(grid[0].tolist())
        assert valid < x.shape[1], f"{group}: the fixture has no padding to check"
        ours = apply_rope(x, grid, tables[width])
        assert torch.equal(ours[:, valid:], x[:, valid:])
        assert torch.equal(data[f"{group}.out"][:, valid:], x[:, valid:])
        assert not torch.allclose(ours[:, 1:valid], x[:, 1:valid])  # the valid tokens did rotate


def test_audio_rotates_only_the_time_pairs(data, head_dim):
    """Audio RoPE rotates the first time_rope_dim channels and passes the spatial pairs through bit-exactly."""
    groups = [g for g, width in _rope_groups(data).items() if width == 1]
    if not groups:
        pytest.skip("no 1-D (audio) RoPE group in this fixture set")
    n = time_rope_dim(head_dim)
    for group in groups:
        x, out = data[f"{group}.x"], data[f"{group}.out"]
        ours = apply_rope(x, data[f"{group}.grid_sizes"], audio_rope_table(head_dim, AUDIO_SCALE))
        assert torch.equal(out[..., n:], x[..., n:])
        assert torch.equal(ours[..., n:], x[..., n:])
        assert not torch.allclose(ours[:, 1:, :, :n], x[:, 1:, :, :n])


def test_sinusoid_puts_cos_first():
    emb = sinusoidal_embedding(256, torch.tensor([0]))
    assert torch.equal(emb[0, :128], torch.ones(128, dtype=torch.float64))
    assert torch.equal(emb[0, 128:], torch.zeros(128, dtype=torch.float64))
    assert emb.dtype == torch.float64


@pytest.mark.parametrize("head_dim", [16, 20, 64, 128])
def test_table_widths_follow_head_dim(head_dim):
    """Video tables cover every pair of a head; the audio table covers just the video's time part."""
    pairs = head_dim // 2
    video = video_rope_table(head_dim)
    audio = audio_rope_table(head_dim, AUDIO_SCALE)
    assert video.shape == (1024, pairs) and video.dtype == torch.complex128
    assert audio.shape[1] == video_pair_split(pairs)[0] == time_rope_dim(head_dim) // 2
    assert sum(video_pair_split(pairs)) == pairs
    # audio position i uses the video time frequencies at position scale·i
    i = 7
    assert torch.allclose(audio[i].angle(), (AUDIO_SCALE * i * video[1, : audio.shape[1]].angle()))
