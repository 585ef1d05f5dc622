"""`jointav generate`: one clip from a prompt (and optionally a first-frame image) without ComfyUI."""

from __future__ import annotations

import argparse
import sys
import time


def parse_size(text: str) -> tuple[int, int]:
    """`--size HEIGHTxWIDTH` -> (height, width); whether a model can make it is the pipeline's rule (api.size_rule)."""
    parts = text.lower().split("x")
    if len(parts) == 2 and all(p.strip().isdigit() and int(p) > 0 for p in parts):
        return int(parts[0]), int(parts[1])
    raise argparse.ArgumentTypeError(f"{text!r}: expected HEIGHTxWIDTH in pixels, e.g. 64x96 (64 high, 96 wide)")


def format_size(height: int, width: int) -> str:
    """A frame size the way --size takes it (height first)."""
    return f"{height}x{width}"


def parse_steps(text: str) -> int:
    """`--steps N`: a whole number of at least 1, by the sampler's own rule (api.checked_steps)."""
    from ..errors import InputValueError
    from ..pipeline.api import checked_steps

    try:
        return checked_steps(int(text))
    except (ValueError, InputValueError):
        raise argparse.ArgumentTypeError(f"{text!r}: expected a whole number >= 1 (leave --steps out for the "
                                         f"model's own)") from None


def _families_help(value) -> str:
    """One phrase per distinct value over the model families, e.g. '16 for the embedded model, 32 for Ovi'."""
    from ..pipeline.specs import DEFAULT_SPEC, FAMILIES

    groups: dict[str, list[str]] = {}
    for spec in FAMILIES.values():
        name = "the embedded model" if spec is DEFAULT_SPEC else spec.family
        groups.setdefault(str(value(spec)), []).append(name)
    return "; ".join(f"{v} for {', '.join(names)}" for v, names in groups.items())


def _size_help() -> str:
    from ..pipeline.api import MAX_SIDE
    from ..pipeline.specs import DEFAULT_SPEC

    h, w = DEFAULT_SPEC.resolutions[0]
    return (f"HEIGHTxWIDTH in pixels (64x96 is 64 high, 96 wide); each side a multiple of the model's size step, "
            f"up to {MAX_SIDE} (step {_families_help(lambda s: s.size_multiple)}); default: the model's first "
            f"preset ({format_size(h, w)} for the embedded model)")


def _duration_help() -> str:
    return (f"one of the model's durations ({_families_help(lambda s: ', '.join(p.name for p in s.durations))}); "
            f"default: the first")


def _steps_help() -> str:
    return f"sampling steps, 1 or more (default: the model's own: {_families_help(lambda s: s.default_steps)})"


def register(subparsers) -> None:
    p = subparsers.add_parser("generate", help="make an MP4 (H.264 + AAC) and a WAV from a prompt",
                              description="Generate a clip with sound. Without --model the embedded default model runs.")
    p.add_argument("--prompt", required=True,
                   help="the scene; speech may be inline as <S>words<E>. The embedded model knows a small vocabulary "
                        "(`jointav vocabulary`) and warns about every word of --prompt, --speech and "
                        "--audio-description it cannot read")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", required=True, help="output .mp4 (a .wav of the same name is written beside it)")
    p.add_argument("--speech", action="append", default=[], help="a spoken line (repeatable)")
    p.add_argument("--audio-description", default="", help="sounds to hear, e.g. 'low thuds, room tone'")
    p.add_argument("--video-negative", default="jitter, bad hands, blur, distortion")
    p.add_argument("--audio-negative", default="robotic, muffled, echo, distorted")
    p.add_argument("--model", help="fusion DiT checkpoint (Ovi .safetensors or a JointAV bundle); default: embedded")
    p.add_argument("--video-vae", help="Wan2.2 VAE file (wan2.2_vae.safetensors or Wan2.2_VAE.pth)")
    p.add_argument("--audio-vae", help="MMAudio VAE file (v1-16.pth)")
    p.add_argument("--vocoder", help="BigVGAN generator file (best_netG.pt)")
    p.add_argument("--image", help="first frame (PNG/JPEG): image-to-audio-video")
    p.add_argument("--duration", help=_duration_help())
    p.add_argument("--size", type=parse_size, metavar="HEIGHTxWIDTH", help=_size_help())
    p.add_argument("--steps", type=parse_steps, help=_steps_help())
    p.add_argument("--solver", default="unipc", choices=["unipc", "euler", "dpm++"])
    p.add_argument("--shift", type=float, default=5.0)
    p.add_argument("--video-guidance", type=float, default=4.0)
    p.add_argument("--audio-guidance", type=float, default=3.0)
    p.add_argument("--skip-layer", type=int, help="block skipped in the negative pass (default: the model's; 0 = off)")
    p.add_argument("--sample-rate", type=int, default=44100, choices=[16000, 44100, 48000])
    p.add_argument("--device", help="cpu or cuda (default: cuda when available)")
    p.add_argument("--weight-dtype", default="auto", choices=["auto", "fp32", "bf16", "fp16", "fp8_e4m3fn"])
    p.add_argument("--offload", default="none",
                   help="none, cpu (stream every DiT block from RAM) or 'blocks N' (stream the last N blocks)")
    p.add_argument("--fp8-compute", action="store_true",
                   help="fp8 matmuls in the DiT blocks on GPUs that have them (Ada/Hopper+); dequantised bf16 elsewhere")
    p.add_argument("--attention", default="auto", help="attention backend: auto, sdpa, math, xformers, flash, sage")
    p.add_argument("--cameo", metavar="PROFILE_DIR",
                   help="a cameo profile folder ('jointav cameo create'); its consent record must grant this "
                        "machine's operator key ('jointav cameo grant'), and the use is logged")
    p.add_argument("--cameo-mode", default="auto", choices=["auto", "first_frame", "reference_tokens", "both"],
                   help="how the cameo conditions the clip: its frame as the first frame (supported with Ovi), "
                        "reference tokens (EXPERIMENTAL with Ovi weights), or both; auto: the model's choice "
                        "(first_frame for Ovi, both for the embedded default)")
    p.add_argument("--cameo-reference-guidance", default="auto", choices=["auto", "on", "off"],
                   help="with reference tokens: guide toward them too (on) or only toward the text (off); auto: the "
                        "model's setting (on for the embedded default, trained for it; off for Ovi)")
    p.set_defaults(func=run)


def run(args) -> int:
    import torch
    from tqdm import tqdm

    from ..errors import JointAVError
    from ..models.sequence_parallel import init_from_environment
    from ..pipeline.generate import GenerationRequest, generate, write_clip

    # under `torchrun --nproc-per-node N` every process samples its share of the tokens; rank 0 writes the clip
    rank, world = init_from_environment()
    device = args.device
    if world > 1 and device is None and torch.cuda.is_available():
        device = f"cuda:{torch.cuda.current_device()}"

    height, width = args.size if args.size else (None, None)
    req = GenerationRequest(
        prompt=args.prompt, seed=args.seed, speech=tuple(args.speech), audio_description=args.audio_description,
        video_negative=args.video_negative, audio_negative=args.audio_negative, model=args.model,
        video_vae=args.video_vae, audio_vae=args.audio_vae, vocoder=args.vocoder, image=args.image,
        duration=args.duration, height=height, width=width, steps=args.steps, solver=args.solver, shift=args.shift,
        video_guidance=args.video_guidance, audio_guidance=args.audio_guidance,
        skip_layer="default" if args.skip_layer is None else args.skip_layer, sample_rate=args.sample_rate,
        device=device, weight_dtype=args.weight_dtype, attention_backend=args.attention, offload=args.offload,
        fp8_compute=args.fp8_compute, cameo=args.cameo, cameo_mode=args.cameo_mode,
        cameo_reference_guidance=args.cameo_reference_guidance)
    start = time.perf_counter()
    bar = tqdm(total=None, desc="sampling", unit="step", file=sys.stderr, disable=rank != 0)

    def progress(done: int, total: int) -> None:
        bar.total = total
        bar.update(done - bar.n)

    try:
        clip = generate(req, progress=progress)
        if rank != 0:  # the other processes of a torchrun launch hold the same clip
            bar.close()
            return 0
        mp4, wav = write_clip(clip, args.out)
    except JointAVError as e:
        bar.close()
        print(f"error: {e}", file=sys.stderr)
        return 2
    bar.close()
    for note in clip.notes:
        print(f"warning: {note}", file=sys.stderr)
    seconds = clip.frames.shape[0] / clip.fps
    size = format_size(clip.frames.shape[1], clip.frames.shape[2])
    print(f"wrote {mp4} ({clip.frames.shape[0]} frames, {size} (height x width) @ {clip.fps:g} fps, "
          f"{seconds:.2f} s) and {wav} ({clip.audio['sample_rate']} Hz) in {time.perf_counter() - start:.1f} s")
    if clip.provenance.get("consent_sha256"):
        from ..cameo.usage_log import default_log_path

        print(f"cameo profile {clip.provenance['cameo_profile_id']} used under consent record sha256 "
              f"{clip.provenance['consent_sha256']} by operator {clip.provenance['cameo_operator']}; "
              f"use logged in {default_log_path()}")
    return 0
