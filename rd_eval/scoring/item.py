"""One scored document: the typed value every rd task's ``process_results`` builds, and the metrics over them.

A :class:`ScoredDoc` is either judged (``correct`` True/False, ``pred`` the answer extracted from the
response: the very answer that was judged, read once) or unscored (``correct`` and ``pred`` None, ``error``
the reason the model could not run the document, :mod:`rd_eval.scoring.doc_errors`, or ``"unusable gold:
..."`` for a gold that cannot be read for its type, such as an empty one). :func:`score_doc` is the one
place that decides which: an error response or an unusable gold is never judged, so it is never counted
as wrong and never crashes the run.

:meth:`ScoredDoc.metric_item` is the ``rd_acc`` value lmms-eval logs per sample (``pair_id``, ``form``,
``correct``, ``pred``, ``answer``, ``error``; the task layer adds the documents' ``data_source``);
:mod:`rd_eval.lmms.runs` reads these fields back, so their names and order are a file format.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from rd_eval.scoring.answer_types import GoldError
from rd_eval.scoring.answers import ANSWER_TYPES, judge
from rd_eval.scoring.closeness import check_abs_tolerance
from rd_eval.scoring.doc_errors import error_reason

ACC_METRIC = "rd_acc"
UNUSABLE_GOLD = "unusable gold"
WORST_METRIC = "rd_worst"


@dataclass(frozen=True)
class Gold:
    """What a response is judged against: the gold answer, its type, the option texts, the decimal places and
    the absolute error allowed (both None unless the benchmark says so)."""

    answer: str
    answer_type: str
    choices: tuple[str, ...] = ()
    precision: int | None = None
    abs_tolerance: float | None = None  # DynaMath: right when |pred - gold| <= this

    def __post_init__(self) -> None:
        if self.answer_type not in ANSWER_TYPES:
            raise ValueError(f"unknown answer_type {self.answer_type!r}; valid types: {list(ANSWER_TYPES)}")
        check_abs_tolerance(self.abs_tolerance)


@dataclass(frozen=True)
class ScoredDoc:
    """The score of one document in one form; ``correct`` None is the explicit unscored (error) state."""

    pair_id: str
    form: str
    answer: str
    correct: bool | None
    pred: str | None
    error: str | None

    def __post_init__(self) -> None:
        if (self.correct is None) != (self.error is not None):
            raise ValueError(f"{self.pair_id}: a document is either judged (correct set, no error) or unscored "
                             f"(an error, correct None); got correct={self.correct!r}, error={self.error!r}")
        if self.correct is None and self.pred is not None:
            raise ValueError(f"{self.pair_id}: an unscored document has no extracted answer, got {self.pred!r}")

    @property
    def scored(self) -> bool:
        return self.correct is not None

    def metric_item(self) -> dict[str, Any]:
        """The logged ``rd_acc`` value (the task layer appends the documents' ``data_source`` where they carry one)."""
        return {"pair_id": self.pair_id, "form": self.form,
                "correct": None if self.correct is None else int(self.correct),
                "pred": self.pred, "answer": self.answer, "error": self.error}


def first_response(results: Sequence[str]) -> str:
    """The response lmms-eval hands ``process_results``; an empty generation scores as wrong, not as an error."""
    return results[0] if results else ""


def _judge_options(gold: Gold) -> dict[str, Any]:
    return {"precision": gold.precision, "abs_tolerance": gold.abs_tolerance}


def gold_problem(gold: Gold) -> str | None:
    """Why ``gold`` cannot be judged (its error names the answer and the valid forms), or None when it can.

    Benchmarks may call this when they build a document, to find an unusable gold before any model runs.
    """
    try:
        judge("", gold.answer, gold.answer_type, gold.choices, **_judge_options(gold))
    except GoldError as exc:
        return str(exc)
    return None


def score_doc(pair_id: str, form: str, response: str, gold: Gold) -> ScoredDoc:
    """The score of ``response``: unscored for an error response or an unusable gold, else the answer read
    from the response and its judgement, from one extraction."""
    reason = error_reason(response)
    if reason is None:
        try:
            pred, correct = judge(response, gold.answer, gold.answer_type, gold.choices, **_judge_options(gold))
        except GoldError as exc:
            reason = f"{UNUSABLE_GOLD}: {exc}"
        else:
            return ScoredDoc(pair_id=pair_id, form=form, answer=gold.answer, correct=correct, pred=pred, error=None)
    return ScoredDoc(pair_id=pair_id, form=form, answer=gold.answer, correct=None, pred=None, error=reason)


# ---------------------------------------------------------------------------------------------------------
# Aggregations (the YAMLs' ``aggregation: !function utils.<name>``)


def _flag(item: Mapping[str, Any]) -> int | None:
    value = item["correct"]
    if value is None:
        return None
    if isinstance(value, bool) or value not in (0, 1):
        raise ValueError(f"'correct' must be 0, 1 or None (error) in every rd_acc item, got {value!r}")
    return int(value)


def mean_correct(items: Sequence[Mapping[str, Any]]) -> float:
    """Fraction correct over the scored items; error items (``correct`` None) are skipped; 0.0 if none."""
    flags = [f for f in (_flag(item) for item in items) if f is not None]
    return sum(flags) / len(flags) if flags else 0.0


def worst_case_accuracy(items: Sequence[Mapping[str, Any]]) -> float:
    """DynaMath's worst-case accuracy: a question (``group_id``) counts as correct only if every variant
    of it that was run is correct. A question with an error item in any variant is left out (it cannot be
    judged); 0.0 when no question is left."""
    groups: dict[str, list[int | None]] = {}
    for item in items:
        if "group_id" not in item:
            raise ValueError(f"worst-case items need a 'group_id' (the question its variant belongs to); "
                             f"got keys {sorted(item)}")
        groups.setdefault(str(item["group_id"]), []).append(_flag(item))
    judged = [flags for flags in groups.values() if all(f is not None for f in flags)]
    if not judged:
        return 0.0
    return sum(1 for flags in judged if all(f == 1 for f in flags)) / len(judged)
