"""LogicVista: the original image form, and a transcript twin.

Hugging Face: ``lscpku/LogicVista``, split ``test`` (448 questions; image column ``image``), as lmms-eval's
``logicvista_reasoning`` loads it. Local mirror: ``logicvista/dataset.json`` (upstream ``data/dataset.json``:
a dict keyed by question id) with the images at ``logicvista/images/<imagename>``. ``pair_id`` is the
question id (``id`` on the Hub, the dict key upstream, e.g. ``v1_0``).

Most questions list their options inline at the end (``"Select from A, B and C. (A) True (B)False (C)..."``);
those option texts become the document's choices, for scoring only (``show_choices`` False: the question
already states them, in both forms), so an answer naming an option's text ("£619 million") counts. The other
questions leave the options to the image (``"(A) (B) (C) (D)"`` without texts, or only "which letter"): no
choices. An answer of one letter is a ``choice``; several letters (``"A, C"``) a ``multi_choice`` that counts
as correct only when exactly those letters are given; a gold that is an option's text becomes its letter.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from rd_eval.benchmarks.documents import build_form, image_form
from rd_eval.benchmarks.gold import choice_letter, choice_letters, free_form_gold, option_index, parse_inline_options
from rd_eval.benchmarks.schema import BenchDoc
from rd_eval.benchmarks.six import six_task
from rd_eval.data.sources import HubSplit, MirrorReader
from rd_eval.fileio.jsonio import read_json
from rd_eval.scoring.answers import ALL_LETTERS

if TYPE_CHECKING:
    import datasets

NAME = "logicvista"
FOLDER = "logicvista"
HUB = HubSplit(path="lscpku/LogicVista", name=None, split="test", image_column="image")
MIRROR_RECORDS = "dataset.json"


def gold(answer: str) -> tuple[str, str]:
    """(answer, answer_type): one letter, several letters (``"A, C"``), else free form."""
    letter = choice_letter(answer)
    if letter is not None:
        return letter, "choice"
    letters = choice_letters(answer)
    if letters is not None:
        return letters, "multi_choice"
    return free_form_gold(answer)


def choice_gold(answer: str, options: Sequence[str]) -> tuple[str, str] | None:
    """(answer, answer_type) of a gold scored against the question's inline ``options``: letters within range,
    or an option's text as its letter; None when the gold names no option (the options are then not used)."""
    letter = choice_letter(answer, len(options))
    if letter is not None:
        return letter, "choice"
    letters = choice_letters(answer)
    if letters is not None and all(ALL_LETTERS.index(c) < len(options) for c in letters.split(", ")):
        return letters, "multi_choice"
    index = option_index(answer, options)
    return None if index is None else (ALL_LETTERS[index], "choice")


def record_doc(record: Mapping[str, Any], pair_id: str, image: str | None = None) -> BenchDoc:
    """One LogicVista record (Hugging Face or upstream schema) as a document."""
    question = str(record["question"]).strip()
    options = parse_inline_options(question) or []
    scored = choice_gold(str(record["answer"]).strip(), options) if options else None
    if scored is None:
        answer, answer_type = gold(str(record["answer"]))
        options = []
    else:
        answer, answer_type = scored
    return BenchDoc(pair_id=pair_id, question=question, answer=answer, answer_type=answer_type, benchmark=NAME,
                    choices=tuple(options), show_choices=False, source_id=pair_id, image=image)


def hub_id(record: Mapping[str, Any]) -> str:
    for key in ("id", "question_id", "qid"):
        if record.get(key) not in (None, ""):
            return str(record[key])
    if record.get("imagename"):
        return str(record["imagename"]).rsplit(".", 1)[0]
    raise ValueError(f"{NAME}: a record has no id (keys {sorted(record)})")


def docs_from_records(records: Sequence[Mapping[str, Any]]) -> list[tuple[int, BenchDoc]]:
    return [(i, record_doc(r, hub_id(r))) for i, r in enumerate(records)]


def mirror_docs(with_image: bool, reader: MirrorReader) -> list[BenchDoc]:
    path = reader.file(MIRROR_RECORDS)
    data = read_json(path)
    if not isinstance(data, dict):
        raise ValueError(f"{path}: expected a JSON object keyed by question id (upstream data/dataset.json)")
    return [record_doc(r, str(key), reader.image(f"images/{r['imagename']}") if with_image else None)
            for key, r in data.items()]


def load(form: str) -> datasets.Dataset:
    """``img`` (with images) or ``txt`` (the same documents, no image column)."""
    return build_form(image_form(form), benchmark=NAME, folder=FOLDER, mirror=mirror_docs, hub=HUB,
                      to_docs=docs_from_records)


TASK = six_task(NAME, load, hub=HUB, folder=FOLDER)
