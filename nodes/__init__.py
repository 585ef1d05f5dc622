"""ComfyUI node classes (V3 schema). A thin layer over `pipeline.api`; the only place that imports ComfyUI.

The root `__init__.py` hands ComfyUI `JointAVExtension` through `comfy_entrypoint`.
"""

from comfy_api.latest import ComfyExtension, io

from ..comfy_native.registration import register as register_native_model
from .cameo import ApplyCameo, CreateProfile, LoadProfile, register_cameo_folder
from .decode import DecodeAudio, DecodeVideo
from .latents import EmptyLatent, ImageToAVLatent, SplitLatent
from .legacy import register as register_renamed_inputs
from .loaders import LoadDecoders, LoadModel, register_adapter_folder, register_audio_folder
from .long_form import AudioToVideoLatent, ExtendLatent, VideoToAudioLatent
from .native import NATIVE_NODES
from .prompt import EncodePrompt
from .provenance import SaveVideo, Verify
from .sampler import Sampler
from .shots import ShotList
from .video import ToVideo

NODES: list[type[io.ComfyNode]] = [
    LoadModel, LoadDecoders, EncodePrompt, EmptyLatent, ImageToAVLatent, Sampler, DecodeVideo, DecodeAudio,
    ToVideo, SplitLatent, SaveVideo, Verify, CreateProfile, LoadProfile, ApplyCameo, AudioToVideoLatent,
    VideoToAudioLatent, ExtendLatent, ShotList, *NATIVE_NODES,
]


class JointAVExtension(ComfyExtension):
    async def get_node_list(self) -> list[type[io.ComfyNode]]:
        register_native_model()  # core Load Diffusion Model reads Ovi files as a JointAV MODEL
        register_audio_folder()  # before any schema lists the folder's files
        register_adapter_folder()
        register_cameo_folder()
        register_renamed_inputs()  # API workflows saved with old input names keep running (0.3.64 calls no on_load)
        return NODES
