"""MathVerse testmini: Vision-Only (and Vision-Dominant) image forms, twinned with the dataset's own Text-Only
version, paired by ``problem_index``.

Hugging Face: ``CaraJ/MathVerse-lmmseval``, as lmms-eval's ``mathverse_testmini_*`` tasks load it: config
``testmini_version_split``, splits ``vision_only`` and ``vision_dominant`` (image column ``image``), and config
``testmini_text_only``, split ``text_only`` (788 problems each). ``pair_id`` is ``problem_index``.

The gold of a pair comes from its Text-Only record, for both forms: the versions of one problem sometimes
state the same answer differently (an option letter in one, the option's text in another, or extra
formatting), and both forms must be scored by the same rule. A multiple-choice gold of several letters
(``"C\\nD"``: every correct option) is a ``multi_choice`` set, right only when exactly those letters are
given. Option texts are parsed from the Text-Only question (``Choices:`` / ``Choice:`` then ``A:...`` /
``A. ...`` lines) for scoring; they are not listed again in the prompt (they are in the question text, or in
the image). Free-form answers are numbers where they state one once labels and units are removed
(``Area $=9.4 \\mathrm{~cm}^{2}$`` -> 9.4), else expressions (equations, intervals, ``9 \\pi``, ...) that
rule-based scoring matches less reliably.

Local mirror (``RD_EVAL_DATA_DIR``), laid out like the project's shared sample: ``mathverse/pairs.jsonl``
(one line per problem: the visualizer ``pid`` of each version and its testmini ``problem_index``, or null),
``mathverse/mv_data_public_subset.json`` (the MathVerse project page's records of all six versions, keyed by
``pid``), ``mathverse/testmini_text_only.json`` (upstream ``data/testmini_text_only.json``) and the images
``mathverse/images/<pid>.png``. A problem with a testmini ``problem_index`` takes its Text-Only record from
the testmini file; one without takes the project page's Text-Only record and the pair_id
``visualizer-<problem number>``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from rd_eval.benchmarks.documents import docs_from_hf, image_form, to_dataset
from rd_eval.benchmarks.gold import (
    choice_letter,
    choice_letters,
    free_form_gold,
    option_index,
    parse_lettered_options,
)
from rd_eval.benchmarks.schema import BenchDoc
from rd_eval.benchmarks.six import six_task
from rd_eval.data.provenance import with_record
from rd_eval.data.sources import HubSplit, MirrorReader, load_hub, read_jsonl
from rd_eval.fileio.jsonio import read_json
from rd_eval.scoring.answers import ALL_LETTERS

if TYPE_CHECKING:
    import datasets

NAME = "mathverse"
FOLDER = "mathverse"
FORMS: tuple[str, ...] = ("img", "vd_img", "txt")
VERSIONS: dict[str, str] = {"img": "Vision Only", "vd_img": "Vision Dominant", "txt": "Text Only"}
_HUB_PATH = "CaraJ/MathVerse-lmmseval"
HUB: dict[str, HubSplit] = {
    "img": HubSplit(path=_HUB_PATH, name="testmini_version_split", split="vision_only", image_column="image"),
    "vd_img": HubSplit(path=_HUB_PATH, name="testmini_version_split", split="vision_dominant", image_column="image"),
    "txt": HubSplit(path=_HUB_PATH, name="testmini_text_only", split="text_only", image_column="image"),
}
_CHOICES_HEAD = re.compile(r"(?:^|\n)\s*Choices?\s*[:：]?\s*\n")
_OPTION_PREFIX = re.compile(r"^\s*([A-H])\s*[.:：]\s*")


def question_choices(question: str) -> list[str]:
    """Option texts listed in a question after a ``Choices:`` line; [] when there are none."""
    head = _CHOICES_HEAD.search(question)
    if head is None:
        return []
    rest = question[head.end():]
    again = _CHOICES_HEAD.search(rest)  # some records repeat the whole choices block
    return parse_lettered_options(rest[: again.start()] if again else rest) or []


def listed_choices(choices: Sequence[str] | None) -> list[str]:
    """The project page's ``choices`` field (``["A:...", "B:..."]``) without the letter prefixes."""
    out = []
    for i, choice in enumerate(choices or []):
        m = _OPTION_PREFIX.match(str(choice))
        out.append(str(choice)[m.end():].strip() if m and m.group(1) == ALL_LETTERS[i] else str(choice).strip())
    return out


def letter_set(answer: str, n_choices: int) -> str | None:
    """``"C\nD"``, ``"A, C"`` -> ``"C, D"``, ``"A, C"``: the letters of a multi-answer gold, each naming one of
    ``n_choices`` options (0: no options parsed, so only letters written apart count, never a word like ``AB``)."""
    letters = choice_letters(answer)
    if letters is None or len(letters) < 4:  # one letter is a choice, not a set
        return None
    if n_choices == 0:
        return letters if re.search(r"[^A-Za-z]", answer.strip()) else None
    return letters if all(ALL_LETTERS.index(c) < n_choices for c in letters.split(", ")) else None


def gold(answer: str, choices: Sequence[str], multi_choice: bool) -> tuple[str, str, tuple[str, ...]]:
    """(answer, answer_type, choices for scoring) of a Text-Only record."""
    answer = str(answer).strip()
    if choices or multi_choice:
        letter = choice_letter(answer, len(choices) or None)
        if letter is None and choices:
            index = option_index(answer, choices)
            letter = None if index is None else ALL_LETTERS[index]
        if letter is not None:
            return letter, "choice", tuple(choices)
        letters = letter_set(answer, len(choices))
        if letters is not None:
            return letters, "multi_choice", tuple(choices)
    text, answer_type = free_form_gold(answer)
    return text, answer_type, ()


def _is_multi(question_type: Any) -> bool:
    return str(question_type).replace("_", "-").startswith("multi")


def text_only_doc(record: Mapping[str, Any], pair_id: str | None = None, *, listed: Sequence[str] = ()) -> BenchDoc:
    """A Text-Only record (testmini schema, or the project page's with ``listed`` choices) as the text twin."""
    pid = pair_id or str(record["problem_index"])
    question = str(record["question"]).strip()
    in_text = question_choices(question)
    choices = in_text or list(listed)
    answer, answer_type, scored = gold(str(record["answer"]), choices, _is_multi(record.get("question_type")))
    return BenchDoc(pair_id=pid, question=question, answer=answer, answer_type=answer_type, benchmark=NAME,
                    choices=scored, show_choices=bool(scored) and not in_text,
                    source_id=str(record.get("sample_index") or record.get("pid") or pid))


def image_doc(record: Mapping[str, Any], twin: BenchDoc, *, image: str | None = None,
              listed: Sequence[str] = ()) -> BenchDoc:
    """A vision version's record, scored by its Text-Only twin's gold."""
    question = str(record.get("question") or "").strip()
    show = bool(twin.choices) and bool(listed) and not question_choices(question)
    return BenchDoc(pair_id=twin.pair_id, question=question, answer=twin.answer, answer_type=twin.answer_type,
                    benchmark=NAME, choices=twin.choices, show_choices=show,
                    source_id=str(record.get("sample_index") or record.get("pid") or twin.pair_id), image=image)


def _own_gold_doc(record: Mapping[str, Any]) -> BenchDoc:
    """A vision record without a Text-Only twin in the data: scored by its own answer."""
    return text_only_doc({**record, "question": record.get("question") or ""})


def hub_docs(form: str, records: Sequence[Mapping[str, Any]],
             text_only: Sequence[Mapping[str, Any]] | None = None) -> list[tuple[int, BenchDoc]]:
    """Hugging Face rows of ``form`` as documents; image forms take their gold from ``text_only`` rows."""
    if form == "txt":
        return [(i, text_only_doc(r)) for i, r in enumerate(records)]
    twins = {str(r["problem_index"]): text_only_doc(r) for r in (text_only or [])}
    out = []
    for i, record in enumerate(records):
        twin = twins.get(str(record["problem_index"])) or _own_gold_doc(record)
        out.append((i, image_doc(record, twin)))
    return out


def mirror_docs(form: str, with_image: bool, reader: MirrorReader) -> list[BenchDoc]:
    lines = read_jsonl(reader.file("pairs.jsonl"))
    pages = read_json(reader.file("mv_data_public_subset.json"))
    testmini = read_json(reader.file("testmini_text_only.json"))
    if not isinstance(pages, dict) or not isinstance(testmini, list):
        raise ValueError(f"{FOLDER}: mv_data_public_subset.json must be a JSON object keyed by pid and "
                         f"testmini_text_only.json a JSON list")
    by_index = {str(r["problem_index"]): r for r in testmini}
    docs = []
    for line in lines:
        pids = line["pid"]
        index = line.get("testmini_problem_index")
        page_text = pages[str(pids[VERSIONS["txt"]])]
        if index is not None and str(index) in by_index:
            twin = text_only_doc(by_index[str(index)])
        else:
            twin = text_only_doc(page_text, f"visualizer-{line['visualizer_problem']}",
                                 listed=listed_choices(page_text.get("choices")))
        if form == "txt":
            docs.append(twin)
            continue
        record = pages[str(pids[VERSIONS[form]])]
        image = reader.image(f"images/{record['image']}") if with_image else None
        docs.append(image_doc(record, twin, image=image, listed=listed_choices(record.get("choices"))))
    return docs


def load(form: str) -> datasets.Dataset:
    """``img`` (Vision-Only), ``vd_img`` (Vision-Dominant), both with images, or ``txt`` (Text-Only); with the
    record of their source in column ``rd_data_source``."""
    with_image = image_form(form, FORMS)
    reader = MirrorReader.from_env(NAME, FOLDER)
    if reader is not None:
        docs = mirror_docs(form, with_image, reader)
        reader.check_images()
        return with_record(to_dataset(docs, with_image=with_image), reader.record())
    text_only = load_hub(NAME, HUB["txt"])
    if form == "txt":
        source, twins = text_only, None
    else:
        source = load_hub(NAME, HUB[form])
        columns = [c for c in ("problem_index", "sample_index", "question", "answer", "question_type")
                   if c in text_only.dataset.column_names]
        twins = text_only.dataset.select_columns(columns).to_list()
    table = docs_from_hf(source.dataset, lambda records: hub_docs(form, records, twins),
                         image_column=HUB[form].image_column if with_image else None)
    return with_record(table, source.record)


TASK = six_task(NAME, load, hub=HUB["img"], folder=FOLDER, forms=FORMS, transcripts=False)
