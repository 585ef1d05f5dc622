"""Write the example workflows in both forms, UI (example_workflows/*.json, what the editor's template
browser opens) and API (example_workflows/api/*.json, what /prompt and `comfy run` take), from one
description per workflow, so the two cannot drift apart.

    python tools/make_workflows.py            # rewrite all files
    python tools/make_workflows.py --check    # exit 1 if a file differs from what would be written

The node table below mirrors each node's inputs in the order its schema declares them (widgets are stored
by position in the UI form); tests/unit/test_workflows.py checks the files against nodes/ and core.
"""

from __future__ import annotations

import argparse
import json
import sys
import uuid
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
UI_DIR = ROOT / "example_workflows"
API_DIR = UI_DIR / "api"

# Widget kinds the editor stores an extra value after: a seed's "control after generate" mode and an
# image combo's upload button.
CONTROL = "control_after_generate"
UPLOAD = "upload"


@dataclass(frozen=True)
class NodeType:
    sockets: tuple[tuple[str, str, bool], ...] = ()  # (name, type, optional)
    widgets: tuple[str, ...] = ()  # in schema order; CONTROL / UPLOAD follow the widget they belong to
    outputs: tuple[tuple[str, str], ...] = ()  # (name, type)


JOINT_LATENT = "JOINTAV_LATENT,LATENT"  # decoders take today's latent or a joint core LATENT
SAVED_LATENT = "JOINTAV_LATENT,LATENT,JOINTAV_FILM"  # Save Video also takes what made a Shot List's film

NODE_TYPES: dict[str, NodeType] = {
    "JointAVLoadModel": NodeType(widgets=("model_name", "weight_dtype", "attention_backend", "offload", "family"),
                                 outputs=(("model", "JOINTAV_MODEL"), ("MODEL", "MODEL"), ("CLIP", "CLIP"))),
    "JointAVLoadDecoders": NodeType(sockets=(("model", "JOINTAV_MODEL", True),),
                                    widgets=("video_vae", "audio_vae", "vocoder"),
                                    outputs=(("decoders", "JOINTAV_DECODERS"),)),
    "JointAVEncodePrompt": NodeType(sockets=(("model", "JOINTAV_MODEL", False), ("clip", "CLIP", True)),
                                    widgets=("video_prompt", "speech_lines", "audio_description", "video_negative",
                                             "audio_negative"),
                                    outputs=(("conditioning", "JOINTAV_CONDITIONING"),)),
    "JointAVEmptyLatent": NodeType(sockets=(("model", "JOINTAV_MODEL", False),),
                                   widgets=("duration", "width", "height", "batch"),
                                   outputs=(("latent", "JOINTAV_LATENT"),)),
    "JointAVImageToAVLatent": NodeType(sockets=(("model", "JOINTAV_MODEL", False),
                                                ("decoders", "JOINTAV_DECODERS", False), ("image", "IMAGE", False)),
                                       widgets=("duration", "width", "height"),
                                       outputs=(("latent", "JOINTAV_LATENT"),)),
    "JointAVSampler": NodeType(sockets=(("model", "JOINTAV_MODEL", False),
                                        ("conditioning", "JOINTAV_CONDITIONING", False),
                                        ("latent", "JOINTAV_LATENT", False)),
                               widgets=("seed", CONTROL, "steps", "solver", "shift", "video_guidance",
                                        "audio_guidance", "skip_layer"),
                               outputs=(("latent", "JOINTAV_LATENT"),)),
    "JointAVDecodeVideo": NodeType(sockets=(("decoders", "JOINTAV_DECODERS", False),
                                            ("latent", JOINT_LATENT, False)),
                                   outputs=(("images", "IMAGE"),)),
    "JointAVDecodeAudio": NodeType(sockets=(("decoders", "JOINTAV_DECODERS", False),
                                            ("latent", JOINT_LATENT, False)),
                                   widgets=("sample_rate", "stereo"), outputs=(("audio", "AUDIO"),)),
    "JointAVSaveVideo": NodeType(sockets=(("latent", SAVED_LATENT, False), ("images", "IMAGE", False),
                                          ("audio", "AUDIO", True)),
                                 widgets=("filename_prefix",)),
    "JointAVToVideo": NodeType(sockets=(("latent", "JOINTAV_LATENT", False), ("images", "IMAGE", False),
                                        ("audio", "AUDIO", True)),
                               outputs=(("video", "VIDEO"),)),
    "JointAVShotList": NodeType(sockets=(("model", "JOINTAV_MODEL", False), ("decoders", "JOINTAV_DECODERS", False)),
                                widgets=("shots", "carry", "seed", CONTROL, "steps", "solver", "width", "height"),
                                outputs=(("images", "IMAGE"), ("audio", "AUDIO"), ("fps", "FLOAT"),
                                         ("film", "JOINTAV_FILM"))),
    "JointAVVideoToAudioLatent": NodeType(sockets=(("model", "JOINTAV_MODEL", False),
                                                   ("decoders", "JOINTAV_DECODERS", False),
                                                   ("images", "IMAGE", False)),
                                          widgets=("duration",), outputs=(("latent", "JOINTAV_LATENT"),)),
    # the native path
    "JointAVEmptyAVLatent": NodeType(sockets=(("model", "MODEL", False),),
                                     widgets=("duration", "width", "height", "batch"), outputs=(("latent", "LATENT"),)),
    "JointAVGuider": NodeType(sockets=(("model", "MODEL", False), ("positive", "CONDITIONING", False),
                                       ("video_negative", "CONDITIONING", False),
                                       ("audio_negative", "CONDITIONING", False)),
                              widgets=("video_cfg", "audio_cfg", "skip_layer", "reference_guidance"),
                              outputs=(("guider", "GUIDER"),)),
    "JointAVNoise": NodeType(widgets=("noise_seed", CONTROL, "device"), outputs=(("noise", "NOISE"),)),
    "JointAVScheduler": NodeType(widgets=("solver", "steps", "shift"), outputs=(("sigmas", "SIGMAS"),)),
    "JointAVSolver": NodeType(widgets=("solver",), outputs=(("sampler", "SAMPLER"),)),
    "JointAVToCoreLatent": NodeType(sockets=(("model", "MODEL", False), ("latent", "JOINTAV_LATENT", False)),
                                    outputs=(("latent", "LATENT"),)),
    "UNETLoader": NodeType(widgets=("unet_name", "weight_dtype"), outputs=(("MODEL", "MODEL"),)),
    "LoraLoaderModelOnly": NodeType(sockets=(("model", "MODEL", False),), widgets=("lora_name", "strength_model"),
                                    outputs=(("MODEL", "MODEL"),)),
    "CLIPTextEncode": NodeType(sockets=(("clip", "CLIP", False),), widgets=("text",),
                               outputs=(("CONDITIONING", "CONDITIONING"),)),
    "KSamplerSelect": NodeType(widgets=("sampler_name",), outputs=(("SAMPLER", "SAMPLER"),)),
    "BasicScheduler": NodeType(sockets=(("model", "MODEL", False),), widgets=("scheduler", "steps", "denoise"),
                               outputs=(("SIGMAS", "SIGMAS"),)),
    "SamplerCustomAdvanced": NodeType(sockets=(("noise", "NOISE", False), ("guider", "GUIDER", False),
                                               ("sampler", "SAMPLER", False), ("sigmas", "SIGMAS", False),
                                               ("latent_image", "LATENT", False)),
                                      outputs=(("output", "LATENT"), ("denoised_output", "LATENT"))),
    "CreateVideo": NodeType(sockets=(("images", "IMAGE", False), ("audio", "AUDIO", True)), widgets=("fps",),
                            outputs=(("VIDEO", "VIDEO"),)),
    # core nodes
    "CLIPLoader": NodeType(widgets=("clip_name", "type", "device"), outputs=(("CLIP", "CLIP"),)),
    "LoadImage": NodeType(widgets=("image", UPLOAD), outputs=(("IMAGE", "IMAGE"), ("MASK", "MASK"))),
    "LoadVideo": NodeType(widgets=("file", UPLOAD), outputs=(("VIDEO", "VIDEO"),)),
    "GetVideoComponents": NodeType(sockets=(("video", "VIDEO", False),),
                                   outputs=(("images", "IMAGE"), ("audio", "AUDIO"), ("fps", "FLOAT"))),
}


@dataclass
class Node:
    id: int
    type: str
    values: dict[str, object] = field(default_factory=dict)  # widget values by input name
    links: dict[str, tuple[int, int]] = field(default_factory=dict)  # input name -> (source node id, output slot)
    title: str | None = None


@dataclass
class Workflow:
    name: str
    nodes: list[Node]
    note: str


# ---------------------------------------------------------------------------------------------- descriptions

DEFAULT_DURATION = "2s"
DEFAULT_SIZE = (64, 64)  # width, height: a few seconds per clip on a CPU
DEFAULT_STEPS = 10
MODEL_SKIP_LAYER = -1  # the Sampler's "the loaded model's own" (off for the tiny default's 4 blocks; 11 for Ovi)
SEED = 42


def _av_tail(first: int, model: int, decoders: int, latent_source: int, cond: int, *, seed: int, steps: int,
             skip_layer: int, prefix: str, sample_rate: int = 44100) -> list[Node]:
    """Sampler -> decode video and audio -> JointAV Save Video (watermark and signed C2PA manifest, so the clips
    the examples make verify; core Save Video would write them unsigned)."""
    s, dv, da, sv = range(first, first + 4)
    return [
        Node(s, "JointAVSampler", {"seed": seed, CONTROL: "fixed", "steps": steps, "solver": "unipc", "shift": 5.0,
                                   "video_guidance": 4.0, "audio_guidance": 3.0, "skip_layer": skip_layer},
             {"model": (model, 0), "conditioning": (cond, 0), "latent": (latent_source, 0)}),
        Node(dv, "JointAVDecodeVideo", {}, {"decoders": (decoders, 0), "latent": (s, 0)}),
        Node(da, "JointAVDecodeAudio", {"sample_rate": sample_rate, "stereo": True},
             {"decoders": (decoders, 0), "latent": (s, 0)}),
        Node(sv, "JointAVSaveVideo", {"filename_prefix": prefix},
             {"latent": (s, 0), "images": (dv, 0), "audio": (da, 0)}),
    ]


# Ovi's default negative prompts (its inference config), the Encode Prompt widgets' defaults too.
OVI_NEGATIVES = {"video_negative": "jitter, bad hands, blur, distortion",
                 "audio_negative": "robotic, muffled, echo, distorted"}


def _embedded_loaders() -> list[Node]:
    """Nodes 1 and 2: the embedded default model and its decoders."""
    return [
        Node(1, "JointAVLoadModel", {"model_name": "(embedded default)", "weight_dtype": "auto",
                                     "attention_backend": "auto", "offload": "none", "family": "auto"}),
        Node(2, "JointAVLoadDecoders", {"video_vae": "(embedded default)", "audio_vae": "(embedded default)",
                                        "vocoder": "(embedded default)"}, {"model": (1, 0)}),
    ]


def default_text_to_av() -> Workflow:
    width, height = DEFAULT_SIZE
    nodes = [
        *_embedded_loaders(),
        Node(3, "JointAVEncodePrompt", {
            "video_prompt": "a red ball bounces twice on the left on a black background.",
            "speech_lines": "", "audio_description": "high clicks",
            **OVI_NEGATIVES}, {"model": (1, 0)}),
        Node(4, "JointAVEmptyLatent", {"duration": DEFAULT_DURATION, "width": width, "height": height, "batch": 1},
             {"model": (1, 0)}),
        *_av_tail(5, 1, 2, 4, 3, seed=SEED, steps=DEFAULT_STEPS, skip_layer=MODEL_SKIP_LAYER,
                  prefix="jointav/default_text_to_av"),
    ]
    return Workflow("jointav_default_text_to_av", nodes,
                    "Text to audio+video with the small model embedded in the pack: runs on a CPU in seconds.")


def default_image_to_av() -> Workflow:
    nodes = [
        *_embedded_loaders(),
        Node(3, "JointAVEncodePrompt", {
            "video_prompt": "a blue square slides right and hits a wall on a gray background.",
            "speech_lines": "", "audio_description": "a low thud",
            **OVI_NEGATIVES}, {"model": (1, 0)}),
        Node(4, "LoadImage", {"image": "example.png", UPLOAD: "image"}),
        Node(5, "JointAVImageToAVLatent", {"duration": DEFAULT_DURATION, "width": DEFAULT_SIZE[0],
                                           "height": DEFAULT_SIZE[1]},
             {"model": (1, 0), "decoders": (2, 0), "image": (4, 0)}),
        *_av_tail(6, 1, 2, 5, 3, seed=SEED, steps=DEFAULT_STEPS, skip_layer=MODEL_SKIP_LAYER,
                  prefix="jointav/default_image_to_av"),
    ]
    return Workflow("jointav_default_image_to_av", nodes,
                    "Image to audio+video with the embedded default model: the image becomes the first frame.")


def default_shot_list() -> Workflow:
    width, height = DEFAULT_SIZE
    shots = ("a red ball bounces twice on the left, low thuds, on a gray background@1s\n"
             "the same ball slides to the right@1s")
    nodes = [
        *_embedded_loaders(),
        Node(3, "JointAVShotList", {"shots": shots, "carry": "subject", "seed": SEED, CONTROL: "fixed",
                                    "steps": DEFAULT_STEPS, "solver": "unipc", "width": width, "height": height},
             {"model": (1, 0), "decoders": (2, 0)}),
        Node(4, "JointAVSaveVideo", {"filename_prefix": "jointav/default_shot_list"},
             {"latent": (3, 3), "images": (3, 0), "audio": (3, 1)}),
    ]
    return Workflow("jointav_default_shot_list", nodes,
                    "A film of two shots joined with a hard cut (one PROMPT@DURATION a line, as `jointav shots`): "
                    "the second shot carries the first shot's subject. Embedded default model.")


# A silent clip of a plain disc falling and bouncing (not the toy world's renderer), 2 s at the default model's
# 12 fps and 64x64: what the foley example loads from ComfyUI's input/ (tests write it there; see README).
FOLEY_INPUT = "jointav_moving_disc.mp4"


def default_video_to_audio() -> Workflow:
    nodes = [
        *_embedded_loaders(),
        Node(3, "JointAVEncodePrompt", {
            "video_prompt": "a white ball falls and bounces on the floor on a black background.",
            "speech_lines": "", "audio_description": "low thuds",
            **OVI_NEGATIVES}, {"model": (1, 0)}),
        Node(4, "LoadVideo", {"file": FOLEY_INPUT, UPLOAD: "image"}),
        Node(5, "GetVideoComponents", {}, {"video": (4, 0)}),
        Node(6, "JointAVVideoToAudioLatent", {"duration": DEFAULT_DURATION},
             {"model": (1, 0), "decoders": (2, 0), "images": (5, 0)}),
        Node(7, "JointAVSampler", {"seed": SEED, CONTROL: "fixed", "steps": DEFAULT_STEPS, "solver": "unipc",
                                   "shift": 5.0, "video_guidance": 4.0, "audio_guidance": 3.0,
                                   "skip_layer": MODEL_SKIP_LAYER},
             {"model": (1, 0), "conditioning": (3, 0), "latent": (6, 0)}),
        Node(8, "JointAVDecodeAudio", {"sample_rate": 44100, "stereo": True}, {"decoders": (2, 0), "latent": (7, 0)}),
        Node(9, "JointAVSaveVideo", {"filename_prefix": "jointav/default_video_to_audio"},
             {"latent": (7, 0), "images": (5, 0), "audio": (8, 0)}),
    ]
    return Workflow("jointav_default_video_to_audio", nodes,
                    "Video to audio (foley) with the embedded default model: the loaded video's frames are held "
                    "clean and the sampler makes their sound; the clip is saved with the video's own frames.")


FOLEY_ADAPTER = "jointav-default-foley.safetensors"  # default_model/adapters/, in core's `loras` list


def default_native_video_to_audio() -> Workflow:
    """Foley through core nodes: the foley adapter added with core LoraLoaderModelOnly (what the JointAV Sampler
    does by itself), the held video carried to SamplerCustomAdvanced by JointAV To LATENT's noise_mask, and the
    reference's UniPC through JointAV Solver + Scheduler at the model's 24 steps (the measured setting)."""
    prompt = "a white ball falls and bounces on the floor on a black background. <AUDCAP>low thuds<ENDAUDCAP>"
    (video, parts, held, latent, lora, pos, vneg, aneg, guider, noise, solver, sched, sample, da,
     sv) = range(3, 18)
    nodes = [
        *_embedded_loaders(),
        Node(video, "LoadVideo", {"file": FOLEY_INPUT, UPLOAD: "image"}),
        Node(parts, "GetVideoComponents", {}, {"video": (video, 0)}),
        Node(held, "JointAVVideoToAudioLatent", {"duration": DEFAULT_DURATION},
             {"model": (1, 0), "decoders": (2, 0), "images": (parts, 0)}),
        Node(latent, "JointAVToCoreLatent", {}, {"model": (1, 1), "latent": (held, 0)}),
        Node(lora, "LoraLoaderModelOnly", {"lora_name": FOLEY_ADAPTER, "strength_model": 1.0}, {"model": (1, 1)},
             title="Foley adapter"),
        Node(pos, "CLIPTextEncode", {"text": prompt}, {"clip": (1, 2)}, title="Prompt (Ovi markup)"),
        Node(vneg, "CLIPTextEncode", {"text": OVI_NEGATIVES["video_negative"]}, {"clip": (1, 2)},
             title="Video negative"),
        Node(aneg, "CLIPTextEncode", {"text": OVI_NEGATIVES["audio_negative"]}, {"clip": (1, 2)},
             title="Audio negative"),
        Node(guider, "JointAVGuider", {"video_cfg": 4.0, "audio_cfg": 3.0, "skip_layer": -1,
                                       "reference_guidance": "auto"},
             {"model": (lora, 0), "positive": (pos, 0), "video_negative": (vneg, 0), "audio_negative": (aneg, 0)}),
        Node(noise, "JointAVNoise", {"noise_seed": SEED, CONTROL: "fixed", "device": "model"}),
        Node(solver, "JointAVSolver", {"solver": "unipc"}),
        Node(sched, "JointAVScheduler", {"solver": "unipc", "steps": 24, "shift": 5.0}),
        Node(sample, "SamplerCustomAdvanced", {}, {"noise": (noise, 0), "guider": (guider, 0),
                                                   "sampler": (solver, 0), "sigmas": (sched, 0),
                                                   "latent_image": (latent, 0)}),
        Node(da, "JointAVDecodeAudio", {"sample_rate": 44100, "stereo": True}, {"decoders": (2, 0),
                                                                              "latent": (sample, 0)}),
        Node(sv, "JointAVSaveVideo", {"filename_prefix": "jointav/default_native_video_to_audio"},
             {"latent": (sample, 0), "images": (parts, 0), "audio": (da, 0)}),
    ]
    return Workflow("jointav_default_native_video_to_audio", nodes,
                    "Video to audio (foley) with the embedded default through core nodes: LoraLoaderModelOnly adds "
                    "its foley adapter, JointAV To LATENT holds the loaded video, SamplerCustomAdvanced makes the "
                    "sound; the clip is saved with the video's own frames.")


# Published Ovi file names (models/diffusion_models, models/text_encoders, models/vae, models/jointav_audio).
OVI_TEXT_ENCODER = "umt5_xxl_fp8_e4m3fn_scaled.safetensors"
OVI_VIDEO_VAE = "wan2.2_vae.safetensors"
OVI_AUDIO_VAE = "v1-16.pth"
OVI_VOCODER = "best_netG.pt"

OVI_PROMPT = ("A woman with curly dark hair sits by a rain-streaked window in a warm cafe, holding a mug. "
              "She looks up and smiles.")
OVI_SPEECH = "It never stops raining here, does it?"
OVI_AUDIO = "Soft female voice, gentle rain against glass, quiet cafe murmur."


def ovi_text_to_av(name: str, model_file: str, weight_dtype: str, duration: str, width: int, height: int,
                   note: str) -> Workflow:
    nodes = [
        Node(1, "JointAVLoadModel", {"model_name": model_file, "weight_dtype": weight_dtype,
                                     "attention_backend": "auto", "offload": "none", "family": "auto"}),
        Node(2, "CLIPLoader", {"clip_name": OVI_TEXT_ENCODER, "type": "wan", "device": "default"}),
        Node(3, "JointAVLoadDecoders", {"video_vae": OVI_VIDEO_VAE, "audio_vae": OVI_AUDIO_VAE,
                                        "vocoder": OVI_VOCODER}, {"model": (1, 0)}),
        Node(4, "JointAVEncodePrompt", {
            "video_prompt": OVI_PROMPT, "speech_lines": OVI_SPEECH, "audio_description": OVI_AUDIO,
            **OVI_NEGATIVES}, {"model": (1, 0), "clip": (2, 0)}),
        Node(5, "JointAVEmptyLatent", {"duration": duration, "width": width, "height": height, "batch": 1},
             {"model": (1, 0)}),
        *_av_tail(6, 1, 3, 5, 4, seed=100, steps=50, skip_layer=11, prefix=f"jointav/{name}"),
    ]
    return Workflow(name, nodes, note)


def _native_tail(first: int, model: tuple[int, int], clip: tuple[int, int], decoders: int, prompt: str,
                 negatives: dict, *,
                 duration: str, width: int, height: int, seed: int, steps: int, prefix: str) -> list[Node]:
    """CLIP Text Encode x3 -> JointAV Guider + Noise, KSamplerSelect, BasicScheduler -> SamplerCustomAdvanced
    -> JointAV decoders -> JointAV Save Video (signed; it reads what made the clip from the workflow).
    model / clip: (node id, output slot) of MODEL / CLIP."""
    pos, vneg, aneg, lat, guider, noise, select, sched, sample, dv, da, sv = range(first, first + 12)
    return [
        Node(pos, "CLIPTextEncode", {"text": prompt}, {"clip": clip}, title="Prompt (Ovi markup)"),
        Node(vneg, "CLIPTextEncode", {"text": negatives["video_negative"]}, {"clip": clip},
             title="Video negative"),
        Node(aneg, "CLIPTextEncode", {"text": negatives["audio_negative"]}, {"clip": clip},
             title="Audio negative"),
        Node(lat, "JointAVEmptyAVLatent", {"duration": duration, "width": width, "height": height, "batch": 1},
             {"model": model}),
        Node(guider, "JointAVGuider", {"video_cfg": 4.0, "audio_cfg": 3.0, "skip_layer": -1,
                                       "reference_guidance": "auto"},
             {"model": model, "positive": (pos, 0), "video_negative": (vneg, 0),
              "audio_negative": (aneg, 0)}),
        Node(noise, "JointAVNoise", {"noise_seed": seed, CONTROL: "fixed", "device": "model"}),
        Node(select, "KSamplerSelect", {"sampler_name": "euler"}),
        Node(sched, "BasicScheduler", {"scheduler": "normal", "steps": steps, "denoise": 1.0},
             {"model": model}),
        Node(sample, "SamplerCustomAdvanced", {}, {"noise": (noise, 0), "guider": (guider, 0), "sampler": (select, 0),
                                                   "sigmas": (sched, 0), "latent_image": (lat, 0)}),
        Node(dv, "JointAVDecodeVideo", {}, {"decoders": (decoders, 0), "latent": (sample, 0)}),
        Node(da, "JointAVDecodeAudio", {"sample_rate": 44100, "stereo": True},
             {"decoders": (decoders, 0), "latent": (sample, 0)}),
        Node(sv, "JointAVSaveVideo", {"filename_prefix": prefix},
             {"latent": (sample, 0), "images": (dv, 0), "audio": (da, 0)}),
    ]


def default_native_text_to_av() -> Workflow:
    width, height = DEFAULT_SIZE
    nodes = [
        *_embedded_loaders(),
        *_native_tail(3, (1, 1), (1, 2), 2, "a red ball bounces twice on the left on a black background. "
                      "<AUDCAP>high clicks<ENDAUDCAP>", OVI_NEGATIVES, duration=DEFAULT_DURATION, width=width,
                      height=height, seed=SEED, steps=24, prefix="jointav/default_native_text_to_av"),
    ]
    return Workflow("jointav_default_native_text_to_av", nodes,
                    "The embedded default model through core nodes: CLIP Text Encode, SamplerCustomAdvanced with "
                    "KSamplerSelect and BasicScheduler, the JointAV guider and noise, core Create/Save Video.")


def ovi_native_text_to_av(name: str, model_file: str, weight_dtype: str, duration: str, width: int, height: int,
                          prompt: str, note: str) -> Workflow:
    nodes = [
        Node(1, "UNETLoader", {"unet_name": model_file, "weight_dtype": weight_dtype}),
        Node(2, "CLIPLoader", {"clip_name": OVI_TEXT_ENCODER, "type": "wan", "device": "default"}),
        Node(3, "JointAVLoadDecoders", {"video_vae": OVI_VIDEO_VAE, "audio_vae": OVI_AUDIO_VAE,
                                        "vocoder": OVI_VOCODER}),
        *_native_tail(4, (1, 0), (2, 0), 3, prompt, OVI_NEGATIVES, duration=duration, width=width, height=height,
                      seed=100, steps=50, prefix=f"jointav/{name}"),
    ]
    return Workflow(name, nodes, note)


OVI_TAGS_PROMPT = f"{OVI_PROMPT} <S>{OVI_SPEECH}<E> <AUDCAP>{OVI_AUDIO}<ENDAUDCAP>"
OVI_PREFIX_PROMPT = f"{OVI_PROMPT} <S>{OVI_SPEECH}<E> Audio: {OVI_AUDIO}"


def all_workflows() -> list[Workflow]:
    return [
        default_text_to_av(),
        default_image_to_av(),
        default_shot_list(),
        default_video_to_audio(),
        ovi_text_to_av("ovi_1_0_720_text_to_av", "model.safetensors", "bf16", "5s", 992, 512,
                       "Ovi 1.0 (720x720 area, 5 s, 24 fps), bf16 weights."),
        ovi_text_to_av("ovi_1_0_720_fp8_text_to_av", "model_fp8_e4m3fn.safetensors", "fp8_e4m3fn", "5s", 992, 512,
                       "Ovi 1.0 (720x720 area, 5 s) with fp8 e4m3fn weights: about half the memory."),
        ovi_text_to_av("ovi_960_text_to_av", "model_960x960.safetensors", "bf16", "5s", 1280, 704,
                       "Ovi 960x960 area, 5 s; the sound description is sent as a trailing 'Audio: ...'."),
        ovi_text_to_av("ovi_1_1_960_10s_text_to_av", "model_960x960_10s.safetensors", "bf16", "10s", 1280, 704,
                       "Ovi 1.1 (960x960 area, 10 s, 24 fps)."),
        default_native_text_to_av(),
        default_native_video_to_audio(),
        ovi_native_text_to_av("ovi_1_0_720_native_text_to_av", "model.safetensors", "default", "5s", 992, 512,
                              OVI_TAGS_PROMPT, "Ovi 1.0 through core Load Diffusion Model, Load CLIP (wan) and "
                              "SamplerCustomAdvanced with the JointAV guider and noise."),
        ovi_native_text_to_av("ovi_1_1_960_10s_native_text_to_av", "model_960x960_10s.safetensors", "default", "10s",
                              1280, 704, OVI_PREFIX_PROMPT, "Ovi 1.1 (10 s) through core Load Diffusion Model, Load "
                              "CLIP (wan) and SamplerCustomAdvanced; the sound description as a trailing 'Audio: ...'."),
    ]


# ---------------------------------------------------------------------------------------------- writers

def widget_values(node: Node) -> list[object]:
    kind = NODE_TYPES[node.type]
    missing = [w for w in kind.widgets if w not in node.values]
    extra = [w for w in node.values if w not in kind.widgets]
    if missing or extra:
        raise ValueError(f"node {node.id} ({node.type}): missing widgets {missing}, unknown widgets {extra}")
    return [node.values[w] for w in kind.widgets]


def to_api(workflow: Workflow) -> dict:
    prompt = {}
    for node in workflow.nodes:
        inputs = {w: v for w, v in node.values.items() if w not in (CONTROL, UPLOAD)}
        inputs.update({name: [str(src), slot] for name, (src, slot) in node.links.items()})
        prompt[str(node.id)] = {"class_type": node.type, "inputs": inputs,
                                "_meta": {"title": node.title or node.type}}
    return prompt


def _depths(workflow: Workflow) -> dict[int, int]:
    depth: dict[int, int] = {}

    def visit(node: Node) -> int:
        if node.id not in depth:
            parents = [visit(by_id[src]) + 1 for src, _ in node.links.values()]
            depth[node.id] = max(parents, default=0)
        return depth[node.id]

    by_id = {n.id: n for n in workflow.nodes}
    for n in workflow.nodes:
        visit(n)
    return depth


def to_ui(workflow: Workflow) -> dict:
    depth = _depths(workflow)
    order = sorted(workflow.nodes, key=lambda n: (depth[n.id], n.id))
    links = []
    out_links: dict[tuple[int, int], list[int]] = {}
    in_link: dict[tuple[int, str], int] = {}
    for target in workflow.nodes:
        sockets = [s[0] for s in NODE_TYPES[target.type].sockets]
        for name, (src, slot) in target.links.items():
            link_id = len(links) + 1
            src_type = NODE_TYPES[next(n.type for n in workflow.nodes if n.id == src)].outputs[slot][1]
            links.append([link_id, src, slot, target.id, sockets.index(name), src_type])
            out_links.setdefault((src, slot), []).append(link_id)
            in_link[(target.id, name)] = link_id
    next_y: dict[int, int] = {}  # per column: where the next node may start (nodes stack without overlapping)
    nodes = []
    for index, node in enumerate(order):
        kind = NODE_TYPES[node.type]
        column = depth[node.id]
        inputs = []
        for name, type_, optional in kind.sockets:
            entry = {"name": name, "type": type_, "link": in_link.get((node.id, name))}
            if optional:
                entry["shape"] = 7  # the editor draws optional sockets hollow
            inputs.append(entry)
        outputs = [{"name": name, "type": type_, "slot_index": slot, "links": out_links.get((node.id, slot), [])}
                   for slot, (name, type_) in enumerate(kind.outputs)]
        height = 60 + 26 * (len(kind.sockets) + len(kind.widgets)) + (
            150 if node.type == "JointAVEncodePrompt" else 0)
        y = next_y.get(column, 40)
        next_y[column] = y + height + 70  # 70: the title bar above the body plus a gap
        entry = {
            "id": node.id, "type": node.type, "pos": [40 + 380 * column, y], "size": [340, height],
            "flags": {}, "order": index, "mode": 0, "inputs": inputs, "outputs": outputs,
            "properties": {"Node name for S&R": node.type},
            "widgets_values": widget_values(node),
        }
        if node.title:
            entry["title"] = node.title
        nodes.append(entry)
    return {
        "id": str(uuid.uuid5(uuid.NAMESPACE_URL, f"comfyui-jointav/{workflow.name}")),
        "revision": 0,
        "last_node_id": max(n.id for n in workflow.nodes),
        "last_link_id": len(links),
        "nodes": nodes,
        "links": links,
        "groups": [],
        "config": {},
        "extra": {"ds": {"scale": 0.8, "offset": [0, 0]}, "jointav_note": workflow.note},
        "version": 0.4,
    }


def rendered() -> dict[Path, str]:
    files = {}
    for workflow in all_workflows():
        files[UI_DIR / f"{workflow.name}.json"] = json.dumps(to_ui(workflow), indent=2) + "\n"
        files[API_DIR / f"{workflow.name}.json"] = json.dumps(to_api(workflow), indent=2) + "\n"
    return files


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--check", action="store_true", help="compare instead of writing")
    args = parser.parse_args(argv)
    stale = []
    for path, text in rendered().items():
        if args.check:
            if not path.is_file() or path.read_text() != text:
                stale.append(path)
        else:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text)
    for path in stale:
        print(f"out of date: {path.relative_to(ROOT)}", file=sys.stderr)
    return 1 if stale else 0


if __name__ == "__main__":
    sys.exit(main())
