"""Benchmark records as the datasets really state them (issue 14): options listed inline in the question
(LogicVista, DynaMath), MathVerse golds that are a set of letters, an item without a usable gold, DynaMath's
absolute tolerance, and a local mirror that lacks an image.

Documents are built by the benchmark modules from records of each upstream schema (written here), then scored
through the task layer's ``process_results`` exactly as lmms-eval calls it. The counts on the real samples in
``../shared/data`` are checked where that folder exists.
"""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path
from typing import Any

import pytest
import rd_eval_tasks
from PIL import Image

from rd_eval.benchmarks import dynamath, logicvista, mathverse, prompts
from rd_eval.benchmarks.gold import parse_inline_options
from rd_eval.benchmarks.schema import BenchDoc
from rd_eval.benchmarks.task import TaskDataError
from rd_eval.data.sources import LocalDataError, MirrorReader

TASKS_DIR = Path(rd_eval_tasks.__file__).parent
SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"


def _score(doc: BenchDoc, response: str, form: str = "img") -> dict[str, Any]:
    """The rd_acc item lmms-eval logs for ``response`` to ``doc`` (its dataset row, as the task layer gets it)."""
    task = {"logicvista": logicvista.TASK, "dynamath": dynamath.TASK, "mathverse": mathverse.TASK}[doc.benchmark]
    return task.score(doc.row(), [response], form)["rd_acc"]


def _right(doc: BenchDoc, response: str) -> bool:
    item = _score(doc, response)
    assert item["error"] is None, item
    return item["correct"] == 1


def _logicvista(question: str, answer: str, key: str = "v1_63") -> BenchDoc:
    record = {"imagename": f"{key}.png", "question": question, "answer": answer, "reasoning": "", "skill": []}
    return logicvista.record_doc(record, key)


# ---------------------------------------------------------------------------------------------------------
# Options listed inline in the question


SALES = ("If the Eastern Region's total sales represent 26% of the total, what are the total sales across all "
         "regions? Select from A, B, C, D and E. (A) £124 million (B) £142 million (C) £161 million "
         "(D) £619 million (E) £620 million")


def test_inline_options_parse_from_the_last_run_of_marks() -> None:
    assert parse_inline_options("Select from A, B and C. (A) True (B)False (C)Insufficient Information") == [
        "True", "False", "Insufficient Information"]
    assert parse_inline_options("Which gear? (A) A, D and E turn, (B) B and C, then A, (C) none ") == [
        "A, D and E turn", "B and C, then A", "none"]
    # an earlier "(A)" in the stem is not the option list; the last run from (A) to the end is
    assert parse_inline_options("Point (A) is fixed. Which? (A) up (B) down") == ["up", "down"]
    assert parse_inline_options("Which piece fits? Select from A, B, C, and D. (A) (B) (C) (D)") is None
    assert parse_inline_options("What choice (A, B, C, or D) fits the pattern?") is None
    assert parse_inline_options("Pick one: (A) 1 (C) 3") is None  # letters out of order
    assert parse_inline_options("Only (A) here") is None  # one mark is no list


def test_logicvista_inline_options_score_option_text() -> None:
    doc = _logicvista(SALES, "D")
    assert doc.choices == ("£124 million", "£142 million", "£161 million", "£619 million", "£620 million")
    assert (doc.answer, doc.answer_type, doc.show_choices) == ("D", "choice", False)
    assert _right(doc, "Working through the table...\nAnswer: £619 million")
    assert _right(doc, "The total is (D) £619 million.")
    assert not _right(doc, "Answer: £620 million")
    assert not _right(doc, "Answer: £142 million")


def test_logicvista_options_appear_once_in_both_forms() -> None:
    doc = _logicvista(SALES, "D")
    for prompt in (prompts.prompt_img(doc), prompts.prompt_txt(doc, transcript="[a sales table]")):
        assert prompt.count("£619 million") == 1 and prompt.count("(D)") == 1
        assert "Choices:" not in prompt


def test_logicvista_options_drawn_in_the_image_give_no_choices() -> None:
    doc = _logicvista("Which piece corresponds to the given solid? Select from A, B, C, and D. (A) (B) (C) (D)", "C")
    assert (doc.answer, doc.answer_type, doc.choices) == ("C", "choice", ())
    assert _right(doc, "Answer: C") and not _right(doc, "Answer: B")


def test_logicvista_gold_as_option_text_or_letters() -> None:
    truth = "A BarBox will cost less than 5 FruitBars. Select from A, B and C. (A) True (B)False (C)Insufficient"
    doc = _logicvista(truth, "False")
    assert (doc.answer, doc.answer_type) == ("B", "choice")
    assert _right(doc, "Answer: False") and _right(doc, "Answer: B") and not _right(doc, "Answer: True")
    both = _logicvista("Which are prime? (A) 2 (B) 4 (C) 5 (D) 9", "A, C")
    assert (both.answer, both.answer_type, both.choices) == ("A, C", "multi_choice", ("2", "4", "5", "9"))
    assert _right(both, "Answer: A, C") and not _right(both, "Answer: A")
    # a gold letter the parsed list does not reach: the options are not used, the letter still is
    short = _logicvista("Which train? Select from A, B, C, and D. (A) 09:20 train (B) 09:00 train", "D")
    assert (short.answer, short.answer_type, short.choices) == ("D", "choice", ())


def _dynamath(question: str, answer: str, kind: str) -> BenchDoc:
    record = {"question": question, "answer": answer, "image": "image/image1.png", "answer_type": kind}
    return dynamath.variant_doc(record, "101", 1)


def test_dynamath_inline_options_score_option_text() -> None:
    doc = _dynamath("The derivative of f(x) at x=-2 is ____ that at x=2  choice: (A) larger than (B) smaller than "
                    "(C) equal to", "B", "multiple choice")
    assert (doc.answer, doc.answer_type, doc.show_choices) == ("B", "choice", False)
    assert doc.choices == ("larger than", "smaller than", "equal to")
    assert _right(doc, "So f' is smaller at -2.\nAnswer: smaller than")
    assert not _right(doc, "Answer: larger than")
    ratio = _dynamath("Find the ratio of the unshaded area to the shaded area. choice: (A) 1/4 (B) 2/5 (C) 1/3",
                      "A", "multiple choice")
    assert ratio.choices == ("1/4", "2/5", "1/3")
    assert _right(ratio, "Answer: 1/4") and not _right(ratio, "Answer: 1/3")
    # a float question's "(A)" is never taken for options
    number = _dynamath("Point (A) is at x=1 and (B) at x=3. What is the distance?", "2", "float")
    assert (number.answer_type, number.choices) == ("number", ())


def test_real_samples_gain_their_inline_options() -> None:
    """How many real items gain choices: 37 of the 50 LogicVista items (31 with option texts, 6 whose options
    are their own letters); every multiple-choice DynaMath item (17 of the 50 seed questions; in the mirror's
    10 trials, the 10 variants of each of its 3 multiple-choice questions)."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"shared sample data not found at {SHARED_DATA}")
    records = json.loads((SHARED_DATA / "logicvista" / "dataset.json").read_text(encoding="utf-8"))
    docs = [logicvista.record_doc(r, key) for key, r in records.items()]
    with_choices = [d for d in docs if d.choices]
    bare = [d for d in with_choices if all(c == chr(65 + i) for i, c in enumerate(d.choices))]
    assert (len(docs), len(with_choices), len(bare)) == (50, 37, 6)
    assert all(d.answer_type == "choice" and d.show_choices is False for d in with_choices)

    seeds = json.loads((SHARED_DATA / "dynamath" / "dataset" / "dataset.json").read_text(encoding="utf-8"))
    seed_docs = [dynamath.variant_doc(r, key, 0) for key, r in seeds.items()]
    multiple = [d for key, d in zip(seeds, seed_docs, strict=True) if seeds[key]["answer_type"] == "multiple choice"]
    assert (len(seed_docs), len(multiple), sum(bool(d.choices) for d in seed_docs)) == (50, 17, 17)
    variants = []
    for trial in range(1, 11):
        path = SHARED_DATA / "dynamath" / "10trials" / f"trial{trial}" / "dataset.json"
        variants += [dynamath.variant_doc(r, key, trial)
                     for key, r in json.loads(path.read_text(encoding="utf-8")).items()]
    assert (len(variants), sum(bool(d.choices) for d in variants)) == (200, 30)


# ---------------------------------------------------------------------------------------------------------
# MathVerse golds that are a set of letters


def test_mathverse_letter_set_gold_is_multi_choice() -> None:
    record = {"problem_index": "9", "question_type": "multi-choice", "answer": "C\nD",
              "question": "Which statements are true?\nChoices:\nA:AB=BC\nB:AB>BC\nC:∠A=∠C\nD:AC⊥BD"}
    doc = mathverse.text_only_doc(record)
    assert (doc.answer, doc.answer_type, doc.choices) == ("C, D", "multi_choice", ("AB=BC", "AB>BC", "∠A=∠C", "AC⊥BD"))
    assert _right(doc, "Both hold.\nAnswer: C, D") and _right(doc, "Answer: D and C")
    assert not _right(doc, "Answer: C") and not _right(doc, "Answer: B, C, D")
    # a letter set beyond the listed options, or a segment name in a free-form item, stays what it is
    assert mathverse.gold("E\nF", ["1", "2", "3", "4"], True)[1] != "multi_choice"
    assert mathverse.gold("AB", [], False) == ("AB", "text", ())
    assert mathverse.gold("AB", [], True) == ("AB", "text", ())  # no options: "AB" could be a segment
    assert mathverse.gold("A, B", [], True) == ("A, B", "multi_choice", ())


# ---------------------------------------------------------------------------------------------------------
# DynaMath's rule: absolute error at most 0.001


def test_dynamath_float_tolerance() -> None:
    doc = _dynamath("What is the period of this function?", "2.0944", "float")
    assert (doc.answer, doc.answer_type, doc.precision, doc.abs_tolerance) == ("2.0944", "number", None, 0.001)
    assert BenchDoc.from_row(doc.row()).gold.abs_tolerance == 0.001
    assert "Round the number to 3 decimal places." in prompts.prompt_img(doc)  # DynaMath asks for 3 decimals
    assert _right(doc, "Answer: 2.095")  # |error| 0.0006: right, though 2.0944 rounds to 2.094
    assert _right(doc, "Answer: 2.0944") and _right(doc, "Answer: 2.094")
    assert not _right(doc, "Answer: 2.0956")  # |error| 0.0012
    assert not _right(doc, "Answer: 2.1")
    integer = _dynamath("How many components does the graph have?", "3", "float")
    assert _right(integer, "Answer: 3") and not _right(integer, "Answer: 4")
    with pytest.raises(ValueError, match="dynamath 1-v1: abs_tolerance must be a finite number >= 0"):
        BenchDoc(pair_id="1-v1", question="q", answer="1", answer_type="number", benchmark="dynamath",
                 abs_tolerance=-0.1)


# ---------------------------------------------------------------------------------------------------------
# An item whose gold cannot be judged


def test_empty_gold_is_a_marked_data_error_not_a_crash() -> None:
    doc = _logicvista("Which figure completes the pattern?", "", key="v1_382")
    for form in ("img", "txt"):
        item = _score(doc, "Answer: B", form)
        assert item["correct"] is None and item["pred"] is None, item
        assert "empty" in item["error"], item
        assert item["pair_id"] == "v1_382"
    right = _score(_logicvista(SALES, "D"), "Answer: D")
    assert logicvista.TASK.exports()["mean_correct"]([item, right]) == 1.0  # the data error is left out


def test_an_unusable_gold_is_reported_when_the_documents_are_built(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                                   caplog: pytest.LogCaptureFixture) -> None:
    folder = tmp_path / "logicvista"
    (folder / "images").mkdir(parents=True)
    records = {key: {"imagename": f"{key}.png", "question": "Which figure is next?", "answer": answer}
               for key, answer in (("v1_381", "A"), ("v1_382", ""), ("v1_383", "C"))}
    (folder / "dataset.json").write_text(json.dumps(records), encoding="utf-8")
    monkeypatch.setenv("RD_EVAL_DATA_DIR", str(tmp_path))
    with caplog.at_level("WARNING", logger="rd_eval.benchmarks.documents"):
        docs = logicvista.load("txt")
    assert docs["pair_id"] == ["v1_381", "v1_382", "v1_383"]  # kept, and marked when scored
    assert "logicvista: 1 document(s) have a gold answer that cannot be judged" in caplog.text
    assert "v1_382" in caplog.text and "v1_381" not in caplog.text


# ---------------------------------------------------------------------------------------------------------
# A local mirror without one of its images


def _mirror_with_logicvista(root: Path) -> Path:
    """A copy of the LogicVista mirror (the real sample, or three synthetic records) under ``root``."""
    folder = root / "logicvista"
    if (SHARED_DATA / "logicvista").is_dir():
        shutil.copytree(SHARED_DATA / "logicvista", folder)
        return folder
    (folder / "images").mkdir(parents=True)
    records = {}
    for i in range(3):
        records[f"v1_{i}"] = {"imagename": f"v1_{i}.png", "question": "Which choice fits?", "answer": "ABC"[i]}
        Image.new("RGB", (20, 20), (i * 60, 0, 0)).save(folder / "images" / f"v1_{i}.png")
    (folder / "dataset.json").write_text(json.dumps(records), encoding="utf-8")
    return folder


def test_a_missing_image_fails_the_task_build_at_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from lmms_eval.tasks import TaskManager, get_task_dict

    folder = _mirror_with_logicvista(tmp_path / "mirror")
    images = sorted((folder / "images").iterdir())
    images[1].unlink()
    monkeypatch.setenv("RD_EVAL_DATA_DIR", str(tmp_path / "mirror"))
    monkeypatch.setenv("LMMS_EVAL_DATASETS_CACHE", str(tmp_path / "datasets_cache"))
    manager = TaskManager(include_path=[str(TASKS_DIR / "rd_logicvista")], include_defaults=False)
    start = time.monotonic()
    with pytest.raises(TaskDataError) as err:
        get_task_dict(["rd_logicvista_img"], manager)
    assert time.monotonic() - start < 5  # no retries (lmms-eval's take 5 attempts, 2 s apart)
    message = str(err.value)
    assert message.startswith("rd_logicvista_img: its documents cannot be built: logicvista: image ")
    assert f"{images[1]} does not exist" in message  # the file,
    assert f"local mirror {folder} (RD_EVAL_DATA_DIR=" in message  # the mirror folder,
    assert "run only the text twin" in message and "unset RD_EVAL_DATA_DIR" in message  # and what would do
    assert isinstance(err.value.__cause__, LocalDataError)
    assert images[1].stem in logicvista.load("txt")["pair_id"]  # the text twin needs no image


def test_every_missing_or_unreadable_image_is_named(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    folder = _mirror_with_logicvista(tmp_path)
    images = sorted((folder / "images").iterdir())
    images[0].unlink()
    images[1].write_text("version https://git-lfs.github.com/spec/v1\noid sha256:0123\nsize 5120\n")
    images[2].write_bytes(b"")
    monkeypatch.setenv("RD_EVAL_DATA_DIR", str(tmp_path))
    with pytest.raises(LocalDataError, match="and 2 more of the images the records name") as err:
        logicvista.load("img")
    message = str(err.value)
    assert f"image {images[0]} does not exist; " in message
    assert f"{images[1]} is a Git LFS pointer, not the image" in message
    assert f"{images[2]} is not an image that can be opened (UnidentifiedImageError" in message
    reader = MirrorReader.from_env("logicvista", "logicvista")
    assert reader is not None and reader.image(f"images/{images[0].name}") == str(images[0].resolve())
    with pytest.raises(LocalDataError, match="does not exist"):
        reader.record()  # no record of a load that lacks an image
    reader = MirrorReader.from_env("logicvista", "logicvista")
    assert reader is not None and reader.image(f"images/{images[3].name}") and reader.record().files == 1
