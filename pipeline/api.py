"""One function per pipeline block. The CLI chains them; each ComfyUI node calls exactly one.

Errors are raised as jointav.errors types whose messages name the parameter, the value found and the
value expected, so the node layer only has to prefix the node's name.
"""

from __future__ import annotations

import copy
import logging
import math
from collections.abc import Callable, Sequence
from pathlib import Path

import torch
import torch.nn.functional as F

from ..audio.finishing import finish_audio
from ..audio.mmaudio_vae import decode_audio_latent
from ..errors import CheckpointFileError, GenerationInterrupted, InputShapeError, InputValueError
from ..model_loader.audio_files import load_bigvgan, load_mmaudio_vae
from ..model_loader.dit import load_fusion_dit
from ..model_loader.wan_vae_files import load_wan_vae
from ..models.fp8 import quantize_blocks_fp8
from ..models.offload import OffloadPolicy, attach_offload, offload_session, parse_offload
from ..models.sequence_parallel import split_over_processes
from ..samplers import FirstFrame, PromptContexts, audio_latent_length
from ..samplers import sample as sample_latents
from ..samplers.step_cache import StepCache
from ..text.ovi_prompt import clean_for_tokenizer, compose_prompt
from .adapters import applied, chosen_adapter
from .default_model import default_parts, is_bundle, load_bundle
from .specs import DEFAULT_SPEC, spec_for_file
from .types import Decoders, JointConditioning, JointLatent, JointModel, ModelSpec

log = logging.getLogger(__name__)

WEIGHT_DTYPES = {"auto": None, "fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16,
                 "fp8_e4m3fn": torch.float8_e4m3fn}
# The Load Model node's choices; the library and CLI take any 'blocks N' (models/offload.py).
OFFLOAD_POLICIES = ("none", "cpu", "blocks 5", "blocks 10", "blocks 15", "blocks 20", "blocks 25")
MAX_SIDE = 4096
MODEL_SKIP_LAYER = -1  # a skip layer that means "the loaded model's own" (pipeline.sample also takes "default")
MODEL_DURATION = "auto"  # a duration that means "the loaded model's own default preset" (its first)
TextEncodeFn = Callable[[list[str]], list[torch.Tensor]]


def _device(device) -> torch.device:
    if device is not None:
        return torch.device(device)
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def _choice(name: str, value: str, options) -> None:
    if value not in options:
        raise InputValueError(f"{name}: got {value!r}, expected one of {', '.join(map(str, options))}")


# --------------------------------------------------------------------------------------------- loading

def load_joint_model(path: str | Path | None = None, *, weight_dtype: str = "auto", attention_backend: str = "auto",
                     device=None, offload: str = "none", family: str = "auto",
                     fp8_compute: bool = False) -> JointModel:
    """Load a fusion DiT (an Ovi checkpoint, or a JointAV bundle); None loads the embedded default model.

    fp8_compute: the blocks' Linear layers become FP8Linear (models/fp8.py): fp8 matmuls on GPUs that have
    them (compute capability 8.9+), dequantised bf16 matmuls elsewhere. An fp8 file's weights are used as
    stored; others are quantised per output channel. Off by default: fp8 inputs cost accuracy (see README).
    """
    _choice("weight_dtype", weight_dtype, WEIGHT_DTYPES)
    policy = parse_offload(offload)
    offload = str(policy)
    device = _device(device)
    home = torch.device("cpu") if policy.mode != "none" else device
    if path is None or (Path(path).is_file() and is_bundle(path)):
        parts = default_parts() if path is None else load_bundle(path)
        # The embedded model is cached per process and shared: block swap rewires its copy, never the shared one.
        dit = parts.dit.to(home) if policy.mode == "none" else copy.deepcopy(parts.dit).to(home)
        dit.attention_backend = _backend(attention_backend, device)
        if fp8_compute:
            dit = copy.deepcopy(dit) if dit is parts.dit else dit
            quantize_blocks_fp8(dit)
        _attach_offload(dit, policy, device)
        return JointModel(dit=dit, spec=DEFAULT_SPEC, name=parts.name, source=str(path or "embedded"),
                          text_encoder=parts.text_encoder, device=device, offload=offload)
    path = Path(path)
    if not path.is_file():
        raise CheckpointFileError(f"model file {path} does not exist")
    spec = spec_for_file(path, family)
    compute = torch.float32 if device.type == "cpu" or weight_dtype == "fp32" else torch.bfloat16
    dit = load_fusion_dit(path, device=home, compute_dtype=compute, weight_dtype=WEIGHT_DTYPES[weight_dtype],
                          attention_backend=attention_backend)
    if fp8_compute:
        quantize_blocks_fp8(dit)
    _attach_offload(dit, policy, device)
    return JointModel(dit=dit, spec=spec, name=path.name, source=str(path), device=device, offload=offload)


def _attach_offload(dit: torch.nn.Module, policy: OffloadPolicy, device: torch.device) -> None:
    """Block swap between CPU RAM and `device` (weights stay in RAM; blocks stream in while sampling)."""
    if policy.mode != "none":
        attach_offload(dit, policy, compute=device, storage="cpu")


def _backend(name: str, device: torch.device) -> str:
    from ..models.attention import resolve_backend

    return resolve_backend(name, device)


def load_decoders(video_vae: str | Path | None = None, audio_vae: str | Path | None = None,
                  vocoder: str | Path | None = None, *, model: JointModel | None = None, device=None) -> Decoders:
    """Video VAE, audio VAE and vocoder from files; None takes that part from the embedded default model."""
    device = _device(device)
    parts = default_parts() if None in (video_vae, audio_vae, vocoder) else None
    v = load_wan_vae(video_vae, device=device) if video_vae is not None else parts.video_vae.to(device)
    a = load_mmaudio_vae(audio_vae, device=device) if audio_vae is not None else parts.audio_vae.to(device)
    g = load_bigvgan(vocoder, device=device) if vocoder is not None else parts.vocoder.to(device)
    names = [Path(p).name if p is not None else "embedded" for p in (video_vae, audio_vae, vocoder)]
    return Decoders(video_vae=v, audio_vae=a, vocoder=g, name=" + ".join(names), device=device)


# --------------------------------------------------------------------------------------------- prompts

def encode_prompt(model: JointModel, video_prompt: str, speech_lines: str | Sequence[str] = "",
                  audio_description: str = "", video_negative: str = "", audio_negative: str = "", *,
                  text_encode: TextEncodeFn | None = None) -> JointConditioning:
    """Compose the prompt in the model's markup and embed it with its negatives (one prompt for both towers)."""
    if isinstance(speech_lines, str):
        speech_lines = [line for line in speech_lines.splitlines() if line.strip()]
    prompt = compose_prompt(video_prompt, speech_lines, audio_description, style=model.spec.caption_style)
    notes = ()
    if text_encode is None:
        if model.text_encoder is None:
            raise InputValueError(
                f"clip: model {model.name} needs the umT5-XXL text encoder; connect a CLIP loaded with type 'wan' "
                f"(e.g. umt5_xxl_fp8_e4m3fn_scaled.safetensors)")
        text_encode = model.text_encoder.encode
        if hasattr(model.text_encoder, "prompt_notes"):  # a closed vocabulary (the embedded model's)
            notes = tuple(model.text_encoder.prompt_notes(video_prompt, [s for s in speech_lines if s.strip()],
                                                          audio_description, prompt))
    texts = [clean_for_tokenizer(t) for t in (prompt, video_negative, audio_negative)]
    with torch.no_grad():
        embeddings = text_encode(texts)
    text_dim = model.dit.config.video.text_dim
    for name, emb in zip(("prompt", "video negative", "audio negative"), embeddings):
        if emb.ndim != 2 or emb.shape[1] != text_dim:
            raise InputShapeError(f"text encoder output for the {name}: shape {tuple(emb.shape)}, expected "
                                  f"[tokens, {text_dim}] for model {model.name}; is the right text encoder connected?")
    pos, vneg, aneg = (e.detach().float().cpu() for e in embeddings)
    return JointConditioning(video_positive=pos, audio_positive=pos, video_negative=vneg, audio_negative=aneg,
                             prompt=prompt, video_negative_prompt=texts[1], audio_negative_prompt=texts[2],
                             notes=notes)


def vocabulary(model: JointModel) -> tuple[str, ...] | None:
    """The words the model's own text encoder knows, or None when it reads any text (umT5 through a CLIP)."""
    tokenizer = getattr(model.text_encoder, "tokenizer", None)
    return tokenizer.known_words() if hasattr(tokenizer, "known_words") else None


# --------------------------------------------------------------------------------------------- latents

def spatial_multiple(model: JointModel) -> int:
    """Frame sizes must divide by the VAE's spatial factor times the DiT's patch."""
    return model.spec.vae_space_factor * max(model.dit.config.video.patch_size[1:])


def supported_sizes(model: JointModel) -> str:
    """What frame sizes the loaded model takes, in words (every size error ends with it)."""
    spec = model.spec
    presets = ", ".join(f"{w}x{h}" for h, w in spec.resolutions)
    family = "" if spec.family in model.name else f" ({spec.family})"
    return (f"model {model.name}{family} takes a width and a height that are each a multiple of "
            f"{spatial_multiple(model)}, with at most {spec.max_area} pixels per frame; its presets (width x height): {presets}")


def size_rule(multiple: int) -> str:
    """What a frame side must be, in the words every help text and error uses."""
    return f"a multiple of {multiple} from {multiple} to {MAX_SIDE}"


def duration_rule(spec: ModelSpec) -> str:
    return ", ".join(p.name for p in spec.durations)


def _checked_size(model: JointModel, height: int, width: int) -> tuple[int, int]:
    """The one rule for frame sizes: a multiple of the model's spatial multiple, within its family's area.

    Checked before any tensor is made, so a prompt asking for more than the model is run at costs nothing."""
    multiple = spatial_multiple(model)
    for name, value in (("height", height), ("width", width)):
        if not isinstance(value, int) or isinstance(value, bool) or value <= 0 or value % multiple \
                or value > MAX_SIDE:
            raise InputValueError(f"{name}={value!r} is not usable for model {model.name}: expected "
                                  f"{size_rule(multiple)}; {supported_sizes(model)}")
    if height * width > model.spec.max_area:
        raise InputValueError(f"width={width}, height={height}: {width * height} pixels per frame is more than "
                              f"this model is run at; {supported_sizes(model)}")
    area = model.spec.target_area
    if area and not 0.9 * area <= height * width <= 1.1 * area:
        log.warning("%dx%d is more than 10%% away from the %d-pixel area model %s was trained on; results may suffer",
                    width, height, area, model.name)
    return height, width


def _frames(model: JointModel, duration: str) -> int:
    if duration == MODEL_DURATION:
        return model.spec.durations[0].frames
    try:
        return model.spec.duration_preset(duration).frames
    except KeyError:
        raise InputValueError(f"duration={duration!r} is not a duration of model {model.name}; "
                              f"expected one of: {duration_rule(model.spec)}, or {MODEL_DURATION} (= "
                              f"{model.spec.durations[0].name})") from None


def _size_or_default(model: JointModel, height: int | None, width: int | None) -> tuple[int, int]:
    """None (or 0) for both sizes means the model's own default frame size (its first preset)."""
    if not height and not width:
        return model.spec.resolutions[0]
    if not height or not width:
        raise InputValueError(f"width={width!r} and height={height!r}: give both sizes, or neither for the model's "
                              f"default ({supported_sizes(model)})")
    return height, width


def frame_size(model: JointModel, height: int | None, width: int | None) -> tuple[int, int]:
    """(height, width) a clip of `model` is made at: both given, or neither (0/None) for the model's default;
    refused (with the sizes the model takes) unless the model's size rule and area allow it."""
    return _checked_size(model, *_size_or_default(model, height, width))


def _latent(model: JointModel, frames: int, height: int, width: int, batch: int) -> JointLatent:
    spec = model.spec
    latent_frames = (frames - 1) // spec.vae_time_factor + 1
    audio_len = audio_latent_length(latent_frames, spec.audio_per_video_frame)
    h, w = height // spec.vae_space_factor, width // spec.vae_space_factor
    return JointLatent(
        video=torch.zeros(batch, spec.video_latent_channels, latent_frames, h, w),
        audio=torch.zeros(batch, audio_len, spec.audio_latent_channels),
        fps=spec.fps, audio_sample_rate=spec.audio_sample_rate, audio_samples_per_latent=spec.audio_samples_per_latent)


def empty_latent(model: JointModel, duration: str = MODEL_DURATION, height: int | None = None,
                 width: int | None = None, batch: int = 1) -> JointLatent:
    """The shape of a clip to generate (the sampler draws the noise); sizes None take the model's default."""
    if not isinstance(batch, int) or not 1 <= batch <= 64:
        raise InputValueError(f"batch={batch!r}: expected an integer from 1 to 64")
    height, width = _checked_size(model, *_size_or_default(model, height, width))
    return _latent(model, _frames(model, duration), height, width, batch)


def _fit_image(image: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """[B,H,W,3] in 0..1 → [B,3,height,width]: centre-crop to the aspect ratio, then an antialiased resize."""
    x = image.permute(0, 3, 1, 2).float()
    ih, iw = x.shape[2:]
    scale = max(height / ih, width / iw)
    ch, cw = min(ih, math.ceil(height / scale)), min(iw, math.ceil(width / scale))
    top, left = (ih - ch) // 2, (iw - cw) // 2
    x = x[:, :, top:top + ch, left:left + cw]
    return F.interpolate(x, size=(height, width), mode="bilinear", antialias=True, align_corners=False).clamp(0, 1)


def _nearest_preset(model: JointModel, image: torch.Tensor) -> tuple[int, int]:
    aspect = image.shape[2] / image.shape[1]
    return min(model.spec.resolutions, key=lambda hw: abs(math.log((hw[1] / hw[0]) / aspect)))


def image_to_av_latent(model: JointModel, decoders: Decoders, image: torch.Tensor, duration: str,
                       height: int | None = None, width: int | None = None) -> JointLatent:
    """A clip whose first latent frame is held to the encoded image (image-to-audio-video)."""
    if image.ndim != 4 or image.shape[-1] != 3:
        raise InputShapeError(f"image: shape {tuple(image.shape)}, expected [B, H, W, 3] (a ComfyUI IMAGE)")
    if decoders.video_vae is None:
        raise InputValueError("decoders: no video VAE is loaded; image-to-AV needs its encoder")
    if not height and not width:
        height, width = _nearest_preset(model, image)
    height, width = _checked_size(model, *_size_or_default(model, height, width))
    latent = _latent(model, _frames(model, duration), height, width, image.shape[0])
    pixels = _fit_image(image, height, width) * 2 - 1
    vae = decoders.video_vae
    ref = next(vae.parameters())
    with torch.no_grad():
        first = vae.encode_image(pixels.to(ref.device, ref.dtype).unsqueeze(2)).float().cpu()
    latent.conditionings.append(FirstFrame(first))
    return latent


# --------------------------------------------------------------------------------------------- sampling

def checked_steps(steps) -> int:
    """The number of sampling steps, refused unless a whole number of at least 1 (0 is not "the default")."""
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
        raise InputValueError(f"steps={steps!r}: expected a whole number >= 1")
    return steps


def sample(model: JointModel, conditioning: JointConditioning, latent: JointLatent, *, seed: int = 0, steps: int = 50,
           solver: str = "unipc", shift: float = 5.0, video_guidance: float = 4.0, audio_guidance: float = 3.0,
           skip_layer: int | str | None = "default", progress=None, cancel=None,
           step_cache: StepCache | None = None,
           hold_mode: str = "clean", adapter: str = "auto") -> JointLatent:
    """Denoise a joint latent: seeded noise, guided steps, held frames kept. Returns the clean latents.

    skip_layer: the block skipped in the negative pass; "default" (or -1) takes the model family's (11 for
    Ovi, off for the embedded default), None or 0 turns skip-layer guidance off.
    cancel(): checked before every step and before every DiT block (True, or an exception it raises, stops
    the run), so a stop request lands within one block's time even when one forward takes long.
    step_cache: skip passes whose step changes little (samplers/step_cache.py; off when None). Its
    settings and how many passes it skipped go into the provenance.
    adapter: "auto" adds the model family's hold adapter for the latent's hold (the embedded default's foley
    adapter when the whole video is held clean; pipeline/adapters.py) while sampling, "off" never. Which one was
    added goes into the provenance.
    """
    if skip_layer in ("default", MODEL_SKIP_LAYER):
        skip_layer = model.spec.default_skip_layer
    checked_steps(steps)
    layers = model.dit.config.num_layers
    if skip_layer is not None and not (isinstance(skip_layer, int) and 0 <= skip_layer < layers):
        raise InputValueError(f"skip_layer={skip_layer!r} is beyond model {model.name}'s {layers} layers; expected "
                              f"{MODEL_SKIP_LAYER} (the model's own: {model.spec.default_skip_layer or 'off'}), "
                              f"0 (off) or 1 to {layers - 1}")
    skip_layer = skip_layer or None
    dit, device = model.dit, model.device
    dtype = dit.compute_dtype
    added = chosen_adapter(model, latent.conditionings, hold_mode, adapter)
    dit.block_check = _block_check(cancel)
    try:
        with applied(dit, added), offload_session(dit), split_over_processes(dit):
            positive = PromptContexts.shared(conditioning.video_positive[None].to(device, dtype))
            negative = PromptContexts(video=conditioning.video_negative[None].to(device, dtype),
                                      audio=conditioning.audio_negative[None].to(device, dtype))
            video, audio = sample_latents(
                dit, tuple(latent.video.shape), tuple(latent.audio.shape), positive, negative, solver=solver, steps=steps,
                shift=shift, video_guidance=video_guidance, audio_guidance=audio_guidance, slg_layer=skip_layer,
                conditioning=latent.conditionings or None, seed=seed,
                audio_per_video_frame=model.spec.audio_per_video_frame, device=device, dtype=dtype,
                progress=progress, cancel=cancel, step_cache=step_cache,
                hold_mode=hold_mode)
    finally:
        dit.block_check = None
    provenance = sampling_provenance(model, conditioning, latent, seed=seed, solver=solver, steps=steps, shift=shift,
                                     video_guidance=video_guidance, audio_guidance=audio_guidance,
                                     skip_layer=skip_layer, hold_mode=hold_mode, adapter=added)
    if step_cache is not None:
        provenance["sampler"]["step_cache"] = {"threshold": step_cache.threshold, "skipped": step_cache.skipped,
                                               "computed": step_cache.computed}
    return JointLatent(video=video.float().cpu(), audio=audio.float().cpu(), fps=latent.fps,
                       audio_sample_rate=latent.audio_sample_rate,
                       audio_samples_per_latent=latent.audio_samples_per_latent,
                       conditionings=list(latent.conditionings), sampled=True, provenance=provenance)


def sampling_provenance(model: JointModel, conditioning: JointConditioning, latent: JointLatent, *, seed: int,
                        solver: str, steps: int, shift: float, video_guidance: float, audio_guidance: float,
                        skip_layer: int | None, hold_mode: str = "clean", adapter=None) -> dict:
    """The latent's provenance plus what sampling made the clip with (JointAV Save Video's manifest reads it)."""
    # keys set before sampling (e.g. a cameo's consent record) stay; sampling adds what made the clip
    return {**latent.provenance, "model": model.name, "prompt": conditioning.prompt, "seed": seed,
            "sampler": {"solver": solver, "steps": steps, "shift": shift, "video_guidance": video_guidance,
                        "audio_guidance": audio_guidance, "skip_layer": skip_layer,
                        "video_negative": conditioning.video_negative_prompt,
                        "audio_negative": conditioning.audio_negative_prompt,
                        **({"hold_mode": hold_mode} if hold_mode != "clean" else {}),
                        **({"adapter": adapter.provenance()} if adapter is not None else {})}}


def _block_check(cancel) -> Callable[[], None] | None:
    """The DiT's per-block hook made from a run's cancel(): it raises when cancel() says stop."""
    if cancel is None:
        return None

    def check() -> None:
        if cancel():
            raise GenerationInterrupted("sampling cancelled inside a model forward")

    return check


# --------------------------------------------------------------------------------------------- decoding

def _require_sampled(latent: JointLatent) -> None:
    if not latent.sampled:
        raise InputValueError("latent: this is an empty latent (a shape template); pass it through the sampler first")


def decode_video(decoders: Decoders, latent: JointLatent, *, chunk_frames: int = 4, progress=None,
                 cancel=None) -> torch.Tensor:
    """Video latents → ComfyUI IMAGE `[B*T, H, W, 3]` in 0..1, decoded chunk by chunk into one output buffer.

    progress(done, total) counts latent frames after each chunk; cancel() is checked before each chunk and
    True raises GenerationInterrupted, so a long decode can be stopped too.
    """
    _require_sampled(latent)
    vae = decoders.video_vae
    if vae is None:
        raise InputValueError("decoders: no video VAE is loaded")
    ref = next(vae.parameters())
    shape = vae.output_shape(tuple(latent.video.shape))
    out = torch.empty(shape[0], shape[2], shape[3], shape[4], 3)
    total = latent.video.shape[2]
    with torch.no_grad():
        start = 0
        chunks = vae.iter_decode(latent.video.to(ref.device, ref.dtype), chunk_frames=chunk_frames, clamp=True)
        for index in range(math.ceil(total / chunk_frames)):
            if cancel is not None and cancel():
                raise GenerationInterrupted(f"video decoding cancelled at latent frame {index * chunk_frames} of {total}")
            chunk = next(chunks)
            n = chunk.shape[2]
            out[:, start:start + n] = ((chunk.float().cpu().permute(0, 2, 3, 4, 1) + 1) / 2).clamp(0, 1)
            start += n
            if progress is not None:
                progress(min((index + 1) * chunk_frames, total), total)
    return out.reshape(-1, shape[3], shape[4], 3)


def decode_audio(decoders: Decoders, latent: JointLatent, *, sample_rate: int = 44100, channels: int = 2) -> dict:
    """Audio latents → ComfyUI AUDIO `{"waveform": [B, C, S], "sample_rate": sr}` (resampled, peak-safe)."""
    _require_sampled(latent)
    if decoders.audio_vae is None or decoders.vocoder is None:
        raise InputValueError("decoders: no audio VAE and vocoder are loaded")
    waveform = decode_audio_latent(decoders.audio_vae, decoders.vocoder, latent.audio)
    return finish_audio(waveform.float().cpu(), latent.audio_sample_rate, target_rate=sample_rate, channels=channels)
