"""lmms-eval callables for the rd_demo tasks (referenced from the YAMLs as ``!function utils.<name>``).

lmms-eval loads this file by path, so it imports only from the installed ``rd_eval`` library.
Both forms get the same answer-format instruction; only the carrier of the problem differs.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, TypeAlias

from PIL import Image

from rd_eval.data.provenance import mirror_record
from rd_eval.scoring.answers import extract_answer, is_correct
from rd_eval.scoring.doc_errors import error_reason
from rd_eval.twins.demo_bench import from_record, render_problem

IMG_LEAD = "Solve the problem shown in the image."
TXT_LEAD = "Solve the following problem."
ANSWER_FORMAT: dict[str, str] = {
    "number": "Reply with only the final number.",
    "choice": "Reply with only the letter of the correct option.",
}
FORMS: tuple[str, ...] = ("img", "txt")
Doc: TypeAlias = Mapping[str, Any]
Kwargs: TypeAlias = Mapping[str, Any] | None
DATA_FILE = Path(__file__).with_name("rd_demo.jsonl")
# The demo's data as the template's metadata.rd_data_source records it: the bundled file and its content hash.
DATA_SOURCE = mirror_record("demo", DATA_FILE.parent, {f"rd_demo/{DATA_FILE.name}": DATA_FILE},
                            origin="bundled with rd-eval").to_dict()


def answer_instruction(answer_type: str) -> str:
    if answer_type not in ANSWER_FORMAT:
        raise ValueError(f"unknown answer_type {answer_type!r}; valid types: {list(ANSWER_FORMAT)}")
    return ANSWER_FORMAT[answer_type]


def _affix(body: str, kwargs: Kwargs) -> str:
    kwargs = kwargs or {}
    return f"{kwargs.get('pre_prompt', '')}{body}{kwargs.get('post_prompt', '')}"


def doc_to_visual_img(doc: Doc) -> list[Image.Image]:
    return [render_problem(from_record(doc))]


def doc_to_visual_txt(doc: Doc) -> list[Image.Image]:
    return []


def doc_to_text_img(doc: Doc, lmms_eval_specific_kwargs: Kwargs = None) -> str:
    p = from_record(doc)
    return _affix(f"{IMG_LEAD}\n{answer_instruction(p.answer_type)}", lmms_eval_specific_kwargs)


def doc_to_text_txt(doc: Doc, lmms_eval_specific_kwargs: Kwargs = None) -> str:
    p = from_record(doc)
    body = f"{TXT_LEAD}\n\n{p.text_twin}\n\n{answer_instruction(p.answer_type)}"
    return _affix(body, lmms_eval_specific_kwargs)


def doc_to_target(doc: Doc) -> str:
    return from_record(doc).answer


def score_response(doc: Doc, response: str, form: str) -> dict[str, Any]:
    """One per-sample record; pair_id and form let the two forms be joined per problem afterwards.

    An error response (``rd_eval.scoring.doc_errors.error_response``: the model could not run this doc) is
    not scored: ``correct`` and ``pred`` are None and ``error`` holds the reason, so the doc is
    reported as an error and never counted as wrong. Scored responses have ``error`` None.
    """
    if form not in FORMS:
        raise ValueError(f"unknown form {form!r}; valid forms: {list(FORMS)}")
    p = from_record(doc)
    reason = error_reason(response)
    if reason is not None:
        return {
            "pair_id": p.pair_id,
            "form": form,
            "correct": None,
            "pred": None,
            "answer": p.answer,
            "error": reason,
        }
    return {
        "pair_id": p.pair_id,
        "form": form,
        "correct": int(is_correct(response, p.answer, p.answer_type, p.choices)),
        "pred": extract_answer(response, p.answer_type, p.choices),
        "answer": p.answer,
        "error": None,
    }


def _first_response(results: Sequence[str]) -> str:
    return results[0] if results else ""  # an empty generation scores as wrong, not as an error


def process_results_img(doc: Doc, results: Sequence[str]) -> dict[str, dict[str, Any]]:
    return {"rd_acc": score_response(doc, _first_response(results), "img")}


def process_results_txt(doc: Doc, results: Sequence[str]) -> dict[str, dict[str, Any]]:
    return {"rd_acc": score_response(doc, _first_response(results), "txt")}


def mean_correct(items: Sequence[Mapping[str, Any]]) -> float:
    """Fraction correct over the scored items; error items (``correct`` None) are skipped.

    Returns 0.0 when no item was scored.
    """
    flags = [item["correct"] for item in items if item["correct"] is not None]
    bad = [f for f in flags if f not in (0, 1)]
    if bad:
        raise ValueError(f"'correct' must be 0, 1 or None (error) in every rd_acc item, got {bad[:5]!r}")
    if not flags:
        return 0.0
    return sum(flags) / len(flags)
