"""`jointav bench cache`: what step caching costs in output and saves in forwards, against the uncached run.

On the embedded default model (or --model), one prompt and seed, the model's default steps: the uncached
run, then one cached run per threshold. Printed per run: forwards computed / skipped, time as a ratio to the
uncached run (same process, interleaved order not needed: each run is seconds), and the difference of the
result, as the relative L2 error of the video and audio latents and the mean absolute difference of the
decoded frames in 8-bit levels, and the relative L2 error of the decoded 16 kHz waveform.
"""

from __future__ import annotations

import argparse
import time



def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", default=None, help="DiT checkpoint (default: the embedded model)")
    parser.add_argument("--thresholds", default="0.02,0.05,0.1,0.2", help="comma-separated step cache thresholds")
    parser.add_argument("--steps", type=int, default=None, help="sampling steps (default: the model's)")
    parser.add_argument("--prompt", default="a red ball bounces twice on the left, a blue cube slides right")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--device", default=None)


def run(args) -> int:
    from ..pipeline import api
    from ..samplers.step_cache import StepCache

    model = api.load_joint_model(args.model, device=args.device)
    decoders = api.load_decoders(None, None, None, model=model, device=args.device)
    steps = args.steps or model.spec.default_steps
    duration = model.spec.durations[0].name
    height, width = model.spec.resolutions[0]
    conditioning = api.encode_prompt(model, args.prompt, "", "")
    latent = api.empty_latent(model, duration, height, width)
    print(f"jointav bench cache: {model.name}, {duration} {height}x{width}, {steps} steps, seed {args.seed}")

    def one(cache):
        start = time.perf_counter()
        out = api.sample(model, conditioning, latent, seed=args.seed, steps=steps, step_cache=cache)
        seconds = time.perf_counter() - start
        frames = api.decode_video(decoders, out)
        wave = api.decode_audio(decoders, out, sample_rate=16000, channels=1)["waveform"]
        return out, seconds, frames, wave

    base, base_s, base_frames, base_wave = one(None)
    header = f"{'threshold':>9} {'computed':>8} {'skipped':>7} {'time':>6} {'video lat':>9} {'audio lat':>9} {'frames':>7} {'wave':>8}"
    print(header)
    print("-" * len(header))
    print(f"{'off':>9} {2 * steps:>8} {0:>7} {1.0:>5.2f}x {0:>9.4f} {0:>9.4f} {0:>7.2f} {0:>8.4f}")
    for threshold in (float(x) for x in args.thresholds.split(",")):
        cache = StepCache(threshold=threshold)
        out, seconds, frames, wave = one(cache)

        def rel(a, b):
            return float((a - b).norm() / b.norm())

        frame_diff = float((frames - base_frames).abs().mean() * 255)
        wave_diff = rel(wave, base_wave)
        print(f"{threshold:>9g} {cache.computed:>8} {cache.skipped:>7} {seconds / base_s:>5.2f}x "
              f"{rel(out.video, base.video):>9.4f} {rel(out.audio, base.audio):>9.4f} {frame_diff:>7.2f} {wave_diff:>8.4f}")
    print("video/audio lat: relative L2 of the sampled latents; frames: mean |diff| of decoded frames in 8-bit levels;"
          " wave: relative L2 of the decoded 16 kHz waveform")
    return 0
