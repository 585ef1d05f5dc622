"""The prepared GPU check (`scripts/gpu_check.sh`): real-size Ovi speed, memory and precision on one GPU.

Speed and memory at Ovi's size do not depend on the weights' values, so the real configs are built with
random bf16 weights directly on the GPU. Measured, in priority order against a time budget (every item
that does not fit is recorded as skipped, never silently dropped; results are rewritten after each item
so a run cut short still leaves its figures):
1. bf16 vs float32 forward error per tower (same bf16 weights; the float32 run computes in float32);
2. seconds per guided step (conditional + negative pass with skip-layer) at 5 s 704x704 (Ovi 1.0) and
   10 s 960x960 (Ovi 1.1), bf16, for each SDPA backend present (flash / cuDNN / efficient) and any carried
   kernel (flash_attn, sage, xformers packages), with its peak memory;
3. one real 50-step 5 s sampling run end to end (the library's sampler and guidance), bf16;
4. the same with torch.compile (the block steps compiled), on the fastest backend;
5. fp8 (e4m3 weights, fp8 matmuls via torch._scaled_mm): error against bf16, s/step per backend and size,
   compiled on the fastest backend, and a 50-step 5 s run with step caching;
6. the 5 s and 10 s guided steps under a 24 GB cap (`torch.cuda.set_per_process_memory_fraction`) with
   every block streamed from pinned CPU memory (block swap, offload 'cpu'), fp8 weights, after checking that
   a streamed forward gives the plain GPU forward's bits (the side-stream copies are correctly ordered);
7. whatever budget is left: the fp8 guided steps compiled.

`--dry-run` runs the same code on a tiny config on the CPU (compile with the 'eager' backend, no cap),
which the unit tests run so this script cannot break unseen. Nothing here reads the network.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import gc
import json
import platform
import sys
import time
import traceback
from pathlib import Path
from typing import Callable

import torch

OVI_SLG_LAYER = 11
CAP_BYTES = 24 * 10**9  # "24 GB" cards: 24e9 bytes (an RTX 3090/4090 reports ~23.6 GiB)
TEXT_TOKENS = 128  # prompt tokens before padding to text_len


@dataclasses.dataclass(frozen=True)
class Clip:
    name: str  # which release this clip length belongs to
    frames: int  # latent frames
    height: int  # latent height (pixels / 16)
    width: int
    audio: int  # audio latents

    @property
    def video_tokens(self) -> int:
        return self.frames * (self.height // 2) * (self.width // 2)


REAL_CLIPS = (Clip("ovi-1.0 5s 704x704", 31, 44, 44, 157), Clip("ovi-1.1 10s 960x960", 61, 60, 60, 314))
DRY_CLIPS = (Clip("tiny 5s-like", 3, 4, 4, 11), Clip("tiny 10s-like", 5, 6, 6, 21))


def _configs(dry: bool):
    from ..models.config import FusionConfig, TowerConfig

    if not dry:
        # Ovi 1.0 and 1.1 share one architecture (they differ in training and clip length): both are built
        # from FusionConfig.ovi(); the JSON records that the two dicts are equal.
        return {"ovi-1.0": FusionConfig.ovi(), "ovi-1.1": FusionConfig.ovi()}
    common = dict(dim=32, ffn_dim=64, freq_dim=32, num_heads=2, num_layers=3, text_len=16, text_dim=24)
    tiny = FusionConfig(video=TowerConfig(**common),
                        audio=TowerConfig(patch_size=(1,), in_dim=20, out_dim=20, temporal_rope_scaling_factor=0.19676,
                                          **common))
    return {"ovi-1.0": tiny, "ovi-1.1": tiny}


class Report:
    """Collects rows and writes gpu_check.json and gpu_check.md after every item."""

    def __init__(self, out: Path, meta: dict):
        self.out, self.meta, self.rows, self.errors = out, meta, [], {}
        out.mkdir(parents=True, exist_ok=True)

    def add(self, **row) -> None:
        self.rows.append(row)
        self.write()

    def write(self) -> None:
        data = {"meta": self.meta, "rows": self.rows}
        (self.out / "gpu_check.json").write_text(json.dumps(data, indent=1, default=str))
        (self.out / "gpu_check.md").write_text(markdown(data))


def markdown(data: dict) -> str:
    meta = data["meta"]
    lines = [f"# GPU check: {meta.get('gpu')}", "",
             f"torch {meta.get('torch')}, CUDA {meta.get('cuda')}, {'DRY RUN (tiny config, CPU)' if meta.get('dry_run') else 'real Ovi configs, random bf16 weights'}",
             "", "| item | clip | backend | dtype | compile | s/step | peak GiB | whole clip s | error / note |",
             "|---|---|---|---|---|---|---|---|---|"]
    for r in data["rows"]:
        def f(key, fmt):
            v = r.get(key)
            return "" if v is None else format(v, fmt)
        lines.append(f"| {r.get('item', '')} | {r.get('clip', '')} | {r.get('backend', '')} | {r.get('dtype', '')} | "
                     f"{r.get('compile', '')} | {f('s_per_step', '.3f')} | {f('peak_gib', '.2f')} | "
                     f"{f('clip_s', '.1f')} | {r.get('note', '')} |")
    return "\n".join(lines) + "\n"


class Budget:
    def __init__(self, seconds: float, clock: Callable[[], float] = time.monotonic):
        self.clock, self.start, self.seconds = clock, clock(), seconds

    def left(self) -> float:
        return self.seconds - (self.clock() - self.start)


# ------------------------------------------------------------------------------------------ measuring


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


@contextlib.contextmanager
def _peak(device: torch.device, result: dict):
    if device.type == "cuda":
        _sync(device)
        torch.cuda.reset_peak_memory_stats(device)
    yield
    _sync(device)
    result["peak_gib"] = torch.cuda.max_memory_allocated(device) / 2**30 if device.type == "cuda" else None


def sdpa_backends(device: torch.device) -> dict[str, tuple[str, Callable[[], contextlib.AbstractContextManager]]]:
    """name -> (model backend, context that forces it), for every attention path that runs here (each SDPA
    kernel is probed on a tiny bf16 call; one this torch does not know is left out)."""
    from ..models.attention import available_backends

    found: dict[str, tuple[str, Callable]] = {}
    if device.type != "cuda":
        return {"sdpa": ("sdpa", contextlib.nullcontext)}
    try:
        from torch.nn.attention import SDPBackend, sdpa_kernel
    except ImportError:  # torch < 2.3: no way to force a kernel; SDPA picks
        found["sdpa"] = ("sdpa", contextlib.nullcontext)
        sdpa_kernel = None
    if sdpa_kernel is not None:
        q = torch.randn(1, 2, 256, 128, device=device, dtype=torch.bfloat16)
        for name, attr in (("sdpa-flash", "FLASH_ATTENTION"), ("sdpa-cudnn", "CUDNN_ATTENTION"),
                           ("sdpa-efficient", "EFFICIENT_ATTENTION")):
            kernel = getattr(SDPBackend, attr, None)
            if kernel is None:
                continue
            try:
                with sdpa_kernel([kernel]):
                    torch.nn.functional.scaled_dot_product_attention(q, q, q)
                found[name] = ("sdpa", lambda k=kernel: sdpa_kernel([k]))
            except RuntimeError:
                pass
    for carried in ("flash", "sage", "xformers"):
        if carried in available_backends(device):
            found[carried] = (carried, contextlib.nullcontext)
    return found


def make_inputs(config, clip: Clip, device: torch.device, dtype: torch.dtype, seed: int = 0):
    g = torch.Generator(device="cpu").manual_seed(seed)
    video = torch.randn(1, config.video.in_dim, clip.frames, clip.height, clip.width, generator=g)
    audio = torch.randn(1, clip.audio, config.audio.in_dim, generator=g)
    text = min(TEXT_TOKENS, config.video.text_len)
    ctx = torch.randn(1, text, config.video.text_dim, generator=g)
    neg = torch.randn(1, text, config.video.text_dim, generator=g)
    return [t.to(device, dtype) for t in (video, audio, ctx, neg)]


def guided_step(model, inputs, skip: int | None) -> tuple:
    """The two forwards of one guided step: conditional, then negative with skip-layer guidance."""
    video, audio, ctx, neg = inputs
    t = torch.full((1,), 500.0, device=video.device)
    cond = model(video, audio, t, ctx, ctx)
    uncond = model(video, audio, t, neg, neg, skip_layer=skip)
    return cond, uncond


def time_steps(model, inputs, skip, device, steps: int, warmup: int = 1) -> float:
    with torch.no_grad():
        for _ in range(warmup):
            guided_step(model, inputs, skip)
        _sync(device)
        start = time.perf_counter()
        for _ in range(steps):
            guided_step(model, inputs, skip)
        _sync(device)
    return (time.perf_counter() - start) / steps


def relative_errors(a: tuple, b: tuple) -> dict[str, float]:
    """Relative L2 error of each tower's output (video, audio) of `a` against `b`, on the CPU (a reference is kept
    there while the model's outputs are on the GPU: the dry run, all on the CPU, cannot show a mix-up)."""
    return {tower: float((x.float().cpu() - y.float().cpu()).norm() / y.float().cpu().norm().clamp(min=1e-30))
            for tower, x, y in zip(("video", "audio"), a, b)}


@contextlib.contextmanager
def compiled_blocks(backend: str):
    """torch.compile the two step methods every block runs (one graph serves all blocks of a tower)."""
    from ..models.fusion_dit import TowerBlock

    saved = {name: getattr(TowerBlock, name) for name in ("self_attention_step", "cross_ffn_step")}
    torch._dynamo.config.cache_size_limit = max(torch._dynamo.config.cache_size_limit, 64)
    try:
        for name, fn in saved.items():
            setattr(TowerBlock, name, torch.compile(fn, backend=backend, dynamic=False))
        yield
    finally:
        for name, fn in saved.items():
            setattr(TowerBlock, name, fn)
        torch._dynamo.reset()


def full_run(model, config, clip: Clip, device, steps: int, cache=None) -> torch.Tensor:
    """A real sampling run: the library's sampler and joint guidance, Ovi's settings."""
    from ..samplers import PromptContexts
    from ..samplers import sample as sample_latents

    video, audio, ctx, neg = make_inputs(config, clip, device, torch.bfloat16)
    skip = OVI_SLG_LAYER if config.num_layers > OVI_SLG_LAYER else 1
    kwargs = {} if cache is None else {"step_cache": cache}
    with torch.no_grad():
        out = sample_latents(model, tuple(video.shape), tuple(audio.shape), PromptContexts.shared(ctx),
                             PromptContexts.shared(neg), steps=steps, slg_layer=skip, seed=0, device=device,
                             dtype=torch.float32, audio_per_video_frame=None, **kwargs)
    _sync(device)
    return out


# ------------------------------------------------------------------------------------------ the check


def run_check(dry_run: bool, out: Path, budget_s: float, steps_full: int | None = None) -> dict:
    from ..models.fp8 import quantize_blocks_fp8
    from ..models.fusion_dit import FusionDiT
    from ..models.offload import BlockSwap

    device = torch.device("cpu" if dry_run else "cuda")
    if device.type == "cuda" and not torch.cuda.is_available():
        raise SystemExit("gpu_check: no CUDA device; run with --dry-run to check the script on the CPU")
    clips = DRY_CLIPS if dry_run else REAL_CLIPS
    configs = _configs(dry_run)
    config = configs["ovi-1.0"]
    steps_full = steps_full or (2 if dry_run else 50)
    compile_backend = "eager" if dry_run else "inductor"
    skip = OVI_SLG_LAYER if config.num_layers > OVI_SLG_LAYER else 1
    timed = 1 if dry_run else 2
    budget = Budget(budget_s)
    meta = {"dry_run": dry_run, "torch": torch.__version__, "cuda": torch.version.cuda,
            "gpu": torch.cuda.get_device_name(device) if device.type == "cuda" else f"CPU ({platform.machine()})",
            "configs_equal": configs["ovi-1.0"].to_dict() == configs["ovi-1.1"].to_dict(),
            "config": config.to_dict(), "clips": [dataclasses.asdict(c) | {"video_tokens": c.video_tokens} for c in clips],
            "budget_s": budget_s, "skip_layer": skip}
    report = Report(out, meta)

    def item(name: str, need_s: float, fn: Callable[[], None], **row) -> None:
        """Run one measurement if the budget allows; a failure is recorded, not fatal."""
        if budget.left() < need_s:
            report.add(item=name, note=f"skipped: {budget.left():.0f} s of budget left, needs ~{need_s:.0f} s", **row)
            return
        start = time.monotonic()
        try:
            fn()
        except Exception as exc:  # noqa: BLE001 - one failed measurement must not lose the others
            if device.type == "cuda":
                torch.cuda.empty_cache()
            report.add(item=name, note=f"FAILED: {type(exc).__name__}: {str(exc).splitlines()[0][:200]}", **row)
            report.errors[name] = traceback.format_exc()
            (out / "gpu_check_errors.txt").write_text("\n\n".join(f"== {k}\n{v}" for k, v in report.errors.items()))
        key = " ".join(str(row.get(k, "")) for k in ("clip", "backend", "dtype", "compile"))
        meta.setdefault("item_seconds", {})[f"{name} {key}".strip()] = round(
            time.monotonic() - start, 1)

    start = time.monotonic()
    torch.manual_seed(0)
    model = FusionDiT(config, device=device, dtype=torch.bfloat16, compute_dtype=torch.bfloat16).eval()
    meta["build_s"] = round(time.monotonic() - start, 1)
    meta["parameters"] = sum(p.numel() for p in model.parameters())
    meta["weight_gib_bf16"] = sum(p.numel() * p.element_size() for p in model.parameters()) / 2**30
    backends = sdpa_backends(device)
    meta["backends"] = list(backends)
    short, long = clips

    def set_backend(name: str):
        model.attention_backend = backends[name][0]
        return backends[name][1]()

    # 1. precision: bf16 compute against float32 compute on the same bf16 weights
    reference: dict[str, tuple] = {}

    def precision() -> None:
        inputs = make_inputs(config, short, device, torch.float32)
        first = "sdpa (auto)"  # SDPA's own kernel choice: float32 inputs rule out the flash kernel
        model.attention_backend = "sdpa"
        row = {}
        with torch.no_grad(), _peak(device, row):
            model.compute_dtype = torch.float32
            f32 = model(inputs[0], inputs[1], 500.0, inputs[2], inputs[2])
            model.compute_dtype = torch.bfloat16
            bf16 = model(*(t.to(torch.bfloat16) for t in inputs[:2]), 500.0, inputs[2].bfloat16(), inputs[2].bfloat16())
        reference["bf16"] = tuple(t.float().cpu() for t in bf16)
        errors = relative_errors(bf16, f32)
        finite = all(bool(torch.isfinite(t).all()) for t in (*f32, *bf16))
        report.add(item="bf16 vs float32", clip=short.name, backend=first, dtype="bf16", compile="no",
                   errors=errors, note=f"rel. L2 video {errors['video']:.2e}, audio {errors['audio']:.2e}"
                   + ("" if finite else " (NON-FINITE outputs)"), **row)

    item("bf16 vs float32", 30, precision)

    def step_row(name: str, clip: Clip, backend: str, dtype: str, compile_: str, steps: int) -> Callable[[], None]:
        def measure() -> None:
            inputs = make_inputs(config, clip, device, torch.bfloat16)
            row = {}
            with set_backend(backend), _peak(device, row):
                s = time_steps(model, inputs, skip, device, steps)
            report.add(item=name, clip=clip.name, backend=backend, dtype=dtype, compile=compile_, s_per_step=s,
                       clip_s=s * 50, note="clip_s = 50 x s/step", **row)
        return measure

    def fastest(dtype: str) -> str:
        rows = [r for r in report.rows if r.get("dtype") == dtype and r.get("compile") == "no" and r.get("s_per_step")
                and r.get("clip") == short.name]
        return min(rows, key=lambda r: r["s_per_step"])["backend"] if rows else next(iter(backends))

    # 2. bf16 eager s/step, every backend, both sizes (one timed step at 10 s: ~10 s each on an H200)
    for clip, need, n in ((short, 15, timed), (long, 40, 1)):
        for backend in backends:
            item("guided step", need, step_row("guided step", clip, backend, "bf16", "no", n),
                 clip=clip.name, backend=backend, dtype="bf16", compile="no")

    # 3. one real 50-step 5 s run, bf16
    def full(dtype: str, cache=None, label="50-step run") -> Callable[[], None]:
        def measure() -> None:
            backend = fastest(dtype)
            row = {}
            with set_backend(backend), _peak(device, row):
                start = time.perf_counter()
                latents = full_run(model, config, short, device, steps_full, cache)
                seconds = time.perf_counter() - start
            latents = tuple(t.float().cpu() for t in latents)
            note = f"{steps_full} steps end to end"
            extra = {}
            if cache is not None:
                note += f"; step cache reused outputs for {cache.skipped} of {2 * steps_full} passes"
            if "full_bf16" in reference:  # the same seed and noise: how far this run ends from the bf16 one
                extra["errors_vs_bf16_run"] = relative_errors(latents, reference["full_bf16"])
                note += ("; latents vs the bf16 run: rel. L2 video {video:.2e}, audio {audio:.2e}"
                         .format(**extra["errors_vs_bf16_run"]))
            else:
                reference["full_bf16"] = latents
            report.add(item=label, clip=short.name, backend=backend, dtype=dtype, compile="no",
                       s_per_step=seconds / steps_full, clip_s=seconds, note=note, **extra, **row)
        return measure

    item("50-step run", 20 if dry_run else 100, full("bf16"), clip=short.name, dtype="bf16")

    # 4. torch.compile, fastest bf16 backend, both sizes
    def compiled(clip: Clip, dtype: str) -> Callable[[], None]:
        def measure() -> None:
            backend = fastest(dtype)
            with compiled_blocks(compile_backend):
                start = time.perf_counter()
                inputs = make_inputs(config, clip, device, torch.bfloat16)
                with torch.no_grad(), set_backend(backend):
                    guided_step(model, inputs, skip)  # compiles
                _sync(device)
                compile_s = time.perf_counter() - start
                step_row("guided step (compiled)", clip, backend, dtype, compile_backend, timed)()
            report.rows[-1]["note"] += f"; first step incl. compile {compile_s:.0f} s"
            report.write()
        return measure

    # (the dry run compiles once: tracing is the slow part on a CPU, and one pass covers the code)
    item("guided step (compiled)", 25 if dry_run else 120, compiled(short, "bf16"), clip=short.name, dtype="bf16",
         compile=compile_backend)

    # 5. fp8: weights to e4m3 in place (the bf16 block weights are freed), computing with torch._scaled_mm
    def to_fp8() -> None:
        n = quantize_blocks_fp8(model, "scaled_mm")
        gc.collect()
        if device.type == "cuda":
            torch.cuda.empty_cache()
        meta["fp8_linears"] = n
        meta["weight_gib_fp8"] = sum(t.numel() * t.element_size() for t in model.state_dict().values()) / 2**30
        if "bf16" in reference:
            inputs = make_inputs(config, short, device, torch.bfloat16)
            row = {}
            model.attention_backend = "sdpa"
            with torch.no_grad(), _peak(device, row):
                out = model(inputs[0], inputs[1], 500.0, inputs[2], inputs[2])
            errors = relative_errors(out, reference["bf16"])
            report.add(item="fp8 vs bf16", clip=short.name, backend="sdpa (auto)", dtype="fp8", compile="no",
                       errors=errors, note=f"rel. L2 video {errors['video']:.2e}, audio {errors['audio']:.2e}", **row)

    item("fp8 vs bf16", 20, to_fp8)
    if "fp8_linears" in meta:
        for clip, need, n in ((short, 15, timed), (long, 35, 1)):
            for backend in backends:
                item("guided step", need, step_row("guided step", clip, backend, "fp8", "no", n),
                     clip=clip.name, backend=backend, dtype="fp8", compile="no")
        cache = _step_cache()
        if cache is not None:
            item("50-step run, step cache", 20 if dry_run else 90, full("fp8", cache, "50-step run, step cache"),
                 clip=short.name, dtype="fp8")

    # 6. under a 24 GB cap with every block streamed (fp8 weights)
    def capped() -> None:
        # the plain forward on the GPU first: the streamed one must give the same bits (a missed stream wait
        # or an early reuse of a block's memory would show here)
        probe = make_inputs(config, short, device, torch.bfloat16)
        backend = fastest("fp8")
        with torch.no_grad(), set_backend(backend):
            plain = [t.float().cpu() for t in model(probe[0], probe[1], 500.0, probe[2], probe[2])]
        model.to("cpu")
        gc.collect()
        if device.type == "cuda":
            torch.cuda.empty_cache()
            total = torch.cuda.get_device_properties(device).total_memory
            torch.cuda.set_per_process_memory_fraction(min(1.0, CAP_BYTES / total), device)
            meta["cap_fraction"] = CAP_BYTES / total
        swap = BlockSwap(model, "cpu", compute=device)
        swaps.append(swap)
        try:
            with swap.session():
                with torch.no_grad(), set_backend(backend):
                    streamed = model(probe[0], probe[1], 500.0, probe[2], probe[2])
                diff = max(float((a.float().cpu() - b).abs().max()) for a, b in zip(streamed, plain))
                meta["swap_vs_plain_max_abs"] = diff
                report.add(item="block swap vs plain forward", clip=short.name, backend=backend, dtype="fp8",
                           compile="no", note=f"max abs difference {diff:.3e} (expected 0: the same kernels)")
                for clip in clips:
                    inputs = make_inputs(config, clip, device, torch.bfloat16)
                    row = {}
                    backend = fastest("fp8")
                    with set_backend(backend), _peak(device, row):
                        s = time_steps(model, inputs, skip, device, 1)
                    report.add(item="24 GB cap, offload cpu", clip=clip.name, backend=backend, dtype="fp8",
                               compile="no", s_per_step=s, clip_s=s * 50,
                               note=f"weights resident at peak {swap.peak_resident_bytes / 2**20:.1f} MiB of "
                                    f"{meta['weight_gib_fp8'] * 1024:.1f} MiB", **row)
        finally:
            if device.type == "cuda":
                torch.cuda.set_per_process_memory_fraction(1.0, device)

    swaps: list[BlockSwap] = []
    item("24 GB cap", 30 if dry_run else 90, capped, dtype="fp8")
    for swap in swaps:
        swap.detach()  # back to a plain model on the GPU for what is left

    # 7. what the budget leaves: compiled fp8 at both sizes, compiled bf16 was done at 5 s above
    if "fp8_linears" in meta and not dry_run:
        for clip, need in ((short, 120), (long, 150)):
            item("guided step (compiled)", need, compiled(clip, "fp8"), clip=clip.name, dtype="fp8",
                 compile=compile_backend)
    meta["total_s"] = round(time.monotonic() - budget.start, 1)
    report.write()
    return {"meta": meta, "rows": report.rows}


def _step_cache():
    """A step cache for the cached 50-step run, when the library has one (samplers/step_cache.py)."""
    try:
        from ..samplers.step_cache import StepCache
    except ImportError:
        return None
    return StepCache()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m jointav.bench.gpu_check", description=__doc__.split("\n")[0])
    parser.add_argument("--dry-run", action="store_true", help="tiny config on the CPU (what CI runs)")
    parser.add_argument("--out", default="gpu_check_out", help="folder for gpu_check.json and gpu_check.md")
    parser.add_argument("--budget-s", type=float, default=400.0,
                        help="seconds of measurements before the remaining items are skipped (default 400; "
                             "scripts/gpu_check.sh stops everything at 480)")
    parser.add_argument("--steps", type=int, default=None, help="steps of the full run (default 50; dry run 2)")
    args = parser.parse_args(argv)
    result = run_check(args.dry_run, Path(args.out), args.budget_s, args.steps)
    print(markdown(result))
    failed = [r for r in result["rows"] if str(r.get("note", "")).startswith("FAILED")]
    print(f"wrote {Path(args.out) / 'gpu_check.json'} and gpu_check.md; {len(failed)} failed item(s)")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
