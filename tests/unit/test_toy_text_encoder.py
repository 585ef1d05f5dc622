"""The tiny text encoder: umT5-shaped output (one [L_i, text_dim] per prompt), deterministic, safetensors-able."""

import numpy as np
import pytest
import torch
from safetensors.torch import load_file, save_file

from jointav.errors import InputValueError
from jointav.models.toy_text_encoder import ToyTextEncoder, ToyTextEncoderConfig
from jointav.toyworld import caption_for, sample_spec
from jointav.toyworld.vocabulary import MARKUP_TOKENS

SMALL = ToyTextEncoderConfig(width=32, depth=2, heads=2, text_dim=24, max_tokens=16)


def test_tokenizer_words_unknowns_and_markup():
    tok = ToyTextEncoder(SMALL).tokenizer
    ids = tok.encode("A RED zebra, says <S>la la<E>! <audcap>Low thuds<ENDAUDCAP>")
    assert tok.decode(ids) == [
        "a", "red", "<unk>", "says", "<S>", "la", "la", "<E>", "<AUDCAP>", "low", "thuds", "<ENDAUDCAP>", "</s>"
    ]
    assert ids[2] == tok.unk_id and ids[-1] == tok.eos_id
    assert tok.encode("grey") == tok.encode("gray")  # synonyms share the vocabulary word's id
    assert len({tok.encode(t)[0] for t in MARKUP_TOKENS}) == len(MARKUP_TOKENS)


def test_long_prompts_are_cut_like_umt5_keeping_the_end_token():
    tok = ToyTextEncoder(SMALL).tokenizer
    ids = tok.encode(" ".join(["red"] * 40))
    assert len(ids) == SMALL.max_tokens and ids[-1] == tok.eos_id


def test_every_toy_world_caption_is_fully_known():
    tok = ToyTextEncoder(SMALL).tokenizer
    rng = np.random.default_rng(0)
    for split in ("train", "heldout"):
        for _ in range(200):
            spec = sample_spec(rng, split)
            for text in (caption_for(spec), caption_for(spec, markup=True)):
                assert tok.unk_id not in tok.encode(text), text


def test_output_is_a_list_of_token_by_text_dim_tensors():
    enc = ToyTextEncoder(SMALL)
    prompts = ["a red ball bounces twice", "", "a blue character says <S>la<E> <AUDCAP>a high voice<ENDAUDCAP>"]
    with torch.no_grad():
        out = enc.encode(prompts)
    assert [tuple(o.shape) for o in out] == [(6, 24), (1, 24), (13, 24)]
    assert all(o.dtype == torch.float32 and torch.isfinite(o).all() for o in out)
    with pytest.raises(InputValueError):
        enc.encode("a red ball")  # one string, not a list


def test_padded_form_holds_each_prompts_rows_and_zeros_after_them():
    enc = ToyTextEncoder(SMALL).eval()
    prompts = ["a red ball bounces twice", "a blue cube", "a character says <S>la la la<E> in a low voice"]
    listed = enc.encode(prompts)
    padded = enc.encode_padded(prompts)
    assert padded.shape == (3, max(len(c) for c in listed), SMALL.text_dim)
    for row, c in zip(padded, listed):
        assert torch.equal(row[: len(c)], c) and not row[len(c):].any()
    with pytest.raises(InputValueError, match="encode_padded: got 'a red ball'"):
        enc.encode_padded("a red ball")


def test_same_seed_same_embeddings_whatever_the_batch():
    a, b, c = ToyTextEncoder(SMALL, seed=3), ToyTextEncoder(SMALL, seed=3), ToyTextEncoder(SMALL, seed=4)
    prompt = "a green square slides left and hits a wall, a high click, on a gray background"
    with torch.no_grad():
        alone = a.encode([prompt])[0]
        assert torch.equal(alone, b.encode([prompt])[0])
        assert not torch.allclose(alone, c.encode([prompt])[0])
        # Padding a shorter prompt in a batch with a longer one changes nothing.
        batched = a.encode(["x " * 14, prompt[:20], prompt])
        short = a.encode([prompt[:20]])[0]
    assert (batched[1] - short).abs().max() < 1e-5


def test_state_dict_round_trips_through_safetensors(tmp_path):
    enc = ToyTextEncoder(SMALL, seed=1)
    path = tmp_path / "toy_text_encoder.safetensors"
    save_file(enc.state_dict(), str(path), metadata={"config": str(SMALL.to_dict())})
    other = ToyTextEncoder(ToyTextEncoderConfig.from_dict(SMALL.to_dict()), seed=2)
    other.load_state_dict(load_file(str(path)))
    with torch.no_grad():
        assert torch.equal(enc.encode(["a red ball"])[0], other.encode(["a red ball"])[0])


def test_bad_configs_are_refused():
    with pytest.raises(InputValueError, match="heads"):
        ToyTextEncoderConfig(width=30, heads=4)
    with pytest.raises(InputValueError, match="vocab"):
        ToyTextEncoderConfig(vocab=("a", "b"))


def test_prompt_notes_name_every_word_and_field_the_encoder_cannot_read():
    enc = ToyTextEncoder(SMALL)
    prompt = "a purple dragon sings opera in the rain"
    notes = enc.prompt_notes(prompt, ["hello there"], "low thuds, room tone", prompt)
    text = "\n".join(notes)
    assert "video prompt" in notes[0] and all(w in notes[0] for w in ("dragon", "sings", "opera", "rain"))
    assert "purple" not in notes[0].split(":")[-1]  # known words are not reported
    assert "speech line 'hello there' is ignored" in text
    assert "audio description" in text and "room" in text and "thuds" not in notes[2].split(":")[-1]
    assert notes[-1].startswith("the words this model knows:") and " la" in notes[-1] and "bounces" in notes[-1]
    known = "a red ball bounces twice on the left"
    assert enc.prompt_notes(known, ["la la"], "low thuds", known) == []


def test_prompt_notes_say_which_words_the_token_limit_cuts():
    enc = ToyTextEncoder(SMALL)  # 16 tokens: 15 words and the end token
    prompt = " ".join(["red"] * 15 + ["ball", "bounces"])
    notes = enc.prompt_notes(prompt, [], "", prompt)
    assert any("longer than 15 words" in n and n.endswith("ball bounces") for n in notes)
