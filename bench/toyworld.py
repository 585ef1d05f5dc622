"""`jointav bench toyworld`: how fast the toy world renders clips (the training data of the default model).

Rendering runs inside training steps' data workers, so it must stay far below a step's time; the figure is
printed as milliseconds per clip and as a ratio to the clip's own duration (how much faster than real time).
"""

from __future__ import annotations

import argparse
import statistics
import time


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--clips", type=int, default=20, help="clips rendered and timed, default 20")


def run(args) -> int:
    import numpy as np

    from ..toyworld import WorldConfig, render_clip, sample_spec

    world = WorldConfig()
    rng = np.random.default_rng(5)
    specs = [sample_spec(rng) for _ in range(args.clips)]
    render_clip(specs[0], 0)  # first call: imports and caches, not timed
    times = []
    for i, spec in enumerate(specs):
        start = time.perf_counter()
        render_clip(spec, i)
        times.append(time.perf_counter() - start)
    median = statistics.median(times)
    print(f"toy world: {args.clips} clips of {world.duration:g} s at {world.width}x{world.height}, {world.fps:g} fps")
    print(f"  render time per clip: median {1000 * median:.1f} ms, worst {1000 * max(times):.1f} ms")
    print(f"  {world.duration / median:.0f}x faster than real time (clip duration / median render time)")
    return 0
