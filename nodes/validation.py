"""One check of typed-in widget values against the node's own schema, used by every node's `validate_inputs`.

ComfyUI 0.3.64 does not check the combo values of V3 nodes (their type is the string "COMBO", not the
option list its check looks for), and once a node's `validate_inputs` takes an input, it skips that input's
min/max check too; a value it cannot convert ("abc" for an INT) still reaches `validate_inputs` unconverted.
So the rule lives here, read from the same `define_schema` the editor draws: a combo value must be one of its
options, an INT a whole number and a FLOAT a number within min..max, a STRING text, a BOOLEAN true/false.
Every message names the node, the input, the value seen and what is allowed; all problems come in one message.

Imports nothing from ComfyUI (inputs are read by their `get_io_type()` and attributes), so it is unit-tested
with plain stand-ins.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any

# More options than this are summarised in a message (file lists can be long).
_LISTED_OPTIONS = 24

Extra = Callable[[dict[str, Any]], Iterable[str | None]]


def _allowed(options: list) -> str:
    shown = ", ".join(repr(o) for o in options[:_LISTED_OPTIONS])
    more = len(options) - _LISTED_OPTIONS
    return shown + (f" (and {more} more)" if more > 0 else "")


def _is_whole(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def widget_problem(node: str, item: Any, value: object) -> str | None:
    """What is wrong with one widget value (None: nothing, or not a widget this check knows)."""
    kind = str(item.get_io_type())
    name = item.id
    if kind == "COMBO":
        options = list(getattr(item, "options", None) or [])
        if value not in options:
            return f"{node}: {name}={value!r} is not one of the allowed values: {_allowed(options)}"
        return None
    if kind in ("INT", "FLOAT"):
        if not (_is_whole(value) if kind == "INT" else _is_number(value)):
            expected = "a whole number" if kind == "INT" else "a number"
            return f"{node}: {name}={value!r} is not {expected}"
        low, high = getattr(item, "min", None), getattr(item, "max", None)
        if (low is not None and value < low) or (high is not None and value > high):
            return f"{node}: {name}={value!r} is outside the allowed range {low} to {high}"
        return None
    if kind == "STRING" and not isinstance(value, str):
        return f"{node}: {name}={value!r} is not text"
    if kind == "BOOLEAN" and not isinstance(value, bool):
        return f"{node}: {name}={value!r} is not true or false"
    return None


def check_inputs(node: str, inputs: Iterable[Any], values: Mapping[str, object], *, skip: Iterable[str] = (),
                 extra: Extra | None = None) -> bool | str:
    """`validate_inputs`' answer: True, or one message listing every problem.

    inputs: the schema's input declarations; values: what ComfyUI passed (None for a linked input, whose value
    is not known before the run). skip: inputs the node checks itself (file lists, whose message says which
    folder was searched). extra(values): the node's own rules (sizes, combinations, files); it sees None for
    linked inputs and for values already reported here, so it never meets a value of the wrong type.
    """
    skipped = set(skip)
    problems = []
    checked = dict(values)
    for item in inputs:
        value = values.get(item.id)
        if value is None or item.id in skipped:
            continue
        problem = widget_problem(node, item, value)
        if problem:
            problems.append(problem)
            checked[item.id] = None
    if extra is not None:
        problems += [p for p in extra(checked) if p]
    return "; ".join(problems) if problems else True


def validate(node_cls: Any, values: Mapping[str, object], *, skip: Iterable[str] = (),
             extra: Extra | None = None) -> bool | str:
    """check_inputs over a node class's own schema (`define_schema().inputs`, named by its `NAME`)."""
    return check_inputs(node_cls.NAME, node_cls.define_schema().inputs, values, skip=skip, extra=extra)
