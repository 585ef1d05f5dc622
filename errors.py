"""One exception type per failure kind, so callers (nodes, CLI, tests) can tell failures apart.

Every message names the file, key or parameter, the value that was found and the value expected.
"""


class JointAVError(Exception):
    """Base class of every error this package raises on purpose."""


class CheckpointFileError(JointAVError):
    """The file cannot be read as a checkpoint at all (missing, not a checkpoint, truncated, unsafe)."""


class CheckpointKindError(JointAVError):
    """The file is a readable checkpoint, but of another model than the one asked for."""


class CheckpointKeyError(JointAVError):
    """A checkpoint of the right kind has a missing, unexpected or mis-shaped tensor."""


class InputShapeError(JointAVError, ValueError):
    """A tensor handed to a model or sampler has the wrong shape, channel count or length."""


class InputValueError(JointAVError, ValueError):
    """A parameter or tensor value is outside what is allowed (NaN, range, unknown choice)."""


class BackendUnavailableError(JointAVError):
    """An attention backend (or other optional accelerator) was asked for but cannot run here."""


class GenerationInterrupted(JointAVError):
    """Sampling was cancelled through the cancellation callback."""
