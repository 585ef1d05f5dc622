"""Chunked audio decode: the overlap is the exact receptive field, and the chunked waveform is the whole one."""

from __future__ import annotations

import copy

import pytest
import torch

from jointav.audio.bigvgan import BigVGANVocoder
from jointav.audio.chunking import Edges
from jointav.audio.mmaudio_vae import MMAudioVAE, decode_audio_latent
from jointav.model_loader.audio_files import apply_bigvgan_weights, apply_vae_weights

from .test_audio import VAE_CFG, VOC_CFG, _raw_vae_state, _weight_normed_vocoder_state


@pytest.fixture(scope="module")
def vae() -> MMAudioVAE:
    model = MMAudioVAE(VAE_CFG, with_encoder=False)
    apply_vae_weights(model, {k: v for k, v in _raw_vae_state(VAE_CFG).items() if not k.startswith("encoder.")})
    return model.eval()


@pytest.fixture(scope="module")
def vocoder() -> BigVGANVocoder:
    model = BigVGANVocoder(VOC_CFG)
    apply_bigvgan_weights(model, _weight_normed_vocoder_state(VOC_CFG))
    return model.eval()


def _support(fn, channels: int, length: int, frame: int, scale: int, dtype=torch.float64) -> tuple[int, int]:
    """Input frames that output frame `frame` depends on, measured by autograd: (left, right) reach.
    (Float64 where the module allows: the outermost frames' float32 contributions round away.)"""
    x = torch.randn(1, channels, length, dtype=dtype, requires_grad=True)
    y = fn(x)[..., frame * scale:(frame + 1) * scale]
    (y * torch.randn_like(y)).sum().backward()  # random weights: no cancellation between output samples
    used = (x.grad.abs().sum(dim=(0, 1)) > 0).nonzero().flatten()
    return frame - int(used.min()), int(used.max()) - frame


def test_vocoder_context_is_its_measured_receptive_field(vocoder):
    model = copy.deepcopy(vocoder).double()
    context = model.time_context()
    length = 4 * (sum(context) + 2)
    assert _support(model, VOC_CFG.num_mels, length, length // 2, VOC_CFG.hop_length) == context


def test_vae_context_is_the_measured_receptive_field_of_its_conv_part(vae):
    decoder = copy.deepcopy(vae.decoder)  # float32: its pixel norm computes in float32
    context = decoder.time_context()
    length = 4 * (sum(context) + 2)
    support = _support(decoder.local_part, 4 * VAE_CFG.hidden_dim, length, length // 2, decoder.upsampling,
                       dtype=torch.float32)
    assert support == context


def test_edges_of_a_strided_transposed_conv_match_a_direct_count():
    # ConvTranspose1d(k=8, stride 4, padding 2) on 10 inputs of which the first 2 and last 1 are unknown:
    # count the outputs that read an unknown or missing input, straight from the definition.
    k, s, p, n = 8, 4, 2, 10
    wrong = set()
    for o in range(n * s):
        for i in range(-2, n + 2):
            if 0 <= o + p - i * s < k and (i < 2 or i >= n - 1):
                wrong.add(o)
    e = Edges(2, 1).conv_transpose(k, s, p)
    assert e == Edges(sum(o < n * s // 2 for o in wrong), sum(o >= n * s // 2 for o in wrong))


@pytest.mark.parametrize("length, chunk", [(37, 5), (37, 1), (20, 8), (9, 40)])
def test_chunked_waveform_equals_the_whole_clip(vae, vocoder, length, chunk):
    torch.manual_seed(length)
    latent = torch.randn(2, length, VAE_CFG.embed_dim)
    whole = decode_audio_latent(vae, vocoder, latent, chunk_latents=None)
    chunked = decode_audio_latent(vae, vocoder, latent, chunk_latents=chunk)
    assert chunked.shape == whole.shape == (2, 1, length * 2 * VOC_CFG.hop_length)
    assert (chunked - whole).abs().max() <= 1e-5
