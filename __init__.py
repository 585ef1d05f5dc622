"""ComfyUI-JointAV: joint audio-video generation for ComfyUI.

This folder is imported two ways: by ComfyUI as a custom-node module (it looks up `comfy_entrypoint`),
and as the installed Python package `jointav`. ComfyUI is imported only inside the entry point, so the
compute core stays importable (and testable) without ComfyUI.
"""

__version__ = "0.1.0"


async def comfy_entrypoint():
    from .nodes import JointAVExtension

    return JointAVExtension()
