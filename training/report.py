"""default_model/TRAINING.md: the training curves, the time each stage took and the measured figures."""

from __future__ import annotations

import json
import math
import time
from pathlib import Path

from .loop import checkpoint_path, load_curve, read_curve

STAGE_NOTES = {
    "video_vae": "Wan2.2-block VAE (widths 16/32, 8x space, 4x time, z=16): foreground-weighted L1+L2, KL 1e-3 "
                 "(the exported GPU run on 9-frame crops, the fine-tune on whole 25-frame clips)",
    "video_decoder": "the video VAE's decoder fine-tuned, encoder frozen (the DiT's latents stay valid)",
    "audio_vae": "MMAudio mel VAE (hidden 16): L1+L2 on standardised toy log-mels, KL 1e-2",
    "vocoder": "BigVGAN (rates 8-4-4-2, 128 channels): log-mel L1 + 4-resolution STFT, no discriminator",
    "vocoder_finetune": "the vocoder fine-tuned on mels that went through the audio VAE (what it is given at "
                        "generation), same losses",
    "dit": "fusion DiT (4 blocks, dim 128, patch 1x2x2) + toy text encoder: flow matching, 10% caption dropout, "
           "20% i2v, cameo reference tokens on half of the speaking clips",
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


def _table(title: str, note: str, curve: list) -> list[str]:
    out = [f"### {title}\n\n{note}.\n"]
    if curve:
        keys = list(curve[0])
        out.append("| " + " | ".join(keys) + " |\n|" + "---|" * len(keys))
        out += ["| " + " | ".join(_fmt(r.get(k)) for k in keys) + " |" for r in _rows(curve)]
    return out + [""]


HISTORY_NAME = "training-curves.json"  # beside TRAINING.md: every run's curve, so a lost workdir loses no history
HISTORY_IN_WORKDIR = "history.json"  # a fine-tune's copy of its adopted bundle's history (stages.adopt_bundle)


def training_runs(workdir: Path) -> list[dict]:
    """Every run that made the bundle, stage by stage, oldest first: `{"stage", "label", "steps", "seconds",
    "curve"}`. The history of an adopted bundle (history.json) comes first, then curves exported from another
    machine (curves.json, see stages.export_curves), then earlier runs kept beside the checkpoints as
    `<stage>-<label>.ckpt` (a run restarted from its own EMA weights moves its checkpoint there), then this
    workdir's checkpoints (a fine-tune of an adopted bundle continues the exported run)."""
    workdir = Path(workdir)
    history = workdir / HISTORY_IN_WORKDIR
    history = json.loads(history.read_text()) if history.is_file() else []
    exported = workdir / "curves.json"
    exported = json.loads(exported.read_text()) if exported.is_file() else {}
    runs = []
    for name in STAGE_NOTES:
        for run in history:
            if run["stage"] == name:  # (this workdir's own runs were "here"; for the next one they are not)
                label = run["label"] if run["label"] not in ("", "fine-tune here") else "earlier workdir"
                runs.append({**run, "label": label})
        if name in exported:
            runs.append({"stage": name, "label": "exported run", "steps": exported[name]["steps"],
                         "seconds": exported[name]["seconds"], "curve": exported[name]["curve"]})
        for path in sorted(workdir.glob(f"{name}-*.ckpt"), key=lambda p: p.stat().st_mtime):
            curve, steps, seconds = read_curve(path)
            runs.append({"stage": name, "label": f"earlier run {path.stem[len(name) + 1:]}", "steps": steps,
                         "seconds": seconds, "curve": curve})
        if checkpoint_path(workdir, name).is_file():
            curve, steps, seconds = load_curve(workdir, name)
            if steps == 0:  # an adopted stage: its weights came from the bundle, it did not train here
                continue
            label = "fine-tune here" if name in exported or any(r["stage"] == name for r in history) else ""
            runs.append({"stage": name, "label": label, "steps": steps, "seconds": seconds, "curve": curve})
    return runs


def curve_tables(workdir: Path) -> tuple[str, float]:
    """Markdown tables of every run's curve (see training_runs), and the total training seconds."""
    return _run_tables(training_runs(workdir))


def _run_tables(runs: list[dict]) -> tuple[str, float]:
    out, total = [], 0.0
    for run in runs:
        total += run["seconds"]
        title = f"{run['stage']}: {run['steps']} steps, {run['seconds'] / 60:.1f} min"
        out += _table(title + (f" ({run['label']})" if run["label"] else ""), STAGE_NOTES[run["stage"]], run["curve"])
    return "\n".join(out), total


def write_report(path: Path, workdir: Path, figures: dict | None, notes: str, eval_steps: int,
                 encode_seconds: float | None = None, cameo: dict | None = None, bounces: dict | None = None) -> Path:
    runs = training_runs(workdir)  # (reads every checkpoint of the workdir: once)
    tables, seconds = _run_tables(runs)
    lines = [
        "# Training of the embedded default model",
        "",
        f"Written by `python -m jointav.training.train_default --stage report` on {time.strftime('%Y-%m-%d %H:%M')}.",
        "",
        f"Training time (sum of the step time of every run below): "
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
                  f"no skip-layer guidance).", "", "```", figures["summary"], "```", "",
                  "Regions: subject regions in each of the 25 frames (1 = one solid subject); jump: the largest "
                  "move of the subject's centre between two frames outside a bounce, in frames.", "",
                  "| caption | video events | audio onsets | offset | colour | pitch | regions | jump |",
                  "|---|---|---|---|---|---|---|---|"]
        lines += [f"| {r['caption']} | {r['video_events']} | {r['audio_onsets']} | {_fmt(r['offset'])} | "
                  f"{r['colour']} | {r['pitch_class']} | {r.get('regions')} | {_fmt(r.get('max_jump'))} |"
                  for r in figures["per_clip"]]
    if bounces is not None:
        lines += ["", f"## Bounces: {bounces['n_clips']} held-out bounce captions asking for 1, 2, 3 bounces in turn", "",
                  "```", bounces["summary"], "```", "",
                  "| caption | impacts seen | regions | jump |", "|---|---|---|---|"]
        lines += [f"| {r['caption']} | {r['count']} | {r['regions']} | {_fmt(r['max_jump'])} |"
                  for r in bounces["per_clip"]]
    if cameo is not None:
        lines += ["", "## Cameo: 20 captions with and without a cameo profile", "",
                  "Profiles made from MP4 recordings by `pipeline.cameo.create_profile`; captions name neither colour "
                  "nor voice; the profile applied with the model's own cameo mode (`auto`: first frame and guided "
                  "reference tokens for this model), same seed with and without.", "",
                  "```", cameo["summary"], "```"]
    path.write_text("\n".join(lines) + "\n")
    (path.parent / HISTORY_NAME).write_text(json.dumps(runs, separators=(",", ":")) + "\n")
    return path
