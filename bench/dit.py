"""`jointav bench dit`: forward time per sampling step, forward peak memory, and peak RSS while loading.

A random model of the asked size is written to a temporary safetensors file (in the asked weight dtype),
then:
1. a fresh Python process loads it with `load_fusion_dit` and reports its own peak RSS above the RSS it had
   after imports, during the load and after every weight has been read once, as a ratio to the file size
   (target <= 1.2x: the loader must never hold two copies of the weights);
2. this process loads the same file and times forwards: the conditional one and the unconditional one
   with skip-layer guidance, the two forwards of one guided sampling step.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16,
          "float8_e4m3fn": torch.float8_e4m3fn}
# Ovi pairs 121 video frames with 157 audio latents; the bench keeps that rate for any clip length.
OVI_AUDIO_LATENTS_PER_FRAME = 157 / 121
# Ovi's negative pass skips block 11 of 30; the bench skips the block at the same relative depth.
OVI_SLG_FRACTION = 11 / 30
CONTEXT_TOKENS = 128  # prompt length before padding to text_len


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--width", type=int, default=512, help="model width (both towers), default 512")
    parser.add_argument("--layers", type=int, default=4, help="fusion blocks, default 4")
    parser.add_argument("--heads", type=int, default=8, help="attention heads, default 8")
    parser.add_argument("--ffn", type=int, default=None, help="FFN width (default 4x width)")
    parser.add_argument("--frames", type=int, default=8, help="video latent frames, default 8")
    parser.add_argument("--height", type=int, default=32, help="video latent height, default 32")
    parser.add_argument("--width-latent", type=int, default=48, help="video latent width, default 48 "
                        "(8x32x48 latents = 3072 video tokens)")
    parser.add_argument("--dtype", choices=[k for k in DTYPES if k != "float8_e4m3fn"], default="float32",
                        help="compute dtype, default float32")
    parser.add_argument("--weight-dtype", choices=list(DTYPES), default=None,
                        help="storage dtype of the Linear/Conv weights in the file (default: --dtype)")
    parser.add_argument("--device", default=None, help="cpu or cuda (default: cuda when available)")
    parser.add_argument("--backend", default="auto", help="attention backend, default auto")
    parser.add_argument("--steps", type=int, default=3, help="timed guided steps after one warm-up, default 3")
    parser.add_argument("--offload", default="none",
                        help="block swap: none, cpu or 'blocks N' (weights in RAM, blocks streamed); default none")


def _config(args):
    from ..models.config import FusionConfig, TowerConfig

    common = dict(dim=args.width, ffn_dim=args.ffn or 4 * args.width, num_heads=args.heads, num_layers=args.layers)
    return FusionConfig(
        video=TowerConfig(**common),
        audio=TowerConfig(patch_size=(1,), in_dim=20, out_dim=20, temporal_rope_scaling_factor=0.19676, **common),
    )


def _status() -> dict[str, int]:
    """VmRSS and VmHWM (peak RSS) of this process in bytes."""
    out = {}
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(("VmRSS:", "VmHWM:")):
                out[line.split(":")[0]] = int(line.split()[1]) * 1024
    return out


def _reset_peak_rss() -> bool:
    """Reset VmHWM to the current RSS (Linux >= 4.0); False where that is not possible."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def _read_every_weight(model: torch.nn.Module) -> None:
    """Touch every weight byte once: a CPU model's weights stay file-mapped pages until used."""
    for t in model.state_dict().values():
        t.reshape(-1).view(torch.uint8).amax()


def load_probe(path: str, device: str) -> None:
    """Run in a fresh process: load `path`, print peak-RSS figures as one JSON line."""
    import safetensors.torch  # noqa: F401  (imported by the loader on first use; not part of the load)

    from ..model_loader.dit import load_fusion_dit

    baseline = _status()["VmRSS"]
    reset = _reset_peak_rss()
    start = time.perf_counter()
    model = load_fusion_dit(path, device=device)
    load_s = time.perf_counter() - start
    peak_load = _status()["VmHWM"]
    _read_every_weight(model)
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize()
    result = {"baseline": baseline, "peak_load": peak_load, "peak_touched": _status()["VmHWM"], "load_s": load_s,
              "peak_reset": reset}
    if torch.device(device).type == "cuda":
        result["cuda_allocated"] = torch.cuda.memory_allocated()
    print(json.dumps(result))


def _write_checkpoint(config, weight_dtype: torch.dtype, folder: Path) -> Path:
    from ..model_loader.dit import load_fusion_dit, save_fusion_dit
    from ..models.fusion_dit import FusionDiT

    fp32 = folder / "dit_fp32.safetensors"
    torch.manual_seed(0)
    save_fusion_dit(FusionDiT(config), fp32)
    if weight_dtype == torch.float32:
        return fp32
    path = folder / f"dit_{str(weight_dtype).removeprefix('torch.')}.safetensors"
    save_fusion_dit(load_fusion_dit(fp32, weight_dtype=weight_dtype), path)
    fp32.unlink()
    return path


def _measure_load(path: Path, device: str) -> dict:
    package = __package__.rsplit(".", 1)[0]
    code = f"from {package}.bench.dit import load_probe; load_probe({str(path)!r}, {device!r})"
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise RuntimeError(f"load probe failed (exit {proc.returncode}):\n{proc.stderr[-2000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _inputs(args, device: torch.device):
    g = torch.Generator().manual_seed(1)
    frames = 4 * (args.frames - 1) + 1
    audio_len = round(frames * OVI_AUDIO_LATENTS_PER_FRAME)
    video = torch.randn(1, 48, args.frames, args.height, args.width_latent, generator=g)
    audio = torch.randn(1, audio_len, 20, generator=g)
    ctx = torch.randn(1, CONTEXT_TOKENS, 4096, generator=g)
    return [x.to(device) for x in (video, audio, ctx)], audio_len


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _mb(n: float) -> str:
    return f"{n / 2**20:.1f} MB"


def run(args) -> int:
    from ..model_loader.dit import load_fusion_dit

    device = torch.device(args.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    compute = DTYPES[args.dtype]
    weight_dtype = DTYPES[args.weight_dtype or args.dtype]
    config = _config(args)
    (video, audio, ctx), audio_len = _inputs(args, device)
    v_tokens = args.frames * (args.height // 2) * (args.width_latent // 2)
    skip = int(args.layers * OVI_SLG_FRACTION) or None
    print(f"config: width {args.width}, {args.layers} layers, {args.heads} heads, ffn {config.video.ffn_dim}; "
          f"video latent [48, {args.frames}, {args.height}, {args.width_latent}] = {v_tokens} tokens, "
          f"audio {audio_len} tokens; weights {str(weight_dtype)[6:]}, compute {args.dtype}, device {device}, "
          f"backend {args.backend}")

    with tempfile.TemporaryDirectory(prefix="jointav_bench_") as tmp:
        path = _write_checkpoint(config, weight_dtype, Path(tmp))
        size = path.stat().st_size
        probe = _measure_load(path, str(device))
        base = probe["baseline"]
        note = "" if probe["peak_reset"] else " (peak could not be reset: includes start-up)"
        print(f"load: file {_mb(size)}, load_fusion_dit {probe['load_s']:.2f} s{note}")
        print(f"  peak RSS during load:          +{_mb(probe['peak_load'] - base)} "
              f"= {(probe['peak_load'] - base) / size:.2f}x file")
        print(f"  peak RSS after reading weights: +{_mb(probe['peak_touched'] - base)} "
              f"= {(probe['peak_touched'] - base) / size:.2f}x file (target <= 1.20x)")
        if "cuda_allocated" in probe:
            print(f"  GPU memory held by the model:   {_mb(probe['cuda_allocated'])} "
                  f"= {probe['cuda_allocated'] / size:.2f}x file")

        from ..models.offload import attach_offload, offload_session, parse_offload

        policy = parse_offload(args.offload)
        home = device if policy.mode == "none" else torch.device("cpu")
        model = load_fusion_dit(path, device=home, compute_dtype=compute, attention_backend=args.backend)
        weight_total = sum(t.numel() * t.element_size() for t in model.state_dict().values())
        swap = attach_offload(model, policy, compute=device)
        forward = {
            "cond": lambda: model(video, audio, 500.0, ctx, ctx),
            f"uncond (skip_layer={skip})": lambda: model(video, audio, 500.0, ctx, ctx, skip_layer=skip),
        }
        times: dict[str, list[float]] = {name: [] for name in forward}
        with torch.no_grad(), offload_session(model):
            # The peak window covers the warm-up (first-call allocations are part of a forward's cost), so a
            # CPU model's file-mapped weights are paged in first: they are the model, not the forward.
            _read_every_weight(model)
            _sync(device)
            if device.type == "cuda":
                torch.cuda.reset_peak_memory_stats(device)
                before = torch.cuda.memory_allocated(device)
            else:
                _reset_peak_rss()
                before = _status()["VmRSS"]
            for fn in forward.values():  # warm-up
                fn()
            _sync(device)
            for _ in range(args.steps):
                for name, fn in forward.items():
                    start = time.perf_counter()
                    fn()
                    _sync(device)
                    times[name].append(time.perf_counter() - start)
            peak = torch.cuda.max_memory_allocated(device) if device.type == "cuda" else _status()["VmHWM"]

    medians = {name: statistics.median(ts) for name, ts in times.items()}
    for name, m in medians.items():
        print(f"forward {name}: median {m * 1000:.0f} ms over {args.steps}")
    print(f"guided step (2 forwards): {sum(medians.values()) * 1000:.0f} ms")
    resident = weight_total if swap is None else swap.peak_resident_bytes
    print(f"offload {policy}: weights resident on {device.type} at peak {_mb(resident)} of {_mb(weight_total)} "
          f"= {resident / weight_total:.2f}x")
    what = "GPU max_memory_allocated" if device.type == "cuda" else "peak RSS"
    print(f"forward {what} (warm-up included): {_mb(peak)} total, +{_mb(peak - before)} above the loaded model")
    return 0
