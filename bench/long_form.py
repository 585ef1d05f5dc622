"""`jointav bench long_form`: peak memory and time per second of output of extend, animate, foley and shots at
1x, 2x and 4x length (default 5, 10 and 20 s; `--base 20 --lengths 1,3` gives the issue's 20 s vs 60 s).

Each measurement runs in a fresh subprocess on the embedded default model: the model, the decoders and the input
media (a toy-world clip tiled to the length) are made first, then the run writing an MP4 is measured. The peak is
the process resident set above its level before the run (bench.decode's sampler), or CUDA allocated memory.
Streaming keeps one segment in memory, so the peak must stay flat with length; time per output second is flat too
(a constant number of segments per second).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

MODES = ("extend", "animate", "foley", "shots")
CAPTION = "a green ball bounces three times in the centre, low thuds, on a gray background"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--base", type=float, default=5.0, help="seconds of output at 1x (default 5)")
    parser.add_argument("--lengths", default="1,2,4", help="multiples of --base (default 1,2,4)")
    parser.add_argument("--modes", default=",".join(MODES), help=f"which of {', '.join(MODES)} (default all)")
    parser.add_argument("--steps", type=int, default=4, help="sampling steps per segment (default 4; the model's own is 24)")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads (default 1)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--worker", help=argparse.SUPPRESS)


def _tiled(array, length: int):
    import numpy as np

    reps = -(-length // len(array))
    return np.concatenate([array] * reps)[:length]


def _worker(job: dict) -> dict:
    import time

    import torch

    from ..audio.av_stream import MODEL_RATE, MediaClip, StreamingMP4Writer
    from ..pipeline import api, long_form
    from ..toyworld import parse_caption, render_clip
    from .decode import _PeakRSS

    torch.set_num_threads(job["threads"])
    device = torch.device(job["device"])
    model, decoders = api.load_joint_model(device=device), api.load_decoders(device=device)
    seconds, mode = job["seconds"], job["mode"]
    clip = render_clip(parse_caption(CAPTION), seed=1)
    fps = model.spec.fps
    frames = _tiled(clip.frames, round(seconds * fps))
    sound = _tiled(clip.audio, round(seconds * MODEL_RATE) + 1)
    settings = long_form.Settings(steps=job["steps"], seed=0)
    folder = Path(tempfile.mkdtemp(prefix="jointav-bench-"))
    source = MediaClip(frames=frames, sound=sound, fps=fps, path=folder / "input.mp4")
    shots = [long_form.Shot(CAPTION, seconds / 3), long_form.Shot("it bounces twice", seconds / 3),
             long_form.Shot("the same ball slides left", seconds / 3)]

    def run():
        with StreamingMP4Writer(folder / "out.mp4", fps, 64, 64) as writer:
            if mode == "extend":
                report = long_form.extend(model, decoders, writer, to_seconds=seconds, prompts=[CAPTION],
                                          settings=settings)
            elif mode == "animate":
                report = long_form.animate(model, decoders, writer, source, [CAPTION], to_seconds=seconds,
                                           settings=settings)
            elif mode == "foley":
                report = long_form.foley(model, decoders, writer, source, [CAPTION], to_seconds=seconds,
                                         settings=settings)
            else:
                report = long_form.shots(model, decoders, writer, shots, settings=settings)
            writer.commit()
        return report

    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
        base = torch.cuda.memory_allocated(device)
        t0 = time.perf_counter()
        report = run()
        torch.cuda.synchronize(device)
        elapsed, peak = time.perf_counter() - t0, (torch.cuda.max_memory_allocated(device) - base) / 2**20
    else:
        with _PeakRSS() as rss:
            t0 = time.perf_counter()
            report = run()
            elapsed = time.perf_counter() - t0
        peak = (rss.peak - rss.base) / 2**20
    return {"seconds": elapsed, "peak_mib": peak, "frames": report.frames, "segments": report.segments,
            "output_s": report.frames / fps}


def _in_subprocess(job: dict) -> dict:
    env = dict(os.environ, MALLOC_MMAP_THRESHOLD_="131072", MALLOC_TRIM_THRESHOLD_="131072", OMP_NUM_THREADS=str(job["threads"]))
    proc = subprocess.run([sys.executable, "-m", "jointav.bench.long_form", "--worker", json.dumps(job)],
                          capture_output=True, text=True, env=env)
    if proc.returncode != 0:
        raise RuntimeError(f"bench long_form: measurement {job} failed:\n{proc.stderr[-2000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def run(args: argparse.Namespace) -> int:
    if args.worker:
        print(json.dumps(_worker(json.loads(args.worker))))
        return 0
    lengths = [int(x) for x in args.lengths.split(",")]
    modes = [m for m in args.modes.split(",") if m]
    unknown = set(modes) - set(MODES)
    if unknown:
        print(f"error: --modes {', '.join(sorted(unknown))}: expected some of {', '.join(MODES)}", file=sys.stderr)
        return 2
    print(f"jointav bench long_form: embedded default model, 64x64 @ 12 fps, {args.steps} steps per segment, "
          f"{args.threads} thread(s), device {args.device}; peak = "
          f"{'CUDA allocated' if args.device.startswith('cuda') else 'process RSS'} above the level before the run")
    header = (f"{'mode':<8} {'length':>6} {'output s':>8} {'segments':>8} {'seconds':>8} {'s per out s':>11} "
              f"{'peak MiB':>9} {'peak vs 1x':>10}")
    print(header)
    print("-" * len(header))
    for mode in modes:
        first = None
        for mult in lengths:
            job = {"mode": mode, "seconds": args.base * mult, "steps": args.steps, "threads": args.threads,
                   "device": args.device}
            r = _in_subprocess(job)
            first = first or max(r["peak_mib"], 1e-9)
            print(f"{mode:<8} {mult:>5}x {r['output_s']:>8.2f} {r['segments']:>8} {r['seconds']:>8.2f} "
                  f"{r['seconds'] / r['output_s']:>11.2f} {r['peak_mib']:>9.1f} {r['peak_mib'] / first:>9.2f}x",
                  flush=True)
    return 0


if __name__ == "__main__":
    parser = argparse.ArgumentParser(prog="python -m jointav.bench.long_form")
    add_arguments(parser)
    sys.exit(run(parser.parse_args()))
