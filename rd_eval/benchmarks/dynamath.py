"""DynaMath: the original image form, a transcript twin, and the worst case over each question's variants.

Hugging Face: ``kcz358/DynaMath``, split ``test`` (501 seed questions x 10 generated variants = 5,010 rows;
image column ``decoded_image``), as lmms-eval's ``dynamath_reasoning`` loads it: ``id`` is the seed question
and ``question_id`` the row; a row's variant number is its rank (1-10) by ``question_id`` within its
question. Local mirror: the upstream generated variants, ``dynamath/10trials/trial<k>/dataset.json`` for
k = 1..10 (dicts keyed by seed question id), images at ``dynamath/10trials/trial<k>/<record image>``; the
variant number is k.

``pair_id`` is ``<question>-v<variant>`` (each variant has its own image, so its own twin) and ``group_id``
the question, over which :func:`rd_eval.scoring.item.worst_case_accuracy` counts a question as solved
only when all of its variants are. Documents are ordered by question, then variant, so ``--limit`` takes whole
questions first. Answers: ``multiple choice`` -> a letter, with the options the question lists inline
(``"choice: (A) Yes (B) No"``) as the document's choices for scoring only (they are in the question text of
both forms already), so an answer naming an option's text counts; ``float`` -> a number, right within
:data:`FLOAT_TOLERANCE` of the gold, as DynaMath's own evaluation rules (it asks for "a three-digit
floating-point number" and accepts an absolute error of 0.001; its float answers carry up to 4 decimals, so
rounding both to 3 decimals would be a different rule); other answers (e.g. clock times ``4:45``) ->
expression or text.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from rd_eval.benchmarks.documents import build_form, image_form
from rd_eval.benchmarks.gold import choice_letter, free_form_gold, numeric_answer, option_index, parse_inline_options
from rd_eval.benchmarks.schema import BenchDoc
from rd_eval.benchmarks.six import six_task
from rd_eval.data.sources import HubSplit, MirrorReader
from rd_eval.fileio.jsonio import read_json
from rd_eval.scoring.answers import ALL_LETTERS

if TYPE_CHECKING:
    import datasets

NAME = "dynamath"
FOLDER = "dynamath"
HUB = HubSplit(path="kcz358/DynaMath", name=None, split="test", image_column="decoded_image")
N_VARIANTS = 10
FLOAT_TOLERANCE = 0.001


def _numeric_key(value: str) -> tuple[int, str]:
    return (int(value), "") if re.fullmatch(r"\d+", value) else (10**12, value)


def gold(answer: str, answer_type: str, options: Sequence[str] = ()) -> tuple[str, str, float | None]:
    """(answer, answer_type, absolute tolerance) of a DynaMath ground truth; ``options`` are the option texts
    of a multiple-choice question (a gold stating an option's text becomes its letter)."""
    kind = answer_type.strip().lower()
    if kind == "multiple choice":
        letter = choice_letter(answer, len(options) or None)
        if letter is None and options:
            index = option_index(answer, options)
            letter = None if index is None else ALL_LETTERS[index]
        letter = letter or choice_letter(answer)  # beyond the parsed options: scored as a bare letter
        if letter is not None:
            return letter, "choice", None
    number = numeric_answer(answer)
    if kind in ("float", "integer") and number is not None:
        return number, "number", FLOAT_TOLERANCE if kind == "float" else None
    text, free_type = free_form_gold(answer)
    return text, free_type, None


def _scored_options(answer: str, answer_type: str, options: Sequence[str]) -> tuple[str, ...]:
    """The options to score a gold against: those of a letter gold within their range, else none."""
    if answer_type == "choice" and ALL_LETTERS.index(answer) < len(options):
        return tuple(options)
    return ()


def variant_doc(record: Mapping[str, Any], question: str, variant: int, image: str | None = None) -> BenchDoc:
    """One generated variant of a seed question as a document."""
    truth = record["ground_truth"] if "ground_truth" in record else record["answer"]
    text = str(record["question"]).strip()
    kind = str(record.get("answer_type") or "")
    options = (parse_inline_options(text) or []) if kind.strip().lower() == "multiple choice" else []
    answer, answer_type, tolerance = gold(str(truth), kind, options)
    return BenchDoc(pair_id=f"{question}-v{variant}", question=text, answer=answer, answer_type=answer_type,
                    benchmark=NAME, choices=_scored_options(answer, answer_type, options), show_choices=False,
                    abs_tolerance=tolerance,
                    source_id=str(record.get("question_id", f"{question}-v{variant}")), group_id=question,
                    variant=variant, image=image)


def docs_from_records(records: Sequence[Mapping[str, Any]]) -> list[tuple[int, BenchDoc]]:
    """Hugging Face rows: variants numbered by ``question_id`` within each ``id``, ordered question-major."""
    by_question: dict[str, list[int]] = {}
    for index, record in enumerate(records):
        by_question.setdefault(str(record["id"]), []).append(index)
    out: list[tuple[int, BenchDoc]] = []
    for question in sorted(by_question, key=_numeric_key):
        rows = sorted(by_question[question], key=lambda i: _numeric_key(str(records[i]["question_id"])))
        for variant, index in enumerate(rows, start=1):
            out.append((index, variant_doc(records[index], question, variant)))
    return out


def mirror_docs(with_image: bool, reader: MirrorReader) -> list[BenchDoc]:
    docs: list[BenchDoc] = []
    for variant in range(1, N_VARIANTS + 1):
        trial = f"10trials/trial{variant}"
        data = read_json(reader.file(f"{trial}/dataset.json"))
        if not isinstance(data, dict):
            raise ValueError(f"{FOLDER}/{trial}/dataset.json: expected a JSON object keyed by question id")
        for question, record in data.items():
            image = reader.image(f"{trial}/{record['image']}") if with_image else None
            docs.append(variant_doc(record, str(question), variant, image))
    return sorted(docs, key=lambda d: (_numeric_key(d.group_id), d.variant))


def load(form: str) -> datasets.Dataset:
    """``img`` (with images) or ``txt`` (the same documents, no image column)."""
    return build_form(image_form(form), benchmark=NAME, folder=FOLDER, mirror=mirror_docs, hub=HUB,
                      to_docs=docs_from_records)


TASK = six_task(NAME, load, hub=HUB, folder=FOLDER, worst_case=True)
