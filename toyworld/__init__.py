"""The procedural toy world the tiny default model learns from: captioned clips with exact sound timing.

Plain numpy. `sample_spec` draws a scene, `caption_for` / `parse_caption` go between scenes and captions,
`render_clip` turns a scene and a seed into frames, a waveform and the ground truth. `cameo_caption` and
`cameo_recording_spec` give the captions and reference recordings of the cameo pathway's training and tests;
`subject_caption` and `subject_recording_spec` those of an object carried across the shots of a film.
"""

from .render import Clip, ClipTruth, WorldConfig, render_clip
from .scenes import (
    HELDOUT_CHARACTER_PAIRS,
    HELDOUT_OBJECT_PAIRS,
    SceneSpec,
    cameo_caption,
    cameo_recording_spec,
    caption_for,
    parse_caption,
    sample_spec,
    subject_caption,
    subject_recording_spec,
)

__all__ = [
    "Clip",
    "ClipTruth",
    "WorldConfig",
    "render_clip",
    "SceneSpec",
    "caption_for",
    "cameo_caption",
    "cameo_recording_spec",
    "parse_caption",
    "sample_spec",
    "subject_caption",
    "subject_recording_spec",
    "HELDOUT_OBJECT_PAIRS",
    "HELDOUT_CHARACTER_PAIRS",
]
