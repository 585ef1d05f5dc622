"""Write the template browser's thumbnail beside each example workflow (example_workflows/<name>.jpg).

ComfyUI's template browser asks for `<name>.jpg` next to each template. A workflow on the embedded default
model is rendered here through the pipeline with the workflow's own values (read from its API form: prompt,
negatives, seed, steps, solver, guidance, skip layer, duration, size, and for image-to-AV the image), and the
thumbnail is four frames of that clip, evenly spaced, in a 2x2 grid. An Ovi workflow cannot be rendered
without its 23 GB of weights, so its thumbnail is a plain title card saying so and naming the files it needs,
not a picture that pretends to be its output.

    python tools/make_thumbnails.py [--image PATH]   # PATH: what LoadImage's example.png is (ComfyUI's input/)
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import cv2
import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
UI_DIR = ROOT / "example_workflows"
API_DIR = UI_DIR / "api"
EMBEDDED = "(embedded default)"
SIDE = 384  # the thumbnail's width and height in pixels
DEFAULT_IMAGE = Path.home() / "comfy" / "ComfyUI" / "input" / "example.png"


def _node(prompt: dict, class_type: str) -> dict | None:
    return next((n["inputs"] for n in prompt.values() if n["class_type"] == class_type), None)


def _model_name(prompt: dict) -> str:
    loader = _node(prompt, "JointAVLoadModel") or {}
    return loader.get("model_name") or (_node(prompt, "UNETLoader") or {}).get("unet_name", "")


def _empty_latent(prompt: dict) -> dict | None:
    return _node(prompt, "JointAVEmptyLatent") or _node(prompt, "JointAVEmptyAVLatent")


def render_native(prompt: dict) -> torch.Tensor:
    """A native-path workflow's clip on the embedded model: core Euler on Ovi's sigmas with the JointAV guider
    and noise gives the JointAV Sampler's Euler clip for the same values (tests/integration/native_checks.py
    shows the two within 1e-5), so the pipeline renders it with the workflow's texts, seed, steps and scales."""
    from jointav.pipeline import api

    model = api.load_joint_model(None, device="cpu")
    decoders = api.load_decoders(None, None, None, device="cpu")
    guider = _node(prompt, "JointAVGuider")
    texts = {key: prompt[str(guider[key][0])]["inputs"]["text"]
             for key in ("positive", "video_negative", "audio_negative")}
    conditioning = api.encode_prompt(model, texts["positive"], [], "", texts["video_negative"],
                                     texts["audio_negative"])
    empty = _empty_latent(prompt)
    latent = api.empty_latent(model, empty["duration"], empty["height"] or None, empty["width"] or None,
                              empty["batch"])
    sampled = api.sample(model, conditioning, latent, seed=_node(prompt, "JointAVNoise")["noise_seed"],
                         steps=_node(prompt, "BasicScheduler")["steps"], solver="euler", shift=5.0,
                         video_guidance=guider["video_cfg"], audio_guidance=guider["audio_cfg"],
                         skip_layer=guider["skip_layer"])
    return api.decode_video(decoders, sampled)


def render_shot_list(prompt: dict) -> torch.Tensor:
    """A Shot List workflow's film, made as the node makes it: pipeline.long_form.shots with its values."""
    from jointav.pipeline import api, long_form
    from jointav.pipeline.film_memory import FilmInMemory

    model = api.load_joint_model(None, device="cpu")
    decoders = api.load_decoders(None, None, None, device="cpu")
    n = _node(prompt, "JointAVShotList")
    height, width = api.frame_size(model, n["height"] or None, n["width"] or None)
    film = FilmInMemory(height, width)
    long_form.shots(model, decoders, film, long_form.parse_shot_list(n["shots"]), carry=n["carry"],
                    settings=long_form.Settings(seed=n["seed"], steps=n["steps"] or None, solver=n["solver"]))
    return torch.from_numpy(film.frames()).float().div(255)


def foley_input_frames() -> np.ndarray:
    """The foley example's input clip (what tests write to ComfyUI's input/ as make_workflows.FOLEY_INPUT): a plain
    disc falling and bouncing, 2 s at 12 fps, 64x64, uint8 `[25, 64, 64, 3]`."""
    from jointav.training.evaluate_long import moving_disc

    frames, _ = moving_disc(np.random.default_rng(0), seconds=2.0, size=64)
    return frames


def render_default(prompt: dict, image_path: Path) -> torch.Tensor:
    """The workflow's clip frames `[T, H, W, 3]` in 0..1, made by the pipeline with the workflow's values."""
    from jointav.pipeline import api

    if _node(prompt, "JointAVVideoToAudioLatent") is not None:  # foley keeps the given frames: they are the clip's
        return torch.from_numpy(foley_input_frames()).float().div(255)
    if _node(prompt, "JointAVGuider") is not None:
        return render_native(prompt)
    if _node(prompt, "JointAVShotList") is not None:
        return render_shot_list(prompt)
    model = api.load_joint_model(None, device="cpu")
    decoders = api.load_decoders(None, None, None, device="cpu")
    text = _node(prompt, "JointAVEncodePrompt")
    conditioning = api.encode_prompt(model, text["video_prompt"], [l for l in text["speech_lines"].splitlines()
                                                                   if l.strip()],
                                     text["audio_description"], text["video_negative"], text["audio_negative"])
    empty = _node(prompt, "JointAVEmptyLatent")
    if empty is not None:
        latent = api.empty_latent(model, empty["duration"], empty["height"] or None, empty["width"] or None,
                                  empty["batch"])
    else:
        image_node = _node(prompt, "JointAVImageToAVLatent")
        picture = cv2.cvtColor(cv2.imread(str(image_path), cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)
        image = torch.from_numpy(picture).float().div(255)[None]
        latent = api.image_to_av_latent(model, decoders, image, image_node["duration"],
                                        image_node["height"] or None, image_node["width"] or None)
    s = _node(prompt, "JointAVSampler")
    sampled = api.sample(model, conditioning, latent, seed=s["seed"], steps=s["steps"], solver=s["solver"],
                         shift=s["shift"], video_guidance=s["video_guidance"], audio_guidance=s["audio_guidance"],
                         skip_layer=s["skip_layer"])
    return api.decode_video(decoders, sampled)


def grid(frames: torch.Tensor) -> np.ndarray:
    """Four evenly spaced frames in a 2x2 grid, scaled to SIDE x SIDE, as a BGR uint8 image."""
    picks = np.linspace(0, frames.shape[0] - 1, 4).round().astype(int)
    tiles = [(frames[i].numpy() * 255).round().astype(np.uint8) for i in picks]
    sheet = np.concatenate([np.concatenate(tiles[:2], axis=1), np.concatenate(tiles[2:], axis=1)], axis=0)
    sheet = cv2.resize(sheet, (SIDE, SIDE), interpolation=cv2.INTER_NEAREST)  # sharp pixels, no invented detail
    return cv2.cvtColor(sheet, cv2.COLOR_RGB2BGR)


def title_card(prompt: dict, note: str) -> np.ndarray:
    """A dark card with the workflow's model files and settings, for a workflow not rendered here."""
    card = np.full((SIDE, SIDE, 3), 32, np.uint8)
    model = _model_name(prompt)
    latent = _empty_latent(prompt)
    lines = [("Ovi", 1.4), (model, 0.5), (f"{latent['width']}x{latent['height']}, {latent['duration']}", 0.7), ("", 0.5),
             ("not rendered: needs the", 0.5), ("Ovi weights (see README,", 0.5), ("'Model files')", 0.5)]
    words, line = note.split(), ""
    wrapped = []
    for word in words:
        if len(line) + len(word) > 30:
            wrapped.append(line)
            line = ""
        line = f"{line} {word}".strip()
    wrapped.append(line)
    lines[4:4] = [(w, 0.5) for w in wrapped] + [("", 0.5)]
    y = 50
    for text, scale in lines:
        cv2.putText(card, text, (20, y), cv2.FONT_HERSHEY_SIMPLEX, scale, (230, 230, 230), 1 if scale < 1 else 2,
                    cv2.LINE_AA)
        y += int(40 * scale) + 8
    return card


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--image", type=Path, default=DEFAULT_IMAGE,
                        help="the picture the image-to-AV workflow's Load Image names (ComfyUI's input/example.png)")
    parser.add_argument("--only", action="append", default=[], metavar="NAME",
                        help="render only this workflow (repeatable; default: all)")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    for path in sorted(API_DIR.glob("*.json")):
        if args.only and path.stem not in args.only:
            continue
        prompt = json.loads(path.read_text())
        ui = json.loads((UI_DIR / path.name).read_text())
        if _model_name(prompt) == EMBEDDED:
            picture = grid(render_default(prompt, args.image))
            how = "rendered"
        else:
            picture = title_card(prompt, ui["extra"].get("jointav_note", ""))
            how = "title card"
        out = UI_DIR / f"{path.stem}.jpg"
        cv2.imwrite(str(out), picture, [cv2.IMWRITE_JPEG_QUALITY, 90])
        print(f"{out.relative_to(ROOT)}: {how}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
