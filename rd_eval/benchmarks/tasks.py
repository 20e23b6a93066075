"""The lmms-eval callables of one paired benchmark's tasks, which the task folders' ``utils.py`` re-export.

Each rd_acc item carries the record of the documents' source (``data_source``, see
:mod:`rd_eval.data.provenance`), so every logged sample says which data it was scored on.

Each benchmark has an image form (``rd_<b>_img``), a text twin (``rd_<b>_txt``) and, for transcript twins, a
transcription task (``rd_<b>_transcribe``: the image form with :data:`TRANSCRIBE_PROMPT` as its text, whose
logged samples ``rd-eval twins transcribe`` turns into the transcript file the text twin reads).

The task YAMLs load a one-line placeholder file; ``process_docs`` replaces it with the benchmark's documents
(:func:`rd_eval.benchmarks.<b>.load`), from the Hugging Face dataset or from the local mirror named by
``RD_EVAL_DATA_DIR``. Prompts and scoring read only the text columns (lmms-eval hands them documents without
their images); ``doc_to_visual`` reads the ``image`` column of the full document.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from rd_eval.benchmarks.common import BenchDoc, prompt_img, prompt_txt, score_response
from rd_eval.data.provenance import ITEM_KEY, item_source
from rd_eval.twins.transcripts import TRANSCRIBE_PROMPT, failed_transcriptions, transcript_for, transcript_result

if TYPE_CHECKING:
    import datasets
    from PIL import Image

logger = logging.getLogger(__name__)

Doc = Mapping[str, Any]
Kwargs = Mapping[str, Any] | None


def _first(results: Sequence[str]) -> str:
    return results[0] if results else ""  # an empty generation scores as wrong, not as an error


class PairedTask:
    """The callables of one benchmark's tasks.

    ``load(form)`` builds a form's documents; ``transcripts`` says whether the text twin reads transcripts
    (``rd_eval.twins.transcripts``, benchmark ``name``) or states the problem in its own text (MathVerse
    Text-Only); ``worst_case`` adds the ``rd_worst`` item (DynaMath's worst case over variants).
    """

    def __init__(self, name: str, load: Callable[[str], datasets.Dataset], *, transcripts: bool = True,
                 worst_case: bool = False) -> None:
        self.name = name
        self.load = load
        self.transcripts = transcripts
        self.worst_case = worst_case

    # documents
    def docs(self, form: str) -> Callable[[datasets.Dataset], datasets.Dataset]:
        """A ``process_docs`` that replaces the YAML's placeholder split with the form's documents."""

        def process_docs(placeholder: datasets.Dataset) -> datasets.Dataset:
            docs = self.load(form)
            if form == "txt" and self.transcripts:
                docs = self._without_failed_transcriptions(docs)
            return docs

        process_docs.__name__ = f"process_docs_{form}"
        return process_docs

    def _without_failed_transcriptions(self, docs: datasets.Dataset) -> datasets.Dataset:
        """The text twin has no problem to state where the transcription failed: such documents are left out
        (their pairs count as image-only in the report), with a warning naming them."""
        failed = failed_transcriptions(self.name)
        if not failed:
            return docs
        keep = [i for i, pair_id in enumerate(docs["pair_id"]) if str(pair_id) not in failed]
        dropped = sorted(set(map(str, docs["pair_id"])) & set(failed))
        if dropped:
            logger.warning("rd_%s_txt: %d documents left out, their transcription failed (pair_ids %s%s); their "
                           "pairs count as image-only", self.name, len(dropped), ", ".join(dropped[:5]),
                           ", ..." if len(dropped) > 5 else "")
        return docs.select(keep)

    # visuals
    def doc_to_visual_img(self, doc: Doc) -> list[Image.Image]:
        image = doc.get("image")
        if image is None:
            raise ValueError(f"{self.name} document {doc.get('pair_id')!r} has no image")
        return [image.convert("RGB")]

    def doc_to_visual_txt(self, doc: Doc) -> list[Any]:
        return []

    # prompts
    def doc_to_text_img(self, doc: Doc, lmms_eval_specific_kwargs: Kwargs = None) -> str:
        return prompt_img(BenchDoc.from_row(doc), lmms_eval_specific_kwargs)

    def doc_to_text_txt(self, doc: Doc, lmms_eval_specific_kwargs: Kwargs = None) -> str:
        bench = BenchDoc.from_row(doc)
        transcript = transcript_for(self.name, bench.pair_id) if self.transcripts else None
        return prompt_txt(bench, lmms_eval_specific_kwargs, transcript)

    def doc_to_text_transcribe(self, doc: Doc, lmms_eval_specific_kwargs: Kwargs = None) -> str:
        return TRANSCRIBE_PROMPT

    def doc_to_target(self, doc: Doc) -> str:
        return str(doc["answer"])

    # scoring
    def _results(self, doc: Doc, results: Sequence[str], form: str) -> dict[str, dict[str, Any]]:
        bench = BenchDoc.from_row(doc)
        item = {**score_response(bench, _first(results), form), ITEM_KEY: item_source(doc)}
        out = {"rd_acc": item}
        if self.worst_case:
            out["rd_worst"] = {**item, "group_id": bench.group_id, "variant": bench.variant}
        return out

    def process_results_img(self, doc: Doc, results: Sequence[str]) -> dict[str, dict[str, Any]]:
        return self._results(doc, results, "img")

    def process_results_txt(self, doc: Doc, results: Sequence[str]) -> dict[str, dict[str, Any]]:
        return self._results(doc, results, "txt")

    def process_results_transcribe(self, doc: Doc, results: Sequence[str]) -> dict[str, dict[str, Any]]:
        return transcript_result(str(doc["pair_id"]), _first(results))
