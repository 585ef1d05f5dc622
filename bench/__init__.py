"""Benchmarks that print figures (`jointav bench NAME`). Each module has `add_arguments(parser)` and `run(args)`."""

import importlib

BENCHMARKS = {"dit": "DiT forward time per step, peak memory, and peak RSS while loading a checkpoint",
              "decode": "video/audio decode time and peak memory for 1x, 2x, 4x clip lengths",
              "consent": "cameo consent gate and usage-log append time as the usage log grows",
              "toyworld": "toy-world clip render time (the default model's training data), vs real time",
              "build": "time to build the Ovi-size DiT on the meta device, against the default model's",
              "cache": "step caching: forwards skipped and the output difference against the uncached run",
              "long_form": "extend/animate/foley/shots: peak memory and time per output second at 1x, 2x, 4x length"}


def register_benchmarks(subparsers) -> None:
    for name, help_text in BENCHMARKS.items():
        p = subparsers.add_parser(name, help=help_text)
        try:
            module = importlib.import_module(f".{name}", __name__)
        except ModuleNotFoundError:
            continue
        module.add_arguments(p)
