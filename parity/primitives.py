"""Parity of `models.rope` (RoPE tables, RoPE application, timestep sinusoid) against a `primitives/` folder.

Tensor groups are discovered by name in primitives.safetensors:
- `freqs_<kind>.{real,imag}`: a RoPE table, kind `video` or `audio`, rebuilt by `models.rope` at
  config.json's `head_dim` (and as many positions as the stored table has rows);
- `<group>.{x, grid_sizes, out}`: RoPE applied to x; the grid width picks the table (3 → video, 1 → audio);
- `<group>.t_<sfx>` → `<group>.out_<sfx>`: the sinusoid of those timesteps, width from the stored output.
The audio position scale is config.json's `freqs_scaling=` value where it states one, else Ovi's.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import torch
from safetensors.torch import load_file

from ..models.config import FusionConfig
from ..models.rope import apply_rope, audio_rope_table, sinusoidal_embedding, video_rope_table
from . import CaseResult, compare

COMPONENT = "primitives"


def _audio_scale(config: dict) -> float:
    match = re.search(r"freqs_scaling\s*=\s*([0-9.eE+-]+)", json.dumps(config))
    return float(match.group(1)) if match else FusionConfig().audio.temporal_rope_scaling_factor


def _table(kind: str, head_dim: int, max_pos: int, audio_scale: float) -> torch.Tensor:
    if kind == "video":
        return video_rope_table(head_dim, max_pos)
    if kind == "audio":
        return audio_rope_table(head_dim, audio_scale, max_pos)
    raise KeyError(f"primitives: unknown RoPE table kind {kind!r}; expected video or audio")


def run(folder: Path) -> list[CaseResult]:
    folder = Path(folder)
    config = json.loads((folder / "config.json").read_text())
    data = load_file(str(folder / "primitives.safetensors"))
    head_dim = int(config["head_dim"])
    scale = _audio_scale(config)
    groups: dict[str, dict[str, torch.Tensor]] = {}
    for key, value in data.items():
        group, _, field = key.rpartition(".")
        groups.setdefault(group, {})[field] = value

    # Tables for RoPE application: as many positions as the stored tables (the reference's 1024 otherwise).
    max_pos = max((g["real"].shape[0] for n, g in groups.items() if n.startswith("freqs_")), default=1024)
    tables = {kind: _table(kind, head_dim, max_pos, scale) for kind in ("video", "audio")}

    results = []
    for name, fields in sorted(groups.items()):
        if name.startswith("freqs_") and {"real", "imag"} <= fields.keys():
            ours = _table(name[len("freqs_"):], head_dim, fields["real"].shape[0], scale)
            results.append(compare(COMPONENT, f"{name}.real", ours.real, fields["real"]))
            results.append(compare(COMPONENT, f"{name}.imag", ours.imag, fields["imag"]))
        if {"x", "grid_sizes", "out"} <= fields.keys():
            kind = "video" if fields["grid_sizes"].shape[-1] == 3 else "audio"
            got = apply_rope(fields["x"], fields["grid_sizes"], tables[kind])
            results.append(compare(COMPONENT, f"{name}.out", got.to(fields["out"].dtype), fields["out"]))
        for field, t in fields.items():
            if field.startswith("t_") and f"out_{field[2:]}" in fields:
                expected = fields[f"out_{field[2:]}"]
                results.append(compare(COMPONENT, f"{name}.out_{field[2:]}",
                                       sinusoidal_embedding(expected.shape[-1], t), expected))
    return results
