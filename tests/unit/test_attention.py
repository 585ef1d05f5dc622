"""Every attention backend usable here agrees with the plain `math` baseline, and padding keys never leak."""

from __future__ import annotations

import math

import pytest
import torch

from jointav.errors import BackendUnavailableError, InputValueError
from jointav.models.attention import BACKENDS, attention, available_backends, resolve_backend

DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
# flash and sage compute in half precision; the others in the input's float32.
TOLERANCE = {"sdpa": 1e-5, "math": 1e-6, "xformers": 1e-4, "flash": 3e-2, "sage": 6e-2}
CASES = [(device, backend) for device in DEVICES for backend in available_backends(device)]
FAST_CASES = [case for case in CASES if case[1] != "math"]  # math is the baseline itself


def _qkv(device: str, lq: int = 7, lk: int = 9, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    q, k, v = (torch.randn(2, n, 3, 16, generator=g) for n in (lq, lk, lk))
    return q.to(device), k.to(device), v.to(device)


def _explicit(q, k, v):
    """softmax(q·kᵀ/√d)·v written out for one item, independent of the module under test."""
    scores = torch.einsum("lhd,mhd->hlm", q.double(), k.double()) / math.sqrt(q.shape[-1])
    return torch.einsum("hlm,mhd->lhd", scores.softmax(-1), v.double())


def test_math_baseline_is_plain_softmax_attention():
    q, k, v = _qkv("cpu")
    lens = torch.tensor([9, 4])
    out = attention(q, k, v, key_lens=lens, backend="math")
    for b, n in enumerate(lens.tolist()):
        expected = _explicit(q[b], k[b, :n], v[b, :n])
        assert torch.allclose(out[b].double(), expected, atol=1e-5)


@pytest.mark.parametrize("device, backend", FAST_CASES)
@pytest.mark.parametrize("key_lens", [None, [9, 4]], ids=["no-mask", "key-lens"])
def test_backend_agrees_with_math(device, backend, key_lens):
    q, k, v = _qkv(device)
    lens = None if key_lens is None else torch.tensor(key_lens, device=device)
    got = attention(q, k, v, key_lens=lens, backend=backend)
    expected = attention(q, k, v, key_lens=lens, backend="math")
    assert got.shape == q.shape and got.dtype == q.dtype
    err = (got - expected).abs().max().item()
    print(f"{device}/{backend} key_lens={key_lens}: max abs error vs math {err:.2e}")
    assert err <= TOLERANCE[backend]


@pytest.mark.parametrize("device, backend", CASES)
def test_padding_keys_never_leak(device, backend):
    """Garbage past key_lens[b] changes nothing: the result equals attending to the true keys only."""
    q, k, v = _qkv(device)
    lens = [9, 4]
    k[1, 4:], v[1, 4:] = 50.0, 1e4  # huge keys and values that would dominate if attended to
    got = attention(q, k, v, key_lens=torch.tensor(lens, device=device), backend=backend)
    for b, n in enumerate(lens):
        alone = attention(q[b : b + 1], k[b : b + 1, :n], v[b : b + 1, :n], backend=backend)
        assert torch.isfinite(got[b]).all()
        assert torch.allclose(got[b : b + 1], alone, atol=max(TOLERANCE[backend], 1e-5)), f"item {b}"


def test_unknown_backend_is_rejected_with_the_choices():
    with pytest.raises(InputValueError) as err:
        resolve_backend("fastest", "cpu")
    assert "fastest" in str(err.value) and "sdpa" in str(err.value)


@pytest.mark.parametrize("backend", [b for b in BACKENDS if b != "auto" and b not in available_backends("cpu")])
def test_unavailable_backend_names_itself_and_the_usable_ones(backend):
    with pytest.raises(BackendUnavailableError) as err:
        resolve_backend(backend, "cpu")
    message = str(err.value)
    assert backend in message and "sdpa" in message


def test_auto_and_listed_backends_resolve_to_runnable_ones():
    for device in DEVICES:
        assert resolve_backend("auto", device) in available_backends(device)
        for backend in available_backends(device):
            assert resolve_backend(backend, device) == backend
