"""Exact twins (DESIGN §5): a text benchmark rendered into an image by our deterministic renderer, paired with
its original text, plus a perception task that asks for a transcription of the same image (§3.2).

One `ExactTwin` holds a benchmark's settings; its methods are the lmms-eval callables the task YAMLs name
(`!function utils.<name>`, where the task's `utils.py` binds them), so GSM8K, MATH-500 and any later text
benchmark share one implementation.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypeAlias

from PIL import Image

from rd_eval.data.provenance import ITEM_KEY, item_source, with_record
from rd_eval.data.sources import DataSource, content_pair_id, load_split
from rd_eval.scoring.answers import extract_answer, is_correct
from rd_eval.scoring.doc_errors import error_reason
from rd_eval.twins.perception import DEFAULT_SEEN_THRESHOLD, check_threshold, judge_transcript, similarity
from rd_eval.twins.render import displayable_text, render_twin

Doc: TypeAlias = Mapping[str, Any]
Kwargs: TypeAlias = Mapping[str, Any] | None
PLACEHOLDER_KEY = "rd_eval_placeholder"  # the one column of a task's placeholder.jsonl (never a doc)
FORMS: tuple[str, ...] = ("img", "txt")
log = logging.getLogger(__name__)


def _affix(body: str, kwargs: Kwargs) -> str:
    kwargs = kwargs or {}
    return f"{kwargs.get('pre_prompt', '')}{body}{kwargs.get('post_prompt', '')}"


def _first(results: Sequence[str]) -> str:
    return results[0] if results else ""  # an empty generation scores as wrong, not as an error


def mean_correct(items: Sequence[Mapping[str, Any]]) -> float:
    """Fraction correct over scored items (error items, ``correct`` None, are skipped); 0.0 if none."""
    flags = [item["correct"] for item in items if item["correct"] is not None]
    bad = [f for f in flags if f not in (0, 1)]
    if bad:
        raise ValueError(f"'correct' must be 0, 1 or None (error) in every rd_acc item, got {bad[:5]!r}")
    return sum(flags) / len(flags) if flags else 0.0


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
    def process_docs(self, placeholder: Any) -> Any:
        """Swap the placeholder split for the real one (Hub at the benchmark's revision, or RD_EVAL_DATA_DIR
        when set), with the record of its source in column ``rd_data_source``.

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

    # -- prompts and visuals --------------------------------------------------------------------------------
    def doc_to_visual_img(self, doc: Doc) -> list[Image.Image]:
        return [render_twin(doc[self.source_key])]

    def doc_to_visual_txt(self, doc: Doc) -> list[Image.Image]:
        return []

    def doc_to_text_img(self, doc: Doc, lmms_eval_specific_kwargs: Kwargs = None) -> str:
        return _affix(f"{self.img_lead}\n{self.instruction}", lmms_eval_specific_kwargs)

    def doc_to_text_txt(self, doc: Doc, lmms_eval_specific_kwargs: Kwargs = None) -> str:
        return _affix(f"{self.txt_lead}\n\n{doc[self.source_key]}\n\n{self.instruction}", lmms_eval_specific_kwargs)

    def doc_to_text_see(self, doc: Doc, lmms_eval_specific_kwargs: Kwargs = None) -> str:
        return _affix(self.see_prompt, lmms_eval_specific_kwargs)

    def doc_to_target(self, doc: Doc) -> str:
        return doc[self.target_key]

    def doc_to_target_see(self, doc: Doc) -> str:
        """The source text: the reference a transcription is judged against (pair_id is derived from it)."""
        return doc[self.source_key]

    # -- scoring of the two forms (rd_acc) ------------------------------------------------------------------
    def score_response(self, doc: Doc, response: str, form: str) -> dict[str, Any]:
        """One rd_acc record, with the documents' data source; an error response (``rd_eval.scoring.doc_errors``) is
        recorded, never scored as wrong."""
        if form not in FORMS:
            raise ValueError(f"unknown form {form!r}; valid forms: {list(FORMS)}")
        answer = self.doc_to_target(doc)
        reason = error_reason(response)
        source = item_source(doc)
        if reason is not None:
            return {"pair_id": doc["pair_id"], "form": form, "correct": None, "pred": None, "answer": answer,
                    "error": reason, ITEM_KEY: source}
        return {"pair_id": doc["pair_id"], "form": form,
                "correct": int(is_correct(response, answer, self.answer_type)),
                "pred": extract_answer(response, self.answer_type), "answer": answer, "error": None,
                ITEM_KEY: source}

    def process_results_img(self, doc: Doc, results: Sequence[str]) -> dict[str, dict[str, Any]]:
        return {"rd_acc": self.score_response(doc, _first(results), "img")}

    def process_results_txt(self, doc: Doc, results: Sequence[str]) -> dict[str, dict[str, Any]]:
        return {"rd_acc": self.score_response(doc, _first(results), "txt")}

    # -- perception (the _see task): metric functions lmms-eval calls with the YAML's metric kwargs ----------
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
        return {"rd_seen": self.seen_item(references[0], _first(predictions), threshold)}

    def rd_similarity(self, references: Sequence[str], predictions: Sequence[str]) -> dict[str, float | None]:
        transcript = _first(predictions)
        if error_reason(transcript) is not None:
            return {"rd_similarity": None}
        return {"rd_similarity": similarity(displayable_text(references[0]), transcript)}
