"""lmms-eval callables of rd_math500_img, rd_math500_txt and rd_math500_see (``!function utils.<name>``).

Exact twins of MATH-500: the image form is the problem text rendered by ``rd_eval.twins.render`` (same text,
same PNG bytes). LaTeX is not typeset: the image shows the LaTeX *source* exactly as the text twin has it
(``$\\frac{1}{2}$`` appears as those characters), and so do ``[asy]`` figure sources, so both forms carry the
same characters. Both forms get the same answer instruction. The perception task shows the same image and
asks for a transcription (DESIGN §3.2).

Data: lmms-eval loads only ``placeholder.jsonl``; :func:`process_docs` replaces it with the real split, from
the Hub (``HuggingFaceH4/MATH-500``, split ``test``) or, when ``RD_EVAL_DATA_DIR`` is set, from
``$RD_EVAL_DATA_DIR/math500/test.jsonl`` (see ``rd_eval.data_sources``).

lmms-eval loads this file by path, so it imports only from the installed ``rd_eval`` library.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Any, TypeAlias

from PIL import Image

from rd_eval.data_sources import DataSource, HubSplit, content_pair_id, load_split, local_path
from rd_eval.doc_errors import error_reason
from rd_eval.scoring import extract_answer, is_correct
from rd_eval.twins.perception import DEFAULT_SEEN_THRESHOLD, check_threshold, judge_transcript, similarity
from rd_eval.twins.render import displayable_text, render_twin

BENCHMARK = "math500"
SOURCE = DataSource(benchmark=BENCHMARK, relative="test.jsonl",
                    hub=HubSplit("HuggingFaceH4/MATH-500", None, "test"))
ANSWER_TYPE = "expression"
PLACEHOLDER_KEY = "rd_eval_placeholder"
SOURCE_KEY = "problem"  # the problem text: rendered in the image form, verbatim in the text twin

IMG_LEAD = "Solve the math problem shown in the image."
TXT_LEAD = "Solve the following math problem."
INSTRUCTION = "Reason step by step, then put the final answer in \\boxed{}."
SEE_PROMPT = (
    "Transcribe all of the text in the image exactly as written, keeping every number, symbol and LaTeX "
    "command as it appears (for example \\frac{1}{2} stays \\frac{1}{2}). Do not solve the problem. "
    "Reply with the transcription only."
)
FORMS: tuple[str, ...] = ("img", "txt")

# Fail fast: lmms-eval imports this file while it reads the task YAML, before its dataset loading (which retries
# every error for ~10 s and then reports only "RetryError"). With RD_EVAL_DATA_DIR set, the file must be there.
local_path(SOURCE.benchmark, SOURCE.relative)

Doc: TypeAlias = Mapping[str, Any]
Kwargs: TypeAlias = Mapping[str, Any] | None
log = logging.getLogger(__name__)


# --- docs ---------------------------------------------------------------------------------------------------


RECORD_KEYS: tuple[str, ...] = ("problem", "solution", "answer", "subject", "unique_id")


def to_doc(record: Mapping[str, Any], where: str) -> dict[str, Any]:
    """A source record (problem, solution, answer, subject, level, unique_id) plus ``pair_id``."""
    missing = [k for k in RECORD_KEYS if not isinstance(record.get(k), str)]
    if missing:
        raise ValueError(f"{where}: MATH-500 record lacks string field(s) {missing}; has {sorted(record)}")
    if not record["problem"].strip() or not record["answer"].strip():
        raise ValueError(f"{where}: MATH-500 record {record['unique_id']!r} has an empty problem or answer")
    level = record.get("level")
    if isinstance(level, bool) or not isinstance(level, int):
        raise ValueError(f"{where}: MATH-500 level must be an int, got {level!r}")
    return {"pair_id": content_pair_id(BENCHMARK, record["problem"]), **{k: record[k] for k in RECORD_KEYS},
            "level": level}


def process_docs(placeholder: Any) -> Any:
    """Swap the placeholder split for MATH-500's test split (Hub, or RD_EVAL_DATA_DIR when set).

    An exact repeat of an earlier problem is dropped (logged): one problem is one pair.
    """
    import datasets

    if PLACEHOLDER_KEY not in placeholder.column_names:
        raise ValueError(f"rd_math500 expects its placeholder split (column {PLACEHOLDER_KEY!r}), got columns "
                         f"{placeholder.column_names}; point dataset_kwargs.data_files at placeholder.jsonl")
    docs: list[dict[str, Any]] = []
    ids: set[str] = set()
    for i, record in enumerate(load_split(SOURCE)):
        doc = to_doc(record, where=f"{BENCHMARK} record {i}")
        if doc["pair_id"] in ids:
            log.warning("%s record %d repeats an earlier problem (%s); dropped", BENCHMARK, i, doc["pair_id"])
            continue
        ids.add(doc["pair_id"])
        docs.append(doc)
    return datasets.Dataset.from_list(docs)


# --- prompts and visuals ------------------------------------------------------------------------------------


def _affix(body: str, kwargs: Kwargs) -> str:
    kwargs = kwargs or {}
    return f"{kwargs.get('pre_prompt', '')}{body}{kwargs.get('post_prompt', '')}"


def doc_to_visual_img(doc: Doc) -> list[Image.Image]:
    return [render_twin(doc[SOURCE_KEY])]


def doc_to_visual_txt(doc: Doc) -> list[Image.Image]:
    return []


def doc_to_text_img(doc: Doc, lmms_eval_specific_kwargs: Kwargs = None) -> str:
    return _affix(f"{IMG_LEAD}\n{INSTRUCTION}", lmms_eval_specific_kwargs)


def doc_to_text_txt(doc: Doc, lmms_eval_specific_kwargs: Kwargs = None) -> str:
    return _affix(f"{TXT_LEAD}\n\n{doc[SOURCE_KEY]}\n\n{INSTRUCTION}", lmms_eval_specific_kwargs)


def doc_to_text_see(doc: Doc, lmms_eval_specific_kwargs: Kwargs = None) -> str:
    return _affix(SEE_PROMPT, lmms_eval_specific_kwargs)


def doc_to_target(doc: Doc) -> str:
    return doc["answer"]


def doc_to_target_see(doc: Doc) -> str:
    """The source text: the reference a transcription is judged against (pair_id is derived from it)."""
    return doc[SOURCE_KEY]


# --- scoring of the two forms (rd_acc) ------------------------------------------------------------------------


def score_response(doc: Doc, response: str, form: str) -> dict[str, Any]:
    """One rd_acc record; an error response (``rd_eval.doc_errors``) is recorded, never scored as wrong."""
    if form not in FORMS:
        raise ValueError(f"unknown form {form!r}; valid forms: {list(FORMS)}")
    answer = doc_to_target(doc)
    reason = error_reason(response)
    if reason is not None:
        return {"pair_id": doc["pair_id"], "form": form, "correct": None, "pred": None, "answer": answer,
                "error": reason}
    return {
        "pair_id": doc["pair_id"],
        "form": form,
        "correct": int(is_correct(response, answer, ANSWER_TYPE)),
        "pred": extract_answer(response, ANSWER_TYPE),
        "answer": answer,
        "error": None,
    }


def _first(results: Sequence[str]) -> str:
    return results[0] if results else ""  # an empty generation scores as wrong, not as an error


def process_results_img(doc: Doc, results: Sequence[str]) -> dict[str, dict[str, Any]]:
    return {"rd_acc": score_response(doc, _first(results), "img")}


def process_results_txt(doc: Doc, results: Sequence[str]) -> dict[str, dict[str, Any]]:
    return {"rd_acc": score_response(doc, _first(results), "txt")}


def mean_correct(items: Sequence[Mapping[str, Any]]) -> float:
    """Fraction correct over scored items (error items, ``correct`` None, are skipped); 0.0 if none."""
    flags = [item["correct"] for item in items if item["correct"] is not None]
    bad = [f for f in flags if f not in (0, 1)]
    if bad:
        raise ValueError(f"'correct' must be 0, 1 or None (error) in every rd_acc item, got {bad[:5]!r}")
    return sum(flags) / len(flags) if flags else 0.0


# --- perception (the _see task): metric functions called by lmms-eval with the YAML's metric kwargs -----------


def seen_item(reference: str, transcript: str, threshold: float = DEFAULT_SEEN_THRESHOLD) -> dict[str, Any]:
    """The rd_seen record of one doc: judged against the text the image shows (``displayable_text``)."""
    pair_id = content_pair_id(BENCHMARK, reference)
    reason = error_reason(transcript)
    if reason is not None:
        return {"pair_id": pair_id, "seen": None, "similarity": None, "missing_numbers": None,
                "threshold": check_threshold(threshold), "error": reason}
    p = judge_transcript(displayable_text(reference), transcript, threshold)
    return {"pair_id": pair_id, "seen": int(p.seen), "similarity": p.similarity,
            "missing_numbers": list(p.missing_numbers), "threshold": p.threshold, "error": None}


def rd_seen(references: Sequence[str], predictions: Sequence[str],
            threshold: float = DEFAULT_SEEN_THRESHOLD) -> dict[str, dict[str, Any]]:
    return {"rd_seen": seen_item(references[0], _first(predictions), threshold)}


def rd_similarity(references: Sequence[str], predictions: Sequence[str]) -> dict[str, float | None]:
    transcript = _first(predictions)
    if error_reason(transcript) is not None:
        return {"rd_similarity": None}
    return {"rd_similarity": similarity(displayable_text(references[0]), transcript)}


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
