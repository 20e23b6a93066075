"""We-Math testmini: the original image form, and a transcript twin.

Hugging Face: ``We-Math/We-Math``, split ``testmini`` (1,740 rows; the image column is ``image_path``), as
lmms-eval's ``wemath_testmini_reasoning`` loads it. Local mirror: ``we_math/testmini.json`` (upstream
``data/testmini.json``, a list) with the images at ``we_math/<record image_path>``.

A row is one (sub-)problem of a multi-step group: ``pair_id`` is ``<ID>/<key>`` (the group id and the row's
role in it, e.g. ``2steps_1/2steps_multi``), unique in the split, and ``group_id`` is the group ``ID``. The
``option`` string (``"A. ...;B. ...; E. No correct answer"``) is split into lettered choices; every answer
is one letter.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from rd_eval.benchmarks.documents import build_form, image_form
from rd_eval.benchmarks.gold import choice_letter, parse_lettered_options
from rd_eval.benchmarks.schema import BenchDoc
from rd_eval.benchmarks.six import six_task
from rd_eval.data.sources import HubSplit, MirrorReader
from rd_eval.fileio.jsonio import read_json

if TYPE_CHECKING:
    import datasets

NAME = "wemath"
FOLDER = "we_math"
HUB = HubSplit(path="We-Math/We-Math", name=None, split="testmini", image_column="image_path")
MIRROR_RECORDS = "testmini.json"


def pair_id_of(record: Mapping[str, Any]) -> str:
    return f"{record['ID']}/{record['key']}"


def record_doc(record: Mapping[str, Any], image: str | None = None) -> BenchDoc:
    """One We-Math row (Hugging Face or upstream schema) as a document."""
    pid = pair_id_of(record)
    raw_options = str(record.get("option") or "").strip()
    options = parse_lettered_options(raw_options) if raw_options else None
    question = str(record["question"]).strip()
    if options is None and raw_options:
        question = f"{question}\n{raw_options}"  # keep unparsable options verbatim, as the dataset shows them
    letter = choice_letter(str(record["answer"]), len(options) if options else None)
    if letter is None:
        raise ValueError(f"{NAME} {pid}: answer {record['answer']!r} is not an option letter")
    return BenchDoc(pair_id=pid, question=question, answer=letter, answer_type="choice", benchmark=NAME,
                    choices=tuple(options or ()), source_id=pid, group_id=str(record["ID"]), image=image)


def docs_from_records(records: Sequence[Mapping[str, Any]]) -> list[tuple[int, BenchDoc]]:
    return [(i, record_doc(r)) for i, r in enumerate(records)]


def mirror_docs(with_image: bool, reader: MirrorReader) -> list[BenchDoc]:
    path = reader.file(MIRROR_RECORDS)
    data = read_json(path)
    if not isinstance(data, list):
        raise ValueError(f"{path}: expected a JSON list of rows (upstream data/testmini.json)")
    return [record_doc(r, reader.image(str(r["image_path"])) if with_image else None) for r in data]


def load(form: str) -> datasets.Dataset:
    """``img`` (with images) or ``txt`` (the same documents, no image column)."""
    return build_form(image_form(form), benchmark=NAME, folder=FOLDER, mirror=mirror_docs, hub=HUB,
                      to_docs=docs_from_records)


TASK = six_task(NAME, load, hub=HUB, folder=FOLDER)
