"""Probe sets for expert identification (docs/design.md §3.4): domain and general texts, and image-form probes.

Named sets:
- ``gsm8k``: GSM8K records (``question`` field) from a local JSONL file;
- ``alpaca``: Alpaca records (``instruction`` plus a non-empty ``input``) from a local JSON or JSONL file;
- ``rd_demo``: text twins of rd-eval's own generated problems (always available offline);
- ``general``: rd-eval's embedded general-domain probe texts (always available offline);
- ``organism``: the model organism's text-form prompts (``rd_eval.organism``), sampled from its validation split:
  the kind of problem it reasons about, never a held-out (evaluated) one (always available offline).

A file-backed set is found at the path given explicitly (``--domain-file`` / ``--general-file``), else in
the folder named by the environment variable ``RD_EVAL_PROBE_DIR`` (``gsm8k*.jsonl``, ``alpaca*.json[l]``).
A path to a JSON/JSONL file may also be given in place of a name; its schema is recognised from its fields.
Samples are deterministic: the same (source, n, seed) always gives the same texts in the same order.
"""

from __future__ import annotations

import json
import os
import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

PROBE_DIR_ENV = "RD_EVAL_PROBE_DIR"
FILE_SETS: Mapping[str, tuple[str, ...]] = {"gsm8k": ("gsm8k*.jsonl",), "alpaca": ("alpaca*.jsonl", "alpaca*.json")}
BUILTIN_SETS = ("rd_demo", "general", "organism")
PROBE_SETS = (*FILE_SETS, *BUILTIN_SETS)
IMAGE_PROBE_SETS = ("rd_demo",)
# rd_demo probes come from the generator with another seed than the evaluated benchmark: never its items.
RD_DEMO_PROBE_SEED_OFFSET = 1000


class ProbeError(ValueError):
    """A probe set cannot be loaded as asked; the message names the bad value and what is valid."""


@dataclass(frozen=True)
class ProbeSet:
    """Sampled probe texts and where they came from (recorded in the expert set's method)."""

    name: str
    texts: tuple[str, ...]
    source: str
    seed: int

    @property
    def n(self) -> int:
        return len(self.texts)

    def describe(self) -> dict[str, Any]:
        return {"name": self.name, "source": self.source, "n": self.n, "seed": self.seed}


def _check_n(n: int) -> None:
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ProbeError(f"probe size n={n!r} invalid; need an integer >= 1")


def _read_records(path: Path) -> list[Any]:
    """Records of a JSON array file or a JSONL file (one object per line)."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ProbeError(f"cannot read probe file {str(path)!r}: {exc.strerror or exc}") from None
    except UnicodeDecodeError:
        raise ProbeError(f"cannot read probe file {str(path)!r}: not UTF-8 text") from None
    stripped = text.lstrip()
    if stripped.startswith("["):
        try:
            data = json.loads(stripped)
        except json.JSONDecodeError as exc:
            raise ProbeError(f"probe file {str(path)!r} is not valid JSON ({exc.msg}, line {exc.lineno})") from None
        return list(data)
    records = []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError as exc:
            raise ProbeError(f"probe file {str(path)!r} line {number} is not valid JSON ({exc.msg})") from None
    return records


def _record_text(record: Any, schema: str) -> str | None:
    if not isinstance(record, Mapping):
        return None
    if schema == "gsm8k":
        question = record.get("question")
        return question.strip() if isinstance(question, str) and question.strip() else None
    instruction = record.get("instruction")
    if not isinstance(instruction, str) or not instruction.strip():
        return None
    extra = record.get("input")
    if isinstance(extra, str) and extra.strip():
        return f"{instruction.strip()}\n\n{extra.strip()}"
    return instruction.strip()


def _detect_schema(records: Sequence[Any], path: Path) -> str:
    first = next((r for r in records if isinstance(r, Mapping)), None)
    if first is not None and "question" in first:
        return "gsm8k"
    if first is not None and "instruction" in first:
        return "alpaca"
    keys = sorted(first) if first is not None else []
    raise ProbeError(
        f"probe file {str(path)!r}: records with keys {keys} match no known schema; need 'question' (GSM8K) "
        "or 'instruction' [+ 'input'] (Alpaca)"
    )


def texts_from_file(path: str | os.PathLike[str], schema: str | None = None) -> tuple[str, list[str]]:
    """(schema, texts) of a GSM8K- or Alpaca-style JSON/JSONL file; `schema` None recognises it."""
    file = Path(path).expanduser()
    if not file.is_file():
        raise ProbeError(f"probe file {str(path)!r} does not exist or is not a file")
    records = _read_records(file)
    schema = schema or _detect_schema(records, file)
    if schema not in FILE_SETS:
        raise ProbeError(f"probe schema {schema!r} invalid; valid: {', '.join(FILE_SETS)}")
    texts = [t for t in (_record_text(r, schema) for r in records) if t is not None]
    if not texts:
        field = "'question'" if schema == "gsm8k" else "'instruction'"
        raise ProbeError(f"probe file {str(path)!r} holds no {schema} records with a non-empty {field} field")
    return schema, texts


def find_probe_file(name: str, probe_dir: str | os.PathLike[str] | None = None) -> Path | None:
    """The file of a file-backed set in `probe_dir` (default: $RD_EVAL_PROBE_DIR), or None."""
    folder = probe_dir if probe_dir is not None else os.environ.get(PROBE_DIR_ENV)
    if not folder:
        return None
    for pattern in FILE_SETS[name]:
        matches = sorted(p for p in Path(folder).expanduser().glob(pattern) if p.is_file())
        if matches:
            return matches[0]
    return None


def sample_texts(texts: Sequence[str], n: int, seed: int, what: str) -> tuple[str, ...]:
    """A deterministic sample of `n` of `texts` (in source order), seeded by `seed`."""
    _check_n(n)
    if n > len(texts):
        raise ProbeError(f"probe set {what} has only {len(texts)} texts; asked for n={n}")
    picked = sorted(random.Random(seed).sample(range(len(texts)), n))
    return tuple(texts[i] for i in picked)


def load_probe_set(name_or_path: str, n: int, seed: int = 0, *, file: str | os.PathLike[str] | None = None,
                   probe_dir: str | os.PathLike[str] | None = None, file_flag: str = "--domain-file") -> ProbeSet:
    """Sample `n` probe texts of a named set (or a JSON/JSONL file path) with `seed`.

    `file`: an explicit file for a file-backed set (gsm8k / alpaca). `file_flag`: the option a user passes
    that file with, named in the error when no file can be found.
    """
    _check_n(n)
    name = name_or_path.strip()
    if name == "general":
        from rd_eval.experts.identify import general_probe_texts

        return ProbeSet(name, sample_texts(general_probe_texts(), n, seed, "'general'"),
                        "rd-eval general_probe.txt (embedded)", seed)
    if name == "rd_demo":
        from rd_eval.twins.demo_bench import generate_problems

        problems = generate_problems(n, seed + RD_DEMO_PROBE_SEED_OFFSET)
        return ProbeSet(name, tuple(p.text_twin for p in problems),
                        f"rd_demo generator text twins, seed {seed + RD_DEMO_PROBE_SEED_OFFSET}", seed)
    if name == "organism":
        from rd_eval.organism.benchmark import SPLIT_SEED, split_problems
        from rd_eval.organism.prompts import user_text

        texts = tuple(user_text(problem, "txt") for problem in split_problems("validation"))
        return ProbeSet(name, sample_texts(texts, n, seed, "'organism'"),
                        f"model organism text-form prompts, validation split of seed {SPLIT_SEED}", seed)
    if name in FILE_SETS:
        path = Path(file).expanduser() if file is not None else find_probe_file(name, probe_dir)
        if path is None:
            patterns = " or ".join(FILE_SETS[name])
            raise ProbeError(
                f"probe set {name!r} needs a local file: pass {file_flag} PATH or set {PROBE_DIR_ENV} to a folder "
                f"holding {patterns} (offline sets without a file: {', '.join(BUILTIN_SETS)})"
            )
        _, texts = texts_from_file(path, name)
        return ProbeSet(name, sample_texts(texts, n, seed, f"{name!r} ({path})"), str(path.absolute()), seed)
    candidate = Path(name).expanduser()
    if candidate.suffix in (".json", ".jsonl") or candidate.exists():
        schema, texts = texts_from_file(candidate)
        return ProbeSet(schema, sample_texts(texts, n, seed, repr(str(candidate))), str(candidate.absolute()), seed)
    raise ProbeError(f"unknown probe set {name_or_path!r}; valid: {', '.join(PROBE_SETS)}, or a .json/.jsonl file")


def load_image_probes(name: str, n: int, seed: int = 0) -> list[tuple[Any, str]]:
    """Image-form probes: (rendered image, question) pairs. Only rd_demo can render its problems."""
    _check_n(n)
    if name not in IMAGE_PROBE_SETS:
        raise ProbeError(f"unknown image probe set {name!r}; valid: {', '.join(IMAGE_PROBE_SETS)}")
    from rd_eval.twins.demo_bench import generate_problems, question_block, render_problem

    problems = generate_problems(n, seed + RD_DEMO_PROBE_SEED_OFFSET)
    return [(render_problem(p), question_block(p.question, p.choices)) for p in problems]
