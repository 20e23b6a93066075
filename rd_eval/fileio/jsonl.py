"""Reading JSON-lines files (lmms-eval's samples files) with errors that name the file and line."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any


def jsonl_objects(path: Path, label: str = "file", context: str = "") -> Iterator[tuple[str, dict[str, Any]]]:
    """(``"FILE:LINE"``, object) for every non-blank line; a missing file (``"<label> not found: FILE (<context>)"``),
    non-UTF-8 text, a corrupt line or a line that is not a JSON object raises ValueError naming the file and line."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError as err:
        raise ValueError(f"{label} not found: {path}{f' ({context})' if context else ''}") from err
    except UnicodeDecodeError as err:
        raise ValueError(f"{path}: not UTF-8 text ({err})") from err
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        where = f"{path}:{number}"
        try:
            item = json.loads(line)
        except json.JSONDecodeError as err:
            raise ValueError(f"{where}: corrupt JSON line ({err.msg})") from None
        if not isinstance(item, dict):
            raise ValueError(f"{where}: expected a JSON object, got {type(item).__name__}")
        yield where, item
