"""MathVista testmini: the original image form, and a transcript twin.

Hugging Face: ``AI4Math/MathVista``, split ``testmini`` (1,000 problems; image column ``decoded_image``), as
lmms-eval's ``mathvista_testmini`` tasks load it. Local mirror: ``mathvista/testmini.json`` (the upstream
``data/testmini.json``: a dict keyed by ``pid``) with the images at ``mathvista/<record image>``
(``images/<pid>.jpg``). ``pair_id`` is the dataset's ``pid``.

Gold: a multiple-choice answer (the text of one choice) becomes that choice's letter; ``integer`` and
``float`` answers are numbers (``float`` with the dataset's ``precision``, the decimal places asked for);
``list`` (and other free text) answers are expressions or text, which rule-based scoring matches less
reliably.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from rd_eval.benchmarks.documents import build_form, image_form
from rd_eval.benchmarks.gold import free_form_gold, numeric_answer, option_index
from rd_eval.benchmarks.schema import BenchDoc
from rd_eval.benchmarks.six import six_task
from rd_eval.data.sources import HubSplit, MirrorReader
from rd_eval.fileio.jsonio import read_json
from rd_eval.scoring.answers import ALL_LETTERS

if TYPE_CHECKING:
    import datasets

NAME = "mathvista"
FOLDER = "mathvista"
HUB = HubSplit(path="AI4Math/MathVista", name=None, split="testmini", image_column="decoded_image")
MIRROR_RECORDS = "testmini.json"


def record_doc(record: Mapping[str, Any], image: str | None = None) -> BenchDoc:
    """One MathVista record (Hugging Face or upstream schema) as a document."""
    pid = str(record["pid"])
    question = str(record["question"]).strip()
    if record.get("unit"):
        question += f" (Unit: {record['unit']})"
    choices = [str(c) for c in (record.get("choices") or [])]
    answer = str(record["answer"]).strip()
    precision = None
    if record["question_type"] == "multi_choice" and choices:
        index = option_index(answer, choices)
        if index is None:
            raise ValueError(f"{NAME} {pid}: answer {answer!r} is none of its choices {choices}")
        answer, answer_type = ALL_LETTERS[index], "choice"
    elif record.get("answer_type") in ("integer", "float") and numeric_answer(answer) is not None:
        answer, answer_type = str(numeric_answer(answer)), "number"
        if record["answer_type"] == "float" and record.get("precision") is not None:
            precision = int(record["precision"])
    else:
        answer, answer_type = free_form_gold(answer)
    return BenchDoc(pair_id=pid, question=question, answer=answer, answer_type=answer_type, benchmark=NAME,
                    choices=tuple(choices), precision=precision, source_id=pid, image=image)


def docs_from_records(records: Sequence[Mapping[str, Any]]) -> list[tuple[int, BenchDoc]]:
    return [(i, record_doc(r)) for i, r in enumerate(records)]


def mirror_docs(with_image: bool, reader: MirrorReader) -> list[BenchDoc]:
    path = reader.file(MIRROR_RECORDS)
    data = read_json(path)
    if not isinstance(data, dict):
        raise ValueError(f"{path}: expected a JSON object keyed by pid (upstream data/testmini.json)")
    return [record_doc(r, reader.image(str(r["image"])) if with_image else None) for r in data.values()]


def load(form: str) -> datasets.Dataset:
    """``img`` (with images) or ``txt`` (the same documents, no image column)."""
    return build_form(image_form(form), benchmark=NAME, folder=FOLDER, mirror=mirror_docs, hub=HUB,
                      to_docs=docs_from_records)


TASK = six_task(NAME, load, hub=HUB, folder=FOLDER)
