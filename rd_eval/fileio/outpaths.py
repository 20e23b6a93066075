"""Output paths of the command line, checked before any work: a run never fails at its last step because
the place it writes to was unusable all along, and an empty path never silently means the current folder."""

from __future__ import annotations

import os
from pathlib import Path


class PathArgumentError(ValueError):
    """A path argument that is empty, or an output path that cannot be written; names the option and the path."""


def _given(value: str | os.PathLike[str], flag: str) -> Path:
    if not str(value).strip():
        raise PathArgumentError(f"{flag} '' is empty; name a path ('.' for the current folder)")
    return Path(value).expanduser()


def _nearest_existing(path: Path) -> Path:
    probe = path.absolute()
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    return probe


def _check_creatable(path: Path, flag: str, shown: str) -> None:
    """`path` (absent) could be created: its nearest existing ancestor is a folder this user may write into."""
    anchor = _nearest_existing(path.parent)
    if not anchor.is_dir():
        raise PathArgumentError(f"{flag} {shown!r}: {str(anchor)!r} is a file, not a folder")
    if not os.access(anchor, os.W_OK | os.X_OK):
        raise PathArgumentError(f"{flag} {shown!r}: folder {str(anchor)!r} is not writable")


def check_output_file(value: str | os.PathLike[str], flag: str) -> Path:
    """A file path that can be written (created, or replaced atomically beside itself)."""
    path = _given(value, flag)
    shown = str(value)
    if path.is_dir():
        raise PathArgumentError(f"{flag} {shown!r} is a folder; name a file")
    if path.exists() or path.is_symlink():
        folder = path.absolute().parent
        if not os.access(folder, os.W_OK | os.X_OK):
            raise PathArgumentError(f"{flag} {shown!r}: folder {str(folder)!r} is not writable")
        return path
    _check_creatable(path, flag, shown)
    return path


def check_output_dir(value: str | os.PathLike[str], flag: str) -> Path:
    """A folder that exists and is writable, or can be created."""
    path = _given(value, flag)
    shown = str(value)
    if path.exists():
        if not path.is_dir():
            raise PathArgumentError(f"{flag} {shown!r} is a file, not a folder")
        if not os.access(path, os.W_OK | os.X_OK):
            raise PathArgumentError(f"{flag} {shown!r} is not a writable folder")
        return path
    _check_creatable(path, flag, shown)
    return path


def require_input(value: str | os.PathLike[str], flag: str) -> Path:
    """An input path that is not empty (an empty one would silently be the current folder)."""
    if not str(value).strip():
        raise PathArgumentError(f"{flag} '' is empty; name a path ('.' for the current folder)")
    return Path(value).expanduser()
