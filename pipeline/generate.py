"""Text/image to audio-video end to end: the blocks of pipeline.api chained, plus writing the files."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

import av
import numpy as np
import torch

from ..audio.io import write_audio
from ..audio.mp4 import write_mp4
from ..cameo.consent_gate import consent_check_for
from ..errors import CheckpointFileError, InputValueError
from ..provenance import ProvenanceInfo, embed_watermark, local_watermark_key, sign_output
from . import api
from .cameo import apply_cameo, cameo_provenance, load_profile, log_cameo_use, reference_guidance_choice


@dataclass
class GenerationRequest:
    prompt: str
    seed: int = 0
    speech: tuple[str, ...] = ()
    audio_description: str = ""
    video_negative: str = "jitter, bad hands, blur, distortion"
    audio_negative: str = "robotic, muffled, echo, distorted"
    model: str | None = None  # None: the embedded default
    video_vae: str | None = None
    audio_vae: str | None = None
    vocoder: str | None = None
    image: str | None = None
    duration: str | None = None  # a preset name; None: the model's first
    height: int | None = None
    width: int | None = None
    steps: int | None = None
    solver: str = "unipc"
    shift: float = 5.0
    video_guidance: float = 4.0
    audio_guidance: float = 3.0
    skip_layer: int | str | None = "default"
    sample_rate: int = 44100
    device: str | None = None
    weight_dtype: str = "auto"
    attention_backend: str = "auto"
    offload: str = "none"  # none | cpu | blocks N (block swap, models/offload.py)
    fp8_compute: bool = False  # fp8 matmuls in the DiT blocks where the GPU has them (models/fp8.py)
    cameo: str | None = None  # a cameo profile folder: its consent must grant this machine's operator key
    cameo_mode: str = "auto"  # pipeline.cameo.MODE_CHOICES; reference tokens are experimental with Ovi weights
    cameo_reference_guidance: str = "auto"  # pipeline.cameo.REFERENCE_GUIDANCE


@dataclass
class GeneratedClip:
    frames: torch.Tensor  # [T, H, W, 3] in 0..1
    audio: dict  # ComfyUI AUDIO
    fps: float
    prompt: str
    model_name: str
    provenance: dict
    notes: tuple[str, ...] = ()  # what the text encoder could not read of the prompt (JointConditioning.notes)


def read_image(path: str | Path) -> torch.Tensor:
    """An image file as a ComfyUI IMAGE `[1, H, W, 3]` in 0..1 (decoded with PyAV, which reads PNG/JPEG/WebP)."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointFileError(f"image {path} does not exist")
    try:
        with av.open(str(path)) as container:
            frame = next(container.decode(video=0))
            rgb = frame.to_ndarray(format="rgb24")
    except (av.error.FFmpegError, StopIteration) as e:
        raise InputValueError(f"image {path}: cannot be decoded as an image ({e})") from e
    return torch.from_numpy(rgb.astype(np.float32) / 255.0)[None]


def generate(req: GenerationRequest, progress=None) -> GeneratedClip:
    if req.steps is not None:
        api.checked_steps(req.steps)  # before any loading; None (not 0) means the model's own
    model = api.load_joint_model(req.model, weight_dtype=req.weight_dtype, attention_backend=req.attention_backend,
                                 device=req.device, offload=req.offload, fp8_compute=req.fp8_compute)
    decoders = api.load_decoders(req.video_vae, req.audio_vae, req.vocoder, model=model, device=req.device)
    spec = model.spec
    steps = spec.default_steps if req.steps is None else req.steps
    conditioning = api.encode_prompt(model, req.prompt, list(req.speech), req.audio_description,
                                     req.video_negative, req.audio_negative)
    duration = req.duration or spec.durations[0].name
    if req.image is not None:
        latent = api.image_to_av_latent(model, decoders, read_image(req.image), duration, req.height, req.width)
    else:
        height, width = (req.height, req.width) if req.height and req.width else spec.resolutions[0]
        latent = api.empty_latent(model, duration, height, width)
    if req.cameo is not None:
        profile = load_profile(req.cameo, model, decoders)
        guidance = reference_guidance_choice(req.cameo_reference_guidance, "cameo_reference_guidance")
        latent = apply_cameo(model, decoders, latent, profile, mode=req.cameo_mode, consent_check=consent_check_for(),
                             reference_guidance=guidance)
    latent = api.sample(model, conditioning, latent, seed=req.seed, steps=steps, solver=req.solver, shift=req.shift,
                        video_guidance=req.video_guidance, audio_guidance=req.audio_guidance,
                        skip_layer=req.skip_layer, progress=progress)
    frames = api.decode_video(decoders, latent)
    audio = api.decode_audio(decoders, latent, sample_rate=req.sample_rate, channels=2)
    provenance = dict(latent.provenance, **cameo_provenance(latent), duration=duration, image=req.image)
    return GeneratedClip(frames=frames, audio=audio, fps=latent.fps, prompt=conditioning.prompt, model_name=model.name,
                         provenance=provenance, notes=conditioning.notes)


def clip_id_for(provenance: dict) -> int:
    """The 32-bit watermark payload, derived from what made the clip so the same request gives the same frames."""
    settings = json.dumps(provenance, sort_keys=True, default=str)
    return int.from_bytes(hashlib.sha256(settings.encode()).digest()[:4], "big")


def provenance_info(provenance: dict) -> ProvenanceInfo:
    """The manifest content for a clip, from the record sampling leaves on the latent (plus anything added; a
    cameo clip's profile id and consent record hash, from pipeline.cameo.cameo_provenance, get their own fields)."""
    core = ("model", "prompt", "seed", "sampler", "cameo_profile_id", "consent_sha256", "cameo_record")
    extra = {k: v for k, v in provenance.items() if k not in core and v is not None}
    return ProvenanceInfo(model=provenance["model"], prompt=provenance["prompt"], seed=int(provenance["seed"]),
                          sampler=dict(provenance.get("sampler", {})), clip_id=clip_id_for(provenance),
                          consent_sha256=provenance.get("consent_sha256"),
                          cameo_profile_id=provenance.get("cameo_profile_id"),
                          cameo_record=provenance.get("cameo_record"), extra=extra)


def write_signed_mp4(out: str | Path, frames: torch.Tensor, fps: float, audio: dict | None,
                     info: ProvenanceInfo) -> Path:
    """Watermark the frames with the local key, write the MP4 (H.264 High + AAC), then sign it (C2PA)."""
    key = local_watermark_key()
    info.watermark_key_id = key.key_id
    marked = embed_watermark(frames, key, info.clip_id)
    marked = marked.numpy() if isinstance(marked, torch.Tensor) else marked
    waveform, rate = (audio["waveform"][0].numpy(), audio["sample_rate"]) if audio is not None else (None, None)
    metadata = {"title": info.prompt[:200], "comment": f"prompt={info.prompt} | seed={info.seed} | model={info.model}",
                "encoder": "ComfyUI-JointAV"}
    mp4 = write_mp4(out, marked, fps, waveform, rate, metadata=metadata)
    return sign_output(mp4, info)


def write_clip(clip: GeneratedClip, out: str | Path) -> tuple[Path, Path]:
    """The MP4 at `out` and a WAV of the same sound beside it, both carrying provenance: the frames a keyed
    watermark, each file a signed C2PA manifest (model, prompt, seed, settings; cameo and consent). A cameo clip's
    use is appended to the usage log with the finished MP4's hash."""
    out = Path(out)
    if out.suffix.lower() != ".mp4":
        raise InputValueError(f"--out {out}: expected a file name ending in .mp4")
    info = provenance_info(clip.provenance)
    mp4 = write_signed_mp4(out, clip.frames, clip.fps, clip.audio, info)
    wav = sign_output(write_audio(out.with_suffix(".wav"), clip.audio), info)
    log_cameo_use(clip.provenance, mp4)
    return mp4, wav
