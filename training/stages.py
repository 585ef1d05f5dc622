"""The training stages of the default model. Each builds its model from `default_configs()`, defines one
training step as a function of the step number, and hands both to `loop.train`.

Sizes come from `pipeline.default_model.default_configs()`; a `scale` dict may shrink batch sizes and
crop lengths (the unit test runs every stage for a few steps at toy size).
"""

from __future__ import annotations

import copy
import dataclasses
import json
import logging
import os
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch.nn.utils import parametrize

from ..audio.bigvgan import BigVGANConfig, BigVGANVocoder
from tqdm import tqdm

from ..audio.mmaudio_vae import MelExtractor, MMAudioVAE, MMAudioVAEConfig, encode_audio, normalize_mpconv_weight
from ..model_loader.audio_files import apply_vae_weights
from ..models.config import FusionConfig
from ..models.fusion_dit import FusionDiT
from ..models.toy_text_encoder import ToyTextEncoder, ToyTextEncoderConfig
from ..models.wan_vae import WanVAE, WanVAEConfig
from ..models.wan_vae_blocks import StreamCache, patchify, unpatchify
from ..pipeline.default_model import BUNDLE_DIR, BUNDLE_NAME, DefaultParts, default_configs, save_bundle
from ..cameo.encode import encode_reference_media
from ..toyworld import (WorldConfig, cameo_recording_spec, render_clip, sample_spec, subject_caption,
                        subject_recording_spec)
from ..toyworld.scenes import SceneSpec
from .data import RECORDING_WORLD, UNCONDITIONAL_PROMPTS, frames_to_tensor, render_batch, step_generator, step_rng, training_caption
from .loop import LoopConfig, checkpoint_path, load_checkpoint_weights, load_curve, train

WORLD = WorldConfig()
MEL = MelExtractor()
SAMPLES_PER_LATENT = 2 * MEL.config.hop_length
# The adopted bundle's DiT + text encoder in a workdir (adopt_bundle): where a dit fine-tune starts, and what a
# bundle's weights can be averaged with (averaged_with_adopted).
ADOPTED_DIT = "init-dit.pt"
# The per-channel video latent statistics a dit run normalised its training set with (run_dit writes them,
# run_bundle records them in the bundle's VAE config), so a bundle can be made without the latents.
LATENT_STATS = "dit-latent-stats.json"


# ------------------------------------------------------------------------------------------- video VAE

def foreground_weight(x: torch.Tensor, boost: float = 9.0) -> torch.Tensor:
    """Per-pixel loss weight `[B, 1, T, H, W]`: 1 + boost near the subject (pixels far from the clip's median
    colour, grown by 4 px so the edges and a mouth inside a head count too). The subject covers ~3% of a
    frame; unweighted, a tiny VAE learns the background first and the subject last."""
    median = x.flatten(2).median(dim=2).values[:, :, None, None, None]
    far = ((x - median).square().sum(1, keepdim=True) > 0.3**2).float()
    b, _, t, h, w = far.shape
    grown = F.max_pool2d(far.transpose(1, 2).reshape(b * t, 1, h, w), 9, stride=1, padding=4)
    return 1 + boost * grown.view(b, t, 1, h, w).transpose(1, 2)


def video_vae_forward(vae: WanVAE, x: torch.Tensor, gen: torch.Generator | None):
    """Encode a whole clip in one causal pass (the same result as WanVAE.encode's chunking), sample the
    posterior, decode. Returns (reconstruction, mu, logvar). The posterior noise is drawn on the CPU from
    `gen`, so a run gives the same batches on any device."""
    moments = vae.conv1(vae.encoder(patchify(x), StreamCache()))
    mu, logvar = moments.chunk(2, dim=1)
    logvar = logvar.clamp(-20.0, 10.0)
    z = mu if gen is None else mu + torch.randn(mu.shape, generator=gen).to(mu.device) * (0.5 * logvar).exp()
    return unpatchify(vae.decoder(vae.conv2(z), StreamCache())), mu, logvar


def kl_term(mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    return 0.5 * (mu.square() + logvar.exp() - 1 - logvar).mean()


POSTERIOR_LOGVAR_INIT = -6.0


@dataclasses.dataclass(frozen=True)
class VideoCrops:
    """The video VAE's batch of step k: `batch` random `crop`-frame stretches of fresh clips `[B, 3, T, H, W]`."""

    seed: int
    batch: int
    crop: int

    def __call__(self, k: int) -> torch.Tensor:
        rng = step_rng(self.seed, k)
        clips = render_batch(rng, self.batch, WORLD)
        starts = rng.integers(0, WORLD.num_frames - self.crop + 1, self.batch)
        return torch.stack([frames_to_tensor(c.frames[s:s + self.crop]) for c, s in zip(clips, starts)])


# Whole clips, not shorter crops: a VAE trained on 9-frame crops (3 latent frames) drew later frames of a
# 25-frame clip as smeared colour, since its causal receptive field spans more than 3 latent frames and it had
# never seen it filled. Inference always runs whole clips, so training does too.
VIDEO_VAE_CROP = WORLD.num_frames


def run_video_vae(workdir: Path, steps: int | None, minutes: float | None, resume: bool, seed: int = 1,
                  batch: int = 3, crop: int = VIDEO_VAE_CROP, kl_weight: float = 1e-3, progress: bool = True,
                  stop_at: int | None = None, decoder_only: bool = False, device: str = "cpu", workers: int = 0,
                  lr: float | None = None):
    """Train the video VAE; decoder_only: fine-tune the decoder of the trained VAE with the encoder frozen, so
    the latent space (and every latent already encoded for the DiT) stays exactly as it is. A fresh run starts
    from `init-video_vae.pt` in the workdir when there is one (see adopt_bundle)."""
    torch.manual_seed(seed)
    vae = WanVAE(WanVAEConfig.from_dict(default_configs()["video_vae"]))
    with torch.no_grad():  # posterior std 0.05 at first: at std 1 the decoder sees mostly noise for hundreds of steps
        vae.conv1.bias[vae.config.z_dim:] = POSTERIOR_LOGVAR_INIT
    if not decoder_only and (Path(workdir) / "init-video_vae.pt").is_file():
        vae.load_state_dict(torch.load(Path(workdir) / "init-video_vae.pt", weights_only=True))
    if decoder_only:
        vae.load_state_dict(load_checkpoint_weights(workdir, "video_vae"))
        vae.encoder.requires_grad_(False)
        vae.conv1.requires_grad_(False)

    def step(k: int, x: torch.Tensor) -> dict:
        x = x.to(device, non_blocking=True)
        y, mu, logvar = video_vae_forward(vae, x, step_generator(seed, k))
        w = foreground_weight(x)
        err = y - x
        rec = (w * (err.abs() + err.square())).mean() / w.mean()
        kl = kl_term(mu, logvar)
        return {"loss": rec + kl_weight * kl, "rec": rec.detach(), "kl": kl.detach()}

    name = "video_decoder" if decoder_only else "video_vae"
    lr = lr if lr is not None else 1e-3 if decoder_only else 2e-3
    cfg = LoopConfig(name, steps=steps, lr=lr, minutes=minutes, warmup=50, seed=seed,
                     stop_at=stop_at, device=device, workers=workers)
    return train(cfg, vae, step, workdir, resume, progress, batch_fn=VideoCrops(seed, batch, crop))


# ------------------------------------------------------------------------------------------- audio VAE

class _UnitRows(torch.nn.Module):
    """MMAudio's weight normalisation as a parametrisation: the free weight trains, the layer sees rows of
    unit norm (the 'effective' form the bundle stores and the inference code expects)."""

    def forward(self, w: torch.Tensor) -> torch.Tensor:
        return normalize_mpconv_weight(w)


def trainable_audio_vae(config: MMAudioVAEConfig, gen: torch.Generator) -> MMAudioVAE:
    vae = MMAudioVAE(config)
    for name, module in vae.named_modules():
        if hasattr(module, "weight") and isinstance(module.weight, torch.nn.Parameter) and module.weight.ndim == 3:
            with torch.no_grad():
                module.weight.copy_(torch.randn(module.weight.shape, generator=gen))
            parametrize.register_parametrization(module, "weight", _UnitRows())
    return vae


def effective_audio_vae_state(vae: MMAudioVAE) -> dict[str, torch.Tensor]:
    """State dict of a parametrised VAE with every conv weight in its normalised (effective) form."""
    out = {}
    for key, value in vae.state_dict().items():
        if key.endswith(".parametrizations.weight.original"):
            out[key.replace(".parametrizations.weight.original", ".weight")] = normalize_mpconv_weight(value)
        else:
            out[key] = value
    return out


def clip_audio(clips, n_samples: int | None = None) -> torch.Tensor:
    """Waveforms `[B, S]` zero-padded to a whole number of audio latents (as encode_audio pads)."""
    wav = torch.from_numpy(np.stack([c.audio for c in clips]))
    n = n_samples or -(-wav.shape[1] // SAMPLES_PER_LATENT) * SAMPLES_PER_LATENT
    return F.pad(wav, (0, n - wav.shape[1]))


def mel_statistics(seed: int, n_clips: int = 256) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-band mean and std of toy-world log-mels: the VAE's data_mean / data_std."""
    clips = render_batch(step_rng(seed, 0, 7), n_clips, WORLD)
    with torch.no_grad():
        mel = MEL(clip_audio(clips))
    return mel.mean(dim=(0, 2)), mel.std(dim=(0, 2)).clamp(min=0.05)


@dataclasses.dataclass(frozen=True, eq=False)
class StandardisedMels:
    """The audio VAE's batch of step k: log-mels of fresh clips, standardised per band `[B, n_mels, frames]`."""

    seed: int
    batch: int
    mean: torch.Tensor  # [1, n_mels, 1]
    std: torch.Tensor

    def __call__(self, k: int) -> torch.Tensor:
        clips = render_batch(step_rng(self.seed, k), self.batch, WORLD)
        with torch.no_grad():
            return (MEL(clip_audio(clips)) - self.mean) / self.std


def run_audio_vae(workdir: Path, steps: int | None, minutes: float | None, resume: bool, seed: int = 2,
                  batch: int = 16, kl_weight: float = 1e-2, progress: bool = True, stats_clips: int = 256,
                  stop_at: int | None = None, device: str = "cpu", workers: int = 0, lr: float = 3e-3):
    gen = torch.Generator().manual_seed(seed)
    vae = trainable_audio_vae(MMAudioVAEConfig.from_dict(default_configs()["audio_vae"]), gen)
    mean, std = mel_statistics(seed, stats_clips)
    vae.data_mean.copy_(mean.view(1, -1, 1))
    vae.data_std.copy_(std.view(1, -1, 1))
    batches = StandardisedMels(seed, batch, vae.data_mean.clone(), vae.data_std.clone())

    def step(k: int, x: torch.Tensor) -> dict:
        x = x.to(device, non_blocking=True)
        moments = vae.encoder(x)
        mu, logvar = moments.chunk(2, dim=1)
        # MMAudio's conv_out has no bias to start the posterior narrow (see POSTERIOR_LOGVAR_INIT): shift it here.
        logvar = (logvar + POSTERIOR_LOGVAR_INIT).clamp(-20.0, 10.0)
        noise = torch.randn(mu.shape, generator=step_generator(seed, k)).to(device)
        err = vae.decoder(mu + noise * (0.5 * logvar).exp()) - x
        rec = err.abs().mean() + err.square().mean()
        kl = kl_term(mu, logvar)
        return {"loss": rec + kl_weight * kl, "rec": rec.detach(), "kl": kl.detach()}

    cfg = LoopConfig("audio_vae", steps=steps, lr=lr, minutes=minutes, warmup=50, seed=seed, stop_at=stop_at,
                     device=device, workers=workers)
    return train(cfg, vae, step, workdir, resume, progress, batch_fn=batches)


# ------------------------------------------------------------------------------------------- vocoder

STFT_RESOLUTIONS = ((256, 64), (512, 128), (1024, 256), (2048, 512))  # (n_fft, hop)
LOG_EPS = 1e-2  # magnitude units: below the sounds, above the point where exact silence would outweigh them


def _magnitude(x: torch.Tensor, n_fft: int, hop: int) -> torch.Tensor:
    spec = torch.stft(x, n_fft, hop, window=torch.hann_window(n_fft, device=x.device), return_complex=True)
    return (spec.real.square() + spec.imag.square() + 1e-12).sqrt()


def log_mel(x: torch.Tensor, mel: MelExtractor = MEL) -> torch.Tensor:
    """MelExtractor's log10-mel with log(x + eps) in place of log(max(x, eps)), so a silent output still gets a
    gradient, and with a larger eps: with 1e-5, matching the exact silence between toy sounds outweighs the
    sounds themselves and a fresh vocoder learns to output nothing. `mel`: the extractor on x's device."""
    cfg = mel.config
    pad = (cfg.n_fft - cfg.hop_length) // 2
    x = F.pad(x.unsqueeze(1), (pad, pad), mode="reflect").squeeze(1)
    spec = torch.stft(x, cfg.n_fft, cfg.hop_length, window=mel.window, center=False, return_complex=True)
    mag = (spec.real.square() + spec.imag.square() + 1e-9).sqrt()
    return torch.log10(mel.mel_basis @ mag + LOG_EPS)


def stft_loss(y: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """Multi-resolution STFT loss: spectral convergence + log-magnitude L1, averaged over resolutions."""
    total = y.new_zeros(())
    for n_fft, hop in STFT_RESOLUTIONS:
        sy, sx = _magnitude(y, n_fft, hop), _magnitude(x, n_fft, hop)
        converge = (sy - sx).norm() / sx.norm().clamp(min=1e-5)
        total = total + converge + ((sy + LOG_EPS).log() - (sx + LOG_EPS).log()).abs().mean()
    return total / len(STFT_RESOLUTIONS)


def segment_start(clip, rng: np.random.Generator, length: int) -> int:
    """Where a `length`-sample stretch of the clip starts: three times in four shortly before a sound event; on
    a mel frame boundary."""
    events = clip.truth.event_samples
    if events and rng.random() < 0.75:
        start = int(events[int(rng.integers(len(events)))]) - int(rng.integers(0, length // 2))
    else:
        start = int(rng.integers(0, clip.audio.size - length))
    return int(np.clip(start, 0, clip.audio.size - length)) // MEL.config.hop_length * MEL.config.hop_length


def vocoder_segments(clips, rng: np.random.Generator, length: int) -> torch.Tensor:
    """One `length`-sample stretch per clip (see segment_start)."""
    out = []
    for c in clips:
        start = segment_start(c, rng, length)
        out.append(torch.from_numpy(c.audio[start:start + length]))
    return torch.stack(out)


def voice_rich_batch(rng: np.random.Generator, n: int) -> list:
    """n clips, half of them speaking characters: sustained harmonic tones are what a small vocoder learns
    last (it gets impact transients right long before), and their pitch is what the model is judged on."""
    clips = render_batch(rng, n - n // 2, WORLD)
    while len(clips) < n:
        spec = sample_spec(rng, "train")
        if spec.kind == "speak":
            clips.append(render_clip(spec, int(rng.integers(2**31)), WORLD))
    return clips


@dataclasses.dataclass(frozen=True)
class VocoderSegments:
    """The vocoder's batch of step k: (waveform stretches `[B, length]`, their mels `[B, n_mels, frames]`)."""

    seed: int
    batch: int
    length: int

    def __call__(self, k: int) -> tuple[torch.Tensor, torch.Tensor]:
        rng = step_rng(self.seed, k)
        x = vocoder_segments(voice_rich_batch(rng, self.batch), rng, self.length)
        with torch.no_grad():
            return x, MEL(x)


@dataclasses.dataclass(frozen=True, eq=False)
class VAEMelSegments:
    """The vocoder fine-tune's batch of step k: waveform stretches and, as input, the mels of the same stretches
    after a round trip through the trained audio VAE (whole clips encoded and decoded, then cut), which is what
    the vocoder is given at generation."""

    seed: int
    batch: int
    length: int
    audio_vae: MMAudioVAE

    def __call__(self, k: int) -> tuple[torch.Tensor, torch.Tensor]:
        rng = step_rng(self.seed, k)
        clips = voice_rich_batch(rng, self.batch)
        waves = clip_audio(clips)
        with torch.no_grad():
            mels = self.audio_vae.decode(self.audio_vae.encode(MEL(waves)))
        hop, xs, ms = MEL.config.hop_length, [], []
        for clip, wave, mel in zip(clips, waves, mels):
            start = segment_start(clip, rng, self.length)
            xs.append(wave[start:start + self.length])
            ms.append(mel[:, start // hop:(start + self.length) // hop])
        return torch.stack(xs), torch.stack(ms)


def run_vocoder(workdir: Path, steps: int | None, minutes: float | None, resume: bool, seed: int = 3,
                batch: int = 4, length: int = 8192, progress: bool = True, stop_at: int | None = None,
                device: str = "cpu", workers: int = 0, lr: float | None = None, on_vae_mels: bool = False):
    """Train the vocoder on the mels of real waveforms; on_vae_mels: fine-tune the trained vocoder on mels that
    went through the audio VAE (VAEMelSegments). A small vocoder trained on exact mels alone smears harmonics
    when the mel is slightly off, which moved 3 of 7 low voices up an octave in round trips through the VAE."""
    torch.manual_seed(seed)
    vocoder = BigVGANVocoder(BigVGANConfig.from_dict(default_configs()["vocoder"]))
    mel_here = copy.deepcopy(MEL).to(device)
    if on_vae_mels:
        vocoder.load_state_dict(load_checkpoint_weights(workdir, "vocoder", ema=True))
        batches = VAEMelSegments(seed + 10, batch, length, trained_audio_vae(workdir))
    else:
        batches = VocoderSegments(seed, batch, length)

    def step(k: int, batch_k: tuple[torch.Tensor, torch.Tensor]) -> dict:
        x, mel = (t.to(device, non_blocking=True) for t in batch_k)
        y = vocoder(mel)[:, 0]
        mel_l1 = (log_mel(y, mel_here) - log_mel(x, mel_here)).abs().mean()
        stft = stft_loss(y, x)
        return {"loss": mel_l1 + stft, "mel_l1": mel_l1.detach(), "stft": stft.detach()}

    name = "vocoder_finetune" if on_vae_mels else "vocoder"
    lr = lr if lr is not None else 2e-4 if on_vae_mels else 1e-3
    cfg = LoopConfig(name, steps=steps, lr=lr, minutes=minutes, warmup=50, ema_decay=0.999, seed=seed,
                     stop_at=stop_at, device=device, workers=workers)
    return train(cfg, vocoder, step, workdir, resume, progress, batch_fn=batches)


# ------------------------------------------------------------------------------------------- pre-encoding

def trained_video_vae(workdir: Path) -> WanVAE:
    """The trained video VAE; with the decoder fine-tuned when that stage has run (the encoder is the same). In a
    workdir that adopted a bundle and has not trained its VAE (a DiT fine-tune), the adopted one."""
    vae = WanVAE(WanVAEConfig.from_dict(default_configs()["video_vae"]))
    name = "video_decoder" if checkpoint_path(workdir, "video_decoder").is_file() else "video_vae"
    adopted = Path(workdir) / "init-video_vae.pt"
    if not checkpoint_path(workdir, name).is_file() and adopted.is_file():
        vae.load_state_dict(torch.load(adopted, weights_only=True))
    else:
        vae.load_state_dict(load_checkpoint_weights(workdir, name))
    return vae.eval().requires_grad_(False)


def trained_audio_vae(workdir: Path) -> MMAudioVAE:
    gen = torch.Generator().manual_seed(0)
    trainable = trainable_audio_vae(MMAudioVAEConfig.from_dict(default_configs()["audio_vae"]), gen)
    trainable.load_state_dict(load_checkpoint_weights(workdir, "audio_vae"))
    vae = MMAudioVAE(trainable.config)
    apply_vae_weights(vae, effective_audio_vae_state(trainable), source="audio_vae checkpoint", weight_form="effective")
    return vae.eval().requires_grad_(False)


def trained_vocoder(workdir: Path) -> BigVGANVocoder:
    """The trained vocoder; the one fine-tuned on the audio VAE's mels when that stage has run."""
    vocoder = BigVGANVocoder(BigVGANConfig.from_dict(default_configs()["vocoder"]))
    name = "vocoder_finetune" if checkpoint_path(workdir, "vocoder_finetune").is_file() else "vocoder"
    vocoder.load_state_dict(load_checkpoint_weights(workdir, name, ema=True))
    return vocoder.eval().requires_grad_(False)


def cameo_references(video_vae: WanVAE, audio_vae: MMAudioVAE, spec: SceneSpec, rng: np.random.Generator):
    """Reference latents of a speaking character, made the way a user's profile is (cameo.encode): a fresh
    recording of the same character (colour and voice) on a random background, its sharpest frames and its
    longest voiced stretch. Returns raw video latents `[z, k, h, w]` and audio latents `[L_ref, 20]`."""
    rec = render_clip(cameo_recording_spec(spec.colour, spec.voice, rng), int(rng.integers(2**31)), RECORDING_WORLD)
    times = np.arange(rec.frames.shape[0]) / RECORDING_WORLD.fps
    logging.getLogger("jointav.cameo.reference_media").setLevel(logging.ERROR)  # short-voice warnings, by design
    media = encode_reference_media(video_vae, audio_vae, rec.frames, times, rec.audio)
    return media.video_latents, media.audio_latents


SUBJECT_STREAM = 19  # the random stream of the subject references (run_subject_references)


def subject_references(video_vae: WanVAE, spec: SceneSpec, rng: np.random.Generator) -> torch.Tensor:
    """Reference latents of an object carried from an earlier shot, made as a film's later shots get them
    (pipeline.long_form.subject_crops): another clip of the same object (colour and shape), its subject crops
    encoded as pictures. Raw video latents `[z, k, h, w]`."""
    from ..cameo.conditioning import encode_pictures
    from ..cameo.encode import reference_grid
    from ..pipeline.long_form import subject_crops

    rec = render_clip(subject_recording_spec(spec, rng), int(rng.integers(2**31)), WORLD)
    logging.getLogger("jointav.cameo.reference_media").setLevel(logging.ERROR)  # "no frontal face": by design
    return encode_pictures(video_vae, subject_crops(rec.frames, WORLD.fps, reference_grid(video_vae)))


def run_subject_references(workdir: Path, seed: int = 5, device: str = "cpu", only_shard: int | None = None
                            ) -> list[Path]:
    """Give every object clip of the pre-encoded set (bounce, slide) its subject's reference latents
    (`subject_references`), in place in each latents shard (`only_shard`: in that shard's file alone, so that
    processes can share the work); speaking clips keep their cameo references. Each clip's references come
    from its own random stream, so the result does not depend on sharding or reruns."""
    video_vae = trained_video_vae(workdir).to(device)
    written = []
    for path in sorted(Path(workdir).glob("latents-*-of-*.pt")):
        shard, shards = (int(v) for v in path.stem.split("-")[1::2])  # run_encode's shard layout
        if only_shard is not None and shard != only_shard:
            continue
        part = torch.load(path, weights_only=True)
        refs = list(part.get("ref_video", [None] * len(part["specs"])))
        for j, spec in enumerate(tqdm(part["specs"], desc=f"subject references {path.name}", mininterval=5)):
            if spec["kind"] != "speak" and refs[j] is None:
                rng = step_rng(seed, shard + j * shards, SUBJECT_STREAM)  # the clip's index in the whole set
                refs[j] = subject_references(video_vae, SceneSpec(**spec), rng).cpu()
        part["ref_video"] = refs
        part.setdefault("ref_audio", [None] * len(refs))
        tmp = path.with_name(path.name + ".tmp")
        torch.save(part, tmp)
        os.replace(tmp, path)
        written.append(path)
    return written


def run_encode(workdir: Path, clips: int, seed: int = 5, shard: int = 0, shards: int = 1, chunk: int = 8,
               device: str = "cpu") -> Path:
    """Encode clips shard, shard+shards, ... of a fixed training set: raw video VAE means `[N, z, F, h, w]`,
    audio latents `[N, L, 20]`, the scene of each clip (captions are drawn per step from it) and, for speaking
    characters, cameo reference latents (None for the other clips)."""
    video_vae, audio_vae = trained_video_vae(workdir).to(device), trained_audio_vae(workdir).to(device)
    mine = list(range(shard, clips, shards))
    videos, audios, specs, ref_video, ref_audio = [], [], [], [], []
    for start in tqdm(range(0, len(mine), chunk), desc=f"encode {shard}/{shards}", mininterval=5):
        batch = []
        for i in mine[start:start + chunk]:
            rng = step_rng(seed, i)
            spec = sample_spec(rng, "train")
            batch.append(render_clip(spec, int(rng.integers(2**31)), WORLD))
            specs.append(dataclasses.asdict(spec))
            refs = cameo_references(video_vae, audio_vae, spec, rng) if spec.kind == "speak" else (None, None)
            ref_video.append(refs[0])
            ref_audio.append(refs[1])
        x = torch.stack([frames_to_tensor(c.frames) for c in batch]).to(device)
        videos.append(video_vae.encode(x, normalized=False).cpu())
        audios.append(encode_audio(audio_vae, clip_audio(batch), WORLD.sample_rate, MEL).cpu())
    path = Path(workdir) / f"latents-{shard}-of-{shards}.pt"
    tmp = path.with_name(path.name + ".tmp")
    torch.save({"video": torch.cat(videos), "audio": torch.cat(audios), "specs": specs,
                "ref_video": ref_video, "ref_audio": ref_audio}, tmp)
    os.replace(tmp, path)
    return path


def load_latents(workdir: Path) -> dict:
    """Every encoded shard, joined."""
    parts = [torch.load(p, weights_only=True) for p in sorted(Path(workdir).glob("latents-*-of-*.pt"))]
    if not parts:
        raise FileNotFoundError(f"no latents-*.pt in {workdir}: run the 'encode' stage first")
    joined = {"video": torch.cat([p["video"] for p in parts]), "audio": torch.cat([p["audio"] for p in parts]),
              "specs": [s for p in parts for s in p["specs"]]}
    for key in ("ref_video", "ref_audio"):  # (sets encoded before the cameo pathway have none)
        joined[key] = [r for p in parts for r in p.get(key, [None] * len(p["specs"]))]
    return joined


def video_latent_stats(raw: torch.Tensor) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Per-channel mean and std of raw video latents `[N, z, F, h, w]` (the VAE config's latent_mean/std)."""
    flat = raw.transpose(0, 1).flatten(1)
    return tuple(flat.mean(1).tolist()), tuple(flat.std(1).clamp(min=1e-3).tolist())


# ------------------------------------------------------------------------------------------- DiT

class JointDenoiser(torch.nn.Module):
    """The DiT and its text encoder as one trainable module (their state dicts keep their own prefixes)."""

    def __init__(self, configs: dict, seed: int):
        super().__init__()
        torch.manual_seed(seed)
        self.dit = FusionDiT(FusionConfig.from_dict(configs["dit"]))
        self.text_encoder = ToyTextEncoder(ToyTextEncoderConfig.from_dict(configs["text_encoder"]), seed=seed)


DIT_TOWERS = ("dit.video_model.blocks.", "dit.audio_model.blocks.")  # (JointDenoiser state-dict prefixes)


def _block_key(key: str) -> tuple[str, int, str] | None:
    """(tower prefix, block index, rest of the key) of a DiT block tensor's key; None for any other tensor."""
    for tower in DIT_TOWERS:
        if key.startswith(tower):
            index, rest = key[len(tower):].split(".", 1)
            return tower, int(index), rest
    return None


def dit_layers_of(weights: dict) -> int:
    """Blocks per tower of a JointDenoiser state dict."""
    return 1 + max(found[1] for found in map(_block_key, weights) if found is not None)


def load_adopted_dit(workdir: Path) -> dict | None:
    """The adopted DiT + text encoder of a workdir (adopt_bundle), or None when it started from scratch."""
    path = Path(workdir) / ADOPTED_DIT
    return torch.load(path, weights_only=True, map_location="cpu") if path.is_file() else None


def dit_layers_to_train(adopted: dict | None, dit_layers: int | None, workdir: Path) -> int:
    """The blocks per tower a dit run trains: `dit_layers`, else the `adopted` DiT's, else the default 4. Refuses
    fewer than the adopted DiT has (a fine-tune keeps or grows it) before any data is read."""
    if adopted is None:
        return dit_layers or 4
    have = dit_layers_of(adopted)
    if dit_layers is not None and dit_layers < have:
        raise ValueError(f"--dit-layers {dit_layers}: the adopted DiT ({Path(workdir) / ADOPTED_DIT}) has {have} "
                         f"blocks per tower; a fine-tune keeps or grows it, it cannot drop blocks")
    return dit_layers or have


def grown_positions(old: int, new: int) -> list[int]:
    """Where each of `old` blocks sits in a tower of `new` blocks: spread evenly, first and last kept in place,
    so the added blocks fall between them."""
    if new < old:
        raise ValueError(f"a DiT of {old} blocks per tower cannot grow to {new}")
    return [round(i * (new - 1) / max(1, old - 1)) for i in range(old)] if old > 1 else [0]


# The output projections of a block (attention, cross-attention, FFN): zero in an added block, whose residual
# branches then add nothing, so the grown DiT computes what the smaller one did until training moves them.
ADDED_BLOCK_OUTPUTS = ("self_attn.o.", "cross_attn.o.", "ffn.2.")


def grow_dit_state(smaller: dict, template: dict) -> dict:
    """A JointDenoiser state dict with `template`'s block count holding `smaller`'s function: every tensor of
    `smaller` in place (its blocks at grown_positions), each added block taken from `template` with its output
    projections zeroed (ADDED_BLOCK_OUTPUTS)."""
    old, new = dit_layers_of(smaller), dit_layers_of(template)
    where = dict(enumerate(grown_positions(old, new)))
    added = set(range(new)) - set(where.values())
    out = {}
    for key, value in template.items():
        block = _block_key(key)
        zeroed = block is not None and block[1] in added and block[2].startswith(ADDED_BLOCK_OUTPUTS)
        out[key] = torch.zeros_like(value) if zeroed else value.clone()
    for key, value in smaller.items():
        block = _block_key(key)
        target = key if block is None else f"{block[0]}{where[block[1]]}.{block[2]}"
        if target not in out or out[target].shape != value.shape:
            raise ValueError(f"{key}: no tensor of shape {tuple(value.shape)} at {target} in the grown DiT")
        out[target] = value.clone()
    return out


def shifted_sigma(u: torch.Tensor, shift: float) -> torch.Tensor:
    """The sampler's time shift applied to uniform u: more training where the shifted schedule spends steps."""
    return shift * u / (1 + (shift - 1) * u)


# Long-form holds a fine-tune can teach (issue 18), each the share of clips that get it; the rest keep the
# shipped mix (a clean first frame for p_first_frame of them). Drawn from their own random stream, so with all
# shares 0 every batch is the one the shipped model was trained on.
LONG_FORM_HOLDS = {"segment_tail": 0.15, "whole_audio": 0.1, "whole_video": 0.1}
HOLD_STREAM = 18


def hold_masks(kinds: list[str | None], video_frames: int, audio_length: int, tail_frames: int,
               tail_audio: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(video_clean `[B, F]`, audio_clean `[B, L]`) bool for one batch's hold kinds: "first_frame" (latent frame
    0), "segment_tail" (the first `tail_frames` latent frames and the `tail_audio` audio positions covering
    them: what an extension holds from the segment before), "whole_audio" (audio-to-video), "whole_video"
    (video-to-audio), None (nothing held)."""
    video = torch.zeros(len(kinds), video_frames, dtype=torch.bool)
    audio = torch.zeros(len(kinds), audio_length, dtype=torch.bool)
    for b, kind in enumerate(kinds):
        if kind == "first_frame":
            video[b, 0] = True
        elif kind == "segment_tail":
            video[b, :tail_frames] = True
            audio[b, :tail_audio] = True
        elif kind == "whole_audio":
            audio[b] = True
        elif kind == "whole_video":
            video[b] = True
        elif kind is not None:
            raise ValueError(f"hold kind {kind!r}: expected first_frame, segment_tail, whole_audio, whole_video or None")
    return video, audio


def draw_holds(rng: np.random.Generator, batch: int, p_first_frame: float, long_form: dict[str, float]
               ) -> list[str | None]:
    """One hold kind per clip: a long-form kind with its share, else a clean first frame with p_first_frame."""
    kinds = []
    for _ in range(batch):
        u, kind = rng.random(), None
        for name, p in long_form.items():
            if u < p:
                kind = name
                break
            u -= p
        kinds.append(kind)
    return kinds


TOWERS = ("both", "audio", "video")


def freeze_for_towers(model: torch.nn.Module, towers: str) -> list[str]:
    """Leave only `towers`' DiT weights trainable ("audio": the audio tower, whose blocks also hold its attention
    to the video tokens; "video" likewise; "both": everything); returns the names that train.

    Why one tower: a fine-tune for video-to-audio changes what the audio tower reads from clean video, and
    training the video tower or the shared text encoder along with it is what costs the single-clip picture
    (every fine-tune of both towers lost a clip or two of smooth motion, TRAINING.md). Frozen here, the picture
    changes only through what the video tower reads from the audio tower's states."""
    if towers not in TOWERS:
        raise ValueError(f"towers={towers!r}: expected one of {', '.join(TOWERS)}")
    trained = []
    for name, parameter in model.named_parameters():
        trains = towers == "both" or name.startswith(f"dit.{towers}_model.")
        parameter.requires_grad_(trains)
        if trains:
            trained.append(name)
    if not trained:
        raise ValueError(f"towers={towers!r}: the model has no parameters under dit.{towers}_model")
    return trained


def run_dit(workdir: Path, steps: int | None, minutes: float | None, resume: bool, seed: int = 4, batch: int = 16,
            shift: float = 3.0, p_uncond: float = 0.1, p_first_frame: float = 0.2, p_cameo: float = 0.5,
            p_cameo_caption_alone: float = 0.15, p_subject: float = 0.25, p_subject_caption_alone: float = 0.08,
            progress: bool = True, stop_at: int | None = None,
            device: str = "cpu", lr: float = 1e-3, long_form_holds: dict[str, float] | None = None,
            dit_layers: int | None = None, collective=None, towers: str = "both", warm_start: Path | None = None):
    """Flow matching on the pre-encoded set. Cameo pathway: a speaking clip gets, with probability p_cameo,
    its character's reference tokens (face and voice from another recording) and a caption that leaves colour
    and voice out (toyworld.cameo_caption), so the look and the voice must come from the references; with
    p_cameo_caption_alone it gets that caption without references, so that without a cameo the model picks a
    character of its own (the baseline the cameo test compares against). Object clips take the same path once
    the set has their subject references (run_subject_references), with a film's later-shot caption
    (toyworld.subject_caption: "it ..." / "the same ball ..."), as multi-shot carries a subject, at their own
    shares p_subject / p_subject_caption_alone (lower: most object clips keep teaching the full caption).
    long_form_holds: shares of clips trained with long-form holds (LONG_FORM_HOLDS: an extension's held tail,
    whole audio, whole video), held clean and flagged to the model as the sampler's "clean" hold mode does, and
    left out of the loss; None trains the shipped mix only.
    dit_layers: blocks per tower; above the adopted DiT's, it grows (grow_dit_state) before training. With a
    `collective` (loop.Collective), this is one of several data-parallel processes: process r of w trains on
    the batches a single process would draw at steps k*w + r, so one process alone is the run it always was.
    towers: "both", or the one tower whose weights train ("audio" / "video"; the other tower and the text encoder
    stay as adopted, see freeze_for_towers).
    warm_start: an earlier dit checkpoint (its EMA) to start from instead of the adopted weights, with a fresh
    schedule and optimizer; the adopted bundle stays what an adapter and an average are made against."""
    from ..pipeline.specs import DEFAULT_SPEC
    from ..samplers.conditioning import audio_positions_covering

    if towers not in TOWERS:  # (before the latents are read)
        raise ValueError(f"towers={towers!r}: expected one of {', '.join(TOWERS)}")
    long_form = dict(long_form_holds or {})
    tail_frames = 2  # pipeline.segments.DEFAULT_HOLD: latent frames an extension holds
    tail_audio = audio_positions_covering(tail_frames, DEFAULT_SPEC.vae_time_factor, DEFAULT_SPEC.fps,
                                          DEFAULT_SPEC.audio_samples_per_latent / DEFAULT_SPEC.audio_sample_rate)
    adopted_state = load_adopted_dit(workdir)  # (a fine-tune of an adopted bundle; see adopt_bundle)
    dit_layers = dit_layers_to_train(adopted_state, dit_layers, workdir)  # (refused before the latents are read)
    # (checked before the latents are read too, and read once)
    warm = None if warm_start is None else warm_start_weights(
        warm_start, JointDenoiser(default_configs(dit_layers), seed).state_dict())
    data = load_latents(workdir)
    mean, std = video_latent_stats(data["video"])
    mean_t, std_t = torch.tensor(mean).view(-1, 1, 1, 1), torch.tensor(std).view(-1, 1, 1, 1)
    video = ((data["video"] - mean_t[None]) / std_t[None]).to(device)
    audio = data["audio"].to(device)
    ref_video = [None if r is None else ((r - mean_t) / std_t).to(device) for r in data["ref_video"]]
    ref_audio = [None if r is None else r.to(device) for r in data["ref_audio"]]
    specs = [SceneSpec(**s) for s in data["specs"]]
    model = JointDenoiser(default_configs(dit_layers), seed)
    if adopted_state is not None:
        if dit_layers_of(adopted_state) != dit_layers:
            adopted_state = grow_dit_state(adopted_state, model.state_dict())
        model.load_state_dict(adopted_state)
    if warm is not None:
        model.load_state_dict(warm)
    freeze_for_towers(model, towers)
    rank, world = (0, 1) if collective is None else (collective.rank, collective.world)
    if rank == 0:  # (what the bundle's latent statistics must be: the ones this run normalised with)
        (Path(workdir) / LATENT_STATS).write_text(json.dumps({"mean": mean, "std": std}))

    def step(k: int) -> dict:
        k = k * world + rank  # (this process's share of the run's batches)
        rng = step_rng(seed, k)
        idx = rng.integers(len(specs), size=batch)
        captions, refs = [], []
        for i in idx:
            spec, has_refs = specs[i], ref_video[i] is not None
            draw = rng.random()
            with_refs, caption_alone = (p_cameo, p_cameo_caption_alone) if spec.kind == "speak" else \
                (p_subject, p_subject_caption_alone)
            cameo = has_refs and draw < with_refs
            cameo_caption_alone = has_refs and with_refs <= draw < with_refs + caption_alone
            if rng.random() < p_uncond:
                captions.append(UNCONDITIONAL_PROMPTS[int(rng.integers(len(UNCONDITIONAL_PROMPTS)))])
            elif cameo or cameo_caption_alone:  # (object clips have references after run_subject_references)
                markup = bool(rng.random() < 0.3)
                form = "it" if spec.kind == "speak" or rng.random() < 0.5 else "same"
                captions.append(subject_caption(spec, form, markup))
            else:
                captions.append(training_caption(spec, rng))
            refs.append(i if cameo else None)
        first_frame = torch.from_numpy(rng.random(batch) < p_first_frame)
        kinds = draw_holds(step_rng(seed, k, HOLD_STREAM), batch, p_first_frame, long_form) if long_form else []
        kinds = [kind or ("first_frame" if bool(ff) else None) for kind, ff in zip(kinds, first_frame)] if kinds \
            else ["first_frame" if bool(ff) else None for ff in first_frame]
        gen = step_generator(seed, k)
        x0v, x0a = video[idx], audio[idx]
        nv = torch.randn(x0v.shape, generator=gen).to(device)
        na = torch.randn(x0a.shape, generator=gen).to(device)
        sigma = shifted_sigma(torch.rand(batch, generator=gen), shift).to(device)
        sv, sa = sigma.view(-1, 1, 1, 1, 1), sigma.view(-1, 1, 1)
        xv, xa = (1 - sv) * x0v + sv * nv, (1 - sa) * x0a + sa * na
        clean, audio_clean = hold_masks(kinds, x0v.shape[2], x0a.shape[1], tail_frames, tail_audio)
        clean, audio_clean = clean.to(device), audio_clean.to(device)
        xv = torch.where(clean[:, None, :, None, None], x0v, xv)
        xa = torch.where(audio_clean[:, :, None], x0a, xa)
        context = model.text_encoder.encode_padded(captions)  # (on the model's device; = encode's list to the DiT)
        with_refs = any(r is not None for r in refs)
        pv, pa = model.dit(xv, xa, 1000 * sigma, context, context, video_clean=clean,
                           audio_clean=audio_clean if bool(audio_clean.any()) else None,
                           video_reference=[None if r is None else ref_video[r] for r in refs] if with_refs else None,
                           audio_reference=[None if r is None else ref_audio[r] for r in refs] if with_refs else None)
        weight = (~clean).float().view(batch, 1, -1, 1, 1).expand_as(pv)
        loss_v = ((pv - (nv - x0v)).square() * weight).sum() / weight.sum().clamp(min=1.0)
        audio_weight = (~audio_clean).float()[:, :, None].expand_as(pa)
        loss_a = ((pa - (na - x0a)).square() * audio_weight).sum() / audio_weight.sum().clamp(min=1.0)
        return {"loss": loss_v + loss_a, "video": loss_v.detach(), "audio": loss_a.detach()}

    cfg = LoopConfig("dit", steps=steps, lr=lr, minutes=minutes, warmup=100, ema_decay=0.995, seed=seed,
                     stop_at=stop_at, device=device)
    return train(cfg, model, step, workdir, resume, progress, collective=collective)


# ------------------------------------------------------------------------------------------- bundle

def check_fine_tune_share(share: float) -> float:
    """The fine-tune's share of an averaged DiT (averaged_with_adopted): above 0 and at most 1."""
    if not 0.0 < share <= 1.0:
        raise ValueError(f"{share:g}: the fine-tune's share is above 0 and at most 1")
    return share


def averaged_with_adopted(workdir: Path, weights: dict, share: float) -> dict:
    """`share` x `weights` + (1 - share) x the adopted bundle's DiT + text encoder (init-dit.pt), per tensor.

    A fine-tune that gains what it trains (sync, the long-form holds) may lose a little of what the bundle had
    (the coherence thresholds); averaging the two sets of weights trades along the line between them without a
    new run (default_model/TRAINING.md, 2026-12-04: a share of 0.15 kept every threshold where the end did not)."""
    check_fine_tune_share(share)
    init_path = Path(workdir) / ADOPTED_DIT
    if not init_path.is_file():
        raise FileNotFoundError(f"--average-with-adopted: {init_path} is absent; the workdir must start from an "
                                f"adopted bundle (--adopt BUNDLE) for its weights to be averaged with it")
    adopted = torch.load(init_path, weights_only=True, map_location="cpu")
    if dit_layers_of(adopted) < dit_layers_of(weights):  # (a grown DiT: the adopted one grown the same way)
        adopted = grow_dit_state(adopted, weights)
    if adopted.keys() != weights.keys():
        raise ValueError(f"--average-with-adopted: {init_path} holds other tensors than the dit checkpoint "
                         f"({len(adopted.keys() ^ weights.keys())} keys differ); was it adopted from another "
                         f"model size?")
    return {k: ((1 - share) * adopted[k].float() + share * v.float()).to(v.dtype) if v.is_floating_point() else v
            for k, v in weights.items()}


def run_bundle(workdir: Path, out: Path | None = None, extra: dict | None = None,
               average_with_adopted: float | None = None) -> Path:
    """The shipped file: the DiT + text encoder (EMA weights; with `average_with_adopted`, that share of them
    averaged with the adopted bundle's), the decoders, and the video latent statistics."""
    weights = load_checkpoint_weights(workdir, "dit", ema=True)
    if average_with_adopted is not None:  # (refused here, before the latents and decoders are read)
        weights = averaged_with_adopted(workdir, weights, average_with_adopted)
    configs = default_configs(dit_layers_of(weights))
    stats = Path(workdir) / LATENT_STATS
    if stats.is_file():
        saved = json.loads(stats.read_text())
        mean, std = tuple(saved["mean"]), tuple(saved["std"])
    else:  # (a workdir from before the dit run wrote them)
        mean, std = video_latent_stats(load_latents(workdir)["video"])
    configs["video_vae"] = dataclasses.replace(WanVAEConfig.from_dict(configs["video_vae"]),
                                               latent_mean=mean, latent_std=std).to_dict()
    video_vae = WanVAE(WanVAEConfig.from_dict(configs["video_vae"]))
    video_vae.load_state_dict(trained_video_vae(workdir).state_dict())
    denoiser = JointDenoiser(configs, 0)
    denoiser.load_state_dict(weights)
    parts = DefaultParts(dit=denoiser.dit, text_encoder=denoiser.text_encoder, video_vae=video_vae,
                         audio_vae=trained_audio_vae(workdir), vocoder=trained_vocoder(workdir), name="")
    path = Path(out) if out else BUNDLE_DIR / BUNDLE_NAME
    path.parent.mkdir(parents=True, exist_ok=True)
    return save_bundle(parts, path, configs, {"name": "jointav-default (trained toy world)", **(extra or {})})


def warm_start_weights(path: Path, expected: dict) -> dict:
    """The weights of the dit checkpoint `path` (its EMA where it has one), checked against the model a run
    trains (`expected`: its state dict): the same tensors with the same shapes, or an error naming the file."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"--warm-start {path}: no such file; expected a dit checkpoint (dit.ckpt)")
    saved = torch.load(path, weights_only=True, map_location="cpu")
    weights = saved.get("ema") or saved.get("model") if isinstance(saved, dict) else None
    if not isinstance(weights, dict):
        raise ValueError(f"--warm-start {path}: no 'ema' or 'model' weights; expected a dit checkpoint (dit.ckpt)")
    missing, unexpected = sorted(expected.keys() - weights.keys()), sorted(weights.keys() - expected.keys())
    if missing or unexpected:
        example = (missing or ["-"])[0], (unexpected or ["-"])[0]
        raise ValueError(f"--warm-start {path}: {len(missing)} tensors of this run's DiT are absent (e.g. "
                         f"{example[0]}) and {len(unexpected)} are not its (e.g. {example[1]}); expected a dit "
                         f"checkpoint of the same model size")
    for key, value in expected.items():
        if tuple(weights[key].shape) != tuple(value.shape):
            raise ValueError(f"--warm-start {path}: {key} has shape {list(weights[key].shape)}, this run's DiT "
                             f"{list(value.shape)}")
    return weights


@dataclasses.dataclass(frozen=True)
class AdapterRun:
    """How a hold adapter is trained: the one tower its dit run trains, the hold kind the pipeline adds it for
    (pipeline.adapters.latent_hold), and that run's hold shares and carried-subject share (None: run_dit's)."""

    tower: str
    hold: str
    hold_shares: dict
    subject_share: float | None = None


# Each adapter the embedded default ships (pipeline.adapters.ADAPTERS names its file by `hold`).
ADAPTER_RUNS = {
    "foley": AdapterRun("audio", "whole_video", {"whole_video": 0.6}),  # the picture given: its sound
    "animate": AdapterRun("video", "whole_audio", {"whole_audio": 0.6}),  # the sound given: its picture
    # a film's later shots: object clips drawn with their carried subject (references + "it ..." caption) in 75%
    # of draws; an extension's tail in 15%, as a shot longer than a segment is extended with its references
    "shots": AdapterRun("video", "carried_subject", {"segment_tail": 0.15}, subject_share=0.75),
    # an extension's later segments: the previous segment's last latent frames and their sound held clean.
    # Not shipped: 44 minutes of it on the CPU (2026-12-06) froze the motion of later segments (seams within range
    # 90% -> 69% at 20 s, events as captioned 48% -> 8% at 60 s; default_model/TRAINING.md)
    "extend": AdapterRun("video", "segment_tail", {"segment_tail": 0.6}),
}


def run_adapter(workdir: Path, out: Path | None = None, adapter: str = "foley") -> Path:
    """A hold adapter (pipeline/adapters.py, `adapter` one of ADAPTER_RUNS) from the one-tower dit run it names:
    that tower's EMA weights minus the adopted bundle's. Written where the pipeline looks for it, or into the
    folder `out` under that same file name, or to the file `out`. The bundle itself stays the adopted one, so
    every other task samples the weights it was measured with."""
    from ..pipeline.adapters import ADAPTERS, save_adapter

    if adapter not in ADAPTER_RUNS:
        raise ValueError(f"adapter={adapter!r}: expected one of {', '.join(ADAPTER_RUNS)}")
    family, run = "jointav-default", ADAPTER_RUNS[adapter]
    towers, hold = run.tower, run.hold
    registered = ADAPTERS[family][hold]
    path = Path(out) if out is not None else registered
    if path.is_dir():
        path = path / registered.name
    adopted = load_adopted_dit(workdir)
    if adopted is None:
        raise FileNotFoundError(f"adapter: {Path(workdir) / ADOPTED_DIT} is absent; an adapter is a difference to "
                                f"an adopted bundle (--adopt BUNDLE), trained with --stage dit --adapter {adapter}")
    tuned = load_checkpoint_weights(workdir, "dit", ema=True)
    if dit_layers_of(adopted) != dit_layers_of(tuned):
        raise ValueError(f"adapter: the dit run has {dit_layers_of(tuned)} blocks per tower, the adopted bundle "
                         f"{dit_layers_of(adopted)}; an adapter adds to the bundle's own weights")
    prefix = f"dit.{towers}_model."
    picked = {k[len("dit."):]: v for k, v in tuned.items() if k.startswith(prefix)}
    base = {k[len("dit."):]: adopted[k] for k in tuned if k.startswith(prefix)}
    if all(torch.equal(picked[k], base[k]) for k in picked):
        raise ValueError(f"adapter {adapter}: the dit run in {workdir} left the {towers} tower as adopted; train it "
                         f"with --stage dit --adapter {adapter}")
    return save_adapter(path, base, picked, name=path.stem, family=family, hold=hold,
                        note=f"{adapter}: the {towers} tower's EMA of the dit run in {Path(workdir).name} minus the "
                             f"adopted bundle's")


def export_curves(workdir: Path) -> Path:
    """curves.json: each trained stage's loss curve, steps and seconds, small enough to copy off a training
    machine without its checkpoints (training.report reads it when the checkpoints are not there)."""
    from .report import STAGE_NOTES

    out = {}
    for name in STAGE_NOTES:  # (every trained stage)
        if checkpoint_path(workdir, name).is_file():
            curve, steps, seconds = load_curve(workdir, name)
            out[name] = {"curve": curve, "steps": steps, "seconds": seconds}
    path = Path(workdir) / "curves.json"
    path.write_text(json.dumps(out))
    return path


def adopt_bundle(workdir: Path, bundle: Path) -> Path:
    """Start a workdir from a trained bundle, to fine-tune it: the audio VAE and vocoder become finished stages
    (checkpoints without optimizer state), the video VAE and the DiT + text encoder become the starting weights
    of fresh `video_vae` and `dit` runs (init-*.pt). The curves of the runs that made the bundle, when written
    beside it (report.HISTORY_NAME), come along, so that the fine-tune's report lists them too."""
    from ..pipeline.default_model import load_bundle
    from .report import HISTORY_IN_WORKDIR, HISTORY_NAME

    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    parts = load_bundle(bundle)
    done = {"optimizer": None, "step": 0, "planned": 0, "seconds": 0.0, "curve": [], "window": {}}
    audio = {}  # the trainable (parametrised) form: unit-norm rows are their own normalisation
    for key, value in parts.audio_vae.state_dict().items():
        module = parts.audio_vae.get_submodule(key.rsplit(".", 1)[0]) if "." in key else None
        is_conv = key.endswith(".weight") and value.ndim == 3 and isinstance(getattr(module, "weight", None),
                                                                              torch.nn.Parameter)
        audio[key[: -len(".weight")] + ".parametrizations.weight.original" if is_conv else key] = value
    torch.save({**done, "model": audio, "ema": None}, checkpoint_path(workdir, "audio_vae"))
    vocoder = parts.vocoder.state_dict()
    torch.save({**done, "model": vocoder, "ema": vocoder}, checkpoint_path(workdir, "vocoder"))
    torch.save(parts.video_vae.state_dict(), workdir / "init-video_vae.pt")
    torch.save({**{f"dit.{k}": v for k, v in parts.dit.state_dict().items()},
                **{f"text_encoder.{k}": v for k, v in parts.text_encoder.state_dict().items()}},
               workdir / ADOPTED_DIT)
    history = Path(bundle).parent / HISTORY_NAME
    if history.is_file():
        (workdir / HISTORY_IN_WORKDIR).write_bytes(history.read_bytes())
    return workdir
