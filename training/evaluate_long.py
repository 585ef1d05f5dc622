"""The issue-18 measures on the default model: extension seams, audio-to-video and video-to-audio onset alignment
(with a shuffled pairing), and multi-shot colour / voice kept (against the same films without carried state).

Every run goes through the library a user calls (pipeline.long_form) into an MP4 that is read back, so the figures
include the H.264/AAC round trip. Inputs: held-out toy-world captions (evaluate.heldout_captions' split), plus for
A2V a synthetic click track the toy world never renders (its own click sound at its own times), and for V2A a plain
moving disc drawn here (not the toy world's renderer).

`python -m jointav.training.evaluate_long --what a2v,v2a,shots,extend --n 20` prints every figure.
"""

from __future__ import annotations

import argparse
import math
import sys
import tempfile
from pathlib import Path

import numpy as np

from ..audio.av_stream import MODEL_RATE, MediaClip, StreamingMP4Writer
from ..audio.mp4 import read_mp4
from ..metrics.audio_events import detect_audio_events
from ..metrics.long_form import kept_across, seam_figures, shot_traits
from ..metrics.sync import measure_sync
from ..metrics.video_events import detect_video_events
from ..pipeline import api, long_form
from ..toyworld import SceneSpec, caption_for, cameo_caption, render_clip, sample_spec
from .evaluate import EVAL_SEED

FPS = 12.0
SECONDS = 2.0


def _parts():
    return api.load_joint_model(device="cpu"), api.load_decoders(device="cpu")


def _specs(n: int, kinds: tuple[str, ...], seed: int) -> list[SceneSpec]:
    rng, specs = np.random.default_rng(seed), []
    while len(specs) < n:
        spec = sample_spec(rng, "heldout")
        if spec.kind == kinds[len(specs) % len(kinds)]:
            specs.append(spec)
    return specs


def click_track(rng: np.random.Generator, seconds: float = SECONDS) -> tuple[np.ndarray, list[int]]:
    """A sound the toy world never renders: 2-3 short 2.5 kHz tone bursts with a noise attack at random frames."""
    n = round(seconds * MODEL_RATE)
    frames = sorted(rng.choice(np.arange(3, round(seconds * FPS) - 3, 6), size=int(rng.integers(2, 4)), replace=False))
    track = np.zeros(n, np.float32)
    burst_len = round(0.03 * MODEL_RATE)
    t = np.arange(burst_len) / MODEL_RATE
    burst = (np.sin(2 * np.pi * 2500 * t) + 0.3 * rng.standard_normal(burst_len)) * np.exp(-t / 0.006)
    for f in frames:
        start = round(f * MODEL_RATE / FPS)
        track[start:start + burst_len] += 0.6 * burst[:n - start].astype(np.float32)
    return track, [int(f) for f in frames]


def moving_disc(rng: np.random.Generator, seconds: float = SECONDS, size: int = 64) -> tuple[np.ndarray, list[int]]:
    """A plain white disc on black falling and bouncing on the bottom edge at random frames (not the toy world's
    renderer): frames uint8 [1 + seconds*fps, size, size, 3] and the impact frames."""
    total = 1 + round(seconds * FPS)
    impacts = sorted(rng.choice(np.arange(4, total - 3, 6), size=int(rng.integers(2, 4)), replace=False).tolist())
    floor, top, radius = size - 8, 14, 6
    y = np.empty(total)
    keys = [0, *impacts, total - 1]
    for a, b in zip(keys[:-1], keys[1:]):  # parabolic arcs between impacts, at the floor on each impact
        s = np.linspace(0, 1, b - a + 1)
        arc = floor - (floor - top) * 4 * s * (1 - s) if a else top + (floor - top) * s**2
        y[a:b + 1] = arc
    yy, xx = np.mgrid[0:size, 0:size]
    frames = np.zeros((total, size, size, 3), np.uint8)
    for i in range(total):
        frames[i][(xx - size / 2) ** 2 + (yy - y[i]) ** 2 <= radius**2] = 255
    return frames, [int(f) for f in impacts]


def _write_and_read(run, folder: Path, name: str):
    path = folder / name
    with StreamingMP4Writer(path, FPS, 64, 64) as writer:
        report = run(writer)
        writer.commit()
    frames, sound, _, _ = read_mp4(path)
    path.unlink()
    return frames, sound[0], report


def evaluate_a2v(n: int = 20, steps: int | None = None, seed: int = EVAL_SEED, synthetic: int = 4,
                 hold_mode: str = "auto", adapter: str = "auto") -> dict:
    """n clips: n - synthetic toy-world bounce/speak sounds and `synthetic` click tracks, each animated from its
    sound; generated frames' events against the given sound's onsets, and the shuffled pairing."""
    model, decoders = _parts()
    rng = np.random.default_rng(seed)
    inputs = []
    for i, spec in enumerate(_specs(n - synthetic, ("bounce", "speak"), seed)):
        inputs.append((caption_for(spec), render_clip(spec, seed + i).audio, spec.kind, "toy world"))
    for _ in range(synthetic):
        track, frames = click_track(rng)
        colour = ("red", "blue", "yellow", "green")[len(inputs) % 4]
        count = {2: "twice", 3: "three times"}[len(frames)]
        inputs.append((f"a {colour} ball bounces {count} in the centre, high clicks, on a gray background", track,
                       "bounce", "click track"))
    videos, audios, rows = [], [], []
    with tempfile.TemporaryDirectory() as tmp:
        for i, (caption, sound, kind, source) in enumerate(inputs):
            clip = MediaClip(frames=None, sound=sound, fps=None, path=Path(f"<{source} {i}>"))
            frames, _, _ = _write_and_read(lambda w: long_form.animate(
                model, decoders, w, clip, [caption], to_seconds=SECONDS,
                settings=long_form.Settings(steps=steps, seed=seed + i, hold_mode=hold_mode, adapter=adapter)),
                Path(tmp), f"a2v{i}.mp4")
            videos.append(detect_video_events(frames, kind=kind))
            audios.append(detect_audio_events(sound, MODEL_RATE))
            rows.append({"caption": caption, "source": source})
    sync = measure_sync(videos, audios, [FPS] * len(videos))
    for row, offset in zip(rows, sync["offsets"]):
        row["offset"] = offset
    return {"n": len(inputs), "sync": sync, "rows": rows, "within_one_frame": _within(sync["offsets"])}


def evaluate_v2a(n: int = 20, steps: int | None = None, seed: int = EVAL_SEED, synthetic: int = 4,
                 hold_mode: str = "auto", adapter: str = "auto") -> dict:
    """n silent videos: n - synthetic toy-world clips (bounce, slide, speak) and `synthetic` plain moving discs;
    generated sound's onsets against the given video's events (shuffled pairing too), and for speaking clips whether
    the heard pitch class is the prompt's."""
    model, decoders = _parts()
    rng = np.random.default_rng(seed + 1)
    inputs = []
    for i, spec in enumerate(_specs(n - synthetic, ("bounce", "slide", "speak"), seed + 7)):
        inputs.append((caption_for(spec), render_clip(spec, seed + i).frames, spec.kind, spec.voice, "toy world"))
    for _ in range(synthetic):
        frames, impacts = moving_disc(rng)
        count = {2: "twice", 3: "three times"}[len(impacts)]
        inputs.append((f"a white ball bounces {count} in the centre, low thuds, on a black background", frames,
                       "bounce", None, "moving disc"))
    videos, audios, rows, pitch = [], [], [], []
    with tempfile.TemporaryDirectory() as tmp:
        for i, (caption, frames, kind, voice, source) in enumerate(inputs):
            clip = MediaClip(frames=frames, sound=None, fps=FPS, path=Path(f"<{source} {i}>"))
            _, sound, _ = _write_and_read(lambda w: long_form.foley(
                model, decoders, w, clip, [caption], to_seconds=SECONDS,
                settings=long_form.Settings(steps=steps, seed=seed + i, hold_mode=hold_mode, adapter=adapter)),
                Path(tmp), f"v2a{i}.mp4")
            videos.append(detect_video_events(frames, kind=kind))
            heard = detect_audio_events(sound, MODEL_RATE)
            audios.append(heard)
            rows.append({"caption": caption, "source": source, "pitch_class": heard.pitch_class})
            if voice is not None:
                pitch.append(heard.pitch_class == voice)
    sync = measure_sync(videos, audios, [FPS] * len(videos))
    for row, offset in zip(rows, sync["offsets"]):
        row["offset"] = offset
    return {"n": len(inputs), "sync": sync, "rows": rows, "within_one_frame": _within(sync["offsets"]),
            "pitch_follows_prompt": float(np.mean(pitch)) if pitch else math.nan, "n_speaking": len(pitch)}


def _within(offsets) -> float:
    """Share of ALL clips whose median offset is within 1 frame (an undefined offset counts as out)."""
    return float(np.mean([not math.isnan(o) and abs(o) <= 1.0 for o in offsets])) if offsets else math.nan


def film_prompts(spec: SceneSpec) -> list[str]:
    """Three shots naming the subject first, then only 'it' / 'the same ...' (colour and voice left out)."""
    first = caption_for(spec)
    if spec.kind == "speak":
        later = SceneSpec("speak", spec.colour, "character", 2 if spec.count != 2 else 1, spec.background,
                          voice=spec.voice)
        return [first, cameo_caption(later), f"the same character speaks three syllables on a {spec.background} background"]
    sound = f"{spec.sound}s" if spec.sound else "thuds"
    return [first, f"it bounces twice in the centre, low {sound}, on a {spec.background} background",
            f"the same {spec.shape} bounces once on the left, a low thud, on a {spec.background} background"]


def evaluate_shots(n: int = 20, steps: int | None = None, seed: int = EVAL_SEED, adapter: str = "auto") -> dict:
    """n three-shot films (bounce and speak in turn), each made with carry='subject' and carry='none'; colour kept
    in every later shot, and (speaking films) voice pitch class kept."""
    model, decoders = _parts()
    results = {}
    specs = _specs(n, ("bounce", "speak"), seed + 3)
    with tempfile.TemporaryDirectory() as tmp:
        for carry in ("subject", "none"):
            colour, voice, rows = [], [], []
            for i, spec in enumerate(specs):
                shots = [long_form.Shot(p, SECONDS) for p in film_prompts(spec)]
                frames, sound, report = _write_and_read(lambda w: long_form.shots(
                    model, decoders, w, shots, carry=carry,
                    settings=long_form.Settings(steps=steps, seed=seed + i, adapter=adapter)),
                    Path(tmp), f"film{i}.mp4")
                traits = shot_traits(frames, sound, FPS, MODEL_RATE, report.cuts, kind=spec.kind)
                kept_colour = kept_across(traits, "colour")
                colour.append(bool(kept_colour))
                if spec.kind == "speak":
                    voice.append(bool(kept_across(traits, "pitch_class")))
                rows.append({"prompts": [s.prompt for s in shots], "traits": traits})
            results[carry] = {"colour_kept": float(np.mean(colour)), "voice_kept": float(np.mean(voice)) if voice
                              else math.nan, "n": len(specs), "n_speaking": len(voice), "rows": rows}
    return results


def evaluate_extension(films: int = 4, to_seconds: float = 20.0, steps: int | None = None, seed: int = EVAL_SEED,
                       hold: int = long_form.DEFAULT_HOLD, adapter: str = "auto") -> dict:
    """`films` bounce/speak films extended from a generated 2 s segment to `to_seconds`; seam figures per film."""
    model, decoders = _parts()
    out = []
    with tempfile.TemporaryDirectory() as tmp:
        for i, spec in enumerate(_specs(films, ("bounce", "speak"), seed + 5)):
            frames, sound, report = _write_and_read(lambda w: long_form.extend(
                model, decoders, w, to_seconds=to_seconds, prompts=[caption_for(spec)], hold_latent_frames=hold,
                settings=long_form.Settings(steps=steps, seed=seed + i, adapter=adapter)), Path(tmp), f"ext{i}.mp4")
            figures = seam_figures(frames, sound, FPS, MODEL_RATE, report.seams, kind=spec.kind)
            figures.update(caption=caption_for(spec), frames=len(frames), seconds=len(frames) / FPS,
                           count_as_captioned=float(np.mean([r["count"] == spec.count for r in figures["segments"]])))
            out.append(figures)
    return {"films": out, "to_seconds": to_seconds, "hold": hold,
            "colour_kept": float(np.nanmean([f["colour_kept"] for f in out])),
            "count_as_captioned": float(np.mean([f["count_as_captioned"] for f in out])),
            "seams_within_range": float(np.nanmean([f["seams_within_range"] for f in out])),
            "first_median_abs_offset": _median([f["first_abs_offset"] for f in out]),
            "extended_median_abs_offset": _median([f["extended_median_abs_offset"] for f in out])}


def _median(values) -> float:
    v = [x for x in values if not math.isnan(x)]
    return float(np.median(v)) if v else math.nan


def summary(name: str, result: dict) -> str:
    """A few printable lines per measure."""
    if name in ("a2v", "v2a"):
        s, sh = result["sync"], result["sync"]["shuffled"]
        lines = [f"{name}: {result['n']} clips: within 1 frame {result['within_one_frame']:.0%} "
                 f"(target >= 80%), median |offset| {s['median_abs_offset']:.2f} frames (shuffled "
                 f"{sh['median_abs_offset']:.2f}), in sync {s['in_sync_fraction']:.0%} (shuffled "
                 f"{sh['in_sync_fraction']:.0%}), event hit rate {s['event_hit_rate']:.0%} (shuffled "
                 f"{sh['event_hit_rate']:.0%}), defined for {s['n_defined']}"]
        if name == "v2a":
            lines.append(f"  pitch class follows the prompt in {result['pitch_follows_prompt']:.0%} of "
                         f"{result['n_speaking']} speaking clips")
        for row in result["rows"]:
            lines.append(f"    {row['source']:<12} {row['caption'][:64]:<64} offset {row['offset']:>6.2f}")
        return "\n".join(lines)
    if name == "shots":
        a, b = result["subject"], result["none"]
        return (f"shots: {a['n']} three-shot films: colour kept {a['colour_kept']:.0%} with the carried subject vs "
                f"{b['colour_kept']:.0%} without; voice pitch class kept {a['voice_kept']:.0%} vs "
                f"{b['voice_kept']:.0%} ({a['n_speaking']} speaking films); target >= 80% against chance")
    lines = [f"extend to {result['to_seconds']:g} s (hold {result['hold']} latent frame(s)), {len(result['films'])} "
             f"films: colour kept {result['colour_kept']:.0%} of later segments, event count as captioned in "
             f"{result['count_as_captioned']:.0%} of segments, seam changes within the inside range "
             f"{result['seams_within_range']:.0%}, median |offset| first segment {result['first_median_abs_offset']:.2f} "
             f"vs extended {result['extended_median_abs_offset']:.2f} frames"]
    for f in result["films"]:
        seams = np.asarray(f["seam_changes"])
        lines.append(f"    {f['caption'][:60]:<60} {f['seconds']:.1f} s, seams median change "
                     f"{np.median(seams):.1f} vs inside median {f['inside_changes_median']:.1f} "
                     f"(max {f['inside_changes_max']:.1f}), colour kept {f['colour_kept']:.0%}, sound switch steps "
                     f"median {np.median(f['audio_seam_jumps']) if f['audio_seam_jumps'] else float('nan'):.3f} vs "
                     f"p99 of other steps {f['audio_step_p99']:.3f}")
    return "\n".join(lines)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m jointav.training.evaluate_long")
    p.add_argument("--what", default="a2v,v2a,shots,extend")
    p.add_argument("--n", type=int, default=20, help="clips / films for a2v, v2a and shots")
    p.add_argument("--films", type=int, default=4, help="films for extend")
    p.add_argument("--to", type=float, default=20.0, help="extension target seconds")
    p.add_argument("--hold", type=int, default=long_form.DEFAULT_HOLD)
    p.add_argument("--steps", type=int, default=None)
    p.add_argument("--hold-mode", default="auto", choices=["auto", "clean", "noised"])
    p.add_argument("--adapter", default="auto", choices=["auto", "off"],
                   help="auto: the hold adapters the commands add; off: the bundle alone (a baseline)")
    p.add_argument("--seed", type=int, default=EVAL_SEED, help=f"clip seed (default: the tests' {EVAL_SEED}; "
                                                               "choose others to validate a candidate)")
    args = p.parse_args(argv)
    for name in args.what.split(","):
        if name == "a2v":
            result = evaluate_a2v(args.n, args.steps, seed=args.seed, hold_mode=args.hold_mode, adapter=args.adapter)
        elif name == "v2a":
            result = evaluate_v2a(args.n, args.steps, seed=args.seed, hold_mode=args.hold_mode, adapter=args.adapter)
        elif name == "shots":
            result = evaluate_shots(args.n, args.steps, seed=args.seed, adapter=args.adapter)
        elif name == "extend":
            result = evaluate_extension(args.films, args.to, args.steps, seed=args.seed, hold=args.hold,
                                        adapter=args.adapter)
        else:
            print(f"error: --what {name!r}: expected a2v, v2a, shots or extend", file=sys.stderr)
            return 2
        print(f"[hold_mode {args.hold_mode}, adapter {args.adapter}] " + summary(name, result), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
