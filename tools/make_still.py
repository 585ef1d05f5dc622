"""docs/still_text_to_av.png: five frames of the README's first clip, upscaled, over its waveform.

    .venv/bin/python tools/make_still.py      # after a new default bundle

The clip is made exactly as the README's first command makes it (same prompt, seed and defaults), so the
picture shows what a user gets. White lines on the waveform mark where each shown frame sits in time.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import cv2
import numpy as np

from jointav.pipeline.generate import GenerationRequest, generate

README_PROMPT = "a red ball bounces twice on the left, low thuds"
README_SEED = 1
OUT = Path(__file__).resolve().parents[1] / "docs" / "still_text_to_av.png"
SCALE, GAP, WAVE_HEIGHT = 4, 8, 96
BACKGROUND = (24, 24, 26)
WAVE_COLOUR, MARK_COLOUR = (110, 190, 250), (235, 235, 235)


def still(frames: np.ndarray, waveform: np.ndarray, shown: int = 5) -> np.ndarray:
    """frames float `[T, H, W, 3]` in 0..1, waveform `[S]` → RGB uint8 picture."""
    t, h, w, _ = frames.shape
    picks = np.linspace(0, t - 1, shown).round().astype(int)
    tiles = [cv2.resize((frames[i] * 255).round().astype(np.uint8), (w * SCALE, h * SCALE),
                        interpolation=cv2.INTER_NEAREST) for i in picks]
    width = shown * w * SCALE + (shown - 1) * GAP
    top = np.full((h * SCALE, width, 3), BACKGROUND, np.uint8)
    for k, tile in enumerate(tiles):
        x = k * (w * SCALE + GAP)
        top[:, x:x + w * SCALE] = tile
    wave = np.full((WAVE_HEIGHT, width, 3), BACKGROUND, np.uint8)
    peak = float(np.abs(waveform).max()) or 1.0
    columns = np.array_split(waveform / peak, width)
    mid = WAVE_HEIGHT // 2
    for x, part in enumerate(columns):
        if part.size:
            lo, hi = int(mid - part.max() * (mid - 2)), int(mid - part.min() * (mid - 2))
            wave[lo:hi + 1, x] = WAVE_COLOUR
    for i in picks:  # the time of frame i on the waveform's axis
        wave[:, min(width - 1, round(i / (t - 1) * (width - 1)))] = MARK_COLOUR
    return np.concatenate([top, np.full((GAP, width, 3), BACKGROUND, np.uint8), wave])


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", type=Path, default=OUT)
    args = p.parse_args(argv)
    clip = generate(GenerationRequest(prompt=README_PROMPT, seed=README_SEED))
    picture = still(clip.frames.numpy(), clip.audio["waveform"][0].mean(0).numpy())
    cv2.imwrite(str(args.out), cv2.cvtColor(picture, cv2.COLOR_RGB2BGR))
    print(args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
