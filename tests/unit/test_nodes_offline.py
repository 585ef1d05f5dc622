"""The CLIP adapter of the Encode Prompt node, without ComfyUI: a stand-in CLIP that behaves like core's
umT5 (padding to at least 512 tokens with id 0, EOS id 1, padded rows zeroed) must come out as the
reference's `[real tokens incl. EOS, 4096]` per prompt, with no weighting syntax applied."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[2]


def _load_adapter():
    # By path: importing the `nodes` package would import ComfyUI.
    spec = importlib.util.spec_from_file_location("jointav_clip_text", REPO / "nodes" / "clip_text.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


class FakeUMT5Clip:
    """Core CLIP's interface as the Wan text encoder fills it (sd1_clip tokenizer with min_length 512)."""

    DIM = 4096

    def __init__(self):
        self.tokenize_kwargs = []

    def tokenize(self, text, return_word_ids=False, **kwargs):
        self.tokenize_kwargs.append(kwargs)
        ids = [3 + (sum(map(ord, w)) % 1000) for w in text.split()] + [1]  # words, then EOS
        ids += [0] * max(0, 512 - len(ids))
        return {"umt5xxl": [[(i, 1.0) for i in ids]]}

    def encode_from_tokens(self, tokens, return_pooled=False, return_dict=False):
        ids = torch.tensor([t for t, _ in tokens["umt5xxl"][0]])
        generator = torch.Generator().manual_seed(0)
        rows = torch.randn(len(ids), self.DIM, generator=generator)
        return (rows * (ids != 0).float()[:, None])[None]


def test_padding_is_cut_at_the_real_token_count():
    adapter = _load_adapter()
    clip = FakeUMT5Clip()
    encode = adapter.clip_text_encoder(clip)
    prompts = ["a woman says <S>hello there<E> in a cafe.", "jitter, bad hands", "x " * 700]
    out = encode(prompts)
    assert len(clip.tokenize_kwargs) == 3 and all(kw.get("disable_weights") is True for kw in clip.tokenize_kwargs), (
        "ComfyUI's (word:1.2) weighting must be off: Ovi prompts are plain text")
    expected_lengths = [len(p.split()) + 1 for p in prompts]  # + EOS
    assert [tuple(e.shape) for e in out] == [(n, 4096) for n in expected_lengths]
    for emb, prompt in zip(out, prompts):
        full = clip.encode_from_tokens(clip.tokenize(prompt))[0]
        assert torch.equal(emb, full[: emb.shape[0]])
        assert emb.abs().sum(dim=1).min() > 0, "a real token row was cut as padding"
        assert full[emb.shape[0]:].abs().sum() == 0


def test_real_token_count_reads_the_tokenizer_output():
    adapter = _load_adapter()
    tokens = {"umt5xxl": [[(17, 1.0), (0, 1.0), (22, 1.0), (1, 1.0), (0, 1.0), (0, 1.0)]]}
    assert adapter.real_token_count(tokens) == 4  # an inner id 0 is kept; only the trailing padding goes
