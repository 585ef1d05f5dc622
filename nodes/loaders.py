"""Load Model and Load Decoders: file dropdowns over ComfyUI's model folders, plus the embedded default.

The DiT comes from `diffusion_models`, the Wan2.2 video VAE from `vae`, and the MMAudio VAE and BigVGAN
vocoder from our own `jointav_audio` folder (models/jointav_audio/), which ComfyUI has no folder for.
"""

from __future__ import annotations

import os

import folder_paths
from comfy_api.latest import io

from ..comfy_native.loading import load_for_node
from ..models.attention import BACKENDS
from ..pipeline import api as pipeline
from ..pipeline.specs import DEFAULT_SPEC, FAMILIES
from .device import torch_device
from .failures import node_errors
from .types import CATEGORY, JointAVDecoders, JointAVModel
from .validation import validate

EMBEDDED = "(embedded default)"  # the first dropdown entry: the small model that ships inside the pack
AUDIO_FOLDER = "jointav_audio"

WEIGHT_DTYPES = list(pipeline.WEIGHT_DTYPES)
ATTENTION_BACKENDS = list(BACKENDS)
OFFLOAD_POLICIES = list(pipeline.OFFLOAD_POLICIES)
# Ovi's releases share one architecture, so the family comes from the published file name unless picked here.
FAMILY_CHOICES = ["auto", *(name for name in FAMILIES if name != DEFAULT_SPEC.family)]

# Where the files each input takes are published (README, "Model files"), for the message of a missing one.
PUBLISHED = {
    "model_name": "Ovi's model.safetensors, model_fp8_e4m3fn.safetensors, model_960x960.safetensors and "
                  "model_960x960_10s.safetensors are published on Hugging Face at chetwinlow1/Ovi",
    "video_vae": "wan2.2_vae.safetensors is published on Hugging Face at Comfy-Org/Wan_2.2_ComfyUI_Repackaged",
    "audio_vae": "v1-16.pth (MMAudio 16 kHz VAE) is published on Hugging Face at hkchengrex/MMAudio, ext_weights/",
    "vocoder": "best_netG.pt (BigVGAN 16 kHz vocoder) is published on Hugging Face at hkchengrex/MMAudio, "
               "ext_weights/",
}


def register_audio_folder() -> None:
    """Add models/jointav_audio to folder_paths (kept if extra_model_paths.yaml already named it)."""
    folder_paths.add_model_folder_path(AUDIO_FOLDER, os.path.join(folder_paths.models_dir, AUDIO_FOLDER))
    paths, extensions = folder_paths.folder_names_and_paths[AUDIO_FOLDER]
    if not extensions:  # a new folder name lists every file; restrict it to checkpoint files like the others
        folder_paths.folder_names_and_paths[AUDIO_FOLDER] = (paths, set(folder_paths.supported_pt_extensions))


def register_adapter_folder() -> None:
    """The embedded default's hold adapters (default_model/adapters/) in core's `loras` list, so a native graph
    adds the foley or animate adapter with core LoraLoaderModelOnly (the JointAV Sampler adds it by itself)."""
    from ..pipeline.adapters import ADAPTER_DIR

    if ADAPTER_DIR.is_dir():
        folder_paths.add_model_folder_path("loras", str(ADAPTER_DIR))


def choices(folder: str) -> list[str]:
    return [EMBEDDED, *folder_paths.get_filename_list(folder)]


def missing_file(name: str, value: object, folder: str) -> str | None:
    """For a file dropdown: None when the choice is there, else what is missing, where we looked and where the
    file is published."""
    if value is None or value == EMBEDDED or value in folder_paths.get_filename_list(folder):
        return None
    where = ", ".join(folder_paths.get_folder_paths(folder)) or f"the {folder} folder"
    published = f" ({PUBLISHED[name]})" if name in PUBLISHED else ""
    return f"{name}={value!r} is not a file in {where}{published}"


def check_files(node: str, values: dict, files: dict[str, str]) -> list[str]:
    """Every missing file of a loader, in one message: a user fetching three files learns of all three at once."""
    missing = [m for name, folder in files.items() if (m := missing_file(name, values.get(name), folder))]
    if not missing:
        return []
    count = "a file is" if len(missing) == 1 else f"{len(missing)} files are"
    return [f"{node}: {count} missing: " + "; ".join(missing)
            + ". Put each file in its folder, or pick one of the listed files."]


def resolve(node: str, name: str, value: str, folder: str) -> str | None:
    """The full path of a dropdown choice (None = embedded default); a vanished file names the input."""
    if value == EMBEDDED:
        return None
    path = folder_paths.get_full_path(folder, value)
    if path is None:
        where = ", ".join(folder_paths.get_folder_paths(folder))
        raise FileNotFoundError(f"{node}: {name}={value!r} was not found in {where}")
    return path


class LoadModel(io.ComfyNode):
    NAME = "JointAV Load Model"

    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="JointAVLoadModel",
            display_name=cls.NAME,
            category=CATEGORY,
            description="Loads a joint audio-video DiT (Ovi 1.0 / 1.1 or the embedded default model).",
            inputs=[
                io.Combo.Input("model_name", options=choices("diffusion_models"), default=EMBEDDED,
                               tooltip="A file in models/diffusion_models, or the small model embedded in the pack."),
                io.Combo.Input("weight_dtype", options=WEIGHT_DTYPES, default="auto",
                               tooltip="Precision the weights are kept in; auto follows the file and the device."),
                io.Combo.Input("attention_backend", options=ATTENTION_BACKENDS, default="auto",
                               tooltip="Attention kernel; auto picks the fastest one installed for the device."),
                io.Combo.Input("offload", options=OFFLOAD_POLICIES, default="none",
                               tooltip="Block swap for GPUs too small for the model (embedded default and JointAV "
                                       "bundles; for Ovi files ComfyUI's memory management streams what does not "
                                       "fit). cpu: weights stay in RAM and every DiT block streams to the GPU just "
                                       "before use; blocks N: only the last N blocks stream, the rest sit on the GPU "
                                       "while sampling. Same output."),
                io.Combo.Input("family", options=FAMILY_CHOICES, default="auto",
                               tooltip="auto: read from the published file name (model.safetensors = Ovi 1.0 720, "
                                       "model_960x960.safetensors = 960 5 s, model_960x960_10s.safetensors = 1.1 10 s)."
                                       " Pick one for a renamed file."),
            ],
            outputs=[JointAVModel.Output(display_name="model"),
                     io.Model.Output(display_name="MODEL", tooltip="The same DiT as a core MODEL (core samplers, "
                                     "LoRA, caching); weights shared with the first output for Ovi files."),
                     io.Clip.Output(display_name="CLIP", tooltip="The embedded default's text encoder as a core "
                                    "CLIP (None for Ovi files: use Load CLIP, type wan).")],
        )

    FILES = {"model_name": "diffusion_models"}

    @classmethod
    def validate_inputs(cls, **values) -> bool | str:
        return validate(cls, values, skip=cls.FILES, extra=lambda v: check_files(cls.NAME, v, cls.FILES))

    @classmethod
    def execute(cls, model_name: str, weight_dtype: str, attention_backend: str, offload: str,
                family: str) -> io.NodeOutput:
        path = resolve(cls.NAME, "model_name", model_name, "diffusion_models")
        device = torch_device()  # the weights go where core's model management puts them, when a sampler runs
        with node_errors(cls.NAME, {"model_name": path}):
            model, core_model, clip = load_for_node(path, weight_dtype=weight_dtype,
                                                    attention_backend=attention_backend, device=device,
                                                    offload=offload, family=family)
        return io.NodeOutput(model, core_model, clip)


class LoadDecoders(io.ComfyNode):
    NAME = "JointAV Load Decoders"

    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="JointAVLoadDecoders",
            display_name=cls.NAME,
            category=CATEGORY,
            description="Loads the video VAE (Wan2.2), the audio VAE (MMAudio) and the vocoder (BigVGAN).",
            inputs=[
                io.Combo.Input("video_vae", options=choices("vae"), default=EMBEDDED,
                               tooltip="Wan2.2 VAE from models/vae (wan2.2_vae.safetensors for Ovi)."),
                io.Combo.Input("audio_vae", options=choices(AUDIO_FOLDER), default=EMBEDDED,
                               tooltip="MMAudio 16 kHz VAE from models/jointav_audio (v1-16.pth for Ovi)."),
                io.Combo.Input("vocoder", options=choices(AUDIO_FOLDER), default=EMBEDDED,
                               tooltip="BigVGAN vocoder from models/jointav_audio (best_netG.pt for Ovi)."),
                JointAVModel.Input("model", optional=True,
                                   tooltip="The loaded model, so embedded entries pick its own decoders."),
            ],
            outputs=[JointAVDecoders.Output(display_name="decoders")],
        )

    FILES = {"video_vae": "vae", "audio_vae": AUDIO_FOLDER, "vocoder": AUDIO_FOLDER}

    @classmethod
    def validate_inputs(cls, **values) -> bool | str:
        return validate(cls, values, skip=cls.FILES, extra=lambda v: check_files(cls.NAME, v, cls.FILES))

    @classmethod
    def execute(cls, video_vae: str, audio_vae: str, vocoder: str, model=None) -> io.NodeOutput:
        paths = {
            "video_vae": resolve(cls.NAME, "video_vae", video_vae, "vae"),
            "audio_vae": resolve(cls.NAME, "audio_vae", audio_vae, AUDIO_FOLDER),
            "vocoder": resolve(cls.NAME, "vocoder", vocoder, AUDIO_FOLDER),
        }
        with node_errors(cls.NAME, paths):
            decoders = pipeline.load_decoders(paths["video_vae"], paths["audio_vae"], paths["vocoder"],
                                              model=model, device=torch_device())
        return io.NodeOutput(decoders)
