"""Adapter from a ComfyUI CLIP object (umT5-XXL loaded by core Load CLIP, type "wan") to the core's
`text_encode(list[str]) -> list[Tensor [L_i, 4096]]` callable.

ComfyUI pads every umT5 prompt to at least 512 tokens and zeroes the padded rows; the Ovi reference keeps
only the real tokens (EOS included) and pads later, inside the DiT. So the padding is cut off here, by the
token count of the tokenizer's own output. Duck-typed: this module needs no ComfyUI import.
"""

from __future__ import annotations

from collections.abc import Callable

import torch


def real_token_count(tokens: dict, pad_token: int = 0) -> int:
    """Tokens up to and including the last non-pad one (the EOS), in ComfyUI's `clip.tokenize` output.

    The output is `{encoder_name: [[(token, weight), ...], ...]}`; umT5 has no length limit, so one batch row.
    """
    rows = [row for batches in tokens.values() for row in batches]
    if len(rows) != 1:
        raise ValueError(f"clip: expected one tokenized row from a T5-style text encoder, got {len(rows)}")
    row = rows[0]
    count = len(row)
    while count > 0 and isinstance(row[count - 1][0], int) and row[count - 1][0] == pad_token:
        count -= 1
    return count


def clip_text_encoder(clip) -> Callable[[list[str]], list[torch.Tensor]]:
    """A `text_encode` callable over a ComfyUI CLIP: one `[L, dim]` float tensor per text, L = real tokens."""

    def encode(texts: list[str]) -> list[torch.Tensor]:
        out = []
        for text in texts:
            # disable_weights: Ovi prompts are plain text, so "(word)" must not turn into ComfyUI's weight syntax.
            tokens = clip.tokenize(text, disable_weights=True)
            count = real_token_count(tokens)
            cond = clip.encode_from_tokens(tokens)
            if cond.ndim != 3 or cond.shape[0] != 1 or cond.shape[1] < count:
                raise ValueError(f"clip: encoder output {tuple(cond.shape)} does not hold {count} tokens")
            out.append(cond[0, :count].float())
        return out

    return encode
