"""`jointav bench decode`: decode time and peak memory for 1x, 2x and 4x clip lengths.

The video VAE is a random-weight Wan2.2 decoder at a small width (the architecture of the real one, only
narrower), so the figures show how memory *scales*, not the real model's absolute numbers. Three ways:
- `whole`: the whole clip in one decoder pass (activations for every frame at once);
- `chunked`: `iter_decode` with N latent frames per step, each chunk handed on and dropped (what streaming
  frames to a video file does);
- `chunked+out`: the same chunks written into one preallocated float32 output tensor.
Peak memory must stay flat with clip length for `chunked` and grow linearly for `whole`.
The audio side (MMAudio VAE decoder + BigVGAN at a small width) is decoded `audio whole` (one pass) and
`audio chunked` (`--audio-chunk` latents a time with the exact receptive field as overlap, the default path).

Each measurement runs in a fresh subprocess so that peaks do not leak from one into the next. On CUDA the
peak is `torch.cuda.max_memory_allocated` above what was allocated before decoding; on CPU it is the process
resident set (sampled from /proc/self/statm every millisecond, and `ru_maxrss`) above its level before decoding.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import threading
import time
from typing import Callable

import torch

from ..models.wan_vae import WanVAE, WanVAEConfig

LENGTHS = (1, 2, 4)
VIDEO_MODES = ("whole", "chunked", "chunked+out")
AUDIO_MODES = ("audio whole", "audio chunked")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--latent-frames", type=int, default=4,
                        help="latent frames of the 1x clip (default 4 -> 13 video frames)")
    parser.add_argument("--size", type=int, default=64, help="frame width and height in pixels, a multiple of 16 (default 64)")
    parser.add_argument("--dec-dim", type=int, default=32, help="decoder base width (real Wan2.2: 256; default 32)")
    parser.add_argument("--chunk", type=int, default=1, help="latent frames per decoder step in the chunked modes (default 1)")
    parser.add_argument("--audio-latents", type=int, default=128, help="audio latents of the 1x clip (default 128 = 4.1 s)")
    parser.add_argument("--audio-chunk", type=int, default=32,
                        help="audio latents per chunk in 'audio chunked' (default 32; the library default is 128)")
    parser.add_argument("--only", choices=("all", "video", "audio"), default="all", help="which decoders to measure")
    parser.add_argument("--device", default="auto", help="cpu, cuda or auto (default: cuda when available)")
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads (default: torch's choice)")
    parser.add_argument("--worker", help=argparse.SUPPRESS)  # internal: one measurement, JSON in and out


def audio_decoder(latents: int, device: torch.device, chunk: int | None) -> Callable[[], object]:
    """MMAudio VAE decoder + BigVGAN at a small width on a random `[1, L, 20]` latent; returns one timed decode.

    `chunk` None decodes in one pass. Chunked, only the VAE's middle attention (at the latent rate) sees the
    whole clip; everything after it and the vocoder run chunk by chunk.
    """
    from ..audio.bigvgan import BigVGANConfig, BigVGANVocoder
    from ..audio.mmaudio_vae import MMAudioVAE, MMAudioVAEConfig, decode_audio_latent

    torch.manual_seed(0)
    vae = MMAudioVAE(MMAudioVAEConfig(hidden_dim=64), with_encoder=False).to(device).eval()
    vocoder = BigVGANVocoder(BigVGANConfig(upsample_initial_channel=128)).to(device).eval()
    latent = torch.randn(1, latents, vae.config.embed_dim, device=device)
    decode_audio_latent(vae, vocoder, latent[:, :8], chunk_latents=None)  # warm-up, as for video
    return lambda: decode_audio_latent(vae, vocoder, latent, chunk_latents=chunk)


class _PeakRSS:
    """Highest resident set size seen while active, sampled in a thread plus the kernel's ru_maxrss."""

    def __init__(self) -> None:
        self._page = os.sysconf("SC_PAGE_SIZE")
        self._stop = threading.Event()
        self.base = self.peak = self._rss()
        self._maxrss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024

    def _rss(self) -> int:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * self._page

    def _sample(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, self._rss())
            time.sleep(0.001)

    def __enter__(self) -> "_PeakRSS":
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()
        maxrss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
        if maxrss > self._maxrss_before:  # the kernel saw a new lifetime high during the run: it is exact
            self.peak = max(self.peak, maxrss)


def _measure(fn: Callable[[], object], device: torch.device) -> tuple[float, float]:
    """(seconds, peak MiB above the level before) of one call of `fn`."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
        base = torch.cuda.memory_allocated(device)
        start = time.perf_counter()
        fn()
        torch.cuda.synchronize(device)
        seconds = time.perf_counter() - start
        return seconds, (torch.cuda.max_memory_allocated(device) - base) / 2**20
    with _PeakRSS() as rss:
        start = time.perf_counter()
        fn()
        seconds = time.perf_counter() - start
    return seconds, (rss.peak - rss.base) / 2**20


def _video_job(job: dict, device: torch.device) -> Callable[[], object]:
    torch.manual_seed(0)
    vae = WanVAE(WanVAEConfig(dec_dim=job["dec_dim"]), parts="decoder").eval().to(device)
    z = torch.randn(1, 48, job["latent_frames"], job["size"] // 16, job["size"] // 16, device=device)
    vae.decode(z[:, :, :2])  # warm-up: kernel selection and allocator pools are not part of the peak
    if job["mode"] == "whole":
        return lambda: vae.decode(z, chunk_frames=z.shape[2])
    if job["mode"] == "chunked+out":
        return lambda: vae.decode(z, chunk_frames=job["chunk"])

    def stream() -> None:
        for chunk in vae.iter_decode(z, chunk_frames=job["chunk"]):
            # what a video writer does with each chunk: 8-bit frames, then the chunk is dropped
            ((chunk.clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8).cpu()

    return stream


def _worker(job: dict) -> dict:
    if job["threads"]:
        torch.set_num_threads(job["threads"])
    device = torch.device(job["device"])
    if job["mode"] in AUDIO_MODES:
        fn = audio_decoder(job["audio_latents"], device, job["audio_chunk"] if job["mode"] == "audio chunked" else None)
    else:
        fn = _video_job(job, device)
    seconds, peak = _measure(fn, device)
    return {"seconds": seconds, "peak_mib": peak}


def _in_subprocess(job: dict) -> dict:
    module = __spec__.name if __spec__ else "jointav.bench.decode"
    # A fixed glibc mmap threshold hands every large buffer back to the OS when it is freed; with the default
    # (self-raising) threshold freed tensors stay in the heap and the resident set stops tracking live memory.
    env = dict(os.environ, MALLOC_MMAP_THRESHOLD_="131072", MALLOC_TRIM_THRESHOLD_="131072")
    proc = subprocess.run([sys.executable, "-m", module, "--worker", json.dumps(job)], capture_output=True, text=True, env=env)
    if proc.returncode != 0:
        raise RuntimeError(f"bench decode: measurement {job} failed:\n{proc.stderr[-2000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def run(args: argparse.Namespace) -> int:
    if args.worker:
        print(json.dumps(_worker(json.loads(args.worker))))
        return 0
    if args.size % 16 or args.size < 16:
        print(f"error: --size {args.size} must be a positive multiple of 16", file=sys.stderr)
        return 2
    device = args.device
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    base = {"size": args.size, "dec_dim": args.dec_dim, "chunk": args.chunk, "device": device, "threads": args.threads,
            "audio_chunk": args.audio_chunk}
    print(f"jointav bench decode: Wan2.2 VAE decoder, random weights, dec_dim={args.dec_dim}, {args.size}x{args.size} px, "
          f"device {device}, chunk {args.chunk} latent frame(s); "
          f"peak = {'CUDA allocated' if device == 'cuda' else 'process RSS'} "
          "above the level before decoding")
    header = f"{'decoder':<14} {'clip':>4} {'latent':>7} {'frames':>7} {'seconds':>8} {'peak MiB':>9} {'peak vs 1x':>11}"
    print(header)
    print("-" * len(header))
    modes = {"all": (*VIDEO_MODES, *AUDIO_MODES), "video": VIDEO_MODES, "audio": AUDIO_MODES}[args.only]
    for mode in modes:
        first_peak = None
        for mult in LENGTHS:
            latent = args.latent_frames * mult
            frames = WanVAEConfig().video_frames(latent)
            job = dict(base, mode=mode, latent_frames=latent, audio_latents=args.audio_latents * mult)
            result = _in_subprocess(job)
            first_peak = first_peak or max(result["peak_mib"], 1e-9)
            audio = mode in AUDIO_MODES
            shown_latent = job["audio_latents"] if audio else latent
            frames = f"{job['audio_latents'] * 512 / 16000:.1f}s" if audio else frames
            print(f"{mode:<14} {mult:>3}x {shown_latent:>7} {frames:>7} {result['seconds']:>8.2f} "
                  f"{result['peak_mib']:>9.1f} {result['peak_mib'] / first_peak:>10.2f}x")
    return 0


if __name__ == "__main__":
    parser = argparse.ArgumentParser(prog="python -m jointav.bench.decode")
    add_arguments(parser)
    sys.exit(run(parser.parse_args()))
