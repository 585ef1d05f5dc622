"""Turn core errors into messages that name the node (and the input where it is known).

ComfyUI shows `exception_message` in its error report; a bare "width: got 70 ..." does not say which of
the graph's nodes failed, so every node wraps its pipeline calls in `node_errors`.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from ..errors import JointAVError

# What the core raises on bad input or bad files; anything else (out of memory, bugs) passes through untouched.
_EXPECTED = (JointAVError, FileNotFoundError, KeyError, ValueError)


def _text(exc: BaseException) -> str:
    # KeyError's str() quotes its argument; the message is the argument itself.
    return str(exc.args[0]) if isinstance(exc, KeyError) and exc.args else str(exc)


@contextmanager
def node_errors(node: str, inputs: dict[str, object] | None = None) -> Iterator[None]:
    """Re-raise expected errors as the same type with `node` (and the matching input) in front.

    `inputs` maps input names to the file paths or values they resolved to; when the message mentions one of
    those values, that input is named too (so "Load Decoders" says whether the VAE or the vocoder is wrong).
    """
    try:
        yield
    except _EXPECTED as exc:
        text = _text(exc)
        named = [name for name, value in (inputs or {}).items() if value is not None and str(value) in text]
        where = f" (input {', '.join(named)})" if named else ""
        if text.startswith(f"{node}:") and not where:  # already named (e.g. by a native-path helper)
            raise
        message = f"{node}{where}: {text}"
        try:
            wrapped = type(exc)(message)
        except Exception:  # an exception type that does not take one message
            wrapped = RuntimeError(message)
        raise wrapped from exc
