"""Hold adapters: weight differences a model applies only while it samples one kind of hold.

A fine-tune of one tower for one task (the embedded default's audio tower for video-to-audio, whose picture is
given) may gain that task and cost the others, through the cross-modal attention that reads the changed tower.
Shipped as a difference to the base weights, it is added for the task alone and the base model stays as measured.

The file is a ComfyUI "diff" LoRA, so core LoraLoaderModelOnly applies the same file to a native MODEL:
`diffusion_model.<module>.diff` (a weight), `diffusion_model.<module>.diff_b` (its bias), and
`diffusion_model.<parameter>.diff` for a parameter not named `weight` or `bias`. The safetensors metadata key
`jointav_adapter` records which model family and hold it is for, and the base weights it was made against at a few
places per tensor, so an adapter is not added to other weights than its own (a re-trained bundle of the family).
"""

from __future__ import annotations

import json
import logging
import weakref
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file

from ..errors import CheckpointFileError, CheckpointKeyError, InputValueError
from ..samplers import ReferenceTokens, SegmentTail, WholeAudio, WholeVideo
from .default_model import BUNDLE_DIR

log = logging.getLogger(__name__)

METADATA_KEY = "jointav_adapter"
PREFIX = "diffusion_model."
ADAPTER_DIR = BUNDLE_DIR / "adapters"
# family -> hold kind (latent_hold) -> file: what each model family adds while it samples that hold
ADAPTERS: dict[str, dict[str, Path]] = {
    "jointav-default": {"whole_video": ADAPTER_DIR / "jointav-default-foley.safetensors",
                        "whole_audio": ADAPTER_DIR / "jointav-default-animate.safetensors",
                        "carried_subject": ADAPTER_DIR / "jointav-default-shots.safetensors",
                        "segment_tail": ADAPTER_DIR / "jointav-default-extend.safetensors"},
}
# Base values probed per tensor, and how far a probe may move: bf16 storage rounds by up to 0.4%; another run
# moves weights by far more (an average of 15% fine-tune with 85% bundle already moves most by percents).
PROBES_PER_TENSOR = 4
PROBE_RTOL = 1e-2


@dataclass(frozen=True)
class HoldAdapter:
    name: str
    family: str
    hold: str
    diffs: dict[str, torch.Tensor]  # DiT parameter name -> difference to add
    base_probe: dict[str, list[float]]  # DiT parameter name -> base values at `probe_places`
    source: str

    def provenance(self) -> dict:
        return {"name": self.name, "hold": self.hold, "file": Path(self.source).name}


# ------------------------------------------------------------------------------------------- names

def file_key(parameter: str) -> str:
    """The diff-LoRA key of a DiT parameter."""
    if parameter.endswith(".weight"):
        return f"{PREFIX}{parameter[:-len('.weight')]}.diff"
    if parameter.endswith(".bias"):
        return f"{PREFIX}{parameter[:-len('.bias')]}.diff_b"
    return f"{PREFIX}{parameter}.diff"


def parameter_name(key: str, parameters) -> str | None:
    """The DiT parameter a diff-LoRA key adds to, or None when the model has none of that name."""
    if not key.startswith(PREFIX):
        return None
    body = key[len(PREFIX):]
    if body.endswith(".diff_b"):
        name = body[:-len(".diff_b")] + ".bias"
        return name if name in parameters else None
    if body.endswith(".diff"):
        base = body[:-len(".diff")]
        for name in (base + ".weight", base):
            if name in parameters:
                return name
    return None


def probe_places(numel: int) -> list[int]:
    return sorted({round(i * (numel - 1) / (PROBES_PER_TENSOR - 1)) for i in range(PROBES_PER_TENSOR)})


def probe(tensor: torch.Tensor) -> list[float]:
    flat = tensor.detach().reshape(-1)
    return [float(flat[i]) for i in probe_places(flat.numel())]


def base_mismatch(adapter: "HoldAdapter", dit: torch.nn.Module, weight=None) -> str | None:
    """None when `dit` holds the weights the adapter was made against (within casting's rounding), else the first
    difference. `weight(name)` gives a parameter's own value where the live one may carry a patch (inside ComfyUI:
    a loaded LoRA'd clone of the MODEL)."""
    params = dict(dit.named_parameters())
    value = weight or (lambda name: params[name])
    for name in sorted(adapter.diffs):
        want = adapter.base_probe.get(name)
        if want is None:
            return f"{name} was not probed"
        have = probe(value(name))
        for h, w in zip(have, want):
            if abs(h - w) > PROBE_RTOL * abs(w) + 1e-6:
                return f"{name} is {h:.6g} where the adapter's base is {w:.6g}"
    return None


def patchable(names) -> list[str]:
    """The parameters core ComfyUI can patch: those of modules without parameterised children. Core's ModelPatcher
    patches (and places) weights module by module and leaves out a parameter that sits beside submodules (the
    output head's `modulation`, as in core's own Wan); an adapter without such parameters is the same
    computation in ComfyUI and in the library loop."""
    names = list(names)
    modules = {n.rsplit(".", 1)[0] if "." in n else "" for n in names}

    def beside_children(name: str) -> bool:
        own = name.rsplit(".", 1)[0] if "." in name else ""
        return any(m != own and m.startswith(own + ".") for m in modules) if own else len(modules) > 1
    return [n for n in names if not beside_children(n)]


# ------------------------------------------------------------------------------------------- files

def save_adapter(path: Path, base: dict[str, torch.Tensor], tuned: dict[str, torch.Tensor], *, name: str,
                 family: str, hold: str, dtype: torch.dtype = torch.float16, note: str = "") -> Path:
    """Write `tuned - base` for every parameter in `tuned` (DiT names) that core can patch (`patchable`) as a
    diff LoRA."""
    tuned = {k: tuned[k] for k in patchable(tuned)}
    missing = sorted(set(tuned) - set(base))
    if missing:
        raise KeyError(f"adapter {name}: {len(missing)} tuned parameters have no base weight, e.g. {missing[0]}")
    diffs = {file_key(k): (tuned[k].float() - base[k].float()).to(dtype).contiguous() for k in sorted(tuned)}
    meta = {"name": name, "family": family, "hold": hold, "note": note,
            "base_probe": {k: probe(base[k].float()) for k in sorted(tuned)}}
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".partial")
    save_file(diffs, str(tmp), metadata={METADATA_KEY: json.dumps(meta)})
    tmp.chmod(0o644)  # (safetensors writes owner-only files; an adapter is shipped and read by others)
    tmp.replace(path)  # (never a half-written adapter under the name a loader looks for)
    return path


def read_adapter(path: Path, dit: torch.nn.Module) -> HoldAdapter:
    """The adapter in `path`, checked against `dit`'s parameter names and shapes before anything is added."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointFileError(f"adapter {path}: no such file")
    params = dict(dit.named_parameters())
    try:
        with safe_open(str(path), framework="pt") as f:
            metadata, tensors = f.metadata() or {}, {key: f.get_tensor(key) for key in f.keys()}
    except (OSError, ValueError, SafetensorError) as exc:  # (not a safetensors file, or a truncated one)
        raise CheckpointFileError(f"adapter {path}: unreadable as safetensors ({exc})") from None
    try:
        meta = json.loads(metadata.get(METADATA_KEY, "null"))
    except ValueError:
        meta = None
    if not isinstance(meta, dict):
        raise CheckpointFileError(f"adapter {path}: no '{METADATA_KEY}' metadata; expected a JointAV hold adapter "
                                  f"(train_default --stage adapter writes one)")
    diffs = {}
    for key, tensor in tensors.items():
        name = parameter_name(key, params)
        if name is None:
            raise CheckpointKeyError(f"adapter {path}: key {key} adds to no parameter of the loaded DiT; expected "
                                     f"'{PREFIX}<module>.diff' or '.diff_b' of its parameters")
        if tuple(tensor.shape) != tuple(params[name].shape):
            raise CheckpointKeyError(f"adapter {path}: {key} has shape {list(tensor.shape)}, the DiT's {name} is "
                                     f"{list(params[name].shape)}")
        diffs[name] = tensor
    return HoldAdapter(name=meta.get("name", path.stem), family=meta.get("family", ""), hold=meta.get("hold", ""),
                       diffs=diffs, base_probe=dict(meta.get("base_probe") or {}), source=str(path))


def matches_base(adapter: HoldAdapter, dit: torch.nn.Module, weight=None) -> bool:
    return base_mismatch(adapter, dit, weight) is None


# ------------------------------------------------------------------------------------------- use

ADAPTER_CHOICES = ("auto", "off")
# per DiT module: file -> its adapter (None: made for other weights); dropped with the module
_loaded: "weakref.WeakKeyDictionary[torch.nn.Module, dict[str, HoldAdapter | None]]" = weakref.WeakKeyDictionary()


def latent_hold(conditionings) -> str | None:
    """The hold kind an adapter is chosen by: "whole_video" when the picture is given (video-to-audio),
    "whole_audio" when the sound is (audio-to-video), "carried_subject" when a film's later shot holds the subject
    of an earlier one as reference tokens (a cameo's references are not a carried subject), "segment_tail" when
    an extension holds the previous segment's last frames and their sound. The first that applies wins: a whole
    modality given decides a segment's task more than its tail does, and the shots adapter was trained with
    segment tails among its holds (a long shot is extended with its references)."""
    items = list(conditionings or ())
    if any(isinstance(c, WholeVideo) for c in items):
        return "whole_video"
    if any(isinstance(c, WholeAudio) for c in items):
        return "whole_audio"
    if any(isinstance(c, ReferenceTokens) and c.carried for c in items):
        return "carried_subject"
    if any(isinstance(c, SegmentTail) for c in items):
        return "segment_tail"
    return None


def adapter_for(model, hold: str | None, weight=None) -> HoldAdapter | None:
    """The adapter `model`'s family ships for `hold`, when its file is there and was made for these weights
    (`weight`: as in base_mismatch). Read once per model and file."""
    path = ADAPTERS.get(model.spec.family, {}).get(hold) if hold else None
    if path is None or not path.is_file():
        return None
    cache = _loaded.setdefault(model.dit, {})
    if str(path) not in cache:
        adapter = read_adapter(path, model.dit)
        mismatch = base_mismatch(adapter, model.dit, weight)
        if mismatch is not None:
            log.warning("JointAV: %s was made for other %s weights (%s); sampling without it", path.name,
                        model.spec.family, mismatch)
            adapter = None
        cache[str(path)] = adapter
    return cache[str(path)]


def chosen_adapter(model, conditionings, hold_mode: str, choice: str = "auto", weight=None) -> HoldAdapter | None:
    """What a sampling run adds: with `choice` "auto", the family's adapter for the latent's hold when that hold is
    sampled clean (as the adapter was trained); "off": none. (`weight`: as in base_mismatch.)"""
    if choice not in ADAPTER_CHOICES:
        raise InputValueError(f"adapter={choice!r}: expected one of {', '.join(ADAPTER_CHOICES)}")
    if choice == "off" or hold_mode != "clean":
        return None
    return adapter_for(model, latent_hold(conditionings), weight)


@contextmanager
def applied(dit: torch.nn.Module, adapter: HoldAdapter | None, strength: float = 1.0):
    """`dit` with the adapter added in place; its own weights are put back afterwards, bit for bit."""
    if adapter is None:
        yield dit
        return
    params = dict(dit.named_parameters())
    kept = {}
    try:
        with torch.no_grad():
            for name, diff in adapter.diffs.items():
                p = params[name]
                kept[name] = p.detach().clone()
                p.copy_((p.float() + strength * diff.to(p.device, torch.float32)).to(p.dtype))
        yield dit
    finally:
        with torch.no_grad():
            for name, original in kept.items():
                params[name].copy_(original)
