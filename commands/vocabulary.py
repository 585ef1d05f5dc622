"""`jointav vocabulary`: the words the embedded default model's text encoder knows (any other word is ignored)."""

from __future__ import annotations

import textwrap


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "vocabulary", help="list the words the embedded default model understands",
        description="The embedded default model was trained on a toy world with a closed vocabulary; "
                    "`jointav generate` warns about every word outside it. Ovi models read any text (umT5-XXL).")
    p.set_defaults(func=run)


def run(args) -> int:
    from ..pipeline import api

    model = api.load_joint_model(device="cpu")
    words = api.vocabulary(model)
    print(f"{model.name} knows these {len(words)} words and tags (others are read as unknown and ignored):")
    print(textwrap.fill(" ".join(words), width=100))
    return 0
