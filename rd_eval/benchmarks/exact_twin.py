"""Exact twins (docs/design.md §5.2): a text benchmark rendered into an image by our deterministic renderer, paired with
its original text, plus a perception task that asks for a transcription of the same image (§3.2).

:class:`ExactTwin` holds a text benchmark's settings and is its :class:`~rd_eval.benchmarks.task.PairedDocs`;
:func:`exact_twin_task` makes its tasks on the one task layer (:class:`~rd_eval.benchmarks.task.PairedTask`),
with the perception task's callables (``rd_<b>_see``) as auxiliary exports. GSM8K and MATH-500
(:mod:`rd_eval.benchmarks.gsm8k`, :mod:`rd_eval.benchmarks.math500`) and any later text benchmark share it.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from PIL import Image

from rd_eval.benchmarks.prompts import with_affixes
from rd_eval.benchmarks.task import Doc, Kwargs, PairedTask
from rd_eval.data.provenance import with_record
from rd_eval.data.sources import DataSource, content_pair_id, declaration, load_split, local_path
from rd_eval.scoring.doc_errors import error_reason
from rd_eval.scoring.item import Gold, first_response
from rd_eval.twins.perception import DEFAULT_SEEN_THRESHOLD, check_threshold, judge_transcript, similarity
from rd_eval.twins.render import displayable_text, render_twin

if TYPE_CHECKING:
    import datasets

PLACEHOLDER_KEY = "rd_eval_placeholder"  # the one column of a task's placeholder.jsonl (never a doc)
SEEN_METRIC = "rd_seen"
SIMILARITY_METRIC = "rd_similarity"
log = logging.getLogger(__name__)


def mean_seen(items: Sequence[Mapping[str, Any]]) -> float:
    """Fraction seen over judged items (error items skipped); 0.0 if none."""
    flags = [item["seen"] for item in items if item["seen"] is not None]
    bad = [f for f in flags if f not in (0, 1)]
    if bad:
        raise ValueError(f"'seen' must be 0, 1 or None (error) in every rd_seen item, got {bad[:5]!r}")
    return sum(flags) / len(flags) if flags else 0.0


def mean_similarity(items: Sequence[float | None]) -> float:
    """Mean similarity over judged docs (None = error doc, skipped); 0.0 if none."""
    values = [float(v) for v in items if v is not None]
    return sum(values) / len(values) if values else 0.0


@dataclass(frozen=True)
class ExactTwin:
    """One text benchmark as exact twins: its data, how a record becomes a doc, its prompts and answer type."""

    benchmark: str
    source: DataSource
    to_doc: Callable[[Mapping[str, Any], str], dict[str, Any]]  # (record, where) -> doc with pair_id
    source_key: str  # the problem text: rendered in the image form, verbatim in the text twin
    target_key: str  # the gold final answer
    answer_type: str
    img_lead: str
    txt_lead: str
    instruction: str
    see_prompt: str

    # -- docs -----------------------------------------------------------------------------------------------
    def load(self, form: str | None, placeholder: datasets.Dataset) -> datasets.Dataset:
        """Swap the placeholder split for the real one (Hub at the benchmark's revision, or RD_EVAL_DATA_DIR
        when set), with the record of its source in column ``rd_data_source``; the same for every ``form``.

        An exact repeat of an earlier problem is dropped (logged): one problem is one pair.
        """
        import datasets

        if PLACEHOLDER_KEY not in placeholder.column_names:
            raise ValueError(f"rd_{self.benchmark} expects its placeholder split (column {PLACEHOLDER_KEY!r}), got "
                             f"columns {placeholder.column_names}; point dataset_kwargs.data_files at "
                             "placeholder.jsonl")
        docs: list[dict[str, Any]] = []
        ids: set[str] = set()
        loaded = load_split(self.source)
        for i, record in enumerate(loaded.dataset):
            doc = self.to_doc(record, f"{self.benchmark} record {i}")
            if doc["pair_id"] in ids:
                log.warning("%s record %d repeats an earlier problem (%s); dropped", self.benchmark, i,
                            doc["pair_id"])
                continue
            ids.add(doc["pair_id"])
            docs.append(doc)
        return with_record(datasets.Dataset.from_list(docs), loaded.record)

    def declare(self) -> dict[str, Any]:
        """The source the tasks declare (``metadata.rd_data_source``), checked when a ``utils.py`` binds them:
        lmms-eval imports it while it reads the task YAML, before its dataset loading (which retries every error
        for ~10 s and then reports only "RetryError"). With RD_EVAL_DATA_DIR set, the file must be there; a bad
        RD_EVAL_DATASET_REVISIONS fails here too."""
        local_path(self.source.benchmark, self.source.relative)
        return declaration(self.source.benchmark, self.source.hub.path, self.source.benchmark)

    # -- PairedDocs -----------------------------------------------------------------------------------------
    def visual(self, doc: Doc) -> list[Image.Image]:
        return [render_twin(doc[self.source_key])]

    def prompt(self, doc: Doc, form: str, kwargs: Kwargs) -> str:
        if form == "img":
            return with_affixes(f"{self.img_lead}\n{self.instruction}", kwargs)
        return with_affixes(f"{self.txt_lead}\n\n{doc[self.source_key]}\n\n{self.instruction}", kwargs)

    def target(self, doc: Doc) -> str:
        return doc[self.target_key]

    def gold(self, doc: Doc) -> Gold:
        return Gold(doc[self.target_key], self.answer_type)

    # -- perception (the _see task): metric functions lmms-eval calls with the YAML's metric kwargs ----------
    def doc_to_text_see(self, doc: Doc, lmms_eval_specific_kwargs: Kwargs = None) -> str:
        return with_affixes(self.see_prompt, lmms_eval_specific_kwargs)

    def doc_to_target_see(self, doc: Doc) -> str:
        """The source text: the reference a transcription is judged against (pair_id is derived from it)."""
        return doc[self.source_key]

    def seen_item(self, reference: str, transcript: str, threshold: float = DEFAULT_SEEN_THRESHOLD) -> dict[str, Any]:
        """The rd_seen record of one doc: judged against the text the image shows (``displayable_text``)."""
        pair_id = content_pair_id(self.benchmark, reference)
        reason = error_reason(transcript)
        if reason is not None:
            return {"pair_id": pair_id, "seen": None, "similarity": None, "missing_numbers": None,
                    "threshold": check_threshold(threshold), "error": reason}
        p = judge_transcript(displayable_text(reference), transcript, threshold)
        return {"pair_id": pair_id, "seen": int(p.seen), "similarity": p.similarity,
                "missing_numbers": list(p.missing_numbers), "threshold": p.threshold, "error": None}

    def rd_seen(self, references: Sequence[str], predictions: Sequence[str],
                threshold: float = DEFAULT_SEEN_THRESHOLD) -> dict[str, dict[str, Any]]:
        return {SEEN_METRIC: self.seen_item(references[0], first_response(predictions), threshold)}

    def rd_similarity(self, references: Sequence[str], predictions: Sequence[str]) -> dict[str, float | None]:
        transcript = first_response(predictions)
        if error_reason(transcript) is not None:
            return {SIMILARITY_METRIC: None}
        return {SIMILARITY_METRIC: similarity(displayable_text(references[0]), transcript)}


def exact_twin_task(twin: ExactTwin) -> PairedTask:
    """The tasks of ``twin``: its two forms, and the perception task ``rd_<b>_see`` (auxiliary exports)."""
    perception = {
        "doc_to_text_see": twin.doc_to_text_see, "doc_to_target_see": twin.doc_to_target_see,
        "rd_seen": twin.rd_seen, "rd_similarity": twin.rd_similarity,
        "mean_seen": mean_seen, "mean_similarity": mean_similarity,
    }
    return PairedTask(name=twin.benchmark, docs=twin, declare=twin.declare, load=twin.load, shared_docs=True,
                      auxiliary=perception)
