"""The tiny default model's text encoder: the toy world's words in, umT5-shaped embeddings out.

It stands where umT5-XXL stands for Ovi: one `[L_i, text_dim]` tensor per prompt, L_i = the prompt's tokens
plus an end-of-sequence token (as umT5 returns its real tokens and `</s>`), handed to the DiT as a list.
Words are whole tokens over a fixed vocabulary (lower-cased, punctuation dropped, synonyms such as "grey"
read as their vocabulary word, unknown words -> <unk>);
Ovi's markup tags <S>, <E>, <AUDCAP>, <ENDAUDCAP> are tokens of their own. The network is an embedding with
learned positions, a few pre-norm transformer layers and a projection to `text_dim`. It is trained jointly
with the tiny DiT; built here, it is initialised from a seed, so the same config and seed give the same
weights on every machine. Its state dict holds plain tensors (no tied weights): safetensors can save it.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import InputShapeError, InputValueError
from ..toyworld.vocabulary import CAPTION_WORDS, MARKUP_TOKENS, canonical, split_words
from .attention import attention

PAD, EOS, UNK = "<pad>", "</s>", "<unk>"


def default_vocab() -> tuple[str, ...]:
    """Special tokens, Ovi markup, then the toy world's words; ids are positions in this tuple."""
    return tuple(dict.fromkeys((PAD, EOS, UNK, *MARKUP_TOKENS, *CAPTION_WORDS)))


@dataclass(frozen=True)
class ToyTextEncoderConfig:
    vocab: tuple[str, ...] = dataclasses.field(default_factory=default_vocab)
    width: int = 64
    depth: int = 2
    heads: int = 4
    text_dim: int = 64
    max_tokens: int = 64  # longer prompts are cut (keeping </s>), as umT5 cuts at its text length
    ffn_mult: int = 4

    def __post_init__(self):
        if self.width % self.heads:
            raise InputValueError(f"ToyTextEncoderConfig: width {self.width} is not divisible by heads {self.heads}")
        if self.vocab[:3] != (PAD, EOS, UNK) or len(set(self.vocab)) != len(self.vocab):
            raise InputValueError(
                f"ToyTextEncoderConfig.vocab: starts {self.vocab[:3]}, {len(self.vocab)} entries "
                f"({len(set(self.vocab))} distinct); expected {PAD}, {EOS}, {UNK} first and no duplicates"
            )
        if self.max_tokens < 2:
            raise InputValueError(f"ToyTextEncoderConfig.max_tokens: {self.max_tokens}; expected >= 2")

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        d["vocab"] = list(self.vocab)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "ToyTextEncoderConfig":
        known = {f.name for f in dataclasses.fields(cls)}
        kw = {k: v for k, v in d.items() if k in known}
        if "vocab" in kw:
            kw["vocab"] = tuple(kw["vocab"])
        return cls(**kw)


class ToyTokenizer:
    """Word-level tokenizer: `encode(text)` -> ids ending in </s>, at most `max_tokens` of them."""

    def __init__(self, vocab: Sequence[str], max_tokens: int):
        self.vocab = tuple(vocab)
        self.max_tokens = max_tokens
        self._ids = {w: i for i, w in enumerate(self.vocab)}
        self.pad_id, self.eos_id, self.unk_id = (self._ids[t] for t in (PAD, EOS, UNK))

    def encode(self, text: str) -> list[int]:
        ids = [self._ids.get(canonical(w), self.unk_id) for w in split_words(text)]
        return ids[: self.max_tokens - 1] + [self.eos_id]

    def decode(self, ids: Sequence[int]) -> list[str]:
        return [self.vocab[i] for i in ids]

    def unknown_words(self, text: str) -> list[str]:
        """The words of `text` this tokenizer reads as <unk> (each once, in order): the model cannot see them."""
        return list(dict.fromkeys(w for w in split_words(text) if canonical(w) not in self._ids))

    def known_words(self) -> tuple[str, ...]:
        """Every word and markup tag a prompt can use (the vocabulary without its special tokens)."""
        return tuple(w for w in self.vocab if w not in (PAD, EOS, UNK))

    def words_cut(self, text: str) -> list[str]:
        """The words past the last one that fits (`max_tokens` counts the end token)."""
        return split_words(text)[self.max_tokens - 1:]


class _Block(nn.Module):
    """Pre-norm transformer layer: x + attn(norm(x)), then x + mlp(norm(x)); padded keys are masked."""

    def __init__(self, width: int, heads: int, ffn: int):
        super().__init__()
        self.heads = heads
        self.norm1 = nn.LayerNorm(width)
        self.qkv = nn.Linear(width, 3 * width)
        self.out = nn.Linear(width, width)
        self.norm2 = nn.LayerNorm(width)
        self.ffn_in = nn.Linear(width, ffn)
        self.ffn_out = nn.Linear(ffn, width)

    def forward(self, x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        b, n, d = x.shape
        q, k, v = self.qkv(self.norm1(x)).view(b, n, 3, self.heads, d // self.heads).unbind(2)
        x = x + self.out(attention(q, k, v, key_lens=lengths).reshape(b, n, d))
        return x + self.ffn_out(F.gelu(self.ffn_in(self.norm2(x)), approximate="tanh"))


class ToyTextEncoder(nn.Module):
    def __init__(self, config: ToyTextEncoderConfig | None = None, seed: int = 0):
        super().__init__()
        self.config = config or ToyTextEncoderConfig()
        c = self.config
        self.tokenizer = ToyTokenizer(c.vocab, c.max_tokens)
        self.token_embedding = nn.Embedding(len(c.vocab), c.width)
        self.position_embedding = nn.Parameter(torch.empty(c.max_tokens, c.width))
        self.blocks = nn.ModuleList(_Block(c.width, c.heads, c.ffn_mult * c.width) for _ in range(c.depth))
        self.norm = nn.LayerNorm(c.width)
        self.proj = nn.Linear(c.width, c.text_dim)
        self.reset_parameters(seed)

    @torch.no_grad()
    def reset_parameters(self, seed: int) -> None:
        """Seeded initialisation from a private CPU generator: independent of the global RNG and the device."""
        gen = torch.Generator().manual_seed(seed)
        for name, p in self.named_parameters():
            if name.endswith("bias"):
                p.zero_()
            elif p.ndim == 1:  # LayerNorm scales
                p.fill_(1.0)
            else:
                p.copy_(torch.randn(p.shape, generator=gen) * 0.02)

    def forward(self, ids: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """ids `[B, L]` (right-padded), lengths `[B]` -> `[B, L, text_dim]`; rows past a length are padding."""
        if ids.ndim != 2 or lengths.shape != (ids.shape[0],) or ids.shape[1] > self.config.max_tokens:
            raise InputShapeError(
                f"ToyTextEncoder: ids {tuple(ids.shape)}, lengths {tuple(lengths.shape)}; "
                f"expected [B, L<={self.config.max_tokens}] and [B]"
            )
        x = self.token_embedding(ids) + self.position_embedding[: ids.shape[1]]
        for block in self.blocks:
            x = block(x, lengths)
        return self.proj(self.norm(x))

    def prompt_notes(self, video_prompt: str, speech_lines: Sequence[str], audio_description: str,
                     composed: str) -> list[str]:
        """What this encoder will not read of a prompt, field by field, in words for a user: unknown words (read
        as <unk>, so the model does not see them), fields with no known word at all (ignored entirely), and words
        cut at the token limit. Empty when every word is read. `composed` is the one string the model gets."""
        notes = []
        fields = [("video prompt", video_prompt)] + [(f"speech line {line!r}", line) for line in speech_lines]
        fields.append(("audio description", audio_description))
        for name, text in fields:
            unknown = self.tokenizer.unknown_words(text)
            if not unknown:
                continue
            if len(unknown) == len(dict.fromkeys(split_words(text))):
                notes.append(f"{name} is ignored: none of its words ({', '.join(unknown)}) is in this model's "
                             f"vocabulary")
            else:
                notes.append(f"{name}: these words are not in this model's vocabulary and are ignored: "
                             f"{', '.join(unknown)}")
        cut = self.tokenizer.words_cut(composed)
        if cut:
            notes.append(f"the prompt is longer than {self.config.max_tokens - 1} words; these are cut: "
                         f"{' '.join(cut)}")
        if notes:
            notes.append("the words this model knows: " + " ".join(self.tokenizer.known_words()))
        return notes

    def encode(self, prompts: Sequence[str]) -> list[torch.Tensor]:
        """One `[L_i, text_dim]` tensor per prompt, on the module's device and dtype (the DiT's context list)."""
        out, lengths = self._encode(prompts, "encode")
        return [out[i, :n] for i, n in enumerate(lengths.tolist())]

    def encode_padded(self, prompts: Sequence[str]) -> torch.Tensor:
        """`[B, L, text_dim]`: `encode`'s tensors zero-padded to the longest, in a few batch-wide operations. The
        DiT pads contexts with zeros, so this gives it what the list gives (a training batch's per-prompt slices
        and pads otherwise cost a kernel each, forward and backward)."""
        out, lengths = self._encode(prompts, "encode_padded")
        keep = torch.arange(out.shape[1], device=out.device)[None, :] < lengths[:, None]
        return out * keep[..., None].to(out.dtype)

    def _encode(self, prompts: Sequence[str], name: str) -> tuple[torch.Tensor, torch.Tensor]:
        if isinstance(prompts, str) or len(prompts) == 0:
            raise InputValueError(f"ToyTextEncoder.{name}: got {prompts!r}; expected a non-empty list of prompts")
        device = self.token_embedding.weight.device
        tokens = [self.tokenizer.encode(p) for p in prompts]
        lengths = torch.tensor([len(t) for t in tokens])
        ids = torch.full((len(tokens), int(lengths.max())), self.tokenizer.pad_id, dtype=torch.long)
        for i, t in enumerate(tokens):  # (on the CPU, then one copy: per-prompt copies cost a GPU transfer each)
            ids[i, : len(t)] = torch.tensor(t)
        lengths = lengths.to(device)
        return self(ids.to(device), lengths), lengths
