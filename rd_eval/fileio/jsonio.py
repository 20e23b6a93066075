"""JSON files users exchange: written atomically, read with errors that name the file."""

from __future__ import annotations

import hashlib
import json
import os
import secrets
from pathlib import Path
from typing import Any


class JsonFileError(ValueError):
    """A JSON file is missing, unreadable or malformed."""


def write_json_atomic(path: str | os.PathLike[str], obj: Any) -> Path:
    """Write `obj` as indented JSON; a crash leaves either the old file or the new one, never half."""
    return write_text_atomic(path, json.dumps(obj, indent=2, allow_nan=False) + "\n")


def write_text_atomic(path: str | os.PathLike[str], text: str) -> Path:
    """Write `text` to a temporary file beside `path`, then rename it over `path`.

    The file gets the permissions of any new file (0666 less the umask), as `open()` would give it, so
    reports and baselines stay readable by others (tempfile.mkstemp would make them private, 0600).
    """
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = _create_beside(target)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
        os.replace(tmp, target)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return target


def _create_beside(target: Path) -> tuple[int, Path]:
    """A new, exclusively created temporary file in `target`'s folder; mode 0666 filtered by the umask."""
    for _ in range(100):
        tmp = target.parent / f".{target.name}.{secrets.token_hex(6)}.tmp"
        try:
            return os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666), tmp
        except FileExistsError:
            continue
    raise FileExistsError(f"no free temporary name beside {target}")


def read_text_file(path: str | os.PathLike[str], error: type[Exception], kind: str) -> str:
    """The text of a UTF-8 file; every failure is an `error` naming the file (`kind`: "JSON file", ...)."""
    source = Path(path)
    try:
        return source.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise error(f"{source}: file not found") from None
    except IsADirectoryError:
        raise error(f"{source}: is a folder, not a {kind}") from None
    except OSError as exc:
        raise error(f"{source}: cannot read ({exc.strerror or exc})") from None
    except UnicodeDecodeError as exc:
        raise error(f"{source}: not UTF-8 text (byte 0x{exc.object[exc.start]:02x} at offset {exc.start}); "
                    f"a {kind} must be UTF-8") from None


def read_json(path: str | os.PathLike[str]) -> Any:
    """The JSON value of a UTF-8 file; every failure is a JsonFileError naming the file."""
    if not str(path).strip():
        raise JsonFileError("no file given (an empty path); name a JSON file")
    source = Path(path)
    text = read_text_file(source, JsonFileError, "JSON file")
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise JsonFileError(f"{source}: not valid JSON (line {exc.lineno}, column {exc.colno}: {exc.msg})") from None
    except RecursionError:
        raise JsonFileError(f"{source}: JSON nested too deeply") from None


def canonical_hash(obj: Any, length: int = 12) -> str:
    """A short content hash of a JSON-serialisable object, independent of key order."""
    payload = json.dumps(obj, sort_keys=True, separators=(",", ":"), allow_nan=False)
    return hashlib.sha256(payload.encode("utf-8")).hexdigest()[:length]
