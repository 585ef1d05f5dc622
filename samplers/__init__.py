"""Flow-matching sampling for the joint audio-video DiT. Plain PyTorch, no ComfyUI.

- schedules: sigma/timestep tables (UniPC, DPM++, Euler as the Ovi reference builds them), `FlowSolver` base.
- unipc / dpmpp / euler: the solvers; `make_solver(name, steps, shift)` gives a fresh one.
- guidance: joint CFG (separate video and audio scales, skip-layer guidance on the negative pass).
- conditioning: conditioning items (first frame, any video frames, audio span, segment tail, whole modality,
  reference tokens), one protocol; `resolve` gives the sampler one `Held`.
- loop: `sample(...)`, seeded noise and the audio/video length rule.
"""

from .conditioning import (AudioSpan, Conditioning, ConditioningItem, FirstFrame, Held, KeepMask, SegmentTail, VideoFrames,
                           WholeAudio, WholeVideo, audio_positions_covering, combine, resolve)
from .dpmpp import DPMPPSolver
from .euler import EulerSolver
from .guidance import (JointGuidance, JointModel, PromptContexts, ReferenceTokens, guided_velocity,
                       normalize_slg_layer)
from .loop import (OVI_AUDIO_PER_VIDEO_FRAME, SOLVERS, audio_latent_length, initial_noise, make_solver, sample)
from .schedules import (FlowSolver, Schedule, dpmpp_schedule, euler_schedule, shift_sigmas, unipc_schedule)
from .unipc import UniPCSolver

__all__ = [
    "AudioSpan", "Conditioning", "ConditioningItem", "Held", "SegmentTail", "WholeAudio", "WholeVideo",
    "audio_positions_covering", "resolve", "DPMPPSolver", "EulerSolver", "FirstFrame", "FlowSolver", "JointGuidance",
    "JointModel", "KeepMask", "OVI_AUDIO_PER_VIDEO_FRAME", "PromptContexts", "ReferenceTokens", "SOLVERS", "Schedule", "UniPCSolver",
    "VideoFrames", "audio_latent_length", "combine", "dpmpp_schedule", "euler_schedule", "guided_velocity",
    "initial_noise", "make_solver", "normalize_slg_layer", "sample", "shift_sigmas", "unipc_schedule",
]
