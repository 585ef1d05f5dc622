"""The embedded default model's text encoder as a core CLIP, so core CLIP Text Encode conditions the default
model as core Load CLIP (umT5-XXL, type wan) conditions Ovi.

Core's CLIP object wants a tokenizer class (`tokenize_with_weights`) and a text-model class
(`encode_token_weights`, clip options, `load_sd`); these two wrap `models.toy_text_encoder`. Text gets the
reference's whitespace cleaning first, as `pipeline.api.encode_prompt` does, so both roads give the same
embedding for the same prompt. Weighting syntax such as "(word:1.2)" is not interpreted: Ovi reads plain text.
"""

from __future__ import annotations

import comfy.sd
import comfy.supported_models_base
import torch

from ..models.toy_text_encoder import ToyTextEncoder, ToyTokenizer
from ..text.ovi_prompt import clean_for_tokenizer

TOKEN_KEY = "jointav_toy"


def clip_target(encoder: ToyTextEncoder) -> comfy.supported_models_base.ClipTarget:
    """A core ClipTarget whose classes build this encoder's tokenizer and a copy of its network."""
    config = encoder.config

    class Tokenizer:
        def __init__(self, embedding_directory=None, tokenizer_data={}):
            self.tokenizer = ToyTokenizer(config.vocab, config.max_tokens)

        def tokenize_with_weights(self, text: str, return_word_ids: bool = False, **kwargs):
            ids = self.tokenizer.encode(clean_for_tokenizer(text))
            row = [(i, 1.0, n) if return_word_ids else (i, 1.0) for n, i in enumerate(ids)]
            return {TOKEN_KEY: [row]}

        def untokenize(self, token_weight_pair):
            return [(pair, self.tokenizer.vocab[pair[0]]) for pair in token_weight_pair]

        def state_dict(self):
            return {}

    class TextModel(torch.nn.Module):
        def __init__(self, device=None, dtype=None, model_options={}, **kwargs):
            super().__init__()
            self.encoder = ToyTextEncoder(config).to(device=device or "cpu")
            self.dtypes = {torch.float32}

        def set_clip_options(self, options):
            pass

        def reset_clip_options(self):
            pass

        def encode_token_weights(self, token_weight_pairs):
            rows = token_weight_pairs[TOKEN_KEY]
            if len(rows) != 1:
                raise ValueError(f"JointAV default text encoder: expected one token row, got {len(rows)}")
            device = self.encoder.token_embedding.weight.device
            ids = torch.tensor([[pair[0] for pair in rows[0]]], device=device)
            with torch.no_grad():
                cond = self.encoder(ids, torch.tensor([ids.shape[1]], device=device)).float()
            return cond, None

        def load_sd(self, sd):
            return self.encoder.load_state_dict(sd, strict=True)

    return comfy.supported_models_base.ClipTarget(Tokenizer, TextModel)


def default_clip(encoder: ToyTextEncoder) -> comfy.sd.CLIP:
    """A core CLIP holding a copy of `encoder`'s weights (tiny), managed by its own ModelPatcher."""
    params = sum(p.numel() for p in encoder.parameters())
    clip = comfy.sd.CLIP(target=clip_target(encoder), parameters=params, model_options={"dtype": torch.float32})
    clip.load_sd(encoder.state_dict())
    return clip
