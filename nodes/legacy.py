"""Input names the nodes had before, so saved workflows that use them keep running.

The Sampler's skip-layer input was `slg_layer` in the API form (shown as `skip_layer` in the editor); it is
`skip_layer` everywhere now. An API workflow saved with the old name is rewritten when it is posted to
/prompt (ComfyUI's on-prompt hook), before validation. The editor's form stores widget values by position,
so saved UI workflows load unchanged.

The rewrite imports nothing from ComfyUI (unit-tested alone); `register` hooks it into the server.
"""

from __future__ import annotations

import logging

log = logging.getLogger(__name__)

# node id -> {old input name: current input name}
RENAMED_INPUTS: dict[str, dict[str, str]] = {
    "JointAVSampler": {"slg_layer": "skip_layer"},
}


def upgrade_prompt(prompt: object) -> list[str]:
    """Rename old input names in an API-form prompt in place; returns what was renamed ("node 5: a -> b").

    A node that already has the new name keeps its value (the old one is dropped)."""
    renamed = []
    if not isinstance(prompt, dict):
        return renamed
    for node_id, node in prompt.items():
        if not isinstance(node, dict) or not isinstance(node.get("inputs"), dict):
            continue
        for old, new in RENAMED_INPUTS.get(node.get("class_type"), {}).items():
            if old in node["inputs"]:
                value = node["inputs"].pop(old)
                node["inputs"].setdefault(new, value)
                renamed.append(f"node {node_id} ({node['class_type']}): {old} -> {new}")
    return renamed


def on_prompt(json_data: dict) -> dict:
    """ComfyUI's on-prompt handler: the posted body, with its prompt upgraded."""
    renamed = upgrade_prompt(json_data.get("prompt") if isinstance(json_data, dict) else None)
    if renamed:
        log.info("JointAV: old input names in the posted workflow were renamed: %s", "; ".join(renamed))
    return json_data


def register() -> None:
    """Hook `on_prompt` into the running server (once, however often the extension is loaded)."""
    from server import PromptServer  # ComfyUI's own module: only inside a running ComfyUI

    server = getattr(PromptServer, "instance", None)
    if server is not None and on_prompt not in server.on_prompt_handlers:
        server.add_on_prompt_handler(on_prompt)
