"""The six visual benchmarks' tasks: documents in the :class:`~rd_eval.benchmarks.schema.BenchDoc` schema, with
the dataset's own image in the image form and a transcript (or, for MathVerse, the dataset's Text-Only
version) in the text twin.

Each benchmark has an image form (``rd_<b>_img``), a text twin (``rd_<b>_txt``) and, for transcript twins, a
transcription task (``rd_<b>_transcribe``: the image form with :data:`TRANSCRIBE_PROMPT` as its text, whose
logged samples ``rd-eval twins transcribe`` turns into the transcript file the text twin reads).

The task YAMLs load a one-line placeholder file; ``process_docs`` replaces it with the benchmark's documents
(``rd_eval.benchmarks.<b>.load``), from the Hugging Face dataset or from the local mirror named by
``RD_EVAL_DATA_DIR``. Prompts and scoring read only the text columns (lmms-eval hands them documents without
their images); ``doc_to_visual`` reads the ``image`` column of the full document.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from rd_eval.benchmarks.prompts import prompt_img, prompt_txt
from rd_eval.benchmarks.schema import BenchDoc
from rd_eval.benchmarks.task import Doc, Kwargs, PairedTask
from rd_eval.data.sources import HubSplit, declaration
from rd_eval.scoring.item import Gold, first_response
from rd_eval.twins.transcripts import (
    TRANSCRIBE_PROMPT,
    failed_transcriptions,
    transcribed_share,
    transcript_for,
    transcript_result,
)
from rd_eval.vocabulary.task_names import PAIRED_FORMS

if TYPE_CHECKING:
    import datasets
    from PIL import Image

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class BenchDocs:
    """:class:`~rd_eval.benchmarks.task.PairedDocs` of one of the six; ``transcripts`` says whether the text
    twin reads transcripts (``rd_eval.twins.transcripts``) or states the problem in its own text."""

    name: str
    transcripts: bool = True

    def visual(self, doc: Doc) -> list[Image.Image]:
        image = doc.get("image")
        if image is None:
            raise ValueError(f"{self.name} document {doc.get('pair_id')!r} has no image")
        return [image.convert("RGB")]

    def prompt(self, doc: Doc, form: str, kwargs: Kwargs) -> str:
        bench = BenchDoc.from_row(doc)
        if form == "img":
            return prompt_img(bench, kwargs)
        transcript = transcript_for(self.name, bench.pair_id) if self.transcripts else None
        return prompt_txt(bench, kwargs, transcript)

    def target(self, doc: Doc) -> str:
        return str(doc["answer"])

    def gold(self, doc: Doc) -> Gold:
        return BenchDoc.from_row(doc).gold


def without_failed_transcriptions(name: str, docs: datasets.Dataset) -> datasets.Dataset:
    """The text twin has no problem to state where the transcription failed: such documents are left out
    (their pairs count as image-only in the report), with a warning naming them."""
    failed = failed_transcriptions(name)
    if not failed:
        return docs
    keep = [i for i, pair_id in enumerate(docs["pair_id"]) if str(pair_id) not in failed]
    dropped = sorted(set(map(str, docs["pair_id"])) & set(failed))
    if dropped:
        logger.warning("rd_%s_txt: %d documents left out, their transcription failed (pair_ids %s%s); their "
                       "pairs count as image-only", name, len(dropped), ", ".join(dropped[:5]),
                       ", ..." if len(dropped) > 5 else "")
    return docs.select(keep)


def _transcribe_exports() -> dict[str, Any]:
    """The callables of a ``rd_<b>_transcribe`` task (it shares the image form's documents and visual)."""

    def doc_to_text_transcribe(doc: Doc, lmms_eval_specific_kwargs: Kwargs = None) -> str:
        return TRANSCRIBE_PROMPT

    def process_results_transcribe(doc: Doc, results: list[str]) -> dict[str, dict[str, Any]]:
        return transcript_result(str(doc["pair_id"]), first_response(results))

    return {"doc_to_text_transcribe": doc_to_text_transcribe, "process_results_transcribe": process_results_transcribe,
            "transcribed_share": transcribed_share}


def six_task(name: str, load: Callable[[str], datasets.Dataset], *, hub: HubSplit, folder: str,
             forms: tuple[str, ...] = PAIRED_FORMS, transcripts: bool = True, worst_case: bool = False) -> PairedTask:
    """The tasks of one of the six: ``load(form)`` builds a form's documents (``forms``), ``hub`` and ``folder``
    are where they come from (for the declared data source)."""

    def load_form(form: str | None, placeholder: datasets.Dataset) -> datasets.Dataset:
        if form is None:
            raise ValueError(f"rd_{name}: each form has its own documents; name the form")
        docs = load(form)
        return without_failed_transcriptions(name, docs) if form == "txt" and transcripts else docs

    return PairedTask(
        name=name, docs=BenchDocs(name, transcripts), declare=lambda: declaration(name, hub.path, folder),
        load=load_form, docs_forms=forms, worst_case=worst_case,
        auxiliary=_transcribe_exports() if transcripts else {},
    )

