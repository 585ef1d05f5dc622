"""`jointav bench build`: building the Ovi-size fusion DiT on the meta device (no memory, no weights).

A loader builds the model this way before reading a checkpoint into it, so the build must cost seconds, not
minutes. Printed: seconds for Ovi's ~11B parameters and for the embedded default's, and their ratio against
the ratio of parameter counts (well under 1 means the build cost does not grow with the weights).
"""

from __future__ import annotations

import argparse
import time


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--repeat", type=int, default=3, help="builds of each size; the fastest counts, default 3")


def _fastest_build(config, repeat: int) -> tuple[float, int]:
    import torch

    from ..models.fusion_dit import FusionDiT

    best, count = float("inf"), 0
    for _ in range(repeat):
        start = time.perf_counter()
        model = FusionDiT(config, device="meta", dtype=torch.bfloat16)
        best = min(best, time.perf_counter() - start)
        count = sum(p.numel() for p in model.parameters())
        del model
    return best, count


def run(args) -> int:
    from ..models.config import FusionConfig
    from ..pipeline.default_model import default_configs

    ovi_s, ovi_n = _fastest_build(FusionConfig.ovi(), args.repeat)
    tiny_s, tiny_n = _fastest_build(FusionConfig.from_dict(default_configs()["dit"]), args.repeat)
    print(f"meta build, Ovi size: {ovi_n:,} parameters in {ovi_s:.2f} s")
    print(f"meta build, default:  {tiny_n:,} parameters in {tiny_s:.3f} s")
    print(f"  time ratio {ovi_s / tiny_s:.1f}x for {ovi_n / tiny_n:.0f}x the parameters")
    return 0
