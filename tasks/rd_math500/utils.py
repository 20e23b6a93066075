"""lmms-eval callables of rd_math500_img, rd_math500_txt and rd_math500_see (``!function utils.<name>``).

Exact twins of MATH-500: the image form is the problem text rendered by ``rd_eval.twins.render`` (same text,
same PNG bytes). LaTeX is not typeset: the image shows the LaTeX *source* exactly as the text twin has it
(``$\\frac{1}{2}$`` appears as those characters), and so do ``[asy]`` figure sources, so both forms carry the
same characters. Both forms get the same answer instruction. The perception task shows the same image and
asks for a transcription (DESIGN §3.2).

Data: lmms-eval loads only ``placeholder.jsonl``; :func:`process_docs` replaces it with the real split, from
the Hub (``HuggingFaceH4/MATH-500``, split ``test``) or, when ``RD_EVAL_DATA_DIR`` is set, from
``$RD_EVAL_DATA_DIR/math500/test.jsonl`` (see ``rd_eval.data.sources``).

lmms-eval loads this file by path, so it imports only from the installed ``rd_eval`` library.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from rd_eval.data.sources import DataSource, HubSplit, content_pair_id, declaration, local_path

# The aggregations are named by the YAMLs (`!function utils.<name>`): re-exported on purpose.
from rd_eval.twins.exact import PLACEHOLDER_KEY, ExactTwin, mean_correct, mean_seen, mean_similarity  # noqa: F401

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

# Fail fast: lmms-eval imports this file while it reads the task YAML, before its dataset loading (which retries
# every error for ~10 s and then reports only "RetryError"). With RD_EVAL_DATA_DIR set, the file must be there.
local_path(SOURCE.benchmark, SOURCE.relative)
# The source the tasks declare in metadata.rd_data_source (Hub dataset and requested revision, or the local mirror
# folder); a bad RD_EVAL_DATASET_REVISIONS fails here too.
DATA_SOURCE = declaration(SOURCE.benchmark, SOURCE.hub.path, SOURCE.benchmark)



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


# --- the lmms-eval callables the YAMLs name (one implementation: rd_eval.twins.exact) -----------------------

TWIN = ExactTwin(benchmark=BENCHMARK, source=SOURCE, to_doc=to_doc, source_key=SOURCE_KEY, target_key=TARGET_KEY,
                 answer_type=ANSWER_TYPE, img_lead=IMG_LEAD, txt_lead=TXT_LEAD, instruction=INSTRUCTION,
                 see_prompt=SEE_PROMPT)
process_docs = TWIN.process_docs
doc_to_visual_img = TWIN.doc_to_visual_img
doc_to_visual_txt = TWIN.doc_to_visual_txt
doc_to_text_img = TWIN.doc_to_text_img
doc_to_text_txt = TWIN.doc_to_text_txt
doc_to_text_see = TWIN.doc_to_text_see
doc_to_target = TWIN.doc_to_target
doc_to_target_see = TWIN.doc_to_target_see
score_response = TWIN.score_response
process_results_img = TWIN.process_results_img
process_results_txt = TWIN.process_results_txt
seen_item = TWIN.seen_item
rd_seen = TWIN.rd_seen
rd_similarity = TWIN.rd_similarity
