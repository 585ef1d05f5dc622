"""`jointav` command line: parity, bench, and the pipeline commands added by later modules."""

from __future__ import annotations

import argparse
import sys


def _cmd_parity(args) -> int:
    from pathlib import Path

    from .parity import run_path

    try:
        if args.world_size > 1:
            from .parity.sequence_parallel import run_sequence_parallel

            results = run_sequence_parallel(Path(args.path), args.world_size)
        else:
            results = run_path(Path(args.path))
    except FileNotFoundError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    for r in results:
        print(r.line())
    failed = [r for r in results if not r.passed]
    worst = max((r.max_abs for r in results), default=0.0)
    print(f"{len(results) - len(failed)} passed, {len(failed)} failed (worst max_abs {worst:.3e}, tolerance 1e-4)")
    return 1 if failed or not results else 0


def _cmd_bench(args) -> int:
    import importlib

    module = importlib.import_module(f".bench.{args.target}", __package__)
    return module.run(args) or 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="jointav", description="Joint audio-video generation (Ovi-compatible).")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("parity", help="run a fixture set through this code; exit 1 if any case is off by more than 1e-4")
    p.add_argument("path", help="a fixture set (e.g. ../shared/fixtures/ovi) or one component folder of it")
    p.add_argument("--world-size", type=int, default=1,
                   help="split the DiT over N processes (sequence parallel, gloo on CPU / NCCL on GPUs) and compare "
                        "with the single-process forward (max abs 1e-5) and the reference")
    p.set_defaults(func=_cmd_parity)

    b = sub.add_parser("bench", help="print speed and memory figures")
    bsub = b.add_subparsers(dest="target", required=True)
    from .bench import register_benchmarks

    register_benchmarks(bsub)
    b.set_defaults(func=_cmd_bench)

    for register in _extra_commands():
        register(sub)
    return parser


def _extra_commands():
    """Commands contributed by other modules (generate, verify, ...), each a `register(subparsers)`."""
    import importlib

    found = []
    for name in ("generate", "vocabulary", "verify", "cameo", "train", "long_form"):
        try:
            module = importlib.import_module(f".commands.{name}", __package__)
        except ModuleNotFoundError as e:
            if e.name and e.name.endswith(f"commands.{name}") or e.name and e.name.endswith("commands"):
                continue
            raise
        found.append(module.register)
    return found


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
