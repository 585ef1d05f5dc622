"""The joint audio-video fusion DiT (Ovi-compatible): two Wan-style towers joined in every block.

State-dict keys are exactly the reference's (`video_model.*`, `audio_model.*`), so Ovi checkpoints load
with `load_state_dict(strict=True)`. There are no buffers: the RoPE tables are rebuilt on the fly each
forward (they are tiny), so a model built on `device="meta"` and filled with
`load_state_dict(..., assign=True)` needs no extra step.

Precision policy: weights keep their storage dtype (fp32/bf16/fp16/fp8) and are cast to
`compute_dtype` (default float32) inside each layer. Norms, modulation and the residual stream are
float32; RoPE and the timestep sinusoid are float64, as in the reference.

One forward, per block i (both towers interleaved; see shared/reference/ovi-notes.md §4):
audio self-attn, video self-attn, audio cross-attn (text + video after its self-attn) and FFN,
video cross-attn (text + audio after its self-attn, i.e. before the audio cross step) and FFN.

Reference tokens (cameo; EXPERIMENTAL with Ovi weights, which never saw them): optional clean latents of a
person's face (`video_reference`) and voice (`audio_reference`) appended to each tower's sequence after the
clip's tokens. They are ordinary tokens of their tower in every attention (self-attention, text
cross-attention, and as queries and as keys/values of the cross-modal attention), but they always carry
timestep 0, sit at RoPE time positions past the end of the clip (see `reference_time_origin`) and are
dropped before the head's output is unpatchified. Without references the forward is unchanged.
"""

from __future__ import annotations

import math
import operator
from dataclasses import dataclass
from functools import partial
from typing import Callable, Sequence, Union

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..errors import InputShapeError, InputValueError
from .attention import BACKENDS, attention, resolve_backend
from .config import FusionConfig, TowerConfig
from .layers import CastOps, ConvMLP, LayerNorm, RMSNorm, channel_last
from .rope import ROPE_MAX_POSITIONS, audio_rope_table, rope_multipliers, rotate, sinusoidal_embedding, video_rope_table

TensorOrList = Union[torch.Tensor, Sequence[torch.Tensor]]
# An attention kernel: (q, k, v `[B, L, H, D]`, key_lens `[B]` or None) -> `[B, Lq, H, D]` (models/attention.py).
AttentionFn = Callable[[torch.Tensor, torch.Tensor, torch.Tensor, "torch.Tensor | None"], torch.Tensor]

# The cross-modal norms injected by the reference use a fixed eps, not the tower's.
FUSION_NORM_EPS = 1e-6
# The audio patch embedding is fixed by the reference (MMAudio latents): conv k=7 and a 4x gated conv MLP.
AUDIO_EMBED_KERNEL = 7
AUDIO_EMBED_MLP_RATIO = 4
# Reference tokens start this many latent frames after the end of the clip's timeline, so that no clip
# frame (nor the frame right after it, as in a continuation) shares their time position.
REFERENCE_TIME_GAP = 4


@dataclass
class PerToken:
    """Values that depend on each token's timestep, stored once per distinct timestep.

    Tokens carry very few distinct timesteps (t, or 0 on clean frames), so embeddings are computed on the
    distinct values only and gathered per token. `index` is `[B, L]`, or `[B, 1]` when every token of a
    sample has the same timestep (then the gathered values broadcast and nothing per-token is built).
    """

    index: torch.Tensor

    @classmethod
    def from_timesteps(cls, t_tok: torch.Tensor) -> tuple["PerToken", torch.Tensor]:
        values, inverse = torch.unique(t_tok, return_inverse=True)
        uniform = bool((t_tok == t_tok[:, :1]).all())
        return cls(inverse[:, :1] if uniform else inverse), values

    def gather(self, table: torch.Tensor) -> torch.Tensor:
        """`table` `[U, ...]` (one row per distinct timestep) → `[B, L or 1, ...]`."""
        return table[self.index]


@dataclass
class TowerState:
    """Everything one tower carries through the blocks of one forward."""

    x: torch.Tensor  # [B, L, dim] residual stream, float32
    seq_lens: torch.Tensor  # [B] true token counts (int64)
    grids: list[tuple[int, ...]]  # per sample: (F, H, W) video, (L,) audio, in tokens
    key_lens: torch.Tensor | None  # seq_lens as a key mask, None when no sample is padded
    rope: torch.Tensor  # [B, L, 1, pairs] complex128 rotations (1 on padding)
    per_token: PerToken
    time_e: torch.Tensor  # [U, dim] time_embedding output per distinct timestep, float32
    time_e0: torch.Tensor  # [U, 6, dim] time_projection output per distinct timestep, float32
    context: torch.Tensor  # [B, text_len, dim] embedded text, compute dtype


@dataclass
class References:
    """One tower's reference tokens: per sample a clean latent or None, and the RoPE time row it starts at.

    items: video `[C, k, H, W]` / audio `[L_ref, C]`; starts: video latent-frame index / audio position of the
    reference's first time step (see `reference_time_origin`).
    """

    items: list[torch.Tensor | None]
    starts: list[int]


def reference_time_origin(video_frames: int, audio_length: int, audio_scale: float) -> int:
    """Video latent-frame index where a sample's references start: past the end of both of its timelines.

    The clip's video occupies time rows 0..F-1 and its audio reaches row ~L·scale (audio position i sits at
    video time i·scale); references start REFERENCE_TIME_GAP rows after the later of the two, so no clip
    token shares their time position.
    """
    return max(video_frames, math.ceil(audio_length * audio_scale)) + REFERENCE_TIME_GAP


def audio_reference_start(origin: int, audio_scale: float) -> int:
    """Audio position whose time (position·scale) is nearest to video latent frame `origin`: the audio
    reference starts where the video reference does, so face and voice line up in cross-modal attention."""
    return math.floor(origin / audio_scale + 0.5)


def _shifted_multipliers(grid: tuple[int, ...], start: int, table: torch.Tensor, head_dim: int) -> torch.Tensor:
    """RoPE multipliers `[tokens, columns]` of a grid whose time axis starts at table row `start`, not 0."""
    per_step = math.prod(grid[1:])
    shifted = (start + grid[0], *grid[1:])
    return rope_multipliers([shifted], table, math.prod(shifted), head_dim)[0, start * per_step:, 0]


def _heads(x: torch.Tensor, num_heads: int) -> torch.Tensor:
    return x.unflatten(-1, (num_heads, x.shape[-1] // num_heads))


class SelfAttention(nn.Module):
    """q/k RMS-normed over the full width, RoPE on q and k, keys masked by the tower's true lengths."""

    def __init__(self, dim: int, num_heads: int, eps: float, device=None, dtype=None, operations=CastOps):
        super().__init__()
        fk = dict(device=device, dtype=dtype)
        self.num_heads = num_heads
        self.q = operations.Linear(dim, dim, **fk)
        self.k = operations.Linear(dim, dim, **fk)
        self.v = operations.Linear(dim, dim, **fk)
        self.o = operations.Linear(dim, dim, **fk)
        self.norm_q = RMSNorm(dim, eps, **fk)
        self.norm_k = RMSNorm(dim, eps, **fk)

    def forward(self, x: torch.Tensor, state: TowerState, backend: AttentionFn) -> torch.Tensor:
        q = rotate(_heads(self.norm_q(self.q(x)), self.num_heads), state.rope)
        k = rotate(_heads(self.norm_k(self.k(x)), self.num_heads), state.rope)
        v = _heads(self.v(x), self.num_heads)
        return self.o(backend(q, k, v, state.key_lens).flatten(2))


class CrossAttention(SelfAttention):
    """Text cross-attention plus cross-modal attention to the other tower, summed before one output projection.

    Text: un-rotated q against all text_len context rows (no mask, as the reference). Cross-modal: q rotated
    with the source tower's RoPE, keys from the target stream rotated with the target's RoPE and masked by
    the target's true lengths.
    """

    def __init__(self, dim: int, num_heads: int, eps: float, device=None, dtype=None, operations=CastOps):
        super().__init__(dim, num_heads, eps, device=device, dtype=dtype, operations=operations)
        fk = dict(device=device, dtype=dtype)
        self.k_fusion = operations.Linear(dim, dim, **fk)
        self.v_fusion = operations.Linear(dim, dim, **fk)
        self.pre_attn_norm_fusion = LayerNorm(dim, FUSION_NORM_EPS, affine=True, **fk)
        self.norm_k_fusion = RMSNorm(dim, FUSION_NORM_EPS, **fk)

    def forward(  # type: ignore[override]
        self, x: torch.Tensor, src: TowerState, target_x: torch.Tensor, target: TowerState, backend: AttentionFn
    ) -> torch.Tensor:
        n = self.num_heads
        q = _heads(self.norm_q(self.q(x)), n)
        k = _heads(self.norm_k(self.k(src.context)), n)
        v = _heads(self.v(src.context), n)
        out = backend(q, k, v, None)

        tgt = self.pre_attn_norm_fusion(target_x).to(x.dtype)
        k_t = rotate(_heads(self.norm_k_fusion(self.k_fusion(tgt)), n), target.rope)
        v_t = _heads(self.v_fusion(tgt), n)
        out = out + backend(rotate(q, src.rope), k_t, v_t, target.key_lens)
        return self.o(out.flatten(2))


def _modulation_table(num: int, dim: int, device=None, dtype=None) -> nn.Parameter:
    """A learned `[1, num, dim]` table ~ N(0, 1/dim) (the reference's init); left empty on the meta device,
    where random init would only cost time (a loader fills it)."""
    table = torch.empty(1, num, dim, device=device, dtype=dtype)
    if table.device.type != "meta":
        nn.init.normal_(table, std=dim**-0.5)
    return nn.Parameter(table)


class Modulation(nn.Module):
    """The per-block table added to the timestep projection (key `...modulation.modulation`)."""

    def __init__(self, dim: int, num: int, device=None, dtype=None):
        super().__init__()
        self.modulation = _modulation_table(num, dim, device=device, dtype=dtype)


class TowerBlock(nn.Module):
    """One tower's half of a fusion block; the interleaving of the two halves lives in `FusionDiT`."""

    def __init__(self, cfg: TowerConfig, device=None, dtype=None, operations=CastOps):
        super().__init__()
        fk = dict(device=device, dtype=dtype)
        dim = cfg.dim
        self.norm1 = LayerNorm(dim, cfg.eps)
        self.self_attn = SelfAttention(dim, cfg.num_heads, cfg.eps, operations=operations, **fk)
        self.norm3 = LayerNorm(dim, cfg.eps, affine=True, **fk)
        self.cross_attn = CrossAttention(dim, cfg.num_heads, cfg.eps, operations=operations, **fk)
        self.norm2 = LayerNorm(dim, cfg.eps)
        self.ffn = nn.Sequential(
            operations.Linear(dim, cfg.ffn_dim, **fk), nn.GELU(approximate="tanh"),
            operations.Linear(cfg.ffn_dim, dim, **fk),
        )
        self.modulation = Modulation(dim, 6, **fk)

    def modulation_table(self, state: TowerState) -> torch.Tensor:
        """`[U, 6, dim]` float32: (shift, scale, gate) for attention, then for the FFN."""
        return self.modulation.modulation.float() + state.time_e0

    def self_attention_step(self, state: TowerState, mod: torch.Tensor, dtype: torch.dtype, backend: AttentionFn):
        shift, scale, gate = (state.per_token.gather(mod[:, i]) for i in range(3))
        h = (self.norm1(state.x) * (1 + scale) + shift).to(dtype)
        return state.x + self.self_attn(h, state, backend) * gate

    def cross_ffn_step(
        self, state: TowerState, mod: torch.Tensor, target_x: torch.Tensor, target: TowerState,
        dtype: torch.dtype, backend: AttentionFn,
    ) -> torch.Tensor:
        x = state.x + self.cross_attn(self.norm3(state.x).to(dtype), state, target_x, target, backend)
        shift, scale, gate = (state.per_token.gather(mod[:, i]) for i in range(3, 6))
        h = (self.norm2(x) * (1 + scale) + shift).to(dtype)
        return x + self.ffn(h) * gate


class Head(nn.Module):
    """Final modulated LayerNorm + Linear to `prod(patch) · out_dim` values per token (uses e, not e0)."""

    def __init__(self, dim: int, out_features: int, eps: float, device=None, dtype=None, operations=CastOps):
        super().__init__()
        self.norm = LayerNorm(dim, eps)
        self.head = operations.Linear(dim, out_features, device=device, dtype=dtype)
        self.modulation = _modulation_table(2, dim, device=device, dtype=dtype)

    def forward(self, state: TowerState, dtype: torch.dtype) -> torch.Tensor:
        table = self.modulation.float() + state.time_e[:, None, :]  # [U, 2, dim]
        shift, scale = state.per_token.gather(table[:, 0]), state.per_token.gather(table[:, 1])
        return self.head((self.norm(state.x) * (1 + scale) + shift).to(dtype))


class Tower(nn.Module):
    """One WanModel-style tower: embeddings, blocks, head. Video: Conv3d patches; audio: conv stack."""

    def __init__(self, cfg: TowerConfig, device=None, dtype=None, operations=CastOps):
        super().__init__()
        fk = dict(device=device, dtype=dtype)
        ops = operations
        self.cfg = cfg
        dim = cfg.dim
        if cfg.is_video:
            self.patch_embedding = ops.Conv3d(cfg.in_dim, dim, kernel_size=cfg.patch_size, stride=cfg.patch_size, **fk)
        else:
            pad = AUDIO_EMBED_KERNEL // 2
            self.patch_embedding = nn.Sequential(
                channel_last(ops.Conv1d)(cfg.in_dim, dim, kernel_size=AUDIO_EMBED_KERNEL, padding=pad, **fk),
                nn.SiLU(),
                ConvMLP(dim, AUDIO_EMBED_MLP_RATIO * dim, kernel_size=AUDIO_EMBED_KERNEL, padding=pad, operations=ops,
                        **fk),
            )
        self.text_embedding = nn.Sequential(
            ops.Linear(cfg.text_dim, dim, **fk), nn.GELU(approximate="tanh"), ops.Linear(dim, dim, **fk)
        )
        self.time_embedding = nn.Sequential(ops.Linear(cfg.freq_dim, dim, **fk), nn.SiLU(), ops.Linear(dim, dim, **fk))
        self.time_projection = nn.Sequential(nn.SiLU(), ops.Linear(dim, 6 * dim, **fk))
        self.blocks = nn.ModuleList([TowerBlock(cfg, operations=ops, **fk) for _ in range(cfg.num_layers)])
        self.head = Head(dim, math.prod(cfg.patch_size) * cfg.out_dim, cfg.eps, operations=ops, **fk)

    def rope_table(self, device: torch.device) -> torch.Tensor:
        cfg = self.cfg
        if cfg.is_video:
            table = video_rope_table(cfg.head_dim)
        else:
            table = audio_rope_table(cfg.head_dim, cfg.temporal_rope_scaling_factor)
        return table.to(device)

    def _embed_batch(self, x: torch.Tensor) -> torch.Tensor:
        """`[N, C, F, H, W]` or `[N, L, C]` → tokens `[N, tokens, dim]`."""
        if self.cfg.is_video:
            return self.patch_embedding(x).flatten(2).transpose(1, 2)
        return self.patch_embedding(x)

    def _grid(self, item: torch.Tensor) -> tuple[int, ...]:
        if self.cfg.is_video:
            return tuple(s // p for s, p in zip(item.shape[1:], self.cfg.patch_size))
        return (item.shape[0],)

    def embed(self, items: list[torch.Tensor], dtype: torch.dtype) -> tuple[list[torch.Tensor], list[tuple[int, ...]]]:
        """Patch-embed each sample on its own (the audio convs must not see a neighbour's padding)."""
        grids = [self._grid(u) for u in items]
        if all(u.shape == items[0].shape for u in items):
            tokens = list(self._embed_batch(torch.stack(items).to(dtype)).unbind(0))
        else:
            tokens = [self._embed_batch(u[None].to(dtype))[0] for u in items]
        return tokens, grids

    def prepare(
        self,
        items: list[torch.Tensor],
        t: torch.Tensor,
        clean: torch.Tensor | None,
        contexts: list[torch.Tensor],
        seq_len: int | None,
        dtype: torch.dtype,
        seq_len_name: str,
        references: References | None = None,
    ) -> TowerState:
        """Embed latents, timesteps (per token) and text into the state the blocks consume.

        seq_len pads the clip's tokens; references (if any) follow each sample's clip tokens, and the
        sequence grows by the longest sample's reference token count.
        """
        tokens, grids = self.embed(items, dtype)
        lens = [u.shape[0] for u in tokens]
        seq_len = _checked_seq_len(seq_len, max(lens), seq_len_name)
        refs = self._embed_references(references, dtype) if references is not None else None
        if refs is not None:
            seq_len += max(r.shape[0] for r, _ in refs)
        device = tokens[0].device
        x = torch.zeros(len(tokens), seq_len, self.cfg.dim, device=device, dtype=torch.float32)
        if len(set(lens)) == 1:  # (one copy for the batch: per-sample copies cost a kernel each, backward too)
            x[:, : lens[0]] = torch.stack(tokens).float()
        else:
            for b, u in enumerate(tokens):
                x[b, : u.shape[0]] = u.float()
        totals = lens
        if refs is not None:
            totals = [n + r.shape[0] for n, (r, _) in zip(lens, refs)]
            for b, (r, _) in enumerate(refs):
                if r.shape[0]:
                    x[b, lens[b] : totals[b]] = r.float()
        seq_lens = torch.tensor(totals, dtype=torch.long, device=device)

        t_tok = t.to(device=device, dtype=torch.float64)[:, None].expand(len(tokens), seq_len)
        if clean is not None:
            t_tok = t_tok.masked_fill(_token_mask(clean.to(device), grids, seq_len), 0.0)
        if refs is not None:
            positions = torch.arange(seq_len, device=device)
            ref_mask = (positions >= torch.tensor(lens, device=device)[:, None]) & (positions < seq_lens[:, None])
            t_tok = t_tok.masked_fill(ref_mask, 0.0)  # references are clean: timestep 0
        per_token, values = PerToken.from_timesteps(t_tok)
        e = self.time_embedding(sinusoidal_embedding(self.cfg.freq_dim, values).to(dtype))
        e0 = self.time_projection(e).unflatten(-1, (6, self.cfg.dim))

        if all(c.shape == contexts[0].shape for c in contexts):  # (one pad for the batch)
            ctx = F.pad(torch.stack(contexts), (0, 0, 0, self.cfg.text_len - contexts[0].shape[0]))
        else:
            ctx = torch.stack([F.pad(c, (0, 0, 0, self.cfg.text_len - c.shape[0])) for c in contexts])
        context = self.text_embedding(ctx.to(device=device, dtype=dtype))

        table = self.rope_table(device)
        rope = rope_multipliers(grids, table, seq_len, self.cfg.head_dim)
        if refs is not None:
            for b, (r, grid) in enumerate(refs):
                if r.shape[0]:
                    rope[b, lens[b] : totals[b], 0] = _shifted_multipliers(grid, references.starts[b], table,
                                                                          self.cfg.head_dim)
        return TowerState(
            x=x,
            seq_lens=seq_lens,
            grids=grids,
            key_lens=None if min(totals) == seq_len else seq_lens,
            rope=rope,
            per_token=per_token,
            time_e=e.float(),
            time_e0=e0.float(),
            context=context,
        )

    def _embed_references(self, references: References, dtype: torch.dtype) -> list[tuple[torch.Tensor, tuple]]:
        """Per sample (tokens `[R, dim]`, grid); R = 0 for a sample without a reference. Embedded apart from the
        clip, so the audio embedding's convolutions never mix reference and clip positions."""
        present = [u for u in references.items if u is not None]
        tokens, grids = self.embed(present, dtype) if present else ([], [])
        found = iter(zip(tokens, grids))
        empty = (torch.zeros(0, self.cfg.dim, dtype=dtype), ())
        return [next(found) if u is not None else empty for u in references.items]

    def unpatchify(self, out: torch.Tensor, grids: list[tuple[int, ...]]) -> list[torch.Tensor]:
        """Head output `[B, L, prod(patch)·out_dim]` → per sample `[C, F, H, W]` (video) or `[L, C]` (audio)."""
        c = self.cfg.out_dim
        if not self.cfg.is_video:
            if len(set(grids)) == 1:
                return list(out[:, : grids[0][0]].unbind(0))
            return [out[b, : g[0]] for b, g in enumerate(grids)]
        pt, ph, pw = self.cfg.patch_size
        if len(set(grids)) == 1:  # (one reshape for the batch, as in prepare)
            f, h, w = grids[0]
            u = out[:, : f * h * w].reshape(len(grids), f, h, w, pt, ph, pw, c)
            return list(u.permute(0, 7, 1, 4, 2, 5, 3, 6).reshape(len(grids), c, f * pt, h * ph, w * pw).unbind(0))
        result = []
        for b, (f, h, w) in enumerate(grids):
            u = out[b, : f * h * w].reshape(f, h, w, pt, ph, pw, c)
            result.append(u.permute(6, 0, 3, 1, 4, 2, 5).reshape(c, f * pt, h * ph, w * pw))
        return result


def _checked_seq_len(seq_len: int | None, needed: int, name: str) -> int:
    if seq_len is None:
        return needed
    if int(seq_len) < needed:
        raise InputShapeError(f"{name}: {int(seq_len)} is shorter than the longest sample's {needed} tokens")
    return int(seq_len)


def _token_mask(clean: torch.Tensor, grids: list[tuple[int, ...]], seq_len: int) -> torch.Tensor:
    """Per-time-step keep mask `[B, T]` → per-token `[B, seq_len]` (time is the grid's first, slowest axis)."""
    mask = torch.zeros(len(grids), seq_len, dtype=torch.bool, device=clean.device)
    if len(set(grids)) == 1:
        per_step = math.prod(grids[0][1:])
        mask[:, : grids[0][0] * per_step] = clean[:, : grids[0][0]].repeat_interleave(per_step, dim=1)
        return mask
    for b, grid in enumerate(grids):
        per_step = math.prod(grid[1:])
        mask[b, : grid[0] * per_step] = clean[b, : grid[0]].repeat_interleave(per_step)
    return mask


def _as_items(x: TensorOrList, name: str, item_shape: str, item_ndim: int) -> tuple[list[torch.Tensor], bool]:
    """A batched tensor or a list of per-sample tensors → (list of samples, whether a list came in)."""
    if isinstance(x, torch.Tensor):
        if x.dim() != item_ndim + 1:
            raise InputShapeError(f"{name}: expected a tensor [B, {item_shape}] or a list of [{item_shape}], "
                                  f"found shape {tuple(x.shape)}")
        return list(x.unbind(0)), False
    if isinstance(x, (list, tuple)) and len(x) > 0 and all(isinstance(u, torch.Tensor) for u in x):
        for i, u in enumerate(x):
            if u.dim() != item_ndim:
                raise InputShapeError(f"{name}[{i}]: expected [{item_shape}], found shape {tuple(u.shape)}")
        return list(x), True
    raise InputShapeError(f"{name}: expected a tensor [B, {item_shape}] or a non-empty list of [{item_shape}] tensors, "
                          f"found {type(x).__name__}")


def _reference_items(x: TensorOrList | None, name: str, item_shape: str, item_ndim: int, batch: int,
                     device: torch.device) -> list[torch.Tensor | None]:
    """A reference tensor `[B or 1, ...]` or a list of B tensors / None → B items (None = no reference)."""
    if x is None:
        return [None] * batch
    if isinstance(x, (list, tuple)) and len(x) > 0:
        for i, u in enumerate(x):
            if u is not None and not (isinstance(u, torch.Tensor) and u.dim() == item_ndim):
                found = f"shape {tuple(u.shape)}" if isinstance(u, torch.Tensor) else type(u).__name__
                raise InputShapeError(f"{name}[{i}]: expected [{item_shape}] or None, found {found}")
        items = list(x)
    else:
        items, _ = _as_items(x, name, item_shape, item_ndim)
        if len(items) == 1:
            items = items * batch  # one reference for every sample
    _check_batch(name, len(items), batch)
    return [None if u is None else u.to(device) for u in items]


def _check_batch(name: str, found: int, batch: int) -> None:
    if found != batch:
        raise InputShapeError(f"{name}: batch size {found} does not match the video batch size {batch}")


class FusionDiT(nn.Module):
    """Ovi's FusionModel: `video_model` and `audio_model` towers of equal depth, fused in every block.

    `compute_dtype` (float32 default; bfloat16/float16 selectable at any time) is independent of the
    weights' storage dtype (`dtype`, which may be fp8). `attention_backend` is one of
    `models.attention.BACKENDS`, resolved against the input's device at each forward.
    `block_check`, when set, is called before every block; it raises to stop a run (a host's interrupt
    request), so a long forward can be stopped within one block's time.

    `operations`: the namespace the Linear/Conv layers come from (`layers.CastOps` by default; ComfyUI's
    `comfy.ops` classes when the registration layer builds it, so ComfyUI manages the weights).
    `attention`: an attention kernel used instead of the `attention_backend` dispatcher when set (ComfyUI's
    `optimized_attention` behind an adapter, so its `--use-*-attention` flags apply). Neither changes the
    state dict.
    """

    block_check: Callable[[], None] | None = None

    def __init__(
        self,
        config: FusionConfig,
        attention_backend: str = "sdpa",
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
        compute_dtype: torch.dtype = torch.float32,
        operations=CastOps,
        attention: AttentionFn | None = None,
    ):
        super().__init__()
        _check_config(config)
        if attention_backend not in BACKENDS:
            raise InputValueError(
                f"attention_backend: unknown value {attention_backend!r}; expected one of {', '.join(BACKENDS)}"
            )
        self.config = config
        self.attention_backend = attention_backend
        self.compute_dtype = compute_dtype
        self.attention = attention
        self.video_model = Tower(config.video, device=device, dtype=dtype, operations=operations)
        self.audio_model = Tower(config.audio, device=device, dtype=dtype, operations=operations)

    @property
    def compute_dtype(self) -> torch.dtype:
        return self._compute_dtype

    @compute_dtype.setter
    def compute_dtype(self, value: torch.dtype) -> None:
        if not (isinstance(value, torch.dtype) and value.is_floating_point and value.itemsize >= 2):
            raise InputValueError(f"compute_dtype: expected float32, bfloat16, float16 or float64, found {value}")
        self._compute_dtype = value

    def forward(
        self,
        video: TensorOrList,
        audio: TensorOrList,
        t: torch.Tensor | float,
        video_context: TensorOrList,
        audio_context: TensorOrList,
        *,
        video_clean: torch.Tensor | None = None,
        audio_clean: torch.Tensor | None = None,
        first_frame_is_clean: bool = False,
        skip_layer: int | None = None,
        video_seq_len: int | None = None,
        audio_seq_len: int | None = None,
        intermediates: dict[str, torch.Tensor] | None = None,
        video_reference: TensorOrList | None = None,
        audio_reference: TensorOrList | None = None,
    ) -> tuple[TensorOrList, TensorOrList]:
        """Velocity predictions for a joint video + audio latent.

        video `[B, C, F, H, W]` or a list of `[C, F_i, H_i, W_i]`; audio `[B, L, C]` or a list of `[L_i, C]`.
        Outputs take the input's form (tensor → tensor, list → list) and dtype.
        t: scalar or `[B]` timesteps on the 0..1000 scale, shared by both towers.
        Contexts: `[B, Lt, text_dim]` or lists of `[Lt_i, text_dim]`; zero-padded to text_len and attended
        to in full (the reference passes no text mask, padded rows included).
        video_clean `[B, F]` / audio_clean `[B, L]` (bool, per token time step; F counts latent frames, the
        video patch is 1 frame deep): tokens of marked steps get timestep 0 (keep-mask conditioning).
        first_frame_is_clean=True marks frame 0 of every sample (the reference's i2v).
        skip_layer: block skipped in both towers (skip-layer guidance). None, False and 0 mean off: as in
        the reference, block 0 cannot be skipped.
        video_seq_len / audio_seq_len: pad to this many tokens (default: the longest sample); padding
        never changes the output.
        intermediates: optional dict filled with `vid|audio.{embedded_x, time_e, time_e0, context_embedded,
        seq_lens, grid_sizes, pre_head_x, head_out}` and `block<i>.vid|audio` (the fixtures' names); with
        references, the per-token entries include the reference tokens right after each sample's clip tokens.

        video_reference `[B or 1, C, k, Hr, Wr]` / audio_reference `[B or 1, L_ref, C]` (or lists of B items,
        each a tensor or None for a sample without): clean reference latents (cameo face / voice), EXPERIMENTAL
        with Ovi weights. They are appended to their tower's sequence with timestep 0 and RoPE time rows past
        the clip: video reference frame j at latent frame `reference_time_origin(F, L, s) + j` (spatial rows
        from 0, like a clip frame), audio reference position m at `audio_reference_start(origin, s) + m`, s
        = the audio tower's temporal_rope_scaling_factor, so both start at the same time. They take part
        in every attention (as queries and keys/values, cross-modal attention included) and never appear in
        the outputs, whose shapes stay the clip's. Differentiable: a training loop passes clean reference
        latents here (None items drop the reference per sample) and backpropagates the clip loss as usual.
        """
        cfg_v, cfg_a = self.config.video, self.config.audio
        video_items, video_listed = _as_items(video, "video", "C, F, H, W", 4)
        audio_items, audio_listed = _as_items(audio, "audio", "L, C", 2)
        batch = len(video_items)
        _check_batch("audio", len(audio_items), batch)
        self._check_latents(video_items, audio_items)
        t_vec = _timesteps(t, batch)
        video_ctx = _contexts(video_context, "video_context", batch, cfg_v)
        audio_ctx = _contexts(audio_context, "audio_context", batch, cfg_a)
        skip = _skip_index(skip_layer, self.config.num_layers)

        max_frames = max(u.shape[1] // cfg_v.patch_size[0] for u in video_items)
        v_clean = _clean_mask(video_clean, "video_clean", batch, max_frames)
        if first_frame_is_clean:
            v_clean = torch.zeros(batch, max_frames, dtype=torch.bool) if v_clean is None else v_clean.clone()
            v_clean[:, 0] = True
        a_clean = _clean_mask(audio_clean, "audio_clean", batch, max(u.shape[0] for u in audio_items))
        v_refs, a_refs = self._references(video_items, audio_items, video_reference, audio_reference)

        dtype = self.compute_dtype
        backend = self.attention_kernel(video_items[0].device)
        vid = self.video_model.prepare(video_items, t_vec, v_clean, video_ctx, video_seq_len, dtype, "video_seq_len",
                                       v_refs)
        aud = self.audio_model.prepare(audio_items, t_vec, a_clean, audio_ctx, audio_seq_len, dtype, "audio_seq_len",
                                       a_refs)
        record = intermediates is not None
        if record:
            _record_inputs(intermediates, "vid", vid)
            _record_inputs(intermediates, "audio", aud)

        for i, (vb, ab) in enumerate(zip(self.video_model.blocks, self.audio_model.blocks)):
            if self.block_check is not None:
                self.block_check()
            if i == skip:
                continue
            v_mod, a_mod = vb.modulation_table(vid), ab.modulation_table(aud)
            aud.x = ab.self_attention_step(aud, a_mod, dtype, backend)
            vid.x = vb.self_attention_step(vid, v_mod, dtype, backend)
            audio_after_self_attn = aud.x
            aud.x = ab.cross_ffn_step(aud, a_mod, vid.x, vid, dtype, backend)
            vid.x = vb.cross_ffn_step(vid, v_mod, audio_after_self_attn, aud, dtype, backend)
            if record:
                intermediates[f"block{i}.vid"] = vid.x
                intermediates[f"block{i}.audio"] = aud.x

        v_out = self.video_model.head(vid, dtype)
        a_out = self.audio_model.head(aud, dtype)
        if record:
            intermediates.update({"vid.pre_head_x": vid.x, "vid.head_out": v_out,
                                  "audio.pre_head_x": aud.x, "audio.head_out": a_out})
        video_list = [u.to(src.dtype) for u, src in zip(self.video_model.unpatchify(v_out, vid.grids), video_items)]
        audio_list = [u.to(src.dtype) for u, src in zip(self.audio_model.unpatchify(a_out, aud.grids), audio_items)]
        return (
            video_list if video_listed else torch.stack(video_list),
            audio_list if audio_listed else torch.stack(audio_list),
        )

    def attention_kernel(self, device: torch.device) -> AttentionFn:
        """The injected kernel, else the `attention_backend` dispatcher resolved for `device`."""
        if self.attention is not None:
            return self.attention
        return partial(attention, backend=resolve_backend(self.attention_backend, device))

    def _check_latents(self, video_items: Sequence[torch.Tensor | None], audio_items: Sequence[torch.Tensor | None],
                       video_name: str = "video", audio_name: str = "audio") -> None:
        cfg_v, cfg_a = self.config.video, self.config.audio
        for i, u in enumerate(video_items):
            if u is None:
                continue
            if u.shape[0] != cfg_v.in_dim:
                raise InputShapeError(f"{video_name}[{i}]: expected {cfg_v.in_dim} channels [C, F, H, W], "
                                      f"found shape {tuple(u.shape)}")
            for axis, size, p in zip("FHW", u.shape[1:], cfg_v.patch_size):
                if size == 0 or size % p:
                    raise InputShapeError(f"{video_name}[{i}]: {axis} = {size} must be a positive multiple of the "
                                          f"patch size {p} (patch {tuple(cfg_v.patch_size)}), found shape "
                                          f"{tuple(u.shape)}")
        for i, u in enumerate(audio_items):
            if u is not None and (u.shape[1] != cfg_a.in_dim or u.shape[0] == 0):
                raise InputShapeError(f"{audio_name}[{i}]: expected [L, {cfg_a.in_dim}] with L > 0, "
                                      f"found shape {tuple(u.shape)}")

    def _references(
        self, video_items: list[torch.Tensor], audio_items: list[torch.Tensor],
        video_reference: TensorOrList | None, audio_reference: TensorOrList | None,
    ) -> tuple[References | None, References | None]:
        """Checked per-sample reference latents of both towers, with the RoPE rows they start at."""
        if video_reference is None and audio_reference is None:
            return None, None
        cfg_v, cfg_a = self.config.video, self.config.audio
        batch, device = len(video_items), video_items[0].device
        v_items = _reference_items(video_reference, "video_reference", "C, k, H, W", 4, batch, device)
        a_items = _reference_items(audio_reference, "audio_reference", "L_ref, C", 2, batch, device)
        self._check_latents(v_items, a_items, "video_reference", "audio_reference")
        scale = cfg_a.temporal_rope_scaling_factor
        origins = [reference_time_origin(v.shape[1] // cfg_v.patch_size[0], a.shape[0], scale)
                   for v, a in zip(video_items, audio_items)]
        a_starts = [audio_reference_start(o, scale) for o in origins]
        for i, (u, o) in enumerate(zip(v_items, origins)):
            if u is not None and o + u.shape[1] // cfg_v.patch_size[0] > ROPE_MAX_POSITIONS:
                raise InputShapeError(f"video_reference[{i}]: {u.shape[1]} frames starting at RoPE time row {o} "
                                      f"(after the clip) exceed the table's {ROPE_MAX_POSITIONS} rows")
        for i, (u, start) in enumerate(zip(a_items, a_starts)):
            if u is not None and start + u.shape[0] > ROPE_MAX_POSITIONS:
                raise InputShapeError(f"audio_reference[{i}]: {u.shape[0]} positions starting at RoPE row {start} "
                                      f"(after the clip) exceed the table's {ROPE_MAX_POSITIONS} rows; use a "
                                      f"shorter voice reference")
        return (References(v_items, origins) if video_reference is not None else None,
                References(a_items, a_starts) if audio_reference is not None else None)


def _check_config(config: FusionConfig) -> None:
    for name, tower, is_video in (("video", config.video, True), ("audio", config.audio, False)):
        if tower.is_video != is_video:
            raise InputValueError(f"FusionConfig.{name}: patch_size {tuple(tower.patch_size)} does not describe a "
                                  f"{name} tower (video: 3 entries, audio: (1,))")
        if tower.dim % tower.num_heads or tower.head_dim % 2:
            raise InputValueError(f"FusionConfig.{name}: dim {tower.dim} must split into {tower.num_heads} heads "
                                  f"of even size")
    # Cross-modal attention projects the other tower's stream with this tower's width and heads.
    if (config.video.dim, config.video.num_heads) != (config.audio.dim, config.audio.num_heads):
        raise InputValueError(
            f"FusionConfig: the towers must share dim and num_heads for cross-modal attention, found video "
            f"{config.video.dim}/{config.video.num_heads} and audio {config.audio.dim}/{config.audio.num_heads}"
        )
    if tuple(config.audio.patch_size) != (1,):
        raise InputValueError(f"FusionConfig.audio: patch_size must be (1,), found {tuple(config.audio.patch_size)}")


def _timesteps(t: torch.Tensor | float, batch: int) -> torch.Tensor:
    t = torch.as_tensor(t)
    if t.numel() == 1:
        return t.reshape(1).expand(batch)
    if t.dim() != 1 or t.shape[0] != batch:
        raise InputShapeError(f"t: expected a scalar or shape [{batch}] (one timestep per sample), "
                              f"found shape {tuple(t.shape)}")
    return t


def _contexts(ctx: TensorOrList, name: str, batch: int, cfg: TowerConfig) -> list[torch.Tensor]:
    items, _ = _as_items(ctx, name, "Lt, text_dim", 2)
    _check_batch(name, len(items), batch)
    for i, c in enumerate(items):
        if c.shape[1] != cfg.text_dim or c.shape[0] > cfg.text_len:
            raise InputShapeError(f"{name}[{i}]: expected [Lt <= {cfg.text_len}, {cfg.text_dim}], "
                                  f"found shape {tuple(c.shape)}")
    return items


def _clean_mask(mask: torch.Tensor | None, name: str, batch: int, steps: int) -> torch.Tensor | None:
    if mask is None:
        return None
    if mask.dtype != torch.bool or tuple(mask.shape) != (batch, steps):
        raise InputShapeError(f"{name}: expected a bool tensor of shape [{batch}, {steps}], "
                              f"found {mask.dtype} of shape {tuple(mask.shape)}")
    return mask


def _skip_index(skip_layer, num_layers: int) -> int | None:
    if skip_layer is None or skip_layer is False:
        return None
    if skip_layer is True:
        raise InputValueError("skip_layer: expected a block index or None, found True")
    try:
        index = operator.index(skip_layer)
    except TypeError:
        raise InputValueError(f"skip_layer: expected an integer block index or None, found {skip_layer!r}") from None
    if not 0 <= index < num_layers:
        raise InputValueError(f"skip_layer: expected 0..{num_layers - 1} (0 = off), found {index}")
    return index or None  # the reference's `slg_layer > 0` test: block 0 is never skipped


def _record_inputs(out: dict[str, torch.Tensor], prefix: str, state: TowerState) -> None:
    index = state.per_token.index.expand(state.x.shape[0], state.x.shape[1])
    out.update({
        f"{prefix}.embedded_x": state.x,
        f"{prefix}.time_e": state.time_e[index],
        f"{prefix}.time_e0": state.time_e0[index],
        f"{prefix}.context_embedded": state.context,
        f"{prefix}.seq_lens": state.seq_lens,
        f"{prefix}.grid_sizes": torch.tensor(state.grids, dtype=torch.long),
    })
