"""GSM8K, the benchmark of the rd_gsm8k_img, rd_gsm8k_txt and rd_gsm8k_see tasks (exact twins).

Exact twins of GSM8K (test split): the image form is the problem text rendered by ``rd_eval.twins.render``
(same text, same PNG bytes), the text twin is the original text; both get the same answer instruction.
The perception task shows the same image and asks for a transcription (docs/design.md §3.2).

Data: lmms-eval loads only ``placeholder.jsonl``; ``process_docs`` replaces it with the real split, from
the Hub (``openai/gsm8k``, config ``main``, split ``test``) or, when ``RD_EVAL_DATA_DIR`` is set, from
``$RD_EVAL_DATA_DIR/gsm8k/test.jsonl`` (see ``rd_eval.data.sources``).

The tasks (``TASK``) are the one task layer's (:func:`rd_eval.benchmarks.exact_twin.exact_twin_task`); each record
becomes a document here, in :func:`to_doc`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from rd_eval.benchmarks.exact_twin import ExactTwin, exact_twin_task
from rd_eval.data.sources import DataSource, HubSplit, content_pair_id

BENCHMARK = "gsm8k"
SOURCE = DataSource(benchmark=BENCHMARK, relative="test.jsonl", hub=HubSplit("openai/gsm8k", "main", "test"))
ANSWER_TYPE = "number"
TARGET_KEY = "final_answer"  # the gold final answer
SOURCE_KEY = "question"  # the problem text: rendered in the image form, verbatim in the text twin

IMG_LEAD = "Solve the math word problem shown in the image."
TXT_LEAD = "Solve the following math word problem."
INSTRUCTION = "Reason step by step, then give the final answer as a single number in \\boxed{}."
SEE_PROMPT = (
    "Transcribe all of the text in the image exactly as written, keeping every number and symbol. "
    "Do not solve the problem. Reply with the transcription only."
)


# --- docs ---------------------------------------------------------------------------------------------------


def final_answer(solution: str) -> str:
    """The number after the last ``####`` of a GSM8K solution."""
    _, sep, tail = solution.rpartition("####")
    if not sep or not tail.strip():
        raise ValueError(f"GSM8K solution has no final answer after '####': {solution[-80:]!r}")
    return tail.strip()


def to_doc(record: Mapping[str, Any], where: str) -> dict[str, Any]:
    """A source record (``question``, ``answer`` = worked solution) plus ``pair_id`` and ``final_answer``."""
    missing = [k for k in ("question", "answer") if not isinstance(record.get(k), str)]
    if missing:
        raise ValueError(f"{where}: GSM8K record lacks string field(s) {missing}; has {sorted(record)}")
    question, solution = record["question"], record["answer"]
    if not question.strip():
        raise ValueError(f"{where}: GSM8K question is empty")
    try:
        answer = final_answer(solution)
    except ValueError as err:
        raise ValueError(f"{where}: {err}") from None
    return {"pair_id": content_pair_id(BENCHMARK, question), "question": question, "answer": solution,
            "final_answer": answer}


# --- the tasks (rd_eval.benchmarks.exact_twin on the one task layer) ------------------------------

TASK = exact_twin_task(ExactTwin(benchmark=BENCHMARK, source=SOURCE, to_doc=to_doc, source_key=SOURCE_KEY,
                                 target_key=TARGET_KEY, answer_type=ANSWER_TYPE, img_lead=IMG_LEAD, txt_lead=TXT_LEAD,
                                 instruction=INSTRUCTION, see_prompt=SEE_PROMPT))
