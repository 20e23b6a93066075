"""The demo benchmark of the rd_demo tasks: synthetic problems (:mod:`rd_eval.twins.demo_bench`) rendered into
one image each (image form) or stated as text (text twin).

Both forms get the same answer-format instruction; only the carrier of the problem differs. The documents are
the bundled ``rd_demo.jsonl`` the YAMLs load themselves, so the tasks have no ``process_docs``, and their
``rd_acc`` items carry no data-source record (the task metadata declares the file and its hash).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from PIL import Image

from rd_eval.benchmarks.prompts import with_affixes
from rd_eval.benchmarks.task import Doc, Kwargs, PairedTask
from rd_eval.data.provenance import mirror_record
from rd_eval.scoring.item import Gold
from rd_eval.twins.demo_bench import from_record, render_problem

NAME = "demo"
IMG_LEAD = "Solve the problem shown in the image."
TXT_LEAD = "Solve the following problem."
ANSWER_FORMAT: dict[str, str] = {
    "number": "Reply with only the final number.",
    "choice": "Reply with only the letter of the correct option.",
}


def answer_instruction(answer_type: str) -> str:
    if answer_type not in ANSWER_FORMAT:
        raise ValueError(f"unknown answer_type {answer_type!r}; valid types: {list(ANSWER_FORMAT)}")
    return ANSWER_FORMAT[answer_type]


@dataclass(frozen=True)
class DemoDocs:
    """:class:`~rd_eval.benchmarks.task.PairedDocs` of the demo problems."""

    def visual(self, doc: Doc) -> list[Image.Image]:
        return [render_problem(from_record(doc))]

    def prompt(self, doc: Doc, form: str, kwargs: Kwargs) -> str:
        p = from_record(doc)
        if form == "img":
            return with_affixes(f"{IMG_LEAD}\n{answer_instruction(p.answer_type)}", kwargs)
        return with_affixes(f"{TXT_LEAD}\n\n{p.text_twin}\n\n{answer_instruction(p.answer_type)}", kwargs)

    def target(self, doc: Doc) -> str:
        return from_record(doc).answer

    def gold(self, doc: Doc) -> Gold:
        p = from_record(doc)
        return Gold(p.answer, p.answer_type, p.choices)


def data_source(data_file: Path) -> dict[str, Any]:
    """The demo's data as the template's metadata.rd_data_source records it: the bundled file and its hash."""
    return mirror_record(NAME, data_file.parent, {f"rd_demo/{data_file.name}": data_file},
                         origin="bundled with rd-eval").to_dict()


def demo_task(data_file: Path) -> PairedTask:
    """The rd_demo tasks over the bundled ``data_file`` (the task folder's ``rd_demo.jsonl``)."""
    return PairedTask(name=NAME, docs=DemoDocs(), declare=lambda: data_source(data_file), carries_source=False)
