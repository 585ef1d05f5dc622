"""The fusion DiT built from an injected operations namespace and attention kernel (how ComfyUI builds it).

A host (ComfyUI) passes its own layer classes and attention function; the model must keep Ovi's state-dict
keys, use the host's layers for every Linear/Conv weight and the host's kernel for every attention, and give
the same numbers when those behave like the library's own.
"""

from __future__ import annotations

import torch
import torch.nn as nn

from jointav.models.attention import attention as library_attention
from jointav.models.fusion_dit import FusionDiT
from jointav.models.layers import CastOps

from .test_fusion_dit import TINY, _batch, _model


class PlainOps:
    """A namespace of plain torch layers, marked, like comfy.ops.disable_weight_init (no casting)."""

    class Linear(nn.Linear):
        host = True

    class Conv1d(nn.Conv1d):
        host = True

    class Conv3d(nn.Conv3d):
        host = True


def _host_model(**kwargs) -> FusionDiT:
    reference = _model(seed=3)
    host = FusionDiT(TINY, operations=PlainOps, **kwargs).eval()
    host.load_state_dict(reference.state_dict(), strict=True)
    return reference, host


def test_host_layers_hold_every_weight_and_keys_stay_ovi():
    reference, host = _host_model()
    assert list(host.state_dict()) == list(reference.state_dict())
    weighted = [m for m in host.modules() if isinstance(m, (nn.Linear, nn.Conv1d, nn.Conv3d))]
    assert weighted and all(getattr(m, "host", False) for m in weighted)
    # the library default is unchanged: its own casting layers
    assert all(isinstance(m, CastOps.Linear) for m in reference.modules() if isinstance(m, nn.Linear))


def test_host_layers_give_the_library_numbers():
    reference, host = _host_model()
    video, audio, t, vctx, actx = _batch()
    with torch.no_grad():
        want = reference(video, audio, t, vctx, actx, skip_layer=1)
        got = host(video, audio, t, vctx, actx, skip_layer=1)
    for a, b in zip(want, got):
        torch.testing.assert_close(b, a, rtol=0, atol=1e-6)


def test_injected_attention_runs_every_attention_and_its_result_is_used():
    calls = []

    def counting(q, k, v, key_lens):
        calls.append(q.shape)
        return library_attention(q, k, v, key_lens, "math")

    reference, host = _host_model(attention=counting)
    video, audio, t, vctx, actx = _batch()
    with torch.no_grad():
        want = reference(video, audio, t, vctx, actx)
        got = host(video, audio, t, vctx, actx)
    # per block and tower: self-attention, text cross-attention, cross-modal attention
    assert len(calls) == 3 * 2 * TINY.num_layers
    for a, b in zip(want, got):
        torch.testing.assert_close(b, a, rtol=0, atol=1e-5)

    host.attention = lambda q, k, v, key_lens: torch.zeros_like(q)
    with torch.no_grad():
        zeroed = host(video, audio, t, vctx, actx)
    assert not torch.allclose(zeroed[0], got[0]), "the injected kernel's output must reach the model's output"
