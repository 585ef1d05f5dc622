"""MMAudio's 16 kHz mel VAE: log-mel `[B, 80, 2L]` <-> latent `[B, 20, L]`, plus the waveform <-> latent glue.

The network is EDM2-style and magnitude-preserving: every convolution is an `MPConv1d` (no bias) whose
weight rows are normalised to unit length once, when the checkpoint is loaded (`normalize_mpconv_weight`);
activations are pixel-normalised over channels, SiLU is rescaled, and residual sums are weighted so the
activation magnitude stays ~1. Channel widths: hidden_dim·(1, 2, 4) with the time axis halved once.
Module names follow the published checkpoint keys (`decoder.up.1.upsample.conv.weight`, ...).

The DiT works on time-major latents `[B, L, 20]`; `decode_audio_latent` and `encode_audio` convert
between that layout, the VAE's `[B, 20, L]` and 16 kHz waveforms.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..errors import InputShapeError, InputValueError
from .bigvgan import BigVGANVocoder
from .chunking import Edges, chunked_along_time
from .finishing import resample

# Per-band mean and std of MMAudio's 16 kHz log10-mel training data; the VAE works on standardised mels.
# Checkpoints carry the same values as the `data_mean`/`data_std` buffers; these are the fallback.
MEL_MEAN_80 = (
    -1.6058, -1.3676, -1.2520, -1.2453, -1.2078, -1.2224, -1.2419, -1.2439, -1.2922, -1.2927,
    -1.3170, -1.3543, -1.3401, -1.3836, -1.3907, -1.3912, -1.4313, -1.4152, -1.4527, -1.4728,
    -1.4568, -1.5101, -1.5051, -1.5172, -1.5623, -1.5373, -1.5746, -1.5687, -1.6032, -1.6131,
    -1.6081, -1.6331, -1.6489, -1.6489, -1.6700, -1.6738, -1.6953, -1.6969, -1.7048, -1.7280,
    -1.7361, -1.7495, -1.7658, -1.7814, -1.7889, -1.8064, -1.8221, -1.8377, -1.8417, -1.8643,
    -1.8857, -1.8929, -1.9173, -1.9379, -1.9531, -1.9673, -1.9824, -2.0042, -2.0215, -2.0436,
    -2.0766, -2.1064, -2.1418, -2.1855, -2.2319, -2.2767, -2.3161, -2.3572, -2.3954, -2.4282,
    -2.4659, -2.5072, -2.5552, -2.6074, -2.6584, -2.7107, -2.7634, -2.8266, -2.8981, -2.9673,
)
MEL_STD_80 = (
    1.0291, 1.0411, 1.0043, 0.9820, 0.9677, 0.9543, 0.9450, 0.9392, 0.9343, 0.9297,
    0.9276, 0.9263, 0.9242, 0.9254, 0.9232, 0.9281, 0.9263, 0.9315, 0.9274, 0.9247,
    0.9277, 0.9199, 0.9188, 0.9194, 0.9160, 0.9161, 0.9146, 0.9161, 0.9100, 0.9095,
    0.9145, 0.9076, 0.9066, 0.9095, 0.9032, 0.9043, 0.9038, 0.9011, 0.9019, 0.9010,
    0.8984, 0.8983, 0.8986, 0.8961, 0.8962, 0.8978, 0.8962, 0.8973, 0.8993, 0.8976,
    0.8995, 0.9016, 0.8982, 0.8972, 0.8974, 0.8949, 0.8940, 0.8947, 0.8936, 0.8939,
    0.8951, 0.8956, 0.9017, 0.9167, 0.9436, 0.9690, 1.0003, 1.0225, 1.0381, 1.0491,
    1.0545, 1.0604, 1.0761, 1.0929, 1.1089, 1.1196, 1.1176, 1.1156, 1.1117, 1.1070,
)

# Fixed by MMAudio's VAE class (only the three widths below are constructor arguments).
CH_MULT = (1, 2, 4)
NUM_RES_BLOCKS = 2
CLIP_ACT = 256.0  # activations are clamped to ±256 after every block (guards bf16/fp16 overflow)
_EPS = 1e-4


@dataclass(frozen=True)
class MMAudioVAEConfig:
    """Constructor arguments of MMAudio's VAE. Defaults: the real 16 kHz model (`VAE_16k`)."""

    data_dim: int = 80  # mel bands
    embed_dim: int = 20  # latent channels
    hidden_dim: int = 384  # base width; levels use hidden_dim·(1, 2, 4)

    @classmethod
    def from_dict(cls, d: dict) -> "MMAudioVAEConfig":
        known = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: int(v) for k, v in d.items() if k in known})

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


@dataclass(frozen=True)
class MelConfig:
    """Log-mel front end MMAudio's 16 kHz VAE was trained on (and BigVGAN's input domain)."""

    sample_rate: int = 16_000
    n_fft: int = 1024
    hop_length: int = 256
    win_length: int = 1024
    n_mels: int = 80
    fmin: float = 0.0
    fmax: float = 8_000.0


# ---------------------------------------------------------------------------------------------------
# Magnitude-preserving primitives


def _pixel_norm(x: torch.Tensor, dim: int) -> torch.Tensor:
    """x / (eps + rms over `dim`): unit mean square along `dim` (EDM2's normalize)."""
    norm = torch.linalg.vector_norm(x, dim=dim, keepdim=True, dtype=torch.float32)
    norm = _EPS + norm / math.sqrt(x.shape[dim])
    return x / norm.to(x.dtype)


def _mp_silu(x: torch.Tensor) -> torch.Tensor:
    return F.silu(x) / 0.596  # 0.596 = rms of silu(N(0,1)), restores unit magnitude


def _mp_sum(a: torch.Tensor, b: torch.Tensor, t: float) -> torch.Tensor:
    return a.lerp(b, t) / math.sqrt((1 - t) ** 2 + t ** 2)


def normalize_mpconv_weight(w: torch.Tensor) -> torch.Tensor:
    """The one-time weight re-normalisation: w_o <- w_o / (1e-4·sqrt(fan_in) + ‖w_o‖) per output row o.

    Done in float32 and returned in `w`'s dtype. Checkpoints store the free weights; inference needs these.
    """
    w32 = w.to(torch.float32)
    fan_in = w32[0].numel()
    norm = torch.linalg.vector_norm(w32.flatten(1), dim=1).view(-1, *([1] * (w.ndim - 1)))
    w32 = w32 / (_EPS + norm / math.sqrt(fan_in))  # rows of rms 1 ...
    return (w32 / math.sqrt(fan_in)).to(w.dtype)  # ... then of norm 1


class MPConv1d(nn.Module):
    """Bias-free conv1d with 'same' padding; its weight must already be normalised (see above)."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int):
        super().__init__()
        # Zeros until loaded (a decoder that was never loaded yields the mean mel, not noise).
        self.weight = nn.Parameter(torch.zeros(out_channels, in_channels, kernel_size))

    def forward(self, x: torch.Tensor, gain: torch.Tensor | None = None) -> torch.Tensor:
        w = self.weight if gain is None else self.weight * gain
        return F.conv1d(x, w, padding=w.shape[-1] // 2)


class ResBlock(nn.Module):
    def __init__(self, in_dim: int, out_dim: int):
        super().__init__()
        self.conv1 = MPConv1d(in_dim, out_dim, 3)
        self.conv2 = MPConv1d(out_dim, out_dim, 3)
        if in_dim != out_dim:
            self.nin_shortcut = MPConv1d(in_dim, out_dim, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = _pixel_norm(x, dim=1)
        h = self.conv2(_mp_silu(self.conv1(_mp_silu(x))))
        if hasattr(self, "nin_shortcut"):
            x = self.nin_shortcut(x)
        return _mp_sum(x, h, 0.3)


class AttnBlock(nn.Module):
    """Single-head self-attention over time. Plain SDPA: head width is 4·hidden_dim (1536 real), beyond
    what the fused backends of models/attention.py accept, and the sequence is short."""

    def __init__(self, channels: int):
        super().__init__()
        self.qkv = MPConv1d(channels, 3 * channels, 1)
        self.proj_out = MPConv1d(channels, channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, length = x.shape
        # qkv channels are interleaved: channel 3·i + {0, 1, 2} is (q, k, v) of feature i.
        qkv = self.qkv(x).reshape(b, c, 3, length)
        q, k, v = _pixel_norm(qkv, dim=1).unbind(2)
        h = F.scaled_dot_product_attention(
            q.transpose(1, 2).unsqueeze(1), k.transpose(1, 2).unsqueeze(1), v.transpose(1, 2).unsqueeze(1))
        h = self.proj_out(h.squeeze(1).transpose(1, 2))
        return _mp_sum(x, h, 0.3)


class Upsample(nn.Module):
    def __init__(self, channels: int):
        super().__init__()
        self.conv = MPConv1d(channels, channels, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(F.interpolate(x, scale_factor=2.0, mode="nearest-exact"))


class Downsample(nn.Module):
    def __init__(self, channels: int):
        super().__init__()
        self.conv1 = MPConv1d(channels, channels, 1)
        self.conv2 = MPConv1d(channels, channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv2(F.avg_pool1d(self.conv1(x), kernel_size=2, stride=2))


class _Mid(nn.Module):
    def __init__(self, channels: int):
        super().__init__()
        self.block_1 = ResBlock(channels, channels)
        self.attn_1 = AttnBlock(channels)
        self.block_2 = ResBlock(channels, channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.block_2(self.attn_1(self.block_1(x))).clamp(-CLIP_ACT, CLIP_ACT)


class _Level(nn.Module):
    """One resolution level: `block` res blocks and an optional resampler (attribute names = checkpoint keys)."""

    def __init__(self, blocks: list[ResBlock]):
        super().__init__()
        self.block = nn.ModuleList(blocks)


class Encoder(nn.Module):
    """Standardised mel `[B, data_dim, T]` -> moments `[B, 2·embed_dim, T/2]` (mean, then log-variance)."""

    def __init__(self, cfg: MMAudioVAEConfig):
        super().__init__()
        dim = cfg.hidden_dim
        self.conv_in = MPConv1d(cfg.data_dim, dim, 3)
        self.down = nn.ModuleList()
        width = dim
        for level, mult in enumerate(CH_MULT):
            blocks = []
            for _ in range(NUM_RES_BLOCKS):
                blocks.append(ResBlock(width, dim * mult))
                width = dim * mult
            lvl = _Level(blocks)
            if level == 0:
                lvl.downsample = Downsample(width)
            self.down.append(lvl)
        self.mid = _Mid(width)
        self.conv_out = MPConv1d(width, 2 * cfg.embed_dim, 3)
        self.learnable_gain = nn.Parameter(torch.zeros([]))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.conv_in(x)
        for lvl in self.down:
            for block in lvl.block:
                h = block(h).clamp(-CLIP_ACT, CLIP_ACT)
            if hasattr(lvl, "downsample"):
                h = lvl.downsample(h)
        h = self.mid(h)
        return self.conv_out(_mp_silu(h), gain=self.learnable_gain + 1)


class Decoder(nn.Module):
    """Latent `[B, embed_dim, L]` -> standardised mel `[B, data_dim, 2L]`."""

    def __init__(self, cfg: MMAudioVAEConfig):
        super().__init__()
        dim = cfg.hidden_dim
        width = dim * CH_MULT[-1]
        self.conv_in = MPConv1d(cfg.embed_dim, width, 3)
        self.mid = _Mid(width)
        levels: list[_Level] = []
        for level in reversed(range(len(CH_MULT))):
            blocks = []
            for _ in range(NUM_RES_BLOCKS + 1):
                blocks.append(ResBlock(width, dim * CH_MULT[level]))
                width = dim * CH_MULT[level]
            lvl = _Level(blocks)
            if level == 1:  # mirror of the encoder's downsampling after level 0
                lvl.upsample = Upsample(width)
            levels.insert(0, lvl)
        self.up = nn.ModuleList(levels)  # indexed by level, run from the deepest
        self.conv_out = MPConv1d(width, cfg.data_dim, 3)
        self.learnable_gain = nn.Parameter(torch.zeros([]))

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.local_part(self.global_part(z))

    def global_part(self, z: torch.Tensor) -> torch.Tensor:
        """Up to the middle attention, which looks at the whole clip: run at the latent rate, on all of it."""
        return self.mid.attn_1(self.mid.block_1(self.conv_in(z)))

    def local_part(self, h: torch.Tensor) -> torch.Tensor:
        """Everything after the attention: convolutions only, so it can run in chunks (`time_context`)."""
        h = self.mid.block_2(h).clamp(-CLIP_ACT, CLIP_ACT)
        for lvl in reversed(self.up):
            for block in lvl.block:
                h = block(h).clamp(-CLIP_ACT, CLIP_ACT)
            if hasattr(lvl, "upsample"):
                h = lvl.upsample(h)
        return self.conv_out(_mp_silu(h), gain=self.learnable_gain + 1)

    @property
    def upsampling(self) -> int:
        """Mel frames per latent frame."""
        return 2 ** sum(hasattr(lvl, "upsample") for lvl in self.up)

    def time_context(self) -> tuple[int, int]:
        """Latent frames of context each side that make a chunk of `local_part` exact (its receptive field)."""
        def conv(e: Edges, c: MPConv1d) -> Edges:
            return e.conv(c.weight.shape[-1], 1, c.weight.shape[-1] // 2)

        def res(e: Edges, block: ResBlock) -> Edges:
            return conv(conv(e, block.conv1), block.conv2)  # the 1x1 shortcut adds nothing

        e = res(Edges(), self.mid.block_2)
        for lvl in reversed(self.up):
            for block in lvl.block:
                e = res(e, block)
            if hasattr(lvl, "upsample"):
                e = conv(e.repeat(2), lvl.upsample.conv)
        return conv(e, self.conv_out).in_input_frames(self.upsampling)


class MMAudioVAE(nn.Module):
    """`decode`: latent `[B, embed_dim, L]` -> log10-mel `[B, data_dim, 2L]`; `encode`: the reverse (posterior mean).

    Weights must be loaded in their effective (normalised) form, see model_loader.audio_files.
    `with_encoder=False` builds the decoder only (less memory; enough for text-to-AV, which never encodes).
    """

    def __init__(self, config: MMAudioVAEConfig | None = None, with_encoder: bool = True):
        super().__init__()
        cfg = config or MMAudioVAEConfig()
        self.config = cfg
        if cfg.data_dim == len(MEL_MEAN_80):
            mean, std = torch.tensor(MEL_MEAN_80), torch.tensor(MEL_STD_80)
        else:
            # No published statistics for this width: NaN until a checkpoint supplies them, so a
            # forgotten load shows up as NaN output rather than plausible-looking audio.
            mean = std = torch.full((cfg.data_dim,), float("nan"))
        self.register_buffer("data_mean", mean.view(1, -1, 1).clone())
        self.register_buffer("data_std", std.view(1, -1, 1).clone())
        self.encoder = Encoder(cfg) if with_encoder else None
        self.decoder = Decoder(cfg)

    @property
    def has_encoder(self) -> bool:
        return self.encoder is not None

    def decode(self, z: torch.Tensor, chunk_latents: int | None = None) -> torch.Tensor:
        """`chunk_latents`: run the convolutions after the middle attention that many latent frames at a time
        (with their exact receptive field as overlap); None decodes the whole clip in one pass."""
        _check_vae_latent(z, self.config.embed_dim)
        z = z.to(self.data_std.dtype)
        if chunk_latents is None:
            mel = self.decoder(z)
        else:
            dec = self.decoder
            mel = chunked_along_time(dec.local_part, dec.global_part(z), chunk_latents, dec.time_context(),
                                     dec.upsampling)
        return mel * self.data_std + self.data_mean

    def encode(self, mel: torch.Tensor) -> torch.Tensor:
        """Log10-mel `[B, data_dim, T]` (T even) -> latent mean `[B, embed_dim, T/2]`."""
        if self.encoder is None:
            raise InputValueError("MMAudioVAE.encode: this VAE was loaded without its encoder (decoder-only file "
                                  "or with_encoder=False); load a checkpoint that has the encoder.* weights")
        d = self.config.data_dim
        if mel.ndim != 3 or mel.shape[1] != d or mel.shape[2] < 2 or mel.shape[2] % 2:
            raise InputShapeError(
                f"MMAudioVAE.encode: mel of shape {tuple(mel.shape)}, expected [B, {d}, T] with T even and >= 2")
        _check_finite("MMAudioVAE.encode: mel", mel)
        x = (mel.to(self.data_std.dtype) - self.data_mean) / self.data_std
        moments = self.encoder(x)
        return moments[:, : self.config.embed_dim]


def _check_finite(what: str, x: torch.Tensor) -> None:
    bad = int((~torch.isfinite(x)).sum())
    if bad:
        raise InputValueError(f"{what} has {bad} non-finite values (NaN/inf) of {x.numel()}; expected all finite")


def _check_vae_latent(z: torch.Tensor, channels: int) -> None:
    if z.ndim == 5:
        raise InputShapeError(
            f"audio VAE decode: got a 5-D tensor {tuple(z.shape)}, which looks like a video latent [B, C, F, H, W]; "
            f"expected an audio latent [B, {channels}, L]")
    if z.ndim != 3 or z.shape[1] != channels:
        hint = ""
        if z.ndim == 3 and z.shape[2] == channels:
            hint = " (this looks time-major [B, L, C] as the DiT emits it; use decode_audio_latent)"
        raise InputShapeError(f"audio VAE decode: latent of shape {tuple(z.shape)}, expected [B, {channels}, L]{hint}")
    if z.shape[2] < 1:
        raise InputShapeError(f"audio VAE decode: latent of shape {tuple(z.shape)} has no time steps; expected L >= 1")
    _check_finite("audio VAE decode: latent", z)


# ---------------------------------------------------------------------------------------------------
# Log-mel front end (what the encoder expects)


def slaney_mel_filterbank(sample_rate: int, n_fft: int, n_mels: int, fmin: float, fmax: float) -> torch.Tensor:
    """Triangular mel filters `[n_mels, n_fft//2 + 1]` on the Slaney mel scale with Slaney area normalisation
    (the librosa default that MMAudio and BigVGAN use)."""
    f_sp = 200.0 / 3  # linear part: 3 mels per 200 Hz
    min_log_hz, min_log_mel, logstep = 1000.0, 1000.0 / f_sp, math.log(6.4) / 27.0

    def hz_to_mel(f: np.ndarray) -> np.ndarray:
        f = np.asarray(f, dtype=np.float64)
        return np.where(f >= min_log_hz, min_log_mel + np.log(np.maximum(f, min_log_hz) / min_log_hz) / logstep,
                        f / f_sp)

    def mel_to_hz(m: np.ndarray) -> np.ndarray:
        return np.where(m >= min_log_mel, min_log_hz * np.exp(logstep * (m - min_log_mel)), f_sp * m)

    fft_freqs = np.fft.rfftfreq(n_fft, d=1.0 / sample_rate)
    edges = mel_to_hz(np.linspace(hz_to_mel(fmin), hz_to_mel(fmax), n_mels + 2))
    widths = np.diff(edges)
    dist = edges[:, None] - fft_freqs[None, :]
    rising = -dist[:-2] / widths[:-1, None]
    falling = dist[2:] / widths[1:, None]
    weights = np.maximum(0.0, np.minimum(rising, falling))
    weights *= (2.0 / (edges[2:] - edges[:-2]))[:, None]  # equal area per filter
    return torch.from_numpy(weights.astype(np.float32))


class MelExtractor(nn.Module):
    """16 kHz waveform `[B, S]` in [-1, 1] -> log10-mel `[B, 80, S // 256]` exactly as MMAudio computes it:
    reflect padding of (n_fft - hop)/2 per side, no centring, periodic Hann, magnitude (with 1e-9 inside the
    root), Slaney mel, log10 of max(·, 1e-5)."""

    def __init__(self, config: MelConfig | None = None):
        super().__init__()
        cfg = config or MelConfig()
        self.config = cfg
        basis = slaney_mel_filterbank(cfg.sample_rate, cfg.n_fft, cfg.n_mels, cfg.fmin, cfg.fmax)
        self.register_buffer("mel_basis", basis, persistent=False)
        self.register_buffer("window", torch.hann_window(cfg.win_length), persistent=False)

    def forward(self, waveform: torch.Tensor) -> torch.Tensor:
        cfg = self.config
        pad = (cfg.n_fft - cfg.hop_length) // 2
        if waveform.ndim != 2 or waveform.shape[1] <= pad:
            raise InputShapeError(
                f"MelExtractor: waveform of shape {tuple(waveform.shape)}, expected [B, S] with S > {pad}")
        x = waveform.to(torch.float32).clamp(-1.0, 1.0)
        x = F.pad(x.unsqueeze(1), (pad, pad), mode="reflect").squeeze(1)
        spec = torch.stft(x, cfg.n_fft, hop_length=cfg.hop_length, win_length=cfg.win_length,
                          window=self.window, center=False, normalized=False, onesided=True, return_complex=True)
        mag = torch.sqrt(spec.real.pow(2) + spec.imag.pow(2) + 1e-9)
        return torch.log10(torch.matmul(self.mel_basis, mag).clamp(min=1e-5))


# ---------------------------------------------------------------------------------------------------
# DiT latent <-> waveform


# Latent frames per decoding chunk: 128 latents = 256 mel frames = 4.1 s at 16 kHz. The vocoder's context
# is 38 + 40 mel frames at the real size (the VAE's 18 + 18 latents), so overlap costs ~1.3x one pass.
AUDIO_DECODE_CHUNK_LATENTS = 128


def decode_audio_latent(vae: MMAudioVAE, vocoder: BigVGANVocoder, latent: torch.Tensor,
                        chunk_latents: int | None = AUDIO_DECODE_CHUNK_LATENTS) -> torch.Tensor:
    """DiT audio latent `[B, L, C]` (time-major, C = vae embed_dim, 20 for Ovi) -> 16 kHz waveform `[B, 1, S]`.

    S = 2·L·hop (512·L for the real models). The latent is moved to the VAE's device and dtype.
    Decoded `chunk_latents` latent frames at a time (None: the whole clip in one pass): the same waveform
    up to float rounding, with peak memory set by the chunk rather than the clip length. Only the VAE's
    middle attention sees the whole clip, at the latent rate (1/512 of the sample rate).
    """
    channels = vae.config.embed_dim
    if latent.ndim == 5:
        raise InputShapeError(
            f"decode_audio_latent: got a 5-D tensor {tuple(latent.shape)}, which looks like a video latent "
            f"[B, C, F, H, W]; expected an audio latent [B, L, {channels}]")
    if latent.ndim != 3 or latent.shape[2] != channels:
        hint = ""
        if latent.ndim == 3 and latent.shape[1] == channels:
            hint = " (this looks channels-first [B, C, L]; pass it to MMAudioVAE.decode instead)"
        raise InputShapeError(
            f"decode_audio_latent: latent of shape {tuple(latent.shape)}, expected [B, L, {channels}]{hint}")
    if vae.config.data_dim != vocoder.config.num_mels:
        raise InputShapeError(f"decode_audio_latent: the VAE makes {vae.config.data_dim} mel bands but the "
                              f"vocoder expects {vocoder.config.num_mels}")
    _check_finite("decode_audio_latent: latent", latent)
    ref = vae.data_std
    with torch.no_grad():
        mel = vae.decode(latent.to(device=ref.device, dtype=ref.dtype).transpose(1, 2), chunk_latents=chunk_latents)
        vocoder_param = next(vocoder.parameters())
        mel = mel.to(device=vocoder_param.device, dtype=vocoder_param.dtype)
        if chunk_latents is None:
            return vocoder(mel)
        return vocoder.chunked(mel, chunk_latents * vae.decoder.upsampling)


def encode_audio(vae: MMAudioVAE, waveform: torch.Tensor, sample_rate: int = 16_000,
                 mel: MelExtractor | None = None) -> torch.Tensor:
    """Waveform `[B, C, S]` or `[B, S]` in [-1, 1] -> DiT audio latent `[B, L, embed_dim]` (posterior mean).

    Several channels are averaged to mono; another sample rate is first resampled to 16 kHz. The waveform
    is zero-padded at the end to a whole number of latents (2·hop = 512 samples each), so L = ceil(S16k/512).
    """
    if waveform.ndim == 3:
        waveform = waveform.mean(dim=1)
    if waveform.ndim != 2 or waveform.shape[1] < 1:
        raise InputShapeError(f"encode_audio: waveform of shape {tuple(waveform.shape)}, expected [B, C, S] or [B, S]")
    _check_finite("encode_audio: waveform", waveform)
    extractor = mel or MelExtractor()
    cfg = extractor.config
    if sample_rate != cfg.sample_rate:
        waveform = resample(waveform.unsqueeze(1), sample_rate, cfg.sample_rate).squeeze(1)
    samples_per_latent = 2 * cfg.hop_length
    length = -(-waveform.shape[1] // samples_per_latent) * samples_per_latent
    waveform = F.pad(waveform.to(torch.float32), (0, length - waveform.shape[1]))
    ref = vae.data_std
    with torch.no_grad():
        spec = extractor.to(ref.device)(waveform.to(ref.device))
        return vae.encode(spec.to(ref.dtype)).transpose(1, 2)
