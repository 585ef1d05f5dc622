"""Parity of `models.fusion_dit.FusionDiT` against a `fusion_dit/` fixture folder.

Everything comes from the folder: the tower configs (config.json `video_config` / `audio_config`, with the
reference constructor's `implicit_constructor_defaults` filled in), the weights (loaded strictly), the named
inputs, and the cases (`cases.<name>.forward_kwargs` in the reference's argument names). Each case's outputs
`<case>.vid_out` / `<case>.audio_out` are compared, plus every `<case>.*` tensor in intermediates.safetensors.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import torch
from safetensors.torch import load_file

from ..errors import InputValueError
from ..models.config import FusionConfig, TowerConfig
from ..models.fusion_dit import FusionDiT
from . import CaseResult, compare

COMPONENT = "fusion_dit"

# Reference constructor options this implementation does not have: the value it must hold.
_FIXED_OPTIONS = {"qk_norm": True, "cross_attn_norm": True, "window_size": [-1, -1],
                  "additional_emb_dim": None, "additional_emb_length": None}
# Reference forward arguments → FusionDiT.forward arguments.
_ARGUMENTS = {"vid": "video", "audio": "audio", "t": "t", "vid_context": "video_context",
              "audio_context": "audio_context", "vid_seq_len": "video_seq_len", "audio_seq_len": "audio_seq_len",
              "first_frame_is_clean": "first_frame_is_clean", "slg_layer": "skip_layer"}
# Reference arguments this model does not take; they must be null in every case.
_ABSENT_ARGUMENTS = ("clip_fea", "clip_fea_audio", "y")
# Output name suffix → position in FusionDiT.forward's (video, audio) result.
_OUTPUTS = {"vid_out": 0, "audio_out": 1}


def tower_dict(config: dict, tower: str) -> dict:
    """One tower's constructor arguments: implicit defaults (shared, or prefixed `"<tower> "`) then explicit."""
    merged: dict = {}
    for key, value in config.get("implicit_constructor_defaults", {}).items():
        scope, _, name = key.rpartition(" ")
        if scope in ("", tower):
            merged[name] = value
    merged.update(config[f"{tower}_config"])
    for name, required in _FIXED_OPTIONS.items():
        if name in merged and merged[name] != required:
            raise InputValueError(f"{tower}_config.{name}: this implementation supports only {required!r}, "
                                  f"found {merged[name]!r}")
    return merged


def fusion_config(config: dict) -> FusionConfig:
    return FusionConfig(video=TowerConfig.from_dict(tower_dict(config, "video")),
                        audio=TowerConfig.from_dict(tower_dict(config, "audio")))


def _resolve(value, inputs: dict[str, torch.Tensor]):
    """A forward_kwargs value: "[a, b]" → list of named inputs, "name" → that input, anything else as is."""
    if not isinstance(value, str):
        return value
    listed = re.fullmatch(r"\[(.*)\]", value.strip())
    if listed:
        return [inputs[name.strip()] for name in listed.group(1).split(",") if name.strip()]
    return inputs[value]


def case_arguments(forward_kwargs: dict, inputs: dict[str, torch.Tensor]) -> dict:
    kwargs = {}
    for name, value in forward_kwargs.items():
        if name in _ABSENT_ARGUMENTS:
            if value is not None:
                raise InputValueError(f"forward_kwargs.{name}: not supported, found {value!r}; expected null")
            continue
        if name not in _ARGUMENTS:
            raise InputValueError(f"forward_kwargs.{name}: unknown reference argument")
        kwargs[_ARGUMENTS[name]] = _resolve(value, inputs)
    return kwargs


def _as_batch(out) -> torch.Tensor:
    return torch.stack(list(out)) if isinstance(out, (list, tuple)) else out


def run(folder: Path) -> list[CaseResult]:
    folder = Path(folder)
    config = json.loads((folder / "config.json").read_text())
    model = FusionDiT(fusion_config(config))
    model.load_state_dict(load_file(str(folder / "weights.safetensors")), strict=True)
    model.eval()
    inputs = load_file(str(folder / "inputs.safetensors"))
    expected = load_file(str(folder / "outputs.safetensors"))
    inter_path = folder / "intermediates.safetensors"
    expected_inter = load_file(str(inter_path)) if inter_path.is_file() else {}

    results = []
    for case, spec in config["cases"].items():
        inter_names = {k[len(case) + 1:]: k for k in expected_inter if k.startswith(case + ".")}
        recorded: dict[str, torch.Tensor] | None = {} if inter_names else None
        with torch.no_grad():
            outs = model(**case_arguments(spec["forward_kwargs"], inputs), intermediates=recorded)
        for name in spec.get("outputs", [k for k in expected if k.startswith(case + ".")]):
            suffix = name[len(case) + 1:]
            results.append(compare(COMPONENT, name, _as_batch(outs[_OUTPUTS[suffix]]), expected[name]))
        for short, name in sorted(inter_names.items()):
            if short not in recorded:
                results.append(CaseResult(COMPONENT, name, float("inf"), float("inf"), False,
                                          "intermediate not produced by FusionDiT"))
                continue
            results.append(compare(COMPONENT, name, recorded[short], expected_inter[name]))
    return results
