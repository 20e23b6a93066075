"""The common document schema of the six paired benchmarks.

Every benchmark module (:mod:`rd_eval.benchmarks.mathvista` and the others) turns its dataset's records
into :class:`BenchDoc` values: one schema for all six, whatever the source (the Hugging Face dataset or a
local mirror under ``RD_EVAL_DATA_DIR``). Both forms of a pair are built from the same gold fields
(answer, answer type, choices, precision, tolerance), so they are scored by the same rule; only the carrier of the
image content differs: the image itself (image form) or text (text twin).

Documents reach lmms-eval as rows with the columns of :data:`TEXT_COLUMNS` plus, in image forms, an ``image``
column (:mod:`rd_eval.benchmarks.documents`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from rd_eval.scoring.answers import ANSWER_TYPES
from rd_eval.scoring.closeness import check_abs_tolerance
from rd_eval.scoring.item import Gold

TEXT_COLUMNS: tuple[str, ...] = (
    "pair_id", "benchmark", "source_id", "group_id", "variant", "question", "choices", "show_choices", "answer",
    "answer_type", "precision", "abs_tolerance",
)


@dataclass(frozen=True)
class BenchDoc:
    """One document of a paired benchmark, in the form-independent schema.

    ``pair_id`` is stable across forms (and across runs); ``question`` is the problem text of this form
    without the image content; ``answer``/``answer_type``/``choices``/``precision``/``abs_tolerance`` are what
    :func:`rd_eval.scoring.answers.is_correct` scores against (``abs_tolerance``: a number is right within
    this absolute error, DynaMath's rule). ``group_id`` groups documents scored together by a
    worst-case metric (DynaMath: the seed question; elsewhere the pair itself). ``show_choices`` False keeps
    ``choices`` for scoring only, where the options are already in the question text or in the image.
    ``image`` is a local file (documents from a local mirror) or None (Hugging Face documents carry their
    image column separately).
    """

    pair_id: str
    question: str
    answer: str
    answer_type: str
    benchmark: str
    choices: tuple[str, ...] = ()
    precision: int | None = None
    abs_tolerance: float | None = None
    show_choices: bool = True
    source_id: str = ""
    group_id: str = ""
    variant: int = 0
    image: str | None = field(default=None, compare=False)

    def __post_init__(self) -> None:
        if not self.pair_id:
            raise ValueError(f"{self.benchmark}: a document needs a non-empty pair_id")
        if self.answer_type not in ANSWER_TYPES:
            raise ValueError(f"{self.benchmark} {self.pair_id}: unknown answer_type {self.answer_type!r}; "
                             f"valid types: {list(ANSWER_TYPES)}")
        try:
            check_abs_tolerance(self.abs_tolerance)
        except ValueError as err:
            raise ValueError(f"{self.benchmark} {self.pair_id}: {err}") from None
        object.__setattr__(self, "choices", tuple(str(c) for c in self.choices))
        if not self.group_id:
            object.__setattr__(self, "group_id", self.pair_id)
        if not self.source_id:
            object.__setattr__(self, "source_id", self.pair_id)

    def row(self) -> dict[str, Any]:
        """The document as a dataset row (without the image)."""
        return {
            "pair_id": self.pair_id, "benchmark": self.benchmark, "source_id": self.source_id,
            "group_id": self.group_id, "variant": self.variant, "question": self.question,
            "choices": list(self.choices), "show_choices": self.show_choices, "answer": self.answer,
            "answer_type": self.answer_type, "precision": self.precision, "abs_tolerance": self.abs_tolerance,
        }

    @classmethod
    def from_row(cls, row: Mapping[str, Any]) -> BenchDoc:
        """Back from a dataset row as lmms-eval hands it to prompts and scoring."""
        missing = [c for c in TEXT_COLUMNS if c not in row]
        if missing:
            raise ValueError(f"not an rd-eval benchmark document: missing {missing}; has {sorted(row)}")
        precision, tolerance = row["precision"], row["abs_tolerance"]
        return cls(
            pair_id=str(row["pair_id"]), question=str(row["question"]), answer=str(row["answer"]),
            answer_type=str(row["answer_type"]), benchmark=str(row["benchmark"]),
            choices=tuple(row["choices"] or ()), precision=None if precision is None else int(precision),
            abs_tolerance=None if tolerance is None else float(tolerance),
            show_choices=bool(row["show_choices"]),
            source_id=str(row["source_id"]), group_id=str(row["group_id"]), variant=int(row["variant"] or 0),
        )


    @property
    def gold(self) -> Gold:
        """What both forms of the pair are judged against."""
        return Gold(self.answer, self.answer_type, self.choices, self.precision, self.abs_tolerance)
