"""Read lmms-eval 0.7.3 run outputs (aggregated results + logged samples).

lmms-eval writes, under ``--output_path OUT``, the folder ``OUT/<model_name_sanitized>/`` (OUT
itself when the model args name no model path) holding ``<date_id>_results.json`` and, with
``--log_samples``, one ``<date_id>_samples_<task>.jsonl`` per task, where ``date_id`` is
``YYYYMMDD_HHMMSS``. Each samples line is one doc: ``doc_id``, ``target``, ``filtered_resps``, ...
plus every key returned by the task's ``process_results`` (for our paired tasks, ``rd_acc``).

A doc the model could not run is logged with ``rd_acc.correct`` null and ``rd_acc.error`` holding the
reason (see ``rd_eval.scoring.doc_errors``); it is kept as an error row, never read as a wrong answer.
"""

from __future__ import annotations

import json
import numbers
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import Any

import pandas as pd

from rd_eval.fileio.jsonl import jsonl_objects
from rd_eval.vocabulary.task_names import PAIRED_FORMS, is_auxiliary

__all__ = [
    "SAMPLE_COLUMNS",
    "RunRecord",
    "find_runs",
    "load_paired_samples",
    "read_run",
]

RESULTS_SUFFIX = "_results.json"
ROUTING_SHARD_GLOB = "routing_rank*.jsonl"  # rd_eval.routing.shards.SHARD_PATTERN's shards
SAMPLES_INFIX = "_samples_"
SAMPLES_SUFFIX = ".jsonl"
SAMPLE_COLUMNS = ("task", "form", "pair_id", "doc_id", "correct", "pred", "answer", "error", "model", "model_args")


@dataclass(frozen=True)
class RunRecord:
    """One lmms-eval run: its results json and the samples files written alongside it."""

    results_path: Path
    timestamp: str
    model: str
    model_args: str
    tasks: tuple[str, ...]
    samples: Mapping[str, Path]


def _model_args_str(value: Any) -> str:
    # The CLI stores a "k=v,k=v" string; the Python API may have been given a dict.
    if value is None:
        return ""
    if isinstance(value, Mapping):
        return ",".join(f"{k}={v}" for k, v in value.items())
    return str(value)


def read_run(results_path: Path) -> RunRecord:
    """Parse one ``<date_id>_results.json`` and match its samples files by the same ``date_id``."""
    results_path = Path(results_path)
    if not results_path.is_file():
        raise ValueError(f"lmms-eval results file not found: {results_path}")
    if not results_path.name.endswith(RESULTS_SUFFIX) or len(results_path.name) == len(RESULTS_SUFFIX):
        raise ValueError(
            f"{results_path}: not an lmms-eval results file; expected a name like "
            f"'20250101_120000{RESULTS_SUFFIX}'"
        )
    try:
        data = json.loads(results_path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise ValueError(f"{results_path}: corrupt lmms-eval results json ({err})") from err
    if not isinstance(data, dict):
        raise ValueError(f"{results_path}: expected a JSON object at top level, got {type(data).__name__}")
    for key in ("results", "config"):
        if not isinstance(data.get(key), dict):
            raise ValueError(
                f"{results_path}: missing or invalid '{key}' object; not an lmms-eval results json "
                f"(top-level keys: {sorted(data)})"
            )
    config = data["config"]
    model = config.get("model") or data.get("model_name") or ""
    timestamp = results_path.name[: -len(RESULTS_SUFFIX)]

    prefix = f"{timestamp}{SAMPLES_INFIX}"
    samples: dict[str, Path] = {}
    for path in sorted(results_path.parent.glob(f"{prefix}*{SAMPLES_SUFFIX}")):
        task = path.name[len(prefix) : -len(SAMPLES_SUFFIX)]
        if task and path.is_file():
            samples[task] = path

    # Samples are written per entry of "configs"; "results" also lists groups, so prefer configs.
    configs = data.get("configs")
    tasks = list(configs) if isinstance(configs, dict) and configs else list(data["results"])
    tasks += [t for t in samples if t not in tasks]
    return RunRecord(
        results_path=results_path,
        timestamp=timestamp,
        model=str(model),
        model_args=_model_args_str(config.get("model_args")),
        tasks=tuple(tasks),
        samples=MappingProxyType(samples),
    )


def unfinished_run_message(folders: Sequence[Path]) -> str:
    """One line on routing shards that have no lmms-eval results: what happened and what to do."""
    shown = str(folders[0]) + (f" and {len(folders) - 1} more folder(s)" if len(folders) > 1 else "")
    return (
        f"routing records found ({shown}) but no lmms-eval results (*{RESULTS_SUFFIX}) for them: that lmms-eval "
        f"run did not finish (killed, or stopped by an error: its log says which). Rerun it with the same "
        f"--output_path; lmms-eval keeps a stopped run's answers only if it ran with --use_cache PATH: rerun with "
        f"the same PATH and LMMS_CACHE_RUN_ID set to the stopped run's folder name under PATH/runs/ to reuse them"
    )


def find_runs(root: Path) -> list[RunRecord]:
    """Every lmms-eval run under ``root``, sorted by timestamp then path.

    ``root`` may be one ``--output_path``, a folder holding several, a model subfolder, or a
    single ``*_results.json``. Each results json is one run.
    """
    root = Path(root)
    if root.is_file():
        return [read_run(root)]
    if not root.is_dir():
        raise ValueError(f"run folder not found: {root}")
    paths = sorted(p for p in root.rglob(f"*{RESULTS_SUFFIX}") if p.is_file())
    if not paths:
        shards = sorted({p.parent for p in root.rglob(ROUTING_SHARD_GLOB) if p.is_file()})
        if shards:
            raise ValueError(f"{root}: {unfinished_run_message(shards)}")
        raise ValueError(
            f"no lmms-eval results (*{RESULTS_SUFFIX}) found under {root}; pass the folder given to "
            f"lmms-eval --output_path"
        )
    runs = [read_run(p) for p in paths]
    return sorted(runs, key=lambda r: (r.timestamp, str(r.results_path)))


def _as_correct(value: Any) -> int | None:
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, numbers.Real) and float(value) in (0.0, 1.0):
        return int(value)
    return None


def _parse_metric(
    entry: Any, *, where: str, metric: str
) -> tuple[str, str, int | None, Any, Any, str | None]:
    if not isinstance(entry, dict):
        raise ValueError(
            f"{where}: '{metric}' must be a dict with pair_id/form/correct (from the task's "
            f"process_results), got {type(entry).__name__}"
        )
    missing = [k for k in ("pair_id", "form", "correct") if k not in entry]
    if missing:
        raise ValueError(f"{where}: '{metric}' dict lacks {missing}; has {sorted(entry)}")
    pair_id = entry["pair_id"]
    if isinstance(pair_id, bool) or not isinstance(pair_id, (str, int)) or str(pair_id) == "":
        raise ValueError(f"{where}: '{metric}.pair_id' must be a non-empty string, got {pair_id!r}")
    form = entry["form"]
    if form not in PAIRED_FORMS:
        raise ValueError(f"{where}: '{metric}.form' must be one of {list(PAIRED_FORMS)}, got {form!r}")
    error = entry.get("error")
    if error is not None and (not isinstance(error, str) or not error):
        raise ValueError(
            f"{where}: '{metric}.error' must be null or a non-empty string (the reason the doc could not "
            f"be run), got {error!r}"
        )
    if error is not None:
        if entry["correct"] is not None:
            raise ValueError(
                f"{where}: '{metric}' is marked as an error ({error!r}) but has 'correct' "
                f"{entry['correct']!r}; an error doc must have 'correct' null"
            )
        return str(pair_id), form, None, entry.get("pred"), entry.get("answer"), error
    if entry["correct"] is None:
        raise ValueError(
            f"{where}: '{metric}.correct' is null but '{metric}.error' gives no reason; only a doc marked "
            f"as an error may be left unscored"
        )
    correct = _as_correct(entry["correct"])
    if correct is None:
        raise ValueError(f"{where}: '{metric}.correct' must be 0 or 1, got {entry['correct']!r}")
    return str(pair_id), form, correct, entry.get("pred"), entry.get("answer"), None


def load_paired_samples(run: RunRecord, metric: str = "rd_acc") -> pd.DataFrame:
    """All logged samples of ``run`` as one row per doc.

    Columns: task, form, pair_id, doc_id, correct, pred, answer, error, model, model_args.
    ``correct`` is a nullable ``Int64`` column: 0/1 for scored docs, <NA> exactly for error rows,
    whose ``error`` holds the reason (None for scored docs). Error rows are kept so that pairing
    can report them; they must never be averaged in as wrong answers.
    Raises ValueError naming the file and line for anything that is not a paired sample.
    """
    if not run.samples:
        raise ValueError(
            f"{run.results_path}: no samples files '{run.timestamp}{SAMPLES_INFIX}<task>{SAMPLES_SUFFIX}' "
            f"next to it; rerun lmms-eval with --log_samples"
        )
    rows: list[dict[str, Any]] = []
    for task in sorted(run.samples):
        if is_auxiliary(task):
            continue  # perception and transcription tasks run beside the pairs; they carry no answers
        for where, sample in jsonl_objects(Path(run.samples[task]), "samples file", f"task {task!r}"):
            if metric not in sample:
                raise ValueError(
                    f"{where}: no '{metric}' key; is task {task!r} a paired rd task? "
                    f"keys present: {sorted(sample)}"
                )
            if "doc_id" not in sample:
                raise ValueError(f"{where}: no 'doc_id' key; keys present: {sorted(sample)}")
            pair_id, form, correct, pred, answer, error = _parse_metric(
                sample[metric], where=where, metric=metric
            )
            rows.append(
                {
                    "task": task,
                    "form": form,
                    "pair_id": pair_id,
                    "doc_id": sample["doc_id"],
                    "correct": correct,
                    "pred": pred,
                    "answer": answer,
                    "error": error,
                    "model": run.model,
                    "model_args": run.model_args,
                }
            )
    # object dtype keeps a missing pred as None (pandas' inferred string dtype would turn it into NaN).
    columns = {col: pd.Series([r[col] for r in rows], dtype=object) for col in SAMPLE_COLUMNS}
    df = pd.DataFrame(columns)
    df["correct"] = pd.array([pd.NA if c is None else c for c in df["correct"]], dtype="Int64")
    if all(isinstance(v, int) and not isinstance(v, bool) for v in df["doc_id"]):
        df["doc_id"] = df["doc_id"].astype("int64")
    return df
