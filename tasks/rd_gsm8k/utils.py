"""lmms-eval callables of rd_gsm8k_img, rd_gsm8k_txt and rd_gsm8k_see (``!function utils.<name>`` in the YAMLs).

Exact twins of GSM8K (test split): the image form is the problem text rendered by ``rd_eval.twins.render``
(same text, same PNG bytes), the text twin is the original text; both get the same answer instruction.
The perception task shows the same image and asks for a transcription (DESIGN §3.2).

Data: lmms-eval loads only ``placeholder.jsonl``; :func:`process_docs` replaces it with the real split, from
the Hub (``openai/gsm8k``, config ``main``, split ``test``) or, when ``RD_EVAL_DATA_DIR`` is set, from
``$RD_EVAL_DATA_DIR/gsm8k/test.jsonl`` (see ``rd_eval.data.sources``).

lmms-eval loads this file by path, so it imports only from the installed ``rd_eval`` library.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from rd_eval.data.sources import DataSource, HubSplit, content_pair_id, declaration, local_path

# The aggregations are named by the YAMLs (`!function utils.<name>`): re-exported on purpose.
from rd_eval.twins.exact import PLACEHOLDER_KEY, ExactTwin, mean_correct, mean_seen, mean_similarity  # noqa: F401

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

# Fail fast: lmms-eval imports this file while it reads the task YAML, before its dataset loading (which retries
# every error for ~10 s and then reports only "RetryError"). With RD_EVAL_DATA_DIR set, the file must be there.
local_path(SOURCE.benchmark, SOURCE.relative)
# The source the tasks declare in metadata.rd_data_source (Hub dataset and requested revision, or the local mirror
# folder); a bad RD_EVAL_DATASET_REVISIONS fails here too.
DATA_SOURCE = declaration(SOURCE.benchmark, SOURCE.hub.path, SOURCE.benchmark)



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
