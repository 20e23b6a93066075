"""The common document schema of the six paired benchmarks, their prompts, scoring and metrics.

Every benchmark module (:mod:`rd_eval.benchmarks.mathvista` and the others) turns its dataset's records
into :class:`BenchDoc` values: one schema for all six, whatever the source (the Hugging Face dataset or a
local mirror under ``RD_EVAL_DATA_DIR``). Both forms of a pair are built from the same gold fields
(answer, answer type, choices, precision), so they are scored by the same rule; only the carrier of the
image content differs: the image itself (image form) or text (text twin).

Documents reach lmms-eval as a :class:`datasets.Dataset` (:func:`to_dataset`) with the columns of
:data:`TEXT_COLUMNS` plus, in image forms, an ``image`` column of the ``Image`` feature, which lmms-eval
leaves out of the documents it gives to prompts and scoring.
"""

from __future__ import annotations

import json
import re
import string
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rd_eval.data.provenance import with_record
from rd_eval.data.sources import HubSplit, MirrorReader, load_hub
from rd_eval.scoring.answers import ANSWER_TYPES, extract_answer, is_correct
from rd_eval.scoring.doc_errors import error_reason

if TYPE_CHECKING:  # datasets is imported lazily: building documents needs it, the pure helpers do not
    import datasets

__all__ = [
    "ANSWER_TYPES",
    "FORMS",
    "BenchDoc",
    "HubSource",
    "answer_instruction",
    "build_form",
    "choice_letter",
    "choice_letters",
    "docs_from_hf",
    "format_choices",
    "free_form_gold",
    "mean_correct",
    "numeric_answer",
    "parse_lettered_options",
    "prompt_img",
    "prompt_txt",
    "score_response",
    "to_dataset",
    "worst_case_accuracy",
]

FORMS: tuple[str, ...] = ("img", "txt")
LETTERS = string.ascii_uppercase
TEXT_COLUMNS: tuple[str, ...] = (
    "pair_id", "benchmark", "source_id", "group_id", "variant", "question", "choices", "show_choices", "answer",
    "answer_type", "precision",
)

# One wording for both forms of a pair: the lead, the problem text and the answer instruction are identical;
# the image form attaches the image, the text twin puts its transcript (or, for MathVerse, the dataset's own
# Text-Only wording) in its place.
LEAD = "Solve the following problem."
LEAD_IMAGE_ONLY = "Solve the problem shown in the image."  # an image form whose problem text is all in the image
TRANSCRIPT_LABEL = "The image, transcribed as text:"
_STEPS = "Think step by step, then write the final answer on the last line"
_ANSWER_FORMAT: dict[str, str] = {
    "number": _STEPS + " as 'Answer: <number>'.",
    "choice": _STEPS + " as 'Answer: <letter>', the letter of the correct option.",
    "multi_choice": _STEPS + " as 'Answer: <letters>', the letters of all correct options (e.g. 'Answer: A, C').",
    "expression": _STEPS + " as 'Answer: <expression>'.",
    "text": _STEPS + " as 'Answer: <answer>'.",
}


@dataclass(frozen=True)
class BenchDoc:
    """One document of a paired benchmark, in the form-independent schema.

    ``pair_id`` is stable across forms (and across runs); ``question`` is the problem text of this form
    without the image content; ``answer``/``answer_type``/``choices``/``precision`` are what
    :func:`rd_eval.scoring.answers.is_correct` scores against. ``group_id`` groups documents scored together by a
    worst-case metric (DynaMath: the seed question; elsewhere the pair itself). ``show_choices`` False keeps
    ``choices`` for scoring only, where the options are already in the question text or in the image.
    ``image`` is a local file (documents from a local mirror) or None (Hugging Face documents carry their
    image column separately).
    """

    pair_id: str
    question: str
    answer: str
    answer_type: str
    benchmark: str
    choices: tuple[str, ...] = ()
    precision: int | None = None
    show_choices: bool = True
    source_id: str = ""
    group_id: str = ""
    variant: int = 0
    image: str | None = field(default=None, compare=False)

    def __post_init__(self) -> None:
        if not self.pair_id:
            raise ValueError(f"{self.benchmark}: a document needs a non-empty pair_id")
        if self.answer_type not in ANSWER_TYPES:
            raise ValueError(f"{self.benchmark} {self.pair_id}: unknown answer_type {self.answer_type!r}; "
                             f"valid types: {list(ANSWER_TYPES)}")
        object.__setattr__(self, "choices", tuple(str(c) for c in self.choices))
        if not self.group_id:
            object.__setattr__(self, "group_id", self.pair_id)
        if not self.source_id:
            object.__setattr__(self, "source_id", self.pair_id)

    def row(self) -> dict[str, Any]:
        """The document as a dataset row (without the image)."""
        return {
            "pair_id": self.pair_id, "benchmark": self.benchmark, "source_id": self.source_id,
            "group_id": self.group_id, "variant": self.variant, "question": self.question,
            "choices": list(self.choices), "show_choices": self.show_choices, "answer": self.answer,
            "answer_type": self.answer_type, "precision": self.precision,
        }

    @classmethod
    def from_row(cls, row: Mapping[str, Any]) -> BenchDoc:
        """Back from a dataset row as lmms-eval hands it to prompts and scoring."""
        missing = [c for c in TEXT_COLUMNS if c not in row]
        if missing:
            raise ValueError(f"not an rd-eval benchmark document: missing {missing}; has {sorted(row)}")
        precision = row["precision"]
        return cls(
            pair_id=str(row["pair_id"]), question=str(row["question"]), answer=str(row["answer"]),
            answer_type=str(row["answer_type"]), benchmark=str(row["benchmark"]),
            choices=tuple(row["choices"] or ()), precision=None if precision is None else int(precision),
            show_choices=bool(row["show_choices"]),
            source_id=str(row["source_id"]), group_id=str(row["group_id"]), variant=int(row["variant"] or 0),
        )


# ---------------------------------------------------------------------------------------------------------
# Gold answers


_LETTER_RE = re.compile(r"^\s*[\(\[]?\s*([A-Za-z])\s*[\)\]]?\s*[.:]?\s*$")
_LETTER_LIST_RE = re.compile(r"^\s*[A-Za-z](?:\s*(?:,|;|and|&|\s)\s*[A-Za-z])*\s*$")


def choice_letter(answer: str, n_choices: int | None = None) -> str | None:
    """``"B"``, ``"(B)"``, ``" b. "`` -> ``"B"``; None when the answer is not one option letter (within range)."""
    m = _LETTER_RE.match(answer)
    if m is None:
        return None
    letter = m.group(1).upper()
    if n_choices is not None and LETTERS.index(letter) >= n_choices:
        return None
    return letter


def choice_letters(answer: str) -> str | None:
    """``"A, C"`` / ``"A C"`` / ``"AC"`` -> ``"A, C"`` (sorted, unique); None when not a list of letters."""
    text = answer.strip()
    if re.fullmatch(r"[A-Za-z]{2,6}", text) and text.isupper():
        letters = list(text)
    elif _LETTER_LIST_RE.match(text):
        letters = re.findall(r"(?<![A-Za-z])[A-Za-z](?![A-Za-z])", re.sub(r"\band\b", " ", text))
    else:
        return None
    letters = sorted({c.upper() for c in letters})
    return ", ".join(letters) if letters else None


def _norm_option(text: str) -> str:
    text = re.sub(r"\\(?:mathrm|text|operatorname)\{([^{}]*)\}", r"\1", str(text))
    text = text.replace("$", "").replace("\\hline", "").replace("^\\circ", "°").replace("^{\\circ}", "°")
    return " ".join(text.lower().replace("\u00a0", " ").split()).replace(" °", "°")


def option_index(answer: str, choices: Sequence[str]) -> int | None:
    """Index of the choice whose text is ``answer`` (exact, then normalised); None if none or ambiguous."""
    exact = [i for i, c in enumerate(choices) if str(c).strip() == answer.strip()]
    if exact:
        return exact[0]  # duplicated option texts: the first one, as the dataset's own letter would be
    normed = _norm_option(answer)
    loose = [i for i, c in enumerate(choices) if _norm_option(c) == normed]
    return loose[0] if len(loose) == 1 else None


_NUMBER = r"[-−]?(?:\d+(?:,\d{3})*(?:\.\d+)?|\.\d+)"
_UNIT_WORDS = (
    r"(?:square|cubic|sq\.?|units?|cm|mm|km|m|ft|feet|foot|in|inches|yd|mi|miles?|g|kg|mg|lb|lbs|s|sec|seconds?|"
    r"min|minutes?|h|hours?|days?|years?|degrees?|deg|ml|l|L|cc|N|J|W|V|A|Pa|kPa|%|°|T)"
)


def numeric_answer(answer: str) -> str | None:
    """The number a gold answer states, with labels and units removed; None if anything else is left.

    ``"Area $=9.4 \\mathrm{~cm}^{2}$"`` -> ``"9.4"``, ``"315^\\circ T"`` -> ``"315"``, ``"$h=58$"`` -> ``"58"``,
    ``"1,200"`` -> ``"1200"``; ``"9 \\pi"``, ``"(2,-2)"`` or ``"\\frac{4}{5}"`` -> None (not a plain number).
    """
    text = str(answer).strip()
    if not text:
        return None
    text = text.replace("$", " ").replace("\\,", " ").replace("~", " ").replace("\\!", " ")
    text = text.replace("掳", "°")  # a mis-decoded degree sign found in MathVerse answers
    text = re.sub(r"\\(?:mathrm|text|textrm|operatorname|mbox)\s*\{([^{}]*)\}", r" \1 ", text)
    text = re.sub(r"\^\s*\{?\s*\\circ\s*\}?", " ° ", text)
    text = re.sub(r"\\(?:circ|degree)", " ° ", text)
    text = re.sub(r"\\%", " % ", text)
    if text.count("=") == 1:  # "Area = 9.4", "y = 21.61": a label or variable, then the value
        left, right = text.split("=")
        if re.fullmatch(r"\s*[A-Za-z][A-Za-z ]{0,30}(?:_\{?\w+\}?)?\s*", left):
            text = right
        else:
            return None
    elif "=" in text:
        return None
    text = re.sub(r"\^\s*\{?\s*[23]\s*\}?", " ", text)  # square / cubic unit exponents
    words = text.split()
    numbers = [w for w in words if re.fullmatch(_NUMBER, w)]
    others = [w for w in words if not re.fullmatch(_NUMBER, w)]
    if len(numbers) != 1:
        # "4.4m" / "315°T": a number glued to its unit
        glued = re.fullmatch(rf"\s*({_NUMBER})\s*((?:{_UNIT_WORDS}\s*)+)", text)
        if glued is None:
            return None
        numbers, others = [glued.group(1)], glued.group(2).split()
    if not all(re.fullmatch(rf"{_UNIT_WORDS}+", w) for w in others):
        return None
    value = numbers[0].replace(",", "").replace("−", "-")
    if value.startswith("."):
        value = "0" + value
    elif value.startswith("-."):
        value = "-0" + value[1:]
    return value


def free_form_gold(answer: str) -> tuple[str, str]:
    """(answer, answer_type) of a free-form gold answer: a plain number, else an expression or text."""
    number = numeric_answer(answer)
    if number is not None:
        return number, "number"
    text = str(answer).strip()
    if re.search(r"[\\^=<>()\[\]{}+*/]|\d", text):
        return text, "expression"
    return text, "text"


# ---------------------------------------------------------------------------------------------------------
# Prompts


def answer_instruction(answer_type: str, precision: int | None = None) -> str:
    """The answer-format sentence, identical in both forms of a pair."""
    if answer_type not in _ANSWER_FORMAT:
        raise ValueError(f"unknown answer_type {answer_type!r}; valid types: {list(_ANSWER_FORMAT)}")
    text = _ANSWER_FORMAT[answer_type]
    if answer_type == "number" and precision is not None:
        places = "an integer" if precision == 0 else f"{precision} decimal place{'s' if precision != 1 else ''}"
        text += f" Round the number to {places}."
    return text


def format_choices(choices: Sequence[str]) -> str:
    """``Choices:`` then ``(A) ...`` lines; "" without choices."""
    if not choices:
        return ""
    if len(choices) > len(LETTERS):
        raise ValueError(f"{len(choices)} choices cannot be lettered A-Z")
    return "Choices:\n" + "\n".join(f"({LETTERS[i]}) {c}" for i, c in enumerate(choices))


def problem_text(doc: BenchDoc) -> str:
    """The problem as text: the question, then its lettered choices (when the dataset lists them)."""
    parts = [doc.question.strip(), format_choices(doc.choices) if doc.show_choices else ""]
    return "\n".join(p for p in parts if p)


def _affix(body: str, kwargs: Mapping[str, Any] | None) -> str:
    kwargs = kwargs or {}
    return f"{kwargs.get('pre_prompt', '')}{body}{kwargs.get('post_prompt', '')}"


def prompt_img(doc: BenchDoc, kwargs: Mapping[str, Any] | None = None) -> str:
    """The image form's text: lead, problem text, answer instruction (the image is attached)."""
    problem = problem_text(doc)
    instruction = answer_instruction(doc.answer_type, doc.precision)
    body = f"{LEAD}\n\n{problem}\n\n{instruction}" if problem else f"{LEAD_IMAGE_ONLY}\n\n{instruction}"
    return _affix(body, kwargs)


def prompt_txt(doc: BenchDoc, kwargs: Mapping[str, Any] | None = None, transcript: str | None = None) -> str:
    """The text twin: the image form's text with the image's transcript in the image's place.

    Without ``transcript`` (MathVerse Text-Only, which states everything in its own question) the problem
    text stands alone.
    """
    parts = [LEAD]
    if transcript is not None:
        parts.append(f"{TRANSCRIPT_LABEL}\n{transcript.strip()}")
    problem = problem_text(doc)
    if problem:
        parts.append(problem)
    parts.append(answer_instruction(doc.answer_type, doc.precision))
    return _affix("\n\n".join(parts), kwargs)


# ---------------------------------------------------------------------------------------------------------
# Scoring and metrics


def score_response(doc: BenchDoc, response: str, form: str) -> dict[str, Any]:
    """The ``rd_acc`` item of one document (the rd_demo contract read by ``rd_eval.lmms.runs``).

    ``{pair_id, form, correct, pred, answer, error}``: ``correct`` 0/1 and ``error`` None for a scored
    response; for an error response (``rd_eval.scoring.doc_errors``: the model could not run the document)
    ``correct`` and ``pred`` are None and ``error`` holds the reason, so it is never counted as wrong.
    """
    if form not in FORMS:
        raise ValueError(f"unknown form {form!r}; valid forms: {list(FORMS)}")
    item: dict[str, Any] = {"pair_id": doc.pair_id, "form": form, "correct": None, "pred": None,
                            "answer": doc.answer, "error": None}
    reason = error_reason(response)
    if reason is not None:
        item["error"] = reason
        return item
    kwargs: dict[str, Any] = {}
    if doc.precision is not None:
        kwargs["precision"] = doc.precision
    item["correct"] = int(is_correct(response, doc.answer, doc.answer_type, doc.choices, **kwargs))
    item["pred"] = extract_answer(response, doc.answer_type, doc.choices, **kwargs)
    return item


def _flag(item: Mapping[str, Any]) -> int | None:
    value = item["correct"]
    if value is None:
        return None
    if isinstance(value, bool) or value not in (0, 1):
        raise ValueError(f"'correct' must be 0, 1 or None (error) in every rd_acc item, got {value!r}")
    return int(value)


def mean_correct(items: Sequence[Mapping[str, Any]]) -> float:
    """Fraction correct over the scored items; error items (``correct`` None) are skipped; 0.0 if none."""
    flags = [f for f in (_flag(item) for item in items) if f is not None]
    return sum(flags) / len(flags) if flags else 0.0


def worst_case_accuracy(items: Sequence[Mapping[str, Any]]) -> float:
    """DynaMath's worst-case accuracy: a question (``group_id``) counts as correct only if every variant
    of it that was run is correct. A question with an error item in any variant is left out (it cannot be
    judged); 0.0 when no question is left."""
    groups: dict[str, list[int | None]] = {}
    for item in items:
        if "group_id" not in item:
            raise ValueError(f"worst-case items need a 'group_id' (the question its variant belongs to); "
                             f"got keys {sorted(item)}")
        groups.setdefault(str(item["group_id"]), []).append(_flag(item))
    judged = [flags for flags in groups.values() if all(f is not None for f in flags)]
    if not judged:
        return 0.0
    return sum(1 for flags in judged if all(f == 1 for f in flags)) / len(judged)


# ---------------------------------------------------------------------------------------------------------
# Datasets


def _text_features() -> datasets.Features:
    import datasets

    return datasets.Features({
        "pair_id": datasets.Value("string"), "benchmark": datasets.Value("string"),
        "source_id": datasets.Value("string"), "group_id": datasets.Value("string"),
        "variant": datasets.Value("int32"), "question": datasets.Value("string"),
        "choices": datasets.List(datasets.Value("string")), "show_choices": datasets.Value("bool"),
        "answer": datasets.Value("string"),
        "answer_type": datasets.Value("string"), "precision": datasets.Value("int32"),
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


def to_dataset(docs: Sequence[BenchDoc], *, with_image: bool) -> datasets.Dataset:
    """Documents as a dataset; with ``with_image`` an ``image`` column (``Image`` feature) from ``doc.image``
    files, decoded only when a document is read."""
    import datasets

    if not docs:
        raise ValueError("no documents to build a dataset from")
    check_unique(docs, docs[0].benchmark)
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


def read_json(path: Path) -> Any:
    """A JSON file of a local mirror; errors name the file."""
    try:
        return json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise ValueError(f"{path}: not a readable JSON file ({err})") from None


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
    table = datasets.Dataset.from_list([doc.row() for doc in docs], features=_text_features())
    if image_column is None:
        return table
    if image_column not in dataset.column_names:
        raise ValueError(f"image column {image_column!r} not in the dataset (columns: {dataset.column_names})")
    images = dataset.select_columns([image_column]).select([index for index, _ in picked])
    if image_column != "image":
        images = images.rename_column(image_column, "image")
    return datasets.concatenate_datasets([table, images], axis=1)


def image_form(form: str, forms: Sequence[str] = FORMS) -> bool:
    """Whether ``form`` (one of ``forms``) is an image form (its name ends in ``img``)."""
    if form not in forms:
        raise ValueError(f"unknown form {form!r}; valid forms: {list(forms)}")
    return form.endswith("img")


@dataclass(frozen=True)
class HubSource:
    """Where lmms-eval's own task for the benchmark loads it: ``load_dataset(path, name, split=split)``, at the
    revision :mod:`rd_eval.data.revisions` pins for the benchmark."""

    path: str
    name: str | None
    split: str
    image_column: str

    @property
    def split_ref(self) -> HubSplit:
        return HubSplit(self.path, self.name, self.split)


def build_form(
    with_image: bool,
    *,
    benchmark: str,
    folder: str,
    mirror: Callable[[bool, MirrorReader], list[BenchDoc]],
    hub: HubSource,
    to_docs: Callable[[list[dict[str, Any]]], list[tuple[int, BenchDoc]]],
) -> datasets.Dataset:
    """A form's documents, with the record of their source (column ``rd_data_source``): from the local mirror
    (``mirror`` reads ``$RD_EVAL_DATA_DIR/<folder>``) when RD_EVAL_DATA_DIR is set, else from the Hugging Face
    dataset at the benchmark's revision."""
    reader = MirrorReader.from_env(benchmark, folder)
    if reader is not None:
        docs = mirror(with_image, reader)
        return with_record(to_dataset(docs, with_image=with_image), reader.record())
    loaded = load_hub(benchmark, hub.split_ref)
    table = docs_from_hf(loaded.dataset, to_docs, image_column=hub.image_column if with_image else None)
    return with_record(table, loaded.record)


_OPTION_MARK = re.compile(r"(?:^|(?<=[;\n]))\s*([A-H])\s*[.:．：]\s*")


def parse_lettered_options(text: str) -> list[str] | None:
    """``"A. 300, 400;B. 400, 300; C. ..."`` or ``"A:40°\\nB:60°"`` -> option texts; None unless the marks run
    A, B, C, ... in order."""
    marks = list(_OPTION_MARK.finditer(text))
    if len(marks) < 2 or [m.group(1) for m in marks] != list(LETTERS[: len(marks)]):
        return None
    options = []
    for i, m in enumerate(marks):
        end = marks[i + 1].start() if i + 1 < len(marks) else len(text)
        options.append(text[m.end():end].strip().rstrip(";").strip())
    return options if all(options) else None


_IMAGE_TAG = re.compile(r"<image\d*>")


def strip_image_tags(text: str) -> str:
    """Remove ``<image1>``-style placeholders (MathVision), tidying the whitespace they leave."""
    text = _IMAGE_TAG.sub("", text)
    return re.sub(r"\n{3,}", "\n\n", re.sub(r"[ \t]+\n", "\n", text)).strip()
