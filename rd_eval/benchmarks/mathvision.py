"""MATH-Vision (MathVision) testmini: the original image form, and a transcript twin.

Hugging Face: ``MathLLMs/MathVision``, split ``testmini`` (304 problems; image column ``decoded_image``), as
lmms-eval's ``mathvision_testmini`` loads it. Local mirror: ``math_vision/testmini.jsonl`` (upstream
``data/testmini.jsonl``) with the images at ``math_vision/<record image>`` (``images/<id>.jpg``).
``pair_id`` is the dataset's ``id``.

The ``<image1>`` placeholders are removed from the question in both forms. Multiple-choice answers are
letters; when the options are only the letters themselves (the real options are drawn in the image), the
options are used for scoring but not listed in the prompt. Free-form answers are numbers where they state
one, else expressions (``\\frac{1}{2}``, ``2\\sqrt{3}``, ...) that rule-based scoring matches less reliably.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from rd_eval.benchmarks.documents import build_form, image_form
from rd_eval.benchmarks.gold import choice_letter, free_form_gold, option_index, strip_image_tags
from rd_eval.benchmarks.schema import BenchDoc
from rd_eval.benchmarks.six import six_task
from rd_eval.data.sources import HubSplit, MirrorReader, read_jsonl
from rd_eval.scoring.answers import ALL_LETTERS

if TYPE_CHECKING:
    import datasets

NAME = "mathvision"
FOLDER = "math_vision"
HUB = HubSplit(path="MathLLMs/MathVision", name=None, split="testmini", image_column="decoded_image")
MIRROR_RECORDS = "testmini.jsonl"


def record_doc(record: Mapping[str, Any], image: str | None = None) -> BenchDoc:
    """One MATH-Vision record (Hugging Face or upstream schema) as a document."""
    pid = str(record["id"])
    options = [str(o) for o in (record.get("options") or [])]
    answer = str(record["answer"]).strip()
    if options:
        letter = choice_letter(answer, len(options))
        if letter is None:
            index = option_index(answer, options)
            if index is None:
                raise ValueError(f"{NAME} {pid}: answer {answer!r} is neither a letter nor one of {options}")
            letter = ALL_LETTERS[index]
        bare = all(o.strip().upper() == ALL_LETTERS[i] for i, o in enumerate(options))
        return BenchDoc(pair_id=pid, question=strip_image_tags(str(record["question"])), answer=letter,
                        answer_type="choice", benchmark=NAME, choices=tuple(options), show_choices=not bare,
                        source_id=pid, image=image)
    gold, answer_type = free_form_gold(answer)
    return BenchDoc(pair_id=pid, question=strip_image_tags(str(record["question"])), answer=gold,
                    answer_type=answer_type, benchmark=NAME, source_id=pid, image=image)


def docs_from_records(records: Sequence[Mapping[str, Any]]) -> list[tuple[int, BenchDoc]]:
    return [(i, record_doc(r)) for i, r in enumerate(records)]


def mirror_docs(with_image: bool, reader: MirrorReader) -> list[BenchDoc]:
    records = read_jsonl(reader.file(MIRROR_RECORDS))
    return [record_doc(r, reader.image(str(r["image"])) if with_image else None) for r in records]


def load(form: str) -> datasets.Dataset:
    """``img`` (with images) or ``txt`` (the same documents, no image column)."""
    return build_form(image_form(form), benchmark=NAME, folder=FOLDER, mirror=mirror_docs, hub=HUB,
                      to_docs=docs_from_records)


TASK = six_task(NAME, load, hub=HUB, folder=FOLDER)
