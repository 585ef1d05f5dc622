"""default_model/TRAINING.md: the training curves, the time each stage took and the measured figures."""

from __future__ import annotations

import json
import math
import time
from pathlib import Path

from .loop import checkpoint_path, load_curve

STAGE_NOTES = {
    "video_vae": "Wan2.2-block VAE (8x space, 4x time, z=16): foreground-weighted L1+L2 on 9-frame crops, KL 1e-3",
    "video_decoder": "the video VAE's decoder fine-tuned, encoder frozen (the DiT's latents stay valid)",
    "audio_vae": "MMAudio mel VAE (hidden 16): L1+L2 on standardised toy log-mels, KL 1e-2",
    "vocoder": "BigVGAN (rates 8-4-4-2, 128 channels): log-mel L1 + 4-resolution STFT, no discriminator",
    "dit": "fusion DiT (3 blocks, dim 128) + toy text encoder: flow matching, 10% caption dropout, 20% i2v",
}


def _rows(curve: list, n: int = 12) -> list:
    if len(curve) <= n:
        return curve
    picks = sorted({round(i * (len(curve) - 1) / (n - 1)) for i in range(n)})
    return [curve[i] for i in picks]


def _fmt(v) -> str:
    if isinstance(v, float):
        return "n/a" if math.isnan(v) else f"{v:.4g}"
    return str(v)


def curve_tables(workdir: Path) -> tuple[str, float]:
    """Markdown tables of every trained stage's curve, and the total training seconds."""
    out, total = [], 0.0
    exported = Path(workdir) / "curves.json"  # (stages.export_curves: curves copied off a training machine)
    exported = json.loads(exported.read_text()) if exported.is_file() else {}
    for name, note in STAGE_NOTES.items():
        if checkpoint_path(workdir, name).is_file():
            curve, steps, seconds = load_curve(workdir, name)
        elif name in exported:
            curve, steps, seconds = (exported[name][k] for k in ("curve", "steps", "seconds"))
        else:
            continue
        total += seconds
        out.append(f"### {name}: {steps} steps, {seconds / 60:.1f} min\n\n{note}.\n")
        if curve:
            keys = list(curve[0])
            out.append("| " + " | ".join(keys) + " |\n|" + "---|" * len(keys))
            out += ["| " + " | ".join(_fmt(r.get(k)) for k in keys) + " |" for r in _rows(curve)]
        out.append("")
    return "\n".join(out), total


def write_report(path: Path, workdir: Path, figures: dict | None, notes: str, eval_steps: int,
                 encode_seconds: float | None = None) -> Path:
    tables, seconds = curve_tables(workdir)
    lines = [
        "# Training of the embedded default model",
        "",
        f"Written by `python -m jointav.training.train_default --stage report` on {time.strftime('%Y-%m-%d %H:%M')}.",
        "",
        f"Training time (sum of the stages' step time, CPU, 1 thread per process on 2 shared cores): "
        f"{seconds / 60:.1f} min" + (f", plus {encode_seconds / 60:.1f} min pre-encoding" if encode_seconds else "")
        + ".",
        "",
        notes,
        "",
        "## Curves",
        "",
        tables,
    ]
    if figures is not None:
        lines += ["## Figures on 20 held-out captions", "",
                  f"Sampled through the CLI's pipeline with {eval_steps} UniPC steps (shift 5, guidance 4/3, "
                  f"skip layer 1).", "", "```", figures["summary"], "```", "",
                  "| caption | video events | audio onsets | offset | colour | pitch |",
                  "|---|---|---|---|---|---|"]
        lines += [f"| {r['caption']} | {r['video_events']} | {r['audio_onsets']} | {_fmt(r['offset'])} | "
                  f"{r['colour']} | {r['pitch_class']} |" for r in figures["per_clip"]]
    path.write_text("\n".join(lines) + "\n")
    return path
