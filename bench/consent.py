"""`jointav bench consent`: what consent that holds costs per use, as the usage log grows.

Every use of a cameo runs the gate (cameo.consent_gate.check_profile_consent): the record's signatures,
this machine's consent state (key binding, newest version), and the whole usage log's hash chain against
its checkpoint. The last part reads the log, so its cost grows with the log; this prints the gate's time
and one append's time at several log lengths, and each as a ratio to the shortest log, in one run. The
profile is a tiny one made in memory: the tensors' digest, not the log, would dominate with a real one.
Everything lives in a temporary folder ($JOINTAV_CAMEO_STATE / $JOINTAV_CAMEO_LOG are pointed there).
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import tempfile
import time
from pathlib import Path

import torch


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--lengths", default="100,1000,4000",
                        help="usage-log lengths to measure at, comma-separated (default 100,1000,4000)")
    parser.add_argument("--repeats", type=int, default=5, help="gate checks timed per length (median; default 5)")


def _profile(folder: Path):
    from ..cameo.profile import new_profile, save_profile

    g = torch.Generator().manual_seed(0)
    tensors = {"frames": torch.randint(0, 255, (1, 8, 8, 3), dtype=torch.uint8, generator=g),
               "video_latents": torch.randn(4, 1, 2, 2, generator=g), "voice": torch.randn(32, generator=g),
               "audio_latents": torch.randn(3, 5, generator=g)}
    return save_profile(new_profile("Bench", tensors, encoder={}, source={}, frames=[{"box": [0, 0, 8, 8]}],
                                    voice={}), folder)


def run(args) -> int:
    lengths = sorted(int(n) for n in args.lengths.split(","))
    with tempfile.TemporaryDirectory(prefix="jointav-bench-consent-") as tmp:
        os.environ["JOINTAV_CAMEO_STATE"] = str(Path(tmp) / "state.json")
        os.environ["JOINTAV_CAMEO_LOG"] = log = str(Path(tmp) / "usage.jsonl")
        from ..cameo.consent_gate import check_profile_consent, grant_for_profile
        from ..cameo.keys import generate_key
        from ..cameo.usage_log import append_use

        profile = _profile(Path(tmp) / "cameos")
        person, operator = generate_key(), generate_key()
        now = dt.datetime.now(dt.timezone.utc)
        grant_for_profile(profile, person, subject_id="bench", operators=[operator.public_key()],
                          valid_until=now + dt.timedelta(days=1))
        rows, written = [], 0
        for n in lengths:
            start = time.perf_counter()
            for _ in range(n - written):
                append_use(log, profile_id=profile.id, operator="op", consent_sha256="c" * 64)
            append_ms = (time.perf_counter() - start) * 1e3 / max(1, n - written)
            written = n
            times = []
            for _ in range(args.repeats):
                start = time.perf_counter()
                check_profile_consent(profile, operator.public_key())
                times.append(time.perf_counter() - start)
            rows.append((n, sorted(times)[len(times) // 2] * 1e3, append_ms))
    base_gate, base_append = rows[0][1], rows[0][2]
    print(f"{'log entries':>11}  {'gate ms':>8}  {'x':>5}  {'append ms':>9}  {'x':>5}")
    for n, gate_ms, append_ms in rows:
        print(f"{n:>11}  {gate_ms:>8.2f}  {gate_ms / base_gate:>5.2f}  {append_ms:>9.2f}  {append_ms / base_append:>5.2f}")
    return 0
