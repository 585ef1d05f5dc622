"""JointAV Shot List: a multi-shot film (issue 18) as core IMAGE + AUDIO, made by the same library function as
`jointav shots` (pipeline.long_form.shots), with shots typed as the CLI's --shot, one PROMPT@DURATION a line."""

from __future__ import annotations

import torch
from comfy_api.latest import io

from ..errors import GenerationInterrupted, JointAVError
from ..pipeline import api as pipeline
from ..pipeline import long_form
from ..pipeline.film_memory import FilmInMemory, FilmRecord
from ..samplers import SOLVERS
from .device import SegmentProgress, interrupted_exception, raise_if_interrupted
from .failures import node_errors
from .latents import MAX_SIZE, SIZE_STEP, SIZE_TIP, size_rules
from .sampler import MAX_SEED
from .types import CATEGORY, JointAVDecoders, JointAVFilm, JointAVModel
from .validation import validate


def shot_rules(node: str, values: dict) -> list[str | None]:
    """The shot list parsed as the CLI parses --shot; a linked (unknown yet) list is checked when it runs."""
    text = values.get("shots")
    if text is None:
        return []
    try:
        long_form.parse_shot_list(text)
    except JointAVError as exc:
        return [f"{node}: {exc}"]
    return []


class ShotList(io.ComfyNode):
    NAME = "JointAV Shot List"

    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="JointAVShotList",
            display_name=cls.NAME,
            category=CATEGORY,
            description="A film of several shots joined with hard cuts; with carry=subject every shot after the "
                        "first holds the first shot's subject (its look and voice); on the embedded default its shots "
                        "adapter (default_model/adapters/, a fine-tune of the video tower for a carried subject) is "
                        "added to those shots by itself. Same as `jointav shots`.",
            inputs=[
                JointAVModel.Input("model"),
                JointAVDecoders.Input("decoders", tooltip="Their VAEs decode each segment and encode the carried "
                                                          "subject (they need their encoders)."),
                io.String.Input("shots", multiline=True, default="a red ball bounces twice on the left, low thuds, "
                                "on a gray background@1s\nthe same ball slides to the right@1s",
                                tooltip="One shot a line: PROMPT@DURATION, e.g. 'a red ball bounces@2s' (durations "
                                        "as 2s, 1.5 or 1m). A shot longer than the model's clip is extended."),
                io.Combo.Input("carry", options=list(long_form.CARRY_CHOICES), default="subject",
                               tooltip="What later shots hold from the first: its subject, or nothing."),
                io.Int.Input("seed", default=0, min=0, max=MAX_SEED, control_after_generate=True),
                io.Int.Input("steps", default=0, min=0, max=1000,
                             tooltip="Sampling steps per segment; 0: the loaded model's default."),
                io.Combo.Input("solver", options=list(SOLVERS), default="unipc"),
                io.Int.Input("width", default=0, min=0, max=MAX_SIZE, step=SIZE_STEP, tooltip=SIZE_TIP.format("width")),
                io.Int.Input("height", default=0, min=0, max=MAX_SIZE, step=SIZE_STEP,
                             tooltip=SIZE_TIP.format("height")),
            ],
            outputs=[io.Image.Output(display_name="images"), io.Audio.Output(display_name="audio"),
                     io.Float.Output(display_name="fps"),
                     JointAVFilm.Output(display_name="film", tooltip="What made the film (model, shots, seed, "
                                        "settings), for JointAV Save Video's latent input: the film saved signed.")],
        )

    @classmethod
    def validate_inputs(cls, **values) -> bool | str:
        return validate(cls, values, extra=lambda v: [*shot_rules(cls.NAME, v), *size_rules(cls.NAME, v)])

    @classmethod
    def execute(cls, model, decoders, shots: str, carry: str, seed: int, steps: int, solver: str, width: int,
                height: int) -> io.NodeOutput:
        with node_errors(cls.NAME):
            shot_list = long_form.parse_shot_list(shots)
            height, width = pipeline.frame_size(model, height or None, width or None)
            film = FilmInMemory(height, width)
            settings = long_form.Settings(seed=seed, steps=steps or None, solver=solver)
        try:
            with node_errors(cls.NAME):
                report = long_form.shots(model, decoders, film, shot_list, carry=carry, settings=settings,
                                         progress=SegmentProgress(), cancel=raise_if_interrupted)
        except GenerationInterrupted as exc:
            raise interrupted_exception() from exc
        if report.interrupted:  # stopped between segments: ComfyUI's own interruption, never half a film
            raise interrupted_exception()
        frames = torch.from_numpy(film.frames()).float().div_(255.0)
        audio = {"waveform": torch.from_numpy(film.sound()).reshape(1, 1, -1), "sample_rate": film.sample_rate}
        provenance = {"model": model.name, "prompt": " | ".join(dict.fromkeys(s.prompt for s in shot_list)),
                      "seed": seed, "sampler": settings.record(model), "command": "shots",
                      "shots": [f"{s.prompt}@{s.seconds:g}s" for s in shot_list], "carry": carry}
        fps = float(model.spec.fps)
        return io.NodeOutput(frames, audio, fps, FilmRecord(fps, provenance))
