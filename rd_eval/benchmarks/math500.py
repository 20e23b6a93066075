"""MATH-500, the benchmark of the rd_math500_img, rd_math500_txt and rd_math500_see tasks (exact twins).

Exact twins of MATH-500: the image form is the problem text rendered by ``rd_eval.twins.render`` (same text,
same PNG bytes). LaTeX is not typeset: the image shows the LaTeX *source* exactly as the text twin has it
(``$\\frac{1}{2}$`` appears as those characters), and so do ``[asy]`` figure sources, so both forms carry the
same characters. Both forms get the same answer instruction. The perception task shows the same image and
asks for a transcription (docs/design.md §3.2).

Data: lmms-eval loads only ``placeholder.jsonl``; ``process_docs`` replaces it with the real split, from
the Hub (``HuggingFaceH4/MATH-500``, split ``test``) or, when ``RD_EVAL_DATA_DIR`` is set, from
``$RD_EVAL_DATA_DIR/math500/test.jsonl`` (see ``rd_eval.data.sources``).

The tasks (``TASK``) are the one task layer's (:func:`rd_eval.benchmarks.exact_twin.exact_twin_task`); each record
becomes a document here, in :func:`to_doc`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from rd_eval.benchmarks.exact_twin import ExactTwin, exact_twin_task
from rd_eval.data.sources import DataSource, HubSplit, content_pair_id

BENCHMARK = "math500"
SOURCE = DataSource(benchmark=BENCHMARK, relative="test.jsonl",
                    hub=HubSplit("HuggingFaceH4/MATH-500", None, "test"))
ANSWER_TYPE = "expression"
TARGET_KEY = "answer"  # the gold final answer
SOURCE_KEY = "problem"  # the problem text: rendered in the image form, verbatim in the text twin

IMG_LEAD = "Solve the math problem shown in the image."
TXT_LEAD = "Solve the following math problem."
INSTRUCTION = "Reason step by step, then put the final answer in \\boxed{}."
SEE_PROMPT = (
    "Transcribe all of the text in the image exactly as written, keeping every number, symbol and LaTeX "
    "command as it appears (for example \\frac{1}{2} stays \\frac{1}{2}). Do not solve the problem. "
    "Reply with the transcription only."
)


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


# --- the tasks (rd_eval.benchmarks.exact_twin on the one task layer) ------------------------------

TASK = exact_twin_task(ExactTwin(benchmark=BENCHMARK, source=SOURCE, to_doc=to_doc, source_key=SOURCE_KEY,
                                 target_key=TARGET_KEY, answer_type=ANSWER_TYPE, img_lead=IMG_LEAD, txt_lead=TXT_LEAD,
                                 instruction=INSTRUCTION, see_prompt=SEE_PROMPT))
