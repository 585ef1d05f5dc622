"""The fusion DiT against the Ovi reference fixtures (`fusion_dit/`): every case, every intermediate."""

from __future__ import annotations

import json
import re

import pytest
import torch

from jointav.models import fusion_dit as fusion_module
from jointav.models.fusion_dit import FusionDiT
from jointav.parity import TOLERANCE
from jointav.parity.fusion_dit import case_arguments, fusion_config, run
from conftest import fixture_dir, load_tensors


@pytest.fixture(scope="module")
def folder():
    return fixture_dir("fusion_dit")


@pytest.fixture(scope="module")
def config(folder):
    return json.loads((folder / "config.json").read_text())


@pytest.fixture(scope="module")
def weights(folder):
    return load_tensors(folder / "weights.safetensors")


@pytest.fixture(scope="module")
def inputs(folder):
    return load_tensors(folder / "inputs.safetensors")


def _model(config, weights) -> FusionDiT:
    model = FusionDiT(fusion_config(config))
    model.load_state_dict(weights, strict=True)
    return model.eval()


def test_every_case_and_intermediate_matches_the_reference(folder, config):
    results = run(folder)
    for r in results:
        print(r.line())
    failed = [r.line() for r in results if not r.passed]
    assert not failed, "\n".join(failed)
    compared = {r.case for r in results}
    # Every declared output and every stored intermediate was compared (none silently skipped).
    declared = {name for spec in config["cases"].values() for name in spec["outputs"]}
    assert declared <= compared
    inter = folder / "intermediates.safetensors"
    if inter.is_file():
        assert set(load_tensors(inter)) <= compared
    print(f"max abs error over {len(results)} tensors: {max(r.max_abs for r in results):.3e} (tolerance {TOLERANCE})")


def test_fixture_state_dict_loads_strictly_with_the_same_keys_and_shapes(config, weights):
    model = FusionDiT(fusion_config(config))
    ours = model.state_dict()
    assert set(ours) == set(weights)
    assert {k: tuple(v.shape) for k, v in ours.items()} == {k: tuple(v.shape) for k, v in weights.items()}
    missing, unexpected = model.load_state_dict(weights, strict=True)
    assert not missing and not unexpected


def test_padding_to_a_longer_sequence_leaves_the_output_unchanged(config, weights, inputs):
    """Cases that differ from another case only in the seq lens must give the same output (padding never leaks)."""
    model = _model(config, weights)
    lens_keys = ("vid_seq_len", "audio_seq_len")
    cases = config["cases"]
    pairs = [
        (a, b) for a in cases for b in cases
        if a < b and {k: v for k, v in cases[a]["forward_kwargs"].items() if k not in lens_keys}
        == {k: v for k, v in cases[b]["forward_kwargs"].items() if k not in lens_keys}
    ]
    if not pairs:
        pytest.skip("no pair of cases differing only in seq lens in this fixture set")
    with torch.no_grad():
        for a, b in pairs:
            out_a = model(**case_arguments(cases[a]["forward_kwargs"], inputs))
            out_b = model(**case_arguments(cases[b]["forward_kwargs"], inputs))
            for tower, x, y in zip(("video", "audio"), out_a, out_b):
                diff = (torch.stack(list(x)) - torch.stack(list(y))).abs().max().item()
                print(f"{a} vs {b} ({tower}): max abs difference {diff:.3e}")
                assert diff < 1e-5


# How the fixture's recorded ablations are reproduced: zero the weights whose names match.
_ZEROED_WEIGHTS = {
    "zero cross-modal v_fusion (both towers)": r"cross_attn\.v_fusion\.",
    "zero text cross-attn value proj (cross_attn.v.*)": r"cross_attn\.v\.",
    "zero self-attn output proj (self_attn.o.*)": r"self_attn\.o\.",
    "zero ffn second linear (ffn.2.*)": r"ffn\.2\.",
    "zero block modulation tables": r"blocks\.\d+\.modulation\.modulation",
}
_ROPE_IDENTITY = "RoPE replaced by identity"


def test_every_branch_contributes_as_much_as_in_the_reference(config, weights, inputs, monkeypatch):
    """The reference's ablations (relative L2 change of the t2av outputs) reproduce: no branch is dropped or doubled."""
    recorded = next((v for k, v in config.items() if k.startswith("ablation_relative_change")), {})
    known = [name for name in recorded if name in _ZEROED_WEIGHTS or name == _ROPE_IDENTITY]
    case = next((c for c in config["cases"] if c == "t2av"), None)
    if not known or case is None:
        pytest.skip("this fixture set records no ablation this test knows how to reproduce")
    kwargs = case_arguments(config["cases"][case]["forward_kwargs"], inputs)
    with torch.no_grad():
        base = _model(config, weights)(**kwargs)

        def relative_change(model) -> list[float]:
            out = model(**kwargs)
            return [float((o - b).norm() / b.norm()) for o, b in zip(map(torch.stack, out), map(torch.stack, base))]

        for name in known:
            if name == _ROPE_IDENTITY:
                with monkeypatch.context() as patch:
                    patch.setattr(fusion_module, "rope_multipliers",
                                  lambda grids, table, seq_len, head_dim: torch.ones(
                                      len(grids), seq_len, 1, table.shape[1], dtype=table.dtype, device=table.device))
                    got = relative_change(_model(config, weights))
            else:
                pattern = _ZEROED_WEIGHTS[name]
                zeroed = {k: torch.zeros_like(v) if re.search(pattern, k) else v for k, v in weights.items()}
                got = relative_change(_model(config, zeroed))
            print(f"{name}: ours {got}, reference {recorded[name]}")
            assert got == pytest.approx(recorded[name], abs=1e-4)
