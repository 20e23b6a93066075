"""The one lmms-eval task layer: a paired benchmark's tasks (image form ``rd_<b>_img``, text twin ``rd_<b>_txt``,
and any auxiliary task) as the callables their YAMLs name with ``!function utils.<name>``.

lmms-eval loads each task folder's ``utils.py`` by path, so a folder's ``utils.py`` only binds
:meth:`PairedTask.exports` into its namespace. What differs between benchmarks is how a document becomes a
prompt, a visual and a gold answer: a :class:`PairedDocs` (the six data sets: :mod:`rd_eval.benchmarks.six`;
exact twins: :mod:`rd_eval.benchmarks.exact_twin`; the demo: :mod:`rd_eval.benchmarks.demo`). Loading, scoring (one
:class:`~rd_eval.scoring.item.ScoredDoc` per document), the data-source record and the aggregations are here,
once.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from rd_eval.data.provenance import ITEM_KEY, item_source
from rd_eval.data.sources import LocalDataError
from rd_eval.scoring.item import (
    ACC_METRIC,
    WORST_METRIC,
    Gold,
    first_response,
    mean_correct,
    score_doc,
    worst_case_accuracy,
)
from rd_eval.vocabulary.task_names import PAIRED_FORMS

if TYPE_CHECKING:
    import datasets
    from PIL import Image

Doc = Mapping[str, Any]
Kwargs = Mapping[str, Any] | None
# (form, or None for documents every form shares; the placeholder split lmms-eval loaded) -> the documents
LoadDocs = Callable[[str | None, "datasets.Dataset"], "datasets.Dataset"]


class PairedDocs(Protocol):
    """How one benchmark's documents become prompts, visuals and gold answers."""

    def visual(self, doc: Doc) -> list[Image.Image]:
        """The image form's image(s) of ``doc``."""

    def prompt(self, doc: Doc, form: str, kwargs: Kwargs) -> str:
        """The text of ``doc`` in ``form`` (``img`` or ``txt``), with the task's affixes."""

    def target(self, doc: Doc) -> str:
        """The gold answer lmms-eval logs as the target."""

    def gold(self, doc: Doc) -> Gold:
        """What a response to ``doc`` is judged against (the same in both forms)."""


class TaskDataError(BaseException):
    """A task's documents cannot be built from its data: a file or image missing from the local mirror, a
    malformed record.

    A BaseException on purpose: lmms-eval retries every ``Exception`` raised while it loads a task's data
    (``ConfigurableTask.download``: 5 attempts over about 10 s, then a ``tenacity.RetryError`` that hides the
    message), and a data error would only fail the same way again. Like KeyboardInterrupt, a BaseException
    passes that retry (and lmms-eval's catch-all "Error during evaluation") at once, so the run stops when the
    task is built, with this message.
    """


@dataclass(frozen=True)
class PairedTask:
    """The tasks of one paired benchmark.

    ``docs_forms`` are the forms with their own ``process_docs_<form>`` (MathVerse adds ``vd_img``); with
    ``shared_docs`` one ``process_docs`` serves every task of the benchmark; with ``load`` None the YAML's
    data file is the documents (the demo). ``declare`` gives the data source the tasks declare
    (``DATA_SOURCE``), checking the settings it depends on when a ``utils.py`` binds the exports.
    ``carries_source`` adds each document's data-source record to its ``rd_acc`` item; ``worst_case`` adds
    the ``rd_worst`` item (DynaMath's worst case over variants); ``auxiliary`` are the callables of the
    benchmark's auxiliary tasks (transcription, perception), exported as they are.
    """

    name: str
    docs: PairedDocs
    declare: Callable[[], dict[str, Any]]
    load: LoadDocs | None = None
    docs_forms: tuple[str, ...] = PAIRED_FORMS
    shared_docs: bool = False
    carries_source: bool = True
    worst_case: bool = False
    auxiliary: Mapping[str, Any] = field(default_factory=dict)

    # -- documents ------------------------------------------------------------------------------------------
    def process_docs(self, form: str | None) -> Callable[[datasets.Dataset], datasets.Dataset]:
        """A ``process_docs`` that replaces the YAML's placeholder split with the documents of ``form`` (None:
        of every form)."""
        if self.load is None:
            raise ValueError(f"rd_{self.name}: the task's data file is its documents; there is no process_docs")
        load, task = self.load, f"rd_{self.name}" + ("" if form is None else f"_{form}")

        def process_docs(placeholder: datasets.Dataset) -> datasets.Dataset:
            try:
                return load(form, placeholder)
            except (LocalDataError, ValueError, KeyError) as err:
                raise TaskDataError(f"{task}: its documents cannot be built: {err}") from err

        process_docs.__name__ = "process_docs" if form is None else f"process_docs_{form}"
        return process_docs

    # -- visuals, prompts, target ---------------------------------------------------------------------------
    def doc_to_visual_img(self, doc: Doc) -> list[Image.Image]:
        return self.docs.visual(doc)

    def doc_to_visual_txt(self, doc: Doc) -> list[Any]:
        return []

    def doc_to_text_img(self, doc: Doc, lmms_eval_specific_kwargs: Kwargs = None) -> str:
        return self.docs.prompt(doc, "img", lmms_eval_specific_kwargs)

    def doc_to_text_txt(self, doc: Doc, lmms_eval_specific_kwargs: Kwargs = None) -> str:
        return self.docs.prompt(doc, "txt", lmms_eval_specific_kwargs)

    def doc_to_target(self, doc: Doc) -> str:
        return self.docs.target(doc)

    # -- scoring --------------------------------------------------------------------------------------------
    def score(self, doc: Doc, results: Sequence[str], form: str) -> dict[str, dict[str, Any]]:
        """The metric items of one document: ``rd_acc`` (and ``rd_worst``) from its :class:`ScoredDoc`."""
        if form not in PAIRED_FORMS:
            raise ValueError(f"unknown form {form!r}; valid forms: {list(PAIRED_FORMS)}")
        item = score_doc(str(doc["pair_id"]), form, first_response(results), self.docs.gold(doc)).metric_item()
        if self.carries_source:
            item[ITEM_KEY] = item_source(doc)
        out = {ACC_METRIC: item}
        if self.worst_case:
            out[WORST_METRIC] = {**item, "group_id": str(doc["group_id"]), "variant": int(doc["variant"] or 0)}
        return out

    def process_results_img(self, doc: Doc, results: Sequence[str]) -> dict[str, dict[str, Any]]:
        return self.score(doc, results, "img")

    def process_results_txt(self, doc: Doc, results: Sequence[str]) -> dict[str, dict[str, Any]]:
        return self.score(doc, results, "txt")

    # -- what a task folder's utils.py binds ----------------------------------------------------------------
    def exports(self) -> dict[str, Any]:
        """The names the benchmark's YAMLs use (``!function utils.<name>``), bound to this task's callables."""
        out: dict[str, Any] = {
            "DATA_SOURCE": self.declare(),
            "doc_to_visual_img": self.doc_to_visual_img,
            "doc_to_visual_txt": self.doc_to_visual_txt,
            "doc_to_text_img": self.doc_to_text_img,
            "doc_to_text_txt": self.doc_to_text_txt,
            "doc_to_target": self.doc_to_target,
            "process_results_img": self.process_results_img,
            "process_results_txt": self.process_results_txt,
            "mean_correct": mean_correct,
        }
        if self.load is not None and self.shared_docs:
            out["process_docs"] = self.process_docs(None)
        elif self.load is not None:
            out.update({f"process_docs_{form}": self.process_docs(form) for form in self.docs_forms})
        if self.worst_case:
            out["worst_case_accuracy"] = worst_case_accuracy
        return {**out, **self.auxiliary}
