"""Cameo nodes: create a profile, load one, apply it to a clip's latent (only with the person's consent).

Profiles are folders in our own `cameos` model folder (models/cameos/<name>-<id12>/). Consent is not given in
the graph: the person in the profile signs a record with `jointav cameo grant`, naming this machine's operator
key, and Apply Cameo checks it on every run (never from cache), so a revocation counts from the next prompt.
"""

from __future__ import annotations

import os
import posixpath

import folder_paths
from comfy_api.latest import io

from ..cameo.consent_gate import consent_check_for, consent_status
from ..cameo.profile import MANIFEST_NAME, Profile
from ..cameo.reference_media import VOICE_RATE
from ..errors import InputValueError
from ..pipeline.cameo import (MODE_CHOICES, REFERENCE_GUIDANCE, apply_cameo, create_profile, load_profile,
                              reference_guidance_choice)
from .failures import node_errors
from .types import CATEGORY, JointAVCameo, JointAVDecoders, JointAVLatent, JointAVModel
from .validation import validate

CAMEO_FOLDER = "cameos"
NO_RECORDING = "(none: image + voice)"  # the recording choice for a profile made from an image and a voice clip
MAX_FRAMES = 8


def register_cameo_folder() -> None:
    """Add models/cameos to folder_paths (kept if extra_model_paths.yaml already named it); profiles are found by
    their manifest.json, so the folder lists JSON files only."""
    folder_paths.add_model_folder_path(CAMEO_FOLDER, os.path.join(folder_paths.models_dir, CAMEO_FOLDER))
    paths, _ = folder_paths.folder_names_and_paths[CAMEO_FOLDER]
    folder_paths.folder_names_and_paths[CAMEO_FOLDER] = (paths, {".json"})


def profile_choices() -> list[str]:
    """Profile folders under the cameos folders, as paths relative to them ('alice-0123456789ab')."""
    names = (f.replace(os.sep, "/") for f in folder_paths.get_filename_list(CAMEO_FOLDER))
    return sorted({posixpath.dirname(f) for f in names if posixpath.basename(f) == MANIFEST_NAME and "/" in f})


def profile_folder(node: str, choice: str) -> str:
    manifest = folder_paths.get_full_path(CAMEO_FOLDER, f"{choice}/{MANIFEST_NAME}")
    if manifest is None:
        where = ", ".join(folder_paths.get_folder_paths(CAMEO_FOLDER))
        raise FileNotFoundError(f"{node}: profile={choice!r} is not a profile folder in {where}")
    return os.path.dirname(manifest)


def recording_choices() -> list[str]:
    """Video files in ComfyUI's input folder (what the upload button adds), after the image + voice choice."""
    folder = folder_paths.get_input_directory()
    files = [f for f in os.listdir(folder) if os.path.isfile(os.path.join(folder, f))] if os.path.isdir(folder) else []
    return [NO_RECORDING, *sorted(folder_paths.filter_files_content_types(files, ["video"]))]


def preview(profile: Profile) -> tuple:
    """The profile's reference frames as an IMAGE (0..1) and its voice segment as AUDIO."""
    frames = profile.frames.float() / 255.0
    voice = {"waveform": profile.voice.reshape(1, 1, -1).clone(), "sample_rate": VOICE_RATE}
    return frames, voice


def describe(profile: Profile) -> str:
    return f"{profile.name}\nid {profile.id}\nfolder {profile.path}\nconsent: {consent_status(profile)}"


class CreateProfile(io.ComfyNode):
    NAME = "JointAV Cameo Create Profile"

    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="JointAVCameoCreateProfile",
            display_name=cls.NAME,
            category=CATEGORY,
            description="Makes a cameo profile of a person from a short recording with sound (or a picture and a "
                        "voice clip): sharp frontal frames and a clean voice segment, encoded, saved in "
                        "models/cameos. Using it needs the person's consent ('jointav cameo grant').",
            inputs=[
                JointAVDecoders.Input("decoders", tooltip="Their VAE encoders encode the references; use the same "
                                                          "VAEs you generate with."),
                io.String.Input("name", default="", tooltip="The person's display name."),
                io.Combo.Input("recording", options=recording_choices(), default=NO_RECORDING,
                               upload=io.UploadType.video,
                               tooltip="A video of the person with their voice, from ComfyUI's input folder. "
                                       f"{NO_RECORDING}: use the image and voice inputs instead."),
                io.Int.Input("max_frames", default=2, min=1, max=MAX_FRAMES,
                             tooltip="Reference frames to keep (the sharpest frontal ones)."),
                io.Image.Input("image", optional=True,
                               tooltip="Instead of a recording: a picture of the person (the first of a batch)."),
                io.Audio.Input("voice", optional=True,
                               tooltip="A voice clip of the person; with a recording it replaces its sound."),
            ],
            outputs=[JointAVCameo.Output(display_name="cameo"), io.Image.Output(display_name="frames"),
                     io.Audio.Output(display_name="voice")],
            is_output_node=True,
        )

    @classmethod
    def validate_inputs(cls, **values) -> bool | str:
        return validate(cls, values, skip=("recording",), extra=cls._rules)

    @classmethod
    def _rules(cls, values: dict) -> list[str | None]:
        name, recording = values.get("name"), values.get("recording")
        problems = []
        if name is not None and not name.strip():
            problems.append(f"{cls.NAME}: name is empty; expected the person's display name")
        if recording not in (None, NO_RECORDING) and not (isinstance(recording, str)
                                                          and folder_paths.exists_annotated_filepath(recording)):
            problems.append(f"{cls.NAME}: recording={recording!r} is not a file in "
                            f"{folder_paths.get_input_directory()}")
        return problems

    @classmethod
    def fingerprint_inputs(cls, recording: str = NO_RECORDING, **_) -> object:
        # a file uploaded again under the same name is a new recording
        return None if recording == NO_RECORDING else os.path.getmtime(folder_paths.get_annotated_filepath(recording))

    @classmethod
    def execute(cls, decoders, name: str, recording: str, max_frames: int, image=None, voice=None) -> io.NodeOutput:
        path = None if recording == NO_RECORDING else folder_paths.get_annotated_filepath(recording)
        with node_errors(cls.NAME, {"recording": path}):
            if (path is None) == (image is None):
                raise InputValueError(f"recording={recording!r}" + (" and an image are both given" if image is not None
                                      else " and no image") + ": expected a recording, or an image with a voice")
            profile = create_profile(decoders, recording=path, image=image, voice=voice, name=name,
                                     out_dir=folder_paths.get_folder_paths(CAMEO_FOLDER)[0], max_frames=max_frames)
        frames, sound = preview(profile)
        return io.NodeOutput(profile, frames, sound, ui={"text": [describe(profile)]})


class LoadProfile(io.ComfyNode):
    NAME = "JointAV Cameo Load Profile"

    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="JointAVCameoLoadProfile",
            display_name=cls.NAME,
            category=CATEGORY,
            description="Loads a cameo profile from models/cameos, checks its tensors and that it was made with "
                        "these VAEs, and says whether this machine's operator key may use it now.",
            inputs=[
                io.Combo.Input("profile", options=profile_choices(),
                               tooltip="A profile folder in models/cameos (Create Profile or 'jointav cameo create')."),
                JointAVModel.Input("model", tooltip="The model it will be used with (latent channels, patch)."),
                JointAVDecoders.Input("decoders", tooltip="Must hold the VAE encoders the profile was made with."),
            ],
            outputs=[JointAVCameo.Output(display_name="cameo"), io.Image.Output(display_name="frames"),
                     io.String.Output(display_name="info")],
        )

    @classmethod
    def validate_inputs(cls, **values) -> bool | str:
        return validate(cls, values, skip=("profile",), extra=cls._rules)

    @classmethod
    def _rules(cls, values: dict) -> list[str | None]:
        profile = values.get("profile")
        if profile is None or profile in profile_choices():
            return []
        where = ", ".join(folder_paths.get_folder_paths(CAMEO_FOLDER))
        return [f"{cls.NAME}: profile={profile!r} is not a profile folder in {where}"]

    @classmethod
    def fingerprint_inputs(cls, profile: str, **_) -> object:
        # re-read when the folder changes: a new grant or revocation rewrites its files
        try:
            folder = profile_folder(cls.NAME, profile)
        except FileNotFoundError:
            return float("nan")
        return tuple(sorted((e.name, e.stat().st_size, e.stat().st_mtime_ns) for e in os.scandir(folder)))

    @classmethod
    def execute(cls, profile: str, model, decoders) -> io.NodeOutput:
        folder = profile_folder(cls.NAME, profile)
        with node_errors(cls.NAME, {"profile": folder}):
            loaded = load_profile(folder, model, decoders)
        frames, _ = preview(loaded)
        info = describe(loaded)
        return io.NodeOutput(loaded, frames, info, ui={"text": [info]})


class ApplyCameo(io.ComfyNode):
    NAME = "JointAV Apply Cameo"

    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="JointAVApplyCameo",
            display_name=cls.NAME,
            category=CATEGORY,
            description="Puts a cameo's likeness and voice into a clip's latent, if the person's consent record "
                        "grants this machine's operator key now; the clip's manifest then records the consent "
                        "record's hash and the profile id (save it with JointAV Save Video).",
            inputs=[
                JointAVModel.Input("model"),
                JointAVDecoders.Input("decoders", tooltip="Their video VAE encodes the cameo's first frame."),
                JointAVLatent.Input("latent", tooltip="The empty (or image-to-AV) latent, before the sampler."),
                JointAVCameo.Input("cameo"),
                io.Combo.Input("mode", options=list(MODE_CHOICES), default="auto",
                               tooltip="first_frame: the cameo's best frame becomes the clip's first frame (the "
                                       "supported path with Ovi). reference_tokens: face and voice latents as extra "
                                       "tokens outside the clip; EXPERIMENTAL with Ovi weights (never trained with "
                                       "them). both: the two together. auto: the model's choice (first_frame for "
                                       "Ovi, both for the embedded default, which was trained with reference "
                                       "tokens)."),
                io.Combo.Input("reference_guidance", options=list(REFERENCE_GUIDANCE), default="auto", optional=True,
                               tooltip="With reference tokens: on = the sampler's guidance steers toward the cameo "
                                       "too (they are left out of its negative pass); off = toward the text only. "
                                       "auto: the model's setting (on for the embedded default, which was trained "
                                       "for it; off for Ovi)."),
            ],
            outputs=[JointAVLatent.Output(display_name="latent")],
        )

    @classmethod
    def validate_inputs(cls, **values) -> bool | str:
        return validate(cls, values)

    @classmethod
    def fingerprint_inputs(cls, **_) -> float:
        return float("nan")  # consent can be revoked or expire between runs: check it every time

    @classmethod
    def execute(cls, model, decoders, latent, cameo, mode: str, reference_guidance: str = "auto") -> io.NodeOutput:
        with node_errors(cls.NAME):
            applied = apply_cameo(model, decoders, latent, cameo, mode=mode, consent_check=consent_check_for(),
                                  reference_guidance=reference_guidance_choice(reference_guidance))
        return io.NodeOutput(applied)
