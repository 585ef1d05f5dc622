"""`jointav extend`, `animate`, `foley` and `shots`: long-form and cross-modal work without ComfyUI.

Each command checks its inputs, then streams its output into a temporary file beside --out that is renamed into
place when done (or, after Ctrl-C, when the finished segments are flushed), watermarked and signed like
`jointav generate`'s files. Exit codes: 0 done, 2 bad input (nothing written under --out), 130 interrupted
(--out holds the finished segments).
"""

from __future__ import annotations

import argparse
import signal
import sys
import time
from pathlib import Path


def _common(p: argparse.ArgumentParser, *, size: bool = False, hold: bool = False) -> None:
    from .generate import _size_help, _steps_help, parse_size, parse_steps

    p.add_argument("--out", required=True, help="output .mp4 (H.264 + AAC, sound at 16 kHz mono)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--steps", type=parse_steps, help=f"per segment: {_steps_help()}")
    p.add_argument("--solver", default="unipc", choices=["unipc", "euler", "dpm++"])
    p.add_argument("--video-guidance", type=float, default=4.0)
    p.add_argument("--audio-guidance", type=float, default=3.0)
    p.add_argument("--model", help="fusion DiT checkpoint (Ovi .safetensors or a JointAV bundle); default: embedded")
    p.add_argument("--video-vae", help="Wan2.2 VAE file (needs the encoder)")
    p.add_argument("--audio-vae", help="MMAudio VAE file (needs the encoder)")
    p.add_argument("--vocoder", help="BigVGAN generator file")
    p.add_argument("--device", help="cpu or cuda (default: cuda when available)")
    p.add_argument("--hold-mode", default="auto", choices=["auto", "clean", "noised"],
                   help="how held frames/sound are held: clean (timestep-0 tokens, as Ovi's i2v; what a model "
                        "trained with that kind of hold wants), noised (replaced by the held value noised to each "
                        "step, for weights never trained with it); auto (default): clean where the model was trained "
                        "with the hold and measured better so (the embedded default's whole video), noised where not "
                        "(whole-sound holds; whole-video holds on Ovi)")
    p.add_argument("--adapter", default="auto", choices=["auto", "off"],
                   help="auto (default): add the model's hold adapter where it ships one (the embedded default's "
                        "foley adapter, its audio tower fine-tuned for a given picture: video-to-audio within a frame "
                        "55%% -> 100%% on the tests' 20 clips; its animate adapter, the video tower for a given "
                        "sound: audio-to-video 85%% -> 100%%; its shots adapter, the video tower for a film's "
                        "later shots: colour kept 50%% -> 80%%); off: the base weights for every segment")
    if size:
        p.add_argument("--size", type=parse_size, help=_size_help())
    if hold:
        p.add_argument("--hold", type=int, default=2, metavar="LATENT_FRAMES",
                       help="latent frames of the previous segment held at the start of the next (2, the default: "
                            "its last 5 frames; 1: its last frame only)")


def register(subparsers) -> None:
    p = subparsers.add_parser("extend", help="continue a clip (any MP4 with sound) to a longer duration",
                              description="Extend a clip segment by segment: each new segment holds the previous "
                                          "one's last frames and the sound under them. Without IN the first segment "
                                          "is generated from the first --prompt.")
    p.add_argument("input", nargs="?", help="the clip to continue (a video with sound at the model's frame rate)")
    p.add_argument("--to", required=True, help="total duration, e.g. 20s (at most 600 s; the default model is "
                                               "measured to 60 s)")
    p.add_argument("--prompt", action="append", default=[],
                   help="prompt of the new segments (repeat for one per segment, the last repeats); default: the "
                        "prompt recorded in IN's metadata")
    _common(p, size=True, hold=True)
    p.set_defaults(func=run_extend)

    p = subparsers.add_parser("animate", help="audio-to-video: frames that follow a given sound",
                              description="Generate video for a given sound (WAV, FLAC, or a video's soundtrack); "
                                          "the sound is held clean for the whole clip.")
    p.add_argument("--audio", required=True, help="sound file or video with sound")
    p.add_argument("--prompt", action="append", required=True,
                   help="the scene (repeat for one per segment of a long sound, the last repeats)")
    p.add_argument("--to", help="duration to animate, e.g. 2s (default: the whole sound)")
    _common(p, size=True, hold=True)
    p.set_defaults(func=run_animate)

    p = subparsers.add_parser("foley", help="video-to-audio: the sound of a given video",
                              description="Generate the sound of a video (its frames held clean).")
    p.add_argument("input", help="a video at the model's frame rate and a size it takes")
    p.add_argument("--prompt", action="append", required=True,
                   help="the sound to make (repeat for one per segment of a long video, the last repeats)")
    p.add_argument("--to", help="duration to give sound, e.g. 2s (default: the whole video)")
    _common(p, hold=True)
    p.set_defaults(func=run_foley)

    p = subparsers.add_parser("shots", help="a film of several shots joined with hard cuts",
                              description="Shots are PROMPT@DURATION; every shot after the first carries the first "
                                          "shot's subject (its look and voice) as reference tokens.")
    p.add_argument("--shot", action="append", default=[], required=True, help="PROMPT@DURATION, e.g. 'a red ball@2s'")
    p.add_argument("--carry", default="subject", choices=["subject", "none"],
                   help="what later shots hold from the first: its subject (default) or nothing")
    _common(p, size=True, hold=True)
    p.set_defaults(func=run_shots)


# --------------------------------------------------------------------------------------------- shared

class _Interrupt:
    """Ctrl-C sets a flag that the sampler reads between steps; a second Ctrl-C stops at once."""

    def __init__(self):
        self.requested = False
        self._previous = None

    def __enter__(self):
        def handler(signum, frame):
            if self.requested:
                raise KeyboardInterrupt
            self.requested = True
            print("\nstopping after this step; finished segments are kept (Ctrl-C again to abort)", file=sys.stderr)

        try:
            self._previous = signal.signal(signal.SIGINT, handler)
        except ValueError:  # not the main thread (a test runner): no handler, cancel() stays usable
            self._previous = None
        return self

    def __exit__(self, *exc):
        if self._previous is not None:
            signal.signal(signal.SIGINT, self._previous)

    def __call__(self) -> bool:
        return self.requested


def _settings(args):
    from ..pipeline.long_form import Settings

    return Settings(seed=args.seed, steps=args.steps, solver=args.solver, video_guidance=args.video_guidance,
                    audio_guidance=args.audio_guidance, hold_mode=args.hold_mode, adapter=args.adapter)


def _load(args):
    from ..pipeline import api

    model = api.load_joint_model(args.model, device=args.device)
    decoders = api.load_decoders(args.video_vae, args.audio_vae, args.vocoder, model=model, device=args.device)
    return model, decoders


def _size_for(model, args, media=None) -> tuple[int, int]:
    from ..pipeline import api

    if media is not None and media.frames is not None:
        return tuple(int(v) for v in media.frames.shape[1:3])
    height, width = getattr(args, "size", None) or (None, None)
    return api.frame_size(model, height, width)


def _run(args, command: str, prompts: list[str], make, sources: dict, cancel_flag=None) -> int:
    """Open the writer, run `make(writer, progress, cancel)`, commit (also when interrupted), sign, report."""
    from tqdm import tqdm

    from ..audio.av_stream import StreamingMP4Writer
    from ..pipeline.generate import provenance_info
    from ..provenance import embed_watermark, local_watermark_key, sign_output
    from .generate import format_size

    model, height, width, settings = make.model, *make.size, make.settings
    provenance = {"model": model.name, "prompt": " | ".join(dict.fromkeys(prompts)), "seed": settings.seed,
                  "sampler": settings.record(model), "command": command, **sources}
    info = provenance_info(provenance)
    key = local_watermark_key()
    info.watermark_key_id = key.key_id
    bar = tqdm(total=None, desc=command, unit="step", file=sys.stderr)

    def progress(segment: int, segments: int, step: int, steps: int) -> None:
        bar.set_description(f"{command} segment {segment}/{segments or '?'}")
        bar.total = steps
        bar.n = step
        bar.refresh()

    start = time.perf_counter()
    metadata = {"title": info.prompt[:200], "comment": f"prompt={info.prompt} | seed={info.seed} | model={info.model}",
                "encoder": "ComfyUI-JointAV"}
    with _Interrupt() as interrupt, StreamingMP4Writer(
            args.out, model.spec.fps, height, width, watermark=lambda f: embed_watermark(f, key, info.clip_id),
            metadata=metadata) as writer:
        report = make.run(writer, progress, cancel_flag or interrupt)
        bar.close()
        if report.frames == 0:
            print(f"{command}: interrupted before anything was finished; nothing written to {args.out}",
                  file=sys.stderr)
            return 130
        writer.commit()
    info.extra.update(segments=report.segments, interrupted=report.interrupted, frames=report.frames)
    sign_output(writer.path, info)
    seconds = report.frames / model.spec.fps
    state = "interrupted; kept the finished segments:" if report.interrupted else "wrote"
    print(f"{state} {writer.path} ({report.frames} frames, {format_size(height, width)} (height x width) @ "
          f"{model.spec.fps:g} fps, {seconds:.2f} s, "
          f"{report.segments} segment(s)) in {time.perf_counter() - start:.1f} s")
    return 130 if report.interrupted else 0


class _Job:
    def __init__(self, model, size, settings, run):
        self.model, self.size, self.settings, self.run = model, size, settings, run


def _guard(body):
    """Run a command body; bad input becomes one 'error:' line and exit code 2."""
    from ..errors import JointAVError

    try:
        return body()
    except JointAVError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2


def _source_entry(path) -> dict:
    from ..cameo.profile import file_digest

    return {"name": Path(path).name, "sha256": file_digest(path)}


# --------------------------------------------------------------------------------------------- commands

def run_extend(args, cancel=None) -> int:
    def body():
        from ..audio.av_stream import read_media
        from ..audio.mp4 import probe_mp4
        from ..errors import InputValueError
        from ..pipeline import long_form

        to_seconds = long_form.parse_seconds(args.to)
        source = read_media(args.input, "extend: input") if args.input else None
        prompts = list(args.prompt)
        if not prompts and source is not None:
            recorded = probe_mp4(args.input)["metadata"].get("title", "").strip()
            prompts = [recorded] if recorded else []
        if not prompts:
            raise InputValueError("extend: --prompt: none given" + (f" and {args.input} records no prompt in its "
                                                                   f"metadata" if args.input else "") +
                                  "; expected at least one --prompt")
        model, decoders = _load(args)
        if source is not None:
            long_form.check_media_fits(model, source, "extend: input", need_sound=True)
        settings = _settings(args)
        job = _Job(model, _size_for(model, args, source), settings,
                   lambda writer, progress, cancel_: long_form.extend(
                       model, decoders, writer, to_seconds=to_seconds, prompts=prompts, source=source,
                       hold_latent_frames=args.hold, settings=settings, progress=progress, cancel=cancel_))
        sources = {"extended_from": _source_entry(args.input)} if args.input else {}
        return _run(args, "extend", prompts, job, {**sources, "to_seconds": to_seconds, "hold": args.hold}, cancel)

    return _guard(body)


def run_animate(args, cancel=None) -> int:
    def body():
        from ..audio.av_stream import read_media
        from ..errors import InputValueError
        from ..pipeline import long_form

        if any(not p.strip() for p in args.prompt):
            raise InputValueError("animate: --prompt is empty")
        to_seconds = long_form.parse_seconds(args.to) if args.to else None
        sound = read_media(args.audio, "animate: --audio")
        if sound.sound is None:
            raise InputValueError(f"animate: --audio {args.audio}: has no sound track")
        model, decoders = _load(args)
        settings = _settings(args)
        job = _Job(model, _size_for(model, args), settings,
                   lambda writer, progress, cancel_: long_form.animate(
                       model, decoders, writer, sound, args.prompt, to_seconds=to_seconds,
                       hold_latent_frames=args.hold, settings=settings, progress=progress, cancel=cancel_))
        return _run(args, "animate", args.prompt, job, {"audio_from": _source_entry(args.audio)}, cancel)

    return _guard(body)


def run_foley(args, cancel=None) -> int:
    def body():
        from ..audio.av_stream import read_media
        from ..errors import InputValueError
        from ..pipeline import long_form

        if any(not p.strip() for p in args.prompt):
            raise InputValueError("foley: --prompt is empty")
        to_seconds = long_form.parse_seconds(args.to) if args.to else None
        video = read_media(args.input, "foley: input")
        model, decoders = _load(args)
        long_form.check_media_fits(model, video, "foley: input", need_sound=False)
        settings = _settings(args)
        job = _Job(model, _size_for(model, args, video), settings,
                   lambda writer, progress, cancel_: long_form.foley(
                       model, decoders, writer, video, args.prompt, to_seconds=to_seconds,
                       hold_latent_frames=args.hold, settings=settings, progress=progress, cancel=cancel_))
        return _run(args, "foley", args.prompt, job, {"video_from": _source_entry(args.input)}, cancel)

    return _guard(body)


def run_shots(args, cancel=None) -> int:
    def body():
        from ..pipeline import long_form

        shot_list = [long_form.parse_shot(s) for s in args.shot]
        model, decoders = _load(args)
        settings = _settings(args)
        job = _Job(model, _size_for(model, args), settings,
                   lambda writer, progress, cancel_: long_form.shots(
                       model, decoders, writer, shot_list, carry=args.carry, hold_latent_frames=args.hold,
                       settings=settings, progress=progress, cancel=cancel_))
        return _run(args, "shots", [s.prompt for s in shot_list], job,
                    {"shots": [f"{s.prompt}@{s.seconds:g}s" for s in shot_list], "carry": args.carry}, cancel)

    return _guard(body)
