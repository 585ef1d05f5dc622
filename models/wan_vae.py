"""The Wan2.2 video VAE (48 latent channels, 16x spatial and 4x temporal compression), as Ovi uses it.

Latents handed to and from this module are *normalised* by default: `(mu - mean) / std` with the 48
per-channel constants of Wan2.2, which is what the DiT produces and consumes (Ovi's `wrapped_decode` /
`wrapped_encode`). ComfyUI's core `LATENT` holds raw (un-normalised) latents: pass `normalized=False`
or use `normalize_latent` / `denormalize_latent` at that boundary.

Memory. The VAE is causal in time, so decoding latent frames in chunks while carrying each layer's last
frames (`StreamCache`) gives the same video as one pass over the whole clip, to float rounding:
`iter_decode` yields pixel frames chunk by chunk, so peak memory follows the chunk size, not the clip
length. `decode(chunk_frames=1)` is the reference's own schedule (one latent frame per step).
Spatial tiling (`SpatialTiling`) bounds memory for very large frames as well, but it is APPROXIMATE:
convolutions at tile borders see zero padding instead of their neighbours and the middle attention only
sees its own tile; overlapping tiles are blended with linear ramps to hide the seams.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Iterator, Literal

import torch
import torch.nn as nn

from ..errors import InputShapeError, InputValueError
from .wan_vae_blocks import PATCH, CausalConv3d, Decoder3d, Encoder3d, StreamCache, patchify, unpatchify

# Per-channel statistics of Wan2.2 VAE latents (Wan2_2_VAE in the reference); latents are normalised with them.
WAN22_LATENT_MEAN = (
    -0.2289, -0.0052, -0.1323, -0.2339, -0.2799, 0.0174, 0.1838, 0.1557,
    -0.1382, 0.0542, 0.2813, 0.0891, 0.1570, -0.0098, 0.0375, -0.1825,
    -0.2246, -0.1207, -0.0698, 0.5109, 0.2665, -0.2108, -0.2158, 0.2502,
    -0.2055, -0.0322, 0.1109, 0.1567, -0.0729, 0.0899, -0.2799, -0.1230,
    -0.0313, -0.1649, 0.0117, 0.0723, -0.2839, -0.2083, -0.0520, 0.3748,
    0.0152, 0.1957, 0.1433, -0.2944, 0.3573, -0.0548, -0.1681, -0.0667,
)
WAN22_LATENT_STD = (
    0.4765, 1.0364, 0.4514, 1.1677, 0.5313, 0.4990, 0.4818, 0.5013,
    0.8158, 1.0344, 0.5894, 1.0901, 0.6885, 0.6165, 0.8454, 0.4978,
    0.5759, 0.3523, 0.7135, 0.6804, 0.5833, 1.4146, 0.8986, 0.5659,
    0.7069, 0.5338, 0.4889, 0.4917, 0.4069, 0.4999, 0.6866, 0.4093,
    0.5709, 0.6065, 0.6415, 0.4944, 0.5726, 1.2042, 0.5458, 1.6887,
    0.3971, 1.0600, 0.3943, 0.5537, 0.5444, 0.4089, 0.7468, 0.7744,
)

Parts = Literal["both", "encoder", "decoder"]


@dataclass(frozen=True)
class WanVAEConfig:
    """Constructor arguments of the reference `WanVAE_`, plus the latent statistics. Defaults: the real Wan2.2 VAE."""

    dim: int = 160  # encoder base width (the reference's c_dim)
    dec_dim: int = 256  # decoder base width
    z_dim: int = 48
    dim_mult: tuple[int, ...] = (1, 2, 4, 4)
    num_res_blocks: int = 2
    # Accepted for constructor compatibility only: Wan2.2 builds no attention inside its stages.
    attn_scales: tuple[float, ...] = ()
    temperal_downsample: tuple[bool, ...] = (False, True, True)  # reference spelling, per encoder stage
    # None: the Wan2.2 statistics for z_dim 48; for any other width none are known, so mean 0 and std 1.
    latent_mean: tuple[float, ...] | None = field(default=None, repr=False)
    latent_std: tuple[float, ...] | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        wan22 = self.z_dim == len(WAN22_LATENT_MEAN)
        if self.latent_mean is None:
            object.__setattr__(self, "latent_mean", WAN22_LATENT_MEAN if wan22 else (0.0,) * self.z_dim)
        if self.latent_std is None:
            object.__setattr__(self, "latent_std", WAN22_LATENT_STD if wan22 else (1.0,) * self.z_dim)
        for name in ("latent_mean", "latent_std"):
            n = len(getattr(self, name))
            if n != self.z_dim:
                raise InputValueError(f"WanVAEConfig.{name}: has {n} values, expected z_dim={self.z_dim}")

    @property
    def spatial_factor(self) -> int:
        """Pixels per latent position along H and W (16 for Wan2.2)."""
        return PATCH * 2 ** (len(self.dim_mult) - 1)

    @property
    def temporal_factor(self) -> int:
        """Video frames per latent frame after the first (4 for Wan2.2)."""
        return 2 ** sum(bool(t) for t in self.temperal_downsample[: len(self.dim_mult) - 1])

    def video_frames(self, latent_frames: int) -> int:
        return 1 + self.temporal_factor * (latent_frames - 1)

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        return {k: list(v) if isinstance(v, tuple) else v for k, v in d.items()}

    @classmethod
    def from_dict(cls, d: dict) -> "WanVAEConfig":
        """From `to_dict` output or the reference constructor kwargs (its `dropout` is inactive at inference)."""
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = set(d) - known - {"dropout"}
        if unknown:
            raise InputValueError(f"WanVAEConfig: unknown keys {sorted(unknown)}; expected some of {sorted(known)}")
        return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in d.items() if k in known})

    @classmethod
    def wan22(cls) -> "WanVAEConfig":
        """The published Wan2.2 VAE (Wan2.2_VAE.pth / wan2.2_vae.safetensors) that Ovi uses."""
        return cls()


@dataclass(frozen=True)
class SpatialTiling:
    """Decode in overlapping spatial tiles (sizes in latent positions; 1 latent position = 16 pixels).

    Approximate: the result differs from an untiled decode near tile borders (see the module docstring).
    """

    tile: int = 16
    overlap: int = 4

    def __post_init__(self) -> None:
        if self.tile < 1 or not 0 <= self.overlap < self.tile:
            raise InputValueError(
                f"SpatialTiling: found tile={self.tile}, overlap={self.overlap}; expected tile >= 1 and 0 <= overlap < tile"
            )

    def spans(self, size: int) -> list[tuple[int, int]]:
        """Evenly spaced [start, end) latent ranges of width `tile` covering `size`, neighbours overlapping >= `overlap`."""
        if size <= self.tile:
            return [(0, size)]
        n = math.ceil((size - self.overlap) / (self.tile - self.overlap))
        step = (size - self.tile) / (n - 1)
        return [(round(i * step), round(i * step) + self.tile) for i in range(n)]


def blend_weights(spans: list[tuple[int, int]], scale: int) -> list[torch.Tensor]:
    """1-D blending weights, one per span (in pixels = latent * scale), summing to exactly 1 at every pixel.

    Each tile ramps linearly across the part it shares with a neighbour, so seams fade instead of cutting.
    """
    raw = []
    for i, (start, end) in enumerate(spans):
        w = torch.ones((end - start) * scale, dtype=torch.float64)
        if i > 0 and spans[i - 1][1] > start:
            n = (spans[i - 1][1] - start) * scale
            w[:n] *= (torch.arange(n, dtype=torch.float64) + 0.5) / n
        if i + 1 < len(spans) and spans[i + 1][0] < end:
            n = (end - spans[i + 1][0]) * scale
            w[-n:] *= 1 - (torch.arange(n, dtype=torch.float64) + 0.5) / n
        raw.append(w)
    total = torch.zeros(spans[-1][1] * scale, dtype=torch.float64)
    for (start, _), w in zip(spans, raw):
        total[start * scale : start * scale + len(w)] += w
    return [w / total[start * scale : start * scale + len(w)] for (start, _), w in zip(spans, raw)]


class WanVAE(nn.Module):
    """Wan2.2 VAE. State-dict keys are the reference's: `encoder.*`, `conv1.*` (encoder side), `conv2.*`, `decoder.*`.

    `parts` builds only the half that is needed ("decoder" for text/image-to-video output, "encoder" for
    conditioning images), so a decode-only pipeline never holds encoder weights.
    """

    def __init__(self, config: WanVAEConfig = WanVAEConfig(), parts: Parts = "both") -> None:
        super().__init__()
        if parts not in ("both", "encoder", "decoder"):
            raise InputValueError(f"WanVAE: parts={parts!r}; expected 'both', 'encoder' or 'decoder'")
        self.config = config
        self.parts = parts
        c = config
        if parts in ("both", "encoder"):
            self.encoder = Encoder3d(c.dim, 2 * c.z_dim, c.dim_mult, c.num_res_blocks, c.temperal_downsample)
            self.conv1 = CausalConv3d(2 * c.z_dim, 2 * c.z_dim, 1)  # -> (mu, log_var); only mu is used
        if parts in ("both", "decoder"):
            self.conv2 = CausalConv3d(c.z_dim, c.z_dim, 1)
            self.decoder = Decoder3d(c.dec_dim, c.z_dim, c.dim_mult, c.num_res_blocks, c.temperal_downsample[::-1])

    # ---- latent normalisation -------------------------------------------------------------------------------

    def _stats(self, like: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        # float32 and 1/std exactly as the reference computes its `scale = [mean, 1/std]`.
        shape = (1, self.config.z_dim, 1, 1, 1)
        mean = torch.tensor(self.config.latent_mean, dtype=torch.float32, device=like.device).view(shape)
        inv_std = 1.0 / torch.tensor(self.config.latent_std, dtype=torch.float32, device=like.device).view(shape)
        return mean, inv_std

    def normalize_latent(self, mu: torch.Tensor) -> torch.Tensor:
        """Raw VAE latent (ComfyUI core LATENT) -> normalised latent (what the DiT works in)."""
        mean, inv_std = self._stats(mu)
        return (mu.float() - mean) * inv_std

    def denormalize_latent(self, z: torch.Tensor) -> torch.Tensor:
        """Normalised latent -> raw VAE latent."""
        mean, inv_std = self._stats(z)
        return z.float() / inv_std + mean

    # ---- decoding --------------------------------------------------------------------------------------------

    def output_shape(self, latent_shape: tuple[int, ...] | torch.Size) -> tuple[int, int, int, int, int]:
        """Video shape `[B, 3, 1 + 4(T-1), 16h, 16w]` that decoding a `[B, z_dim, T, h, w]` latent gives."""
        b, _, t, h, w = latent_shape
        s = self.config.spatial_factor
        return (b, 3, self.config.video_frames(t), h * s, w * s)

    def iter_decode(self, z: torch.Tensor, *, chunk_frames: int = 1, clamp: bool = False,
                    tiling: SpatialTiling | None = None, normalized: bool = True) -> Iterator[torch.Tensor]:
        """Decode `z` `[B, z_dim, T, h, w]` and yield the video in order, `chunk_frames` latent frames at a time.

        The first chunk yields 1 + 4(n-1) frames, every later one 4n (n = its latent frames); concatenated
        along dim 2 they are the whole `[B, 3, 1 + 4(T-1), 16h, 16w]` video, in the model's dtype and device.
        Only the current chunk and a few cached frames per layer are alive at a time. Inputs are checked
        here, before the first chunk is asked for.
        """
        self._require("decoder", "decode")
        self._check_latent(z)
        if not isinstance(chunk_frames, int) or chunk_frames < 1:
            raise InputValueError(f"decode: chunk_frames={chunk_frames!r}; expected an integer >= 1")
        return self._stream(z, chunk_frames, clamp, tiling, normalized)

    @torch.no_grad()
    def _stream(self, z: torch.Tensor, chunk_frames: int, clamp: bool, tiling: SpatialTiling | None,
                normalized: bool) -> Iterator[torch.Tensor]:
        weight = self.conv2.weight
        h, w = z.shape[3:]
        s = self.config.spatial_factor
        rows = tiling.spans(h) if tiling else [(0, h)]
        cols = tiling.spans(w) if tiling else [(0, w)]
        row_w = [r.to(weight.device, weight.dtype) for r in blend_weights(rows, s)]
        col_w = [c.to(weight.device, weight.dtype) for c in blend_weights(cols, s)]
        # One causal stream per tile: each tile carries its own history from chunk to chunk.
        caches = {(i, j): StreamCache() for i in range(len(rows)) for j in range(len(cols))}
        for start in range(0, z.shape[2], chunk_frames):
            zc = z[:, :, start : start + chunk_frames]
            zc = (self.denormalize_latent(zc) if normalized else zc).to(weight.device, weight.dtype)
            if len(caches) == 1:
                video = self._decode_chunk(zc, caches[0, 0])
            else:
                video = None
                for (i, j), cache in caches.items():
                    (r0, r1), (c0, c1) = rows[i], cols[j]
                    part = self._decode_chunk(zc[..., r0:r1, c0:c1], cache)
                    if video is None:
                        video = part.new_zeros(*part.shape[:3], h * s, w * s)
                    video[..., r0 * s : r1 * s, c0 * s : c1 * s] += part * row_w[i][:, None] * col_w[j]
            yield video.clamp_(-1.0, 1.0) if clamp else video

    def _decode_chunk(self, z: torch.Tensor, cache: StreamCache) -> torch.Tensor:
        x = self.decoder(self.conv2(z), cache)
        cache.end_chunk()
        return unpatchify(x)

    def decode(self, z: torch.Tensor, *, chunk_frames: int = 1, clamp: bool = False,
               tiling: SpatialTiling | None = None, normalized: bool = True,
               out: torch.Tensor | None = None) -> torch.Tensor:
        """Decode the whole clip into `out` (allocated as float32 on z's device when not given) and return it.

        `chunk_frames=1` is the reference's schedule; any other value gives the same video (to rounding)
        with peak activation memory proportional to it. Ovi's `wrapped_decode` is `clamp=True`.
        """
        chunks = self.iter_decode(z, chunk_frames=chunk_frames, clamp=clamp, tiling=tiling, normalized=normalized)
        shape = self.output_shape(z.shape)
        if out is None:
            out = torch.empty(shape, dtype=torch.float32, device=z.device)
        elif tuple(out.shape) != shape:
            raise InputShapeError(f"decode: out has shape {tuple(out.shape)}, expected {shape} for latent {tuple(z.shape)}")
        frame = 0
        for video in chunks:
            out[:, :, frame : frame + video.shape[2]].copy_(video)
            frame += video.shape[2]
        return out

    # ---- encoding --------------------------------------------------------------------------------------------

    @torch.no_grad()
    def encode(self, video: torch.Tensor, *, normalized: bool = True) -> torch.Tensor:
        """Posterior mean of `video` `[B, 3, 1 + 4k, H, W]` in [-1, 1] -> `[B, z_dim, 1 + k, H/16, W/16]` (float32).

        Like the reference, frame 0 is encoded alone, then 4 frames at a time with the causal cache carried.
        """
        self._require("encoder", "encode")
        self._check_video(video)
        weight = self.conv1.weight
        step = self.config.temporal_factor
        cache = StreamCache()
        mus = []
        for start in [0, *range(1, video.shape[2], step)]:
            stop = 1 if start == 0 else start + step
            x = patchify(video[:, :, start:stop].to(weight.device, weight.dtype))
            h = self.encoder(x, cache)
            cache.end_chunk()
            mus.append(self.conv1(h)[:, : self.config.z_dim].float())  # conv1 is 1x1x1: per-chunk is exact
        mu = torch.cat(mus, dim=2)
        return self.normalize_latent(mu) if normalized else mu

    def encode_image(self, image: torch.Tensor, *, normalized: bool = True) -> torch.Tensor:
        """One frame `[B, 3, H, W]` or `[B, 3, 1, H, W]` in [-1, 1] -> `[B, z_dim, 1, H/16, W/16]` (the i2v first frame)."""
        if torch.is_tensor(image) and image.dim() == 4:
            image = image.unsqueeze(2)
        if torch.is_tensor(image) and image.dim() == 5 and image.shape[2] != 1:
            raise InputShapeError(f"encode_image: image {tuple(image.shape)} has {image.shape[2]} frames, expected 1")
        return self.encode(image, normalized=normalized)

    # ---- input checks ----------------------------------------------------------------------------------------

    def _require(self, part: str, action: str) -> None:
        if self.parts not in ("both", part):
            raise InputValueError(
                f"{action}: this WanVAE was built with parts={self.parts!r}; {action} needs the {part} "
                f"(load it with parts='both' or parts='{part}')"
            )

    def _check_latent(self, z: torch.Tensor) -> None:
        zd = self.config.z_dim
        expected = f"[B, {zd}, T, H/{self.config.spatial_factor}, W/{self.config.spatial_factor}]"
        if not torch.is_tensor(z):
            raise InputShapeError(f"decode: z is a {type(z).__name__}, expected a tensor {expected}")
        if z.dim() == 3:
            raise InputShapeError(
                f"decode: z has shape {tuple(z.shape)} (3 dims, like an audio latent [B, L, C]); "
                f"the video VAE expects a 5-D video latent {expected}"
            )
        if z.dim() != 5:
            raise InputShapeError(f"decode: z has shape {tuple(z.shape)} ({z.dim()} dims), expected {expected}")
        if z.shape[1] != zd:
            hint = " (16 channels is a Wan2.1 VAE latent)" if z.shape[1] == 16 else ""
            raise InputShapeError(
                f"decode: z has {z.shape[1]} latent channels{hint}, expected {zd}: "
                f"shape {tuple(z.shape)}, expected {expected}"
            )
        if z.numel() == 0:
            raise InputShapeError(f"decode: z has shape {tuple(z.shape)} with an empty dimension, expected {expected}")
        if not z.is_floating_point():
            raise InputValueError(f"decode: z has dtype {z.dtype}, expected a floating-point tensor")
        _check_finite("decode: z", z)

    def _check_video(self, video: torch.Tensor) -> None:
        s, tf = self.config.spatial_factor, self.config.temporal_factor
        expected = f"[B, 3, 1+{tf}k, H, W] with H and W multiples of {s}"
        if not torch.is_tensor(video):
            raise InputShapeError(f"encode: video is a {type(video).__name__}, expected a tensor {expected}")
        if video.dim() != 5:
            hint = " (use encode_image for one [B, 3, H, W] frame)" if video.dim() == 4 else ""
            raise InputShapeError(f"encode: video has shape {tuple(video.shape)}{hint}, expected {expected}")
        b, c, t, h, w = video.shape
        if c != 3:
            hint = " (channels-last frames [.., H, W, 3] must be permuted to channels-first)" if w == 3 else ""
            raise InputShapeError(f"encode: video has {c} channels{hint}, expected 3 (RGB): shape {tuple(video.shape)}")
        if (t - 1) % tf or h % s or w % s or min(b, t, h, w) == 0:
            raise InputShapeError(f"encode: video has shape {tuple(video.shape)}, expected {expected}")
        if not video.is_floating_point():
            raise InputValueError(f"encode: video has dtype {video.dtype}, expected floating point in [-1, 1]")
        _check_finite("encode: video", video)
        lo, hi = float(video.min()), float(video.max())
        # Resampling filters overshoot a little; 0..255 or badly scaled input is far outside.
        if lo < -1.5 or hi > 1.5:
            raise InputValueError(
                f"encode: video values span [{lo:.3g}, {hi:.3g}], expected [-1, 1] (e.g. 2*x-1 for 0..1 images)"
            )


def _check_finite(what: str, x: torch.Tensor) -> None:
    finite = torch.isfinite(x)
    if not bool(finite.all()):
        nan = int(torch.isnan(x).sum())
        inf = int((~finite).sum()) - nan
        raise InputValueError(
            f"{what} contains {nan} NaN and {inf} inf values out of {x.numel()}; expected only finite values"
        )
