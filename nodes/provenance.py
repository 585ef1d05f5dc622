"""Save Video (signed) and Verify: outputs written by the pack carry a watermark and a C2PA manifest.

Core Save Video writes whatever VIDEO it gets; this node writes the clip itself so that the frames are
watermarked before encoding and the finished MP4 is signed with what made it (model, prompt, seed,
settings, recorded on the latent by the sampler; for a cameo clip the profile id and the consent record's
hash, after which the use is appended to the cameo usage log with the file's hash).
"""

from __future__ import annotations

import os

import folder_paths
from comfy_api.latest import io, ui

from ..pipeline.cameo import cameo_provenance, log_cameo_use
from ..pipeline.generate import provenance_info, write_signed_mp4
from ..provenance import verify_file
from .decode import as_joint_latent
from .failures import node_errors
from .graph_provenance import provenance_from_workflow
from .server_paths import FOLDERS_TEXT, name_problem, resolve_name
from .types import CATEGORY, JointAVFilm, JointAVLatent
from .validation import validate
from .video import one_track


class SaveVideo(io.ComfyNode):
    NAME = "JointAV Save Video"

    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="JointAVSaveVideo",
            display_name=cls.NAME,
            category=CATEGORY,
            description="Writes an MP4 (H.264 High, AAC) with a watermark in the frames and a signed C2PA manifest "
                        "recording the model, prompt, seed and sampler settings, and for a cameo clip the profile id "
                        "and the consent record's hash (the use is added to the cameo usage log).",
            inputs=[
                io.MultiType.Input("latent", types=[JointAVLatent, io.Latent, JointAVFilm],
                                   tooltip="The sampled latent (JointAV Sampler's, or a joint LATENT from a core "
                                           "sampler), or JointAV Shot List's film: its frame rate and what made it."),
                io.Image.Input("images"),
                io.Audio.Input("audio", optional=True),
                io.String.Input("filename_prefix", default="video/JointAV"),
            ],
            outputs=[],
            hidden=[io.Hidden.prompt],
            is_output_node=True,
        )

    @classmethod
    def validate_inputs(cls, **values) -> bool | str:
        return validate(cls, values)

    @classmethod
    def execute(cls, latent, images, filename_prefix: str, audio=None) -> io.NodeOutput:
        if isinstance(latent, dict):  # a core LATENT: what made it is read from the workflow that ran
            latent = as_joint_latent(latent, cls.NAME)
            # merged under what the LATENT carries (a cameo's consent record from Apply Cameo (native), ...)
            latent.provenance = {**provenance_from_workflow(cls.hidden.prompt), **latent.provenance}
        height, width = int(images.shape[1]), int(images.shape[2])
        folder, filename, counter, subfolder, _ = folder_paths.get_save_image_path(
            filename_prefix, folder_paths.get_output_directory(), width, height)
        file = f"{filename}_{counter:05}_.mp4"
        with node_errors(cls.NAME):
            if not latent.provenance:
                raise ValueError("latent: it was not made by JointAV Sampler, so there is nothing to record; "
                                 "connect the sampler's output")
            provenance = {**latent.provenance, **cameo_provenance(latent)}
            path = write_signed_mp4(os.path.join(folder, file), images.cpu(), latent.fps,
                                    one_track(audio) if audio is not None else None, provenance_info(provenance))
            log_cameo_use(provenance, path)
        return io.NodeOutput(ui=ui.PreviewVideo([ui.SavedResult(file, subfolder, io.FolderType.output)]))


class Verify(io.ComfyNode):
    NAME = "JointAV Verify"

    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="JointAVVerify",
            display_name=cls.NAME,
            category=CATEGORY,
            description="Checks a file's C2PA manifest (signature, tampering) and its watermark, like `jointav verify`; "
                        "for a cameo clip also whether its consent was revoked since (as far as this machine has "
                        f"seen) and whether the usage log still holds its use. It reads only names inside {FOLDERS_TEXT}, "
                        "never other paths on the server.",
            inputs=[io.String.Input("path", default="",
                                    tooltip=f"A name inside {FOLDERS_TEXT}, looked up in that order (e.g. "
                                            "video/JointAV_00001_.mp4, or input/clip.mp4 for the input folder only). "
                                            "Absolute paths and '..' are refused.")],
            outputs=[io.Boolean.Output(display_name="valid"), io.String.Output(display_name="report")],
            is_output_node=True,
        )

    @classmethod
    def validate_inputs(cls, **values) -> bool | str:
        # the file itself may be written by a Save node of the same prompt, so only the name is judged here
        return validate(cls, values, extra=lambda v: [
            f"{cls.NAME}: {name_problem(v['path'])}" if isinstance(v.get("path"), str) and name_problem(v["path"])
            else None])

    @classmethod
    def execute(cls, path: str) -> io.NodeOutput:
        folders = {"output": folder_paths.get_output_directory(), "input": folder_paths.get_input_directory(),
                   "temp": folder_paths.get_temp_directory()}
        with node_errors(cls.NAME, {"path": path}):
            try:
                full = resolve_name(path, folders)
            except PermissionError as exc:  # reported like any bad input (node and input named)
                raise ValueError(str(exc)) from None
            report = verify_file(full)
        text = report.text()
        return io.NodeOutput(report.valid, text, ui={"text": [text]})
