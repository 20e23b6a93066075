"""`rd-eval check`: a CI regression gate comparing one lmms-eval run with a stored baseline.

Baseline JSON (``format: "rd-eval.baseline"``, ``version: 1``)::

    {"format": "rd-eval.baseline", "version": 1, "model": "<lmms-eval model id>", "model_args": "k=v,...",
     "checkpoint": "...", "intervention": "none", "sources": ["<results json>", ...],
     "tasks": {"<task>": {"accuracy": <percent>, "n": <scored docs>, "n_errors": <error docs>,
                          "docs": {"<pair_id>": {"doc_id": <int>, "correct": 0 | 1 | null}}}}}

``docs`` is optional (a hand-written baseline may give only ``accuracy`` and ``n``); ``correct`` null marks a
doc the model could not run (never scored). The gate compares

- per task: accuracy of the run minus the baseline. With per-doc data on both sides the comparison uses the
  pair_ids scored on both sides and a drop counts only when it exceeds ``max_drop`` points **and** the exact
  McNemar test on those items gives p < ``alpha``; without per-doc data the drop alone decides;
- per benchmark (both ``_img`` and ``_txt`` tasks present): the gap txt - img over pairs complete on both sides;
  a widening beyond ``max_drop`` points counts when the exact sign test (McNemar's exact binomial on the pairs
  whose gap moved up vs down) gives p < ``alpha``.

Bad input raises :class:`CheckInputError` naming the file/key/value and what is valid.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from rd_eval.analysis.regressions import (
    Comparison,
    comparison_notes,
    gap_comparison,
    pair_gaps,
    summary_comparison,
    task_comparison,
)
from rd_eval.fileio.jsonio import JsonFileError, read_json, write_json_atomic
from rd_eval.rendering.mdtable import md_row
from rd_eval.reports.catalogue import CatalogueError, open_catalogue
from rd_eval.routing.records import checkpoint_label
from rd_eval.vocabulary.model_args import parse_model_args, pretrained_of
from rd_eval.vocabulary.task_names import benchmark_of, task_of

__all__ = [
    "BASELINE_FORMAT",
    "BASELINE_VERSION",
    "CheckInputError",
    "CheckResult",
    "Comparison",
    "baseline_from_run",
    "check_run",
    "load_baseline",
    "to_markdown",
    "write_baseline",
]

BASELINE_FORMAT = "rd-eval.baseline"
BASELINE_VERSION = 1
DEFAULT_MAX_DROP = 1.0
DEFAULT_ALPHA = 0.05


class CheckInputError(ValueError):
    """A run or baseline that cannot be checked; the message names the file/key and what is valid."""


@dataclass(frozen=True)
class CheckResult:
    run_dir: str
    baseline_path: str
    max_drop: float
    alpha: float
    comparisons: tuple[Comparison, ...]
    notes: tuple[str, ...]

    @property
    def regressions(self) -> tuple[Comparison, ...]:
        return tuple(c for c in self.comparisons if c.regressed)

    @property
    def ok(self) -> bool:
        return not self.regressions


# ---------------------------------------------------------------------------------------------------------
# Reading the run


@dataclass(frozen=True)
class _Run:
    model: str
    model_args: str
    checkpoint: str
    intervention: str
    sources: tuple[str, ...]
    samples: pd.DataFrame


def _read_run(run_dir: Path) -> _Run:
    try:
        catalogue = open_catalogue([Path(run_dir)])
        settings = catalogue.settings
        if len(settings) != 1:
            keys = ", ".join(s.key for s in settings)
            raise CheckInputError(
                f"{run_dir}: holds runs of {len(settings)} settings ({keys}); check one model/checkpoint/intervention "
                f"at a time: pass the --output_path of a single lmms-eval run"
            )
        setting = settings[0]
        samples = catalogue.samples(setting).frame
    except CatalogueError as exc:
        raise CheckInputError(str(exc)) from None
    last = setting.runs[-1]
    return _Run(
        model=setting.model_id,
        model_args=last.model_args,
        checkpoint=setting.checkpoint,
        intervention=setting.intervention,
        sources=tuple(str(r.results_path) for r in setting.runs),
        samples=samples,
    )


def _task_docs(samples: pd.DataFrame) -> dict[str, dict[str, dict[str, Any]]]:
    out: dict[str, dict[str, dict[str, Any]]] = {}
    for task, pair_id, doc_id, correct in zip(
        samples["task"], samples["pair_id"], samples["doc_id"], samples["correct"], strict=True
    ):
        value = None if correct is pd.NA or correct is None else int(correct)
        out.setdefault(str(task), {})[str(pair_id)] = {"doc_id": int(doc_id), "correct": value}
    return out


def _accuracy(docs: Mapping[str, Mapping[str, Any]]) -> tuple[float, int, int]:
    scored = [d["correct"] for d in docs.values() if d["correct"] is not None]
    acc = float(np.mean(scored) * 100.0) if scored else math.nan
    return acc, len(scored), len(docs) - len(scored)


def baseline_from_run(run_dir: Path) -> dict[str, Any]:
    """The baseline dict of the run under ``run_dir`` (one setting, with ``--log_samples``)."""
    run = _read_run(Path(run_dir))
    tasks: dict[str, Any] = {}
    for task, docs in sorted(_task_docs(run.samples).items()):
        acc, n, n_err = _accuracy(docs)
        if n == 0:
            raise CheckInputError(f"{run_dir}: task {task!r} has no scored doc (all {n_err} are errors); no baseline")
        tasks[task] = {"accuracy": round(acc, 6), "n": n, "n_errors": n_err, "docs": dict(sorted(docs.items()))}
    return {
        "format": BASELINE_FORMAT,
        "version": BASELINE_VERSION,
        "model": run.model,
        "model_args": run.model_args,
        "checkpoint": run.checkpoint,
        "intervention": run.intervention,
        "sources": list(run.sources),
        "tasks": tasks,
    }


def write_baseline(run_dir: Path, path: Path) -> Path:
    return write_json_atomic(path, baseline_from_run(run_dir))


# ---------------------------------------------------------------------------------------------------------
# Reading the baseline


def _bad(path: Path, key: str, value: Any, valid: str) -> CheckInputError:
    return CheckInputError(f"{path}: baseline key {key!r} is {value!r}; expected {valid}")


def load_baseline(path: Path) -> dict[str, Any]:
    """A validated baseline dict; raises CheckInputError naming the file and key."""
    path = Path(path)
    try:
        data = read_json(path)
    except JsonFileError as exc:
        raise CheckInputError(f"baseline {exc}") from None
    if not isinstance(data, dict):
        raise CheckInputError(f"{path}: expected a JSON object (an rd-eval baseline), got {type(data).__name__}")
    if data.get("format") != BASELINE_FORMAT:
        raise _bad(path, "format", data.get("format"), repr(BASELINE_FORMAT))
    if data.get("version") != BASELINE_VERSION:
        raise _bad(path, "version", data.get("version"), f"{BASELINE_VERSION} (the version this rd-eval reads)")
    for key in ("model", "model_args"):
        if not isinstance(data.get(key), str):
            raise _bad(path, key, data.get(key), "a string")
    tasks = data.get("tasks")
    if not isinstance(tasks, dict) or not tasks:
        raise _bad(path, "tasks", tasks, "a non-empty object of task name -> {accuracy, n, docs}")
    for task, entry in tasks.items():
        where = f"tasks.{task}"
        if not isinstance(entry, dict):
            raise _bad(path, where, entry, "an object with accuracy, n and optional docs")
        acc = entry.get("accuracy")
        if isinstance(acc, bool) or not isinstance(acc, (int, float)) or not 0.0 <= float(acc) <= 100.0:
            raise _bad(path, f"{where}.accuracy", acc, "a number of percent in [0, 100]")
        n = entry.get("n")
        if isinstance(n, bool) or not isinstance(n, int) or n < 0:
            raise _bad(path, f"{where}.n", n, "a non-negative integer")
        docs = entry.get("docs")
        if docs is None:
            continue
        if not isinstance(docs, dict):
            raise _bad(path, f"{where}.docs", type(docs).__name__, "an object of pair_id -> {doc_id, correct}")
        for pair_id, doc in docs.items():
            if not isinstance(doc, dict) or doc.get("correct") not in (0, 1, None) or isinstance(doc.get("correct"),
                                                                                                  float):
                raise _bad(path, f"{where}.docs.{pair_id}", doc, "{'doc_id': int, 'correct': 0, 1 or null}")
    return data


# ---------------------------------------------------------------------------------------------------------
# Comparing


def _outcomes(docs: Mapping[str, Mapping[str, Any]]) -> dict[str, int]:
    return {str(pid): int(d["correct"]) for pid, d in docs.items() if d.get("correct") is not None}


def _identity_differences(baseline: Mapping[str, Any], run: _Run, path: Path) -> list[str]:
    """What makes the run another model than the baseline's: model id, checkpoint, intervention setting."""
    checkpoint = baseline.get("checkpoint")
    if not isinstance(checkpoint, str) or not checkpoint:  # a hand-written baseline: its model_args name it
        try:
            pretrained = pretrained_of(parse_model_args(baseline["model_args"]))
        except ValueError as exc:
            raise _bad(path, "model_args", baseline["model_args"], f"lmms-eval model_args ({exc})") from None
        checkpoint = checkpoint_label(pretrained) if pretrained else None
    pairs = [("model", baseline["model"], run.model), ("checkpoint", checkpoint, run.checkpoint),
             ("intervention", baseline.get("intervention"), run.intervention)]
    return [f"{key} differs: baseline {b!r}, run {r!r}" for key, b, r in pairs if b is not None and b != r]


def check_run(
    run_dir: Path, baseline_path: Path, *, max_drop: float = DEFAULT_MAX_DROP, alpha: float = DEFAULT_ALPHA,
    allow_other_model: bool = False,
) -> CheckResult:
    """Compare the run under ``run_dir`` with the baseline file; see the module doc for the rule.

    A baseline of another model id, checkpoint or intervention setting is refused unless
    ``allow_other_model`` says the comparison is intended (the differences are then listed as notes).
    """
    if isinstance(max_drop, bool) or not isinstance(max_drop, (int, float)) or not 0 <= max_drop < math.inf:
        raise CheckInputError(f"--max-drop {max_drop!r} invalid; need a finite number of points >= 0")
    if isinstance(alpha, bool) or not isinstance(alpha, (int, float)) or not 0 < alpha <= 1:
        raise CheckInputError(f"--alpha {alpha!r} invalid; need a significance level in (0, 1]")
    baseline = load_baseline(Path(baseline_path))
    run = _read_run(Path(run_dir))
    run_docs = _task_docs(run.samples)
    b_tasks: dict[str, Any] = baseline["tasks"]
    if set(run_docs) != set(b_tasks):
        missing = sorted(set(b_tasks) - set(run_docs))
        extra = sorted(set(run_docs) - set(b_tasks))
        raise CheckInputError(
            f"{run_dir}: tasks differ from baseline {baseline_path}: missing from the run {missing}, not in the "
            f"baseline {extra}; run exactly the baseline's tasks {sorted(b_tasks)} or write a new baseline"
        )
    differences = _identity_differences(baseline, run, Path(baseline_path))
    if differences and not allow_other_model:
        raise CheckInputError(
            f"{run_dir}: not the baseline's model ({'; '.join(differences)}) in {baseline_path}; compare with "
            "the baseline of this model, or pass --allow-other-model if this comparison is intended"
        )
    notes: list[str] = list(differences)
    comparisons: list[Comparison] = []
    run_out = {t: _outcomes(d) for t, d in run_docs.items()}
    base_out = {t: _outcomes(e["docs"]) for t, e in b_tasks.items() if e.get("docs") is not None}

    for task in sorted(b_tasks):
        if task in base_out:
            compared = task_comparison(task, base_out[task], run_out[task], max_drop=max_drop, alpha=alpha)
            if compared is None:
                raise CheckInputError(
                    f"{run_dir}: task {task!r} shares no scored pair_id with baseline {baseline_path}; "
                    f"was it run on the same data?"
                )
            comparisons.append(compared)
        else:
            r_acc, n, _ = _accuracy(run_docs[task])
            comparisons.append(summary_comparison("task", task, float(b_tasks[task]["accuracy"]), r_acc, n,
                                                  max_drop=max_drop))

    benchmarks = sorted({benchmark_of(t) for t in b_tasks if benchmark_of(t) != t})
    for bench in benchmarks:
        img, txt = task_of(bench, "img"), task_of(bench, "txt")
        if not (img in b_tasks and txt in b_tasks):
            continue
        if img in base_out and txt in base_out:
            compared = gap_comparison(bench, pair_gaps(base_out, bench), pair_gaps(run_out, bench),
                                      max_drop=max_drop, alpha=alpha)
            if compared is None:
                notes.append(f"{bench}: no pair complete on both sides; gap not compared")
            else:
                comparisons.append(compared)
        else:
            b_gap = float(b_tasks[txt]["accuracy"]) - float(b_tasks[img]["accuracy"])
            r_gap = _accuracy(run_docs[txt])[0] - _accuracy(run_docs[img])[0]
            comparisons.append(summary_comparison("gap", bench, b_gap, r_gap, 0, max_drop=max_drop))

    notes += comparison_notes(comparisons, max_drop=max_drop, alpha=alpha)
    return CheckResult(str(run_dir), str(baseline_path), float(max_drop), float(alpha), tuple(comparisons),
                       tuple(notes))


def _table(rows: Sequence[Comparison]) -> list[str]:
    out = ["| kind | name | baseline | run | change (pts) | n | McNemar p |", "|---|---|---|---|---|---|---|"]
    for c in rows:
        p = "" if c.p_value is None else f"{c.p_value:.3g}"
        out.append(md_row([c.kind, c.name, f"{c.baseline:.1f}", f"{c.run:.1f}", f"{c.run - c.baseline:+.1f}",
                           c.n, p]))
    return out


def to_markdown(result: CheckResult) -> str:
    """The verdict: the regressions table when there are any, then the notes."""
    tasks = sum(c.kind == "task" for c in result.comparisons)
    gaps = len(result.comparisons) - tasks
    head = (f"rd-eval check: {result.run_dir} vs {result.baseline_path}: {tasks} task(s), {gaps} gap(s) compared "
            f"(max drop {result.max_drop:g} pts, alpha {result.alpha:g})")
    lines = [head]
    if result.ok:
        lines.append("PASS: no regression")
    else:
        lines += [f"FAIL: {len(result.regressions)} regression(s)", ""] + _table(result.regressions)
    if result.notes:
        lines += [""] + [f"note: {n}" for n in result.notes]
    return "\n".join(lines) + "\n"
