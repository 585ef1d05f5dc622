"""Which files a workflow may name on the server: names inside ComfyUI's output, input and temp folders.

A workflow is data anyone can post to a shared GPU box; a node that opened any path it is given would let it
probe the server's file system. So a name is relative, never climbs out (`..`), and after symbolic links are
followed it still lies inside one of the folders. Imports nothing from ComfyUI: the folders are passed in.
"""

from __future__ import annotations

import os
from collections.abc import Mapping

FOLDERS_TEXT = "ComfyUI's output, input and temp folders"


def _inside(path: str, folder: str) -> bool:
    try:
        return os.path.commonpath([path, folder]) == folder
    except ValueError:  # different drives (Windows)
        return False


def name_problem(name: str) -> str | None:
    """What makes `name` unreadable whatever the folders hold (absolute, climbing out), or None."""
    text = name.strip()
    if not text:
        return f"path is empty; expected a name inside {FOLDERS_TEXT} (e.g. video/JointAV_00001_.mp4)"
    if os.path.isabs(text) or text.startswith(("/", "\\")) or os.path.splitdrive(text)[0]:
        return (f"path={name!r}: only names inside {FOLDERS_TEXT} are read (e.g. video/JointAV_00001_.mp4), "
                f"not absolute paths")
    if ".." in text.replace("\\", "/").split("/"):
        return f"path={name!r}: '..' is not allowed; only names inside {FOLDERS_TEXT} are read"
    return None


def resolve_name(name: str, folders: Mapping[str, str]) -> str:
    """The real path of `name` inside the first folder (in the given order) that holds it.

    folders: kind ("output", "input", "temp") -> directory. A name may start with one of the kinds
    ("input/clip.mp4") to look in that folder only. Raises PermissionError for an absolute name or one that
    leaves the folders (symbolic links followed), FileNotFoundError (listing where it looked) for a name none
    of them holds.
    """
    problem = name_problem(name)
    if problem:
        raise PermissionError(problem)
    parts = name.strip().replace("\\", "/").split("/")
    chosen = dict(folders)
    if len(parts) > 1 and parts[0] in folders:
        chosen, parts = {parts[0]: folders[parts[0]]}, parts[1:]
    looked = []
    for kind, folder in chosen.items():
        root = os.path.realpath(folder)
        candidate = os.path.realpath(os.path.join(root, *parts))
        looked.append(f"{kind} ({root})")
        if not _inside(candidate, root):
            raise PermissionError(f"path={name!r} leads outside the {kind} folder; only names inside {FOLDERS_TEXT} "
                                  f"are read")
        if os.path.isfile(candidate):
            return candidate
    raise FileNotFoundError(f"path={name!r}: no such file in {', '.join(looked)}")
