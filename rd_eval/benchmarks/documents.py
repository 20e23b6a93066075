"""Benchmark documents as the ``datasets.Dataset`` lmms-eval iterates: from a local mirror's files or a Hugging
Face split, with the record of their source (:mod:`rd_eval.data.provenance`).

A dataset has the columns of :data:`~rd_eval.benchmarks.schema.TEXT_COLUMNS` plus, in image forms, an ``image``
column of the ``Image`` feature, which lmms-eval leaves out of the documents it gives to prompts and scoring.

A document whose gold answer cannot be judged (LogicVista ``v1_382`` has an empty answer) is kept: it is
reported by a warning when the documents are built, and each response to it is logged as an unscored data
error (:func:`rd_eval.scoring.item.score_doc`), never counted, never a crash of the run.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Sequence
from typing import TYPE_CHECKING, Any

from rd_eval.benchmarks.schema import BenchDoc
from rd_eval.data.provenance import with_record
from rd_eval.data.sources import HubSplit, MirrorReader, load_hub
from rd_eval.scoring.item import gold_problem
from rd_eval.vocabulary.task_names import PAIRED_FORMS

if TYPE_CHECKING:  # datasets is imported lazily: building documents needs it, the pure helpers do not
    import datasets

logger = logging.getLogger(__name__)


def _text_features() -> datasets.Features:
    import datasets

    return datasets.Features({
        "pair_id": datasets.Value("string"), "benchmark": datasets.Value("string"),
        "source_id": datasets.Value("string"), "group_id": datasets.Value("string"),
        "variant": datasets.Value("int32"), "question": datasets.Value("string"),
        "choices": datasets.List(datasets.Value("string")), "show_choices": datasets.Value("bool"),
        "answer": datasets.Value("string"),
        "answer_type": datasets.Value("string"), "precision": datasets.Value("int32"),
        "abs_tolerance": datasets.Value("float64"),
    })


def check_unique(docs: Iterable[BenchDoc], benchmark: str) -> None:
    seen: set[str] = set()
    dups = []
    for doc in docs:
        if doc.pair_id in seen:
            dups.append(doc.pair_id)
        seen.add(doc.pair_id)
    if dups:
        raise ValueError(f"{benchmark}: pair_id must be unique within a form; duplicated: {sorted(set(dups))[:5]}")


def unusable_golds(docs: Iterable[BenchDoc]) -> dict[str, str]:
    """pair_id -> why its gold answer cannot be judged, for the documents whose gold cannot be."""
    out = {}
    for doc in docs:
        reason = gold_problem(doc.gold)
        if reason is not None:
            out[doc.pair_id] = reason
    return out


def report_unusable_golds(docs: Sequence[BenchDoc]) -> None:
    """Warn, naming each document and why, when a gold answer cannot be judged (its responses will be logged
    as data errors)."""
    found = unusable_golds(docs)
    if not found:
        return
    named = "; ".join(f"{pair_id}: {reason}" for pair_id, reason in list(found.items())[:5])
    logger.warning("%s: %d document(s) have a gold answer that cannot be judged; their responses are logged as "
                   "unscored data errors, left out of accuracy (%s%s)", docs[0].benchmark, len(found), named,
                   "; ..." if len(found) > 5 else "")


def to_dataset(docs: Sequence[BenchDoc], *, with_image: bool) -> datasets.Dataset:
    """Documents as a dataset; with ``with_image`` an ``image`` column (``Image`` feature) from ``doc.image``
    files, decoded only when a document is read."""
    import datasets

    if not docs:
        raise ValueError("no documents to build a dataset from")
    check_unique(docs, docs[0].benchmark)
    report_unusable_golds(docs)
    features = _text_features()
    rows = [doc.row() for doc in docs]
    if with_image:
        missing = [doc.pair_id for doc in docs if not doc.image]
        if missing:
            raise ValueError(f"{docs[0].benchmark}: image-form documents without an image file: {missing[:5]}")
        features["image"] = datasets.Image()
        for row, doc in zip(rows, docs, strict=True):
            row["image"] = str(doc.image)
    return datasets.Dataset.from_list(rows, features=features)



def _is_image_feature(feature: Any) -> bool:
    import datasets

    if isinstance(feature, datasets.Image):
        return True
    inner = getattr(feature, "feature", None)
    return isinstance(feature, (datasets.Sequence, datasets.LargeList)) and isinstance(inner, datasets.Image)


def docs_from_hf(
    dataset: datasets.Dataset,
    to_docs: Callable[[list[dict[str, Any]]], list[tuple[int, BenchDoc]]],
    *,
    image_column: str | None,
) -> datasets.Dataset:
    """A Hugging Face split as documents: ``to_docs`` turns the records (read without their images) into
    ``(row index, document)`` pairs, which may reorder or drop rows; the image column, when kept, follows
    the selected rows without being decoded."""
    import datasets

    text_columns = [c for c, feature in dataset.features.items() if not _is_image_feature(feature)]
    records = dataset.select_columns(text_columns).to_list()
    picked = to_docs(records)
    if not picked:
        raise ValueError("the dataset yielded no documents")
    docs = [doc for _, doc in picked]
    check_unique(docs, docs[0].benchmark)
    report_unusable_golds(docs)
    table = datasets.Dataset.from_list([doc.row() for doc in docs], features=_text_features())
    if image_column is None:
        return table
    if image_column not in dataset.column_names:
        raise ValueError(f"image column {image_column!r} not in the dataset (columns: {dataset.column_names})")
    images = dataset.select_columns([image_column]).select([index for index, _ in picked])
    if image_column != "image":
        images = images.rename_column(image_column, "image")
    return datasets.concatenate_datasets([table, images], axis=1)


def image_form(form: str, forms: Sequence[str] = PAIRED_FORMS) -> bool:
    """Whether ``form`` (one of ``forms``) is an image form (its name ends in ``img``)."""
    if form not in forms:
        raise ValueError(f"unknown form {form!r}; valid forms: {list(forms)}")
    return form.endswith("img")



def build_form(
    with_image: bool,
    *,
    benchmark: str,
    folder: str,
    mirror: Callable[[bool, MirrorReader], list[BenchDoc]],
    hub: HubSplit,
    to_docs: Callable[[list[dict[str, Any]]], list[tuple[int, BenchDoc]]],
) -> datasets.Dataset:
    """A form's documents, with the record of their source (column ``rd_data_source``): from the local mirror
    (``mirror`` reads ``$RD_EVAL_DATA_DIR/<folder>``) when RD_EVAL_DATA_DIR is set, else from the Hugging Face
    dataset at the benchmark's revision."""
    reader = MirrorReader.from_env(benchmark, folder)
    if reader is not None:
        docs = mirror(with_image, reader)
        reader.check_images()
        return with_record(to_dataset(docs, with_image=with_image), reader.record())
    loaded = load_hub(benchmark, hub)
    table = docs_from_hf(loaded.dataset, to_docs, image_column=hub.image_column if with_image else None)
    return with_record(table, loaded.record)
