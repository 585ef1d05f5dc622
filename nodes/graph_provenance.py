"""What made a clip sampled on the native path, read from the workflow ComfyUI ran.

A core sampler (SamplerCustomAdvanced, KSampler) hands back a LATENT without our record of the prompt, seed
and settings, so JointAV Save Video reads them from the API prompt it is given as a hidden input: the
guider's positive text, the noise seed, the model file, the sampler and the schedule. The whole API prompt is
kept in the record as well, so a verifier can see every setting, not only the ones named here.
"""

from __future__ import annotations

from typing import Any

GUIDERS = ("JointAVGuider", "CFGGuider", "DualCFGGuider", "BasicGuider")
NOISES = ("JointAVNoise", "RandomNoise")
MODEL_LOADERS = {"UNETLoader": "unet_name", "JointAVLoadModel": "model_name"}
SAMPLER_SETTINGS = {"KSamplerSelect": ("sampler_name",), "BasicScheduler": ("scheduler", "steps", "denoise"),
                    "JointAVScheduler": ("solver", "steps", "shift"),
                    "JointAVGuider": ("video_cfg", "audio_cfg", "skip_layer", "reference_guidance"),
                    "ModelSamplingSD3": ("shift",)}


def _nodes_of(workflow: dict, kinds) -> list[dict]:
    return [n for _, n in sorted(workflow.items()) if isinstance(n, dict) and n.get("class_type") in kinds]


# Conditioning inputs followed back through nodes that pass a CONDITIONING on (JointAV Apply Cameo (native), ...)
PASSED_ON = ("positive", "conditioning")


def _text_behind(workflow: dict, link: Any, depth: int = 8) -> str | None:
    """The text of the CLIP Text Encode (or any node with a `text` widget) a CONDITIONING link comes from,
    through nodes that hand a CONDITIONING on."""
    if not (isinstance(link, list) and link and str(link[0]) in workflow) or depth <= 0:
        return None
    inputs = workflow[str(link[0])].get("inputs", {})
    text = inputs.get("text")
    if isinstance(text, str):
        return text
    return next((t for t in (_text_behind(workflow, inputs.get(k), depth - 1) for k in PASSED_ON) if t is not None),
                None)


def provenance_from_workflow(workflow: dict | None) -> dict:
    """A provenance record (model, prompt, seed, sampler, workflow) for a clip made by the graph `workflow`."""
    workflow = workflow if isinstance(workflow, dict) else {}
    prompt = None
    for guider in _nodes_of(workflow, GUIDERS):
        inputs = guider.get("inputs", {})
        prompt = _text_behind(workflow, inputs.get("positive") or inputs.get("conditioning"))
        if prompt is not None:
            break
    seed = next((n["inputs"].get("noise_seed") for n in _nodes_of(workflow, NOISES)
                 if isinstance(n.get("inputs", {}).get("noise_seed"), int)), 0)
    model = next((n["inputs"].get(key) for kind, key in MODEL_LOADERS.items() for n in _nodes_of(workflow, (kind,))
                  if isinstance(n.get("inputs", {}).get(key), str)), "unknown")
    sampler: dict[str, Any] = {"path": "ComfyUI core sampler"}
    for kind, keys in SAMPLER_SETTINGS.items():
        for node in _nodes_of(workflow, (kind,)):
            for key in keys:
                value = node.get("inputs", {}).get(key)
                if isinstance(value, (int, float, str)):
                    sampler[key] = value
    return {"model": model, "prompt": prompt or "", "seed": seed, "sampler": sampler, "workflow": _as_posted(workflow)}


def _as_posted(workflow: dict) -> dict:
    """The graph as posted: each node's class, inputs and title, without what ComfyUI adds while running it (its
    `is_changed` entry holds a node's fingerprint, NaN for nodes re-run every time, which JSON cannot hold)."""
    return {key: {k: node[k] for k in ("class_type", "inputs", "_meta") if k in node} if isinstance(node, dict)
            else node for key, node in workflow.items()}
