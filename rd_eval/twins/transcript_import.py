"""Transcripts made elsewhere: a JSON-lines file of ``{"pair_id": ..., "transcription": ...}`` checked line by line
and turned into a :class:`~rd_eval.twins.transcripts.TranscriptSet` (the format: docs/transcripts.md).

Every problem of the file is collected before anything is written, so one run of `rd-eval twins import` names
them all (the first few, and how many more), each with the file, the line and the value.
"""

from __future__ import annotations

import json
import os
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from rd_eval.twins.transcripts import TranscriptError, TranscriptSet

PAIR_ID_KEY = "pair_id"
TEXT_KEY = "transcription"
SHOWN_PROBLEMS = 5  # problems spelled out in the one-line error; the rest are counted
LINE_EXAMPLE = '{"pair_id": "12", "transcription": "A right triangle with legs 3 and 4 ..."}'


class TranscriptImportError(TranscriptError):
    """An import file with problems; nothing was written."""


def _shown(value: object, limit: int = 60) -> str:
    text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)
    return repr(text if len(text) <= limit else text[:limit] + "...")


def _raise_problems(source: str, problems: list[str]) -> None:
    more = len(problems) - SHOWN_PROBLEMS
    listed = "; ".join(problems[:SHOWN_PROBLEMS]) + (f"; and {more} more" if more > 0 else "")
    noun = "problem" if len(problems) == 1 else "problems"
    raise TranscriptImportError(f"{source}: {len(problems)} {noun}, nothing written: {listed}")


def _pair_id(value: object) -> str | None:
    """A pair_id as the tasks compare it: a JSON string as it is, a JSON integer in decimal; else None."""
    if isinstance(value, str) and value.strip():
        return value
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    return None


@dataclass(frozen=True)
class ImportedLines:
    """The transcriptions of an import file, by pair_id in file order, and the line each came from."""

    source: str
    texts: Mapping[str, str]
    lines: Mapping[str, int]


def read_import_lines(path: str | os.PathLike[str]) -> ImportedLines:
    """Parse and check every line of an import file: JSON objects with a ``pair_id`` (a non-empty string, or
    an integer) and a non-empty ``transcription`` string, each pair_id once. Blank lines are skipped and other
    keys ignored; transcriptions are stored with surrounding whitespace stripped."""
    source = str(path)
    try:
        raw = Path(path).read_bytes()
    except FileNotFoundError:
        raise TranscriptImportError(f"{source}: file not found") from None
    except IsADirectoryError:
        raise TranscriptImportError(f"{source}: is a folder; name a JSON-lines file") from None
    except OSError as exc:
        raise TranscriptImportError(f"{source}: cannot read ({exc.strerror or exc})") from None
    texts: dict[str, str] = {}
    lines: dict[str, int] = {}
    problems: list[str] = []
    for number, line_bytes in enumerate(raw.splitlines(), start=1):
        try:
            line = line_bytes.decode("utf-8-sig" if number == 1 else "utf-8")
        except UnicodeDecodeError as exc:
            problems.append(f"line {number}: not UTF-8 text (byte 0x{line_bytes[exc.start]:02x} at column "
                            f"{exc.start + 1})")
            continue
        if not line.strip():
            continue
        problem = _check_line(line, number, texts, lines)
        if problem:
            problems.append(f"line {number}: {problem}")
    if not problems and not texts:
        problems.append(f"no transcriptions (the file holds no JSON lines); write one object per line, e.g. "
                        f"{LINE_EXAMPLE}")
    if problems:
        _raise_problems(source, problems)
    return ImportedLines(source=source, texts=texts, lines=lines)


def _check_line(line: str, number: int, texts: dict[str, str], lines: dict[str, int]) -> str | None:
    """The problem of one line, or None after adding its transcription to ``texts``."""
    try:
        record = json.loads(line)
    except json.JSONDecodeError as exc:
        return f"not valid JSON ({exc.msg} at column {exc.colno}): {_shown(line)}"
    if not isinstance(record, dict):
        return f"expected a JSON object like {LINE_EXAMPLE}, got {_shown(record)}"
    missing = [key for key in (PAIR_ID_KEY, TEXT_KEY) if key not in record]
    if missing:
        return f"no {' or '.join(repr(k) for k in missing)} key (the line has keys {sorted(record)})"
    pair_id = _pair_id(record[PAIR_ID_KEY])
    if pair_id is None:
        return f"pair_id must be a non-empty string or an integer, got {_shown(record[PAIR_ID_KEY])}"
    text = record[TEXT_KEY]
    if not isinstance(text, str):
        return f"pair_id {pair_id!r}: the transcription must be text, got {_shown(text)}"
    if not text.strip():
        return f"pair_id {pair_id!r}: empty transcription {_shown(text)}"
    if pair_id in texts:
        return f"pair_id {pair_id!r} again (first on line {lines[pair_id]}); give each pair_id once"
    texts[pair_id] = text.strip()
    lines[pair_id] = number
    return None


def not_transcribed_reason(source: str) -> str:
    """The `failed` reason of a document the import file left out (with --allow-missing)."""
    return f"not transcribed: absent from the imported file {Path(source).name}"


def imported_set(imported: ImportedLines, *, benchmark: str, known_pair_ids: Collection[str], transcriber: str,
                 model_args: str = "", prompt: str = "", allow_missing: bool = False) -> TranscriptSet:
    """The transcript set of ``benchmark`` from checked lines. Every pair_id must be one of the benchmark's
    (``known_pair_ids``); a benchmark document the file leaves out is an error unless ``allow_missing``, which
    records it under ``failed`` so that its text twin leaves it out (its pair counts as image-only)."""
    known = {str(p) for p in known_pair_ids}
    unknown = [p for p in imported.texts if p not in known]
    if unknown:
        examples = ", ".join(repr(p) for p in sorted(known)[:3])
        _raise_problems(imported.source, [
            f"line {imported.lines[p]}: pair_id {p!r} is not a {benchmark} document ({len(known)} documents, "
            f"pair_ids like {examples}; docs/transcripts.md says how pair_ids name documents)" for p in unknown
        ])
    missing = sorted(known - set(imported.texts))
    if missing and not allow_missing:
        shown = ", ".join(repr(p) for p in missing[:SHOWN_PROBLEMS])
        raise TranscriptImportError(
            f"{imported.source}: {len(missing)} of the {len(known)} {benchmark} documents have no transcription "
            f"({shown}{', ...' if len(missing) > SHOWN_PROBLEMS else ''}), nothing written; add them, or pass "
            "--allow-missing to record them as not transcribed (their text twins are left out and their pairs "
            "count as image-only)"
        )
    reason = not_transcribed_reason(imported.source)
    return TranscriptSet(benchmark=benchmark, transcriber=transcriber, model_args=model_args, prompt=prompt,
                         entries=dict(imported.texts), failed={p: reason for p in missing},
                         created=datetime.now(timezone.utc).isoformat(timespec="seconds"))
