"""Exact twins of GSM8K and MATH-500 (rd_gsm8k*, rd_math500*): data sources, rendering, pairing, scoring,
perception, and one lmms-eval run end to end.

Docs come from the real samples in ``../shared/data`` through RD_EVAL_DATA_DIR; where that folder is absent,
from a synthetic mirror of the same schema written to a temporary folder.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import os
import random
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import rd_eval_tasks
import rd_eval_tasks.rd_gsm8k.utils as gsm_utils
import rd_eval_tasks.rd_math500.utils as math_utils
from lmms_cli import run, tasks_path
from PIL import Image, ImageOps

from rd_eval.benchmarks import gsm8k, math500
from rd_eval.benchmarks.exact_twin import PLACEHOLDER_KEY
from rd_eval.benchmarks.task import TaskDataError
from rd_eval.data import sources as data_sources
from rd_eval.data.sources import ENV_VAR, LocalDataError, content_pair_id, local_path, read_jsonl
from rd_eval.scoring import answers as scoring
from rd_eval.scoring.doc_errors import error_response
from rd_eval.twins import perception
from rd_eval.twins.perception import attribute_failures, extract_numbers, judge_transcript, levenshtein, similarity
from rd_eval.twins.render import (
    LINE_SPACING,
    TWIN_FONT_SIZE,
    TWIN_MARGIN,
    TWIN_WIDTH,
    _font,
    _line_height,
    displayable_text,
    has_glyph,
    png_bytes,
    render_text,
    render_twin,
    wrap_text,
    wrap_twin_text,
)

SHARED_DATA = Path(__file__).parents[2] / "shared" / "data"
TASKS_DIR = Path(rd_eval_tasks.__file__).parent
BENCH = {  # benchmark -> (benchmark module, img, txt, see)
    "gsm8k": (gsm8k, "rd_gsm8k_img", "rd_gsm8k_txt", "rd_gsm8k_see"),
    "math500": (math500, "rd_math500_img", "rd_math500_txt", "rd_math500_see"),
}
UTILS = {"gsm8k": gsm_utils, "math500": math_utils}  # the task folders' utils.py, as lmms-eval binds them
ALL_TASKS = [name for _, *names in BENCH.values() for name in names]
GROUPS = {"rd_gsm8k": ["rd_gsm8k_img", "rd_gsm8k_txt"], "rd_math500": ["rd_math500_img", "rd_math500_txt"]}
# Legibility floor, in image pixels: digit height, x-height, and digit height after the image is shrunk to a
# 1280*28*28 pixel budget (Qwen2/2.5-VL's usual max_pixels; lmms-eval's Qwen3-VL default allows 1,605,632).
MIN_DIGIT_PX, MIN_X_HEIGHT_PX, MIN_DIGIT_PX_IN_BUDGET, PIXEL_BUDGET = 16, 12, 12, 1_003_520

SYNTHETIC = {
    "gsm8k": [
        {"question": "Janet’s ducks lay 16 eggs per day. She eats three for breakfast every morning and bakes "
                     "muffins for her friends every day with four. She sells the remainder at the farmers' "
                     "market daily for $2 per fresh duck egg. How much in dollars does she make every day?",
         "answer": "Janet sells 16 - 3 - 4 = <<16-3-4=9>>9 duck eggs a day.\n"
                   "She makes 9 * 2 = $<<9*2=18>>18.\n#### 18"},
        {"question": "Elvira has a budget of €1500. She buys a computer for €1,090 and a printer for €102. "
                     "How many euros does she have left?",
         "answer": "1500 - 1090 - 102 = <<1500-1090-102=308>>308\n#### 308"},
        {"question": "Two friends ate ¾ of 8 pizzas—how many pizzas did they eat?", "answer": "#### 6"},
        {"question": " ".join(f"On day {d} a shop sold {3 * d} apples at ${d}.50 each." for d in range(1, 25))
                     + " How many apples were sold in all?", "answer": "#### 900"},
    ],
    "math500": [
        {"problem": "Convert the point $(0,3)$ in rectangular coordinates to polar coordinates.  Enter your answer "
                    "in the form $(r,\\theta),$ where $r > 0$ and $0 \\le \\theta < 2 \\pi.$",
         "solution": "... $\\boxed{\\left( 3, \\frac{\\pi}{2} \\right)}$",
         "answer": "\\left( 3, \\frac{\\pi}{2} \\right)",
         "subject": "Precalculus", "level": 2, "unique_id": "test/precalculus/807.json"},
        {"problem": "What is $\\frac{1}{2} + \\frac{1}{3}$?", "solution": "$\\boxed{\\frac{5}{6}}$",
         "answer": "\\frac{5}{6}", "subject": "Prealgebra", "level": 1, "unique_id": "test/prealgebra/1.json"},
        {"problem": "Evaluate $" + "+".join(f"\\frac{{{i}}}{{{i + 1}}}" for i in range(1, 40)) + "$.",
         "solution": "$\\boxed{10}$", "answer": "10", "subject": "Algebra", "level": 3,
         "unique_id": "test/algebra/2.json"},
        {"problem": "The figure shows a square.\n[asy]\ndraw((0,0)--(1,0)--(1,1)--(0,1)--cycle);\n"
                    "label(\"$A$\", (0,0), SW);\n[/asy]\nWhat is its area if a side is $1,\\!000$ cm?",
         "solution": "$\\boxed{1000000}$", "answer": "1000000", "subject": "Geometry", "level": 1,
         "unique_id": "test/geometry/3.json"},
    ],
}


def _records(data_dir: Path, bench: str) -> list[dict[str, Any]]:
    return read_jsonl(data_dir / bench / "test.jsonl")


def _source_key(bench: str) -> str:
    return BENCH[bench][0].SOURCE_KEY


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    if all((SHARED_DATA / b / "test.jsonl").is_file() for b in BENCH):
        return SHARED_DATA
    root = tmp_path_factory.mktemp("rd_data")
    for bench, records in SYNTHETIC.items():
        (root / bench).mkdir()
        (root / bench / "test.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
    return root


@pytest.fixture(scope="module")
def real_data(data_dir: Path) -> Path:
    if data_dir != SHARED_DATA:
        pytest.skip(f"real samples not found at {SHARED_DATA}")
    return data_dir


@pytest.fixture(scope="module")
def loaded(data_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    from lmms_eval.tasks import TaskManager, get_task_dict

    with pytest.MonkeyPatch.context() as mp:
        mp.setenv(ENV_VAR, str(data_dir))
        mp.setenv("LMMS_EVAL_DATASETS_CACHE", str(tmp_path_factory.mktemp("hf_datasets")))
        # Only our folders: other task folders of the tree are not this test's business.
        manager = TaskManager(include_path=[str(TASKS_DIR / "rd_gsm8k"), str(TASKS_DIR / "rd_math500")],
                              include_defaults=False)
        tasks = get_task_dict(ALL_TASKS, manager)
        groups = get_task_dict(list(GROUPS), manager)
        docs = {name: list(task.test_docs()) for name, task in tasks.items()}
        yield {"manager": manager, "tasks": tasks, "groups": groups, "docs": docs}


# --- lmms-eval loading ----------------------------------------------------------------------------------------


def test_every_yaml_is_indexed_and_loads(loaded: dict[str, Any]) -> None:
    yamls = sorted(p.stem for b in ("rd_gsm8k", "rd_math500") for p in (TASKS_DIR / b).glob("*.yaml"))
    assert yamls == sorted(ALL_TASKS + list(GROUPS))
    assert sorted(loaded["manager"].all_tasks) == yamls
    assert sorted(loaded["tasks"]) == sorted(ALL_TASKS)
    for name, task in loaded["tasks"].items():
        assert task.OUTPUT_TYPE == "generate_until"
        gen = task.config.generation_kwargs
        assert gen["temperature"] == 0 and gen["do_sample"] is False and gen["until"] == [], name
        assert gen["max_new_tokens"] >= 512, name


def test_groups_hold_both_forms_without_an_aggregate(loaded: dict[str, Any]) -> None:
    found = {group.group_name: (group, sorted(subtasks)) for group, subtasks in loaded["groups"].items()}
    assert sorted(found) == sorted(GROUPS)
    for name, (group, subtasks) in found.items():
        assert subtasks == GROUPS[name]
        assert group.config["aggregate_metric_list"] is None  # the two forms must never be averaged


@pytest.mark.parametrize("bench", list(BENCH))
def test_docs_are_the_source_records_in_order_with_pair_ids(loaded: dict[str, Any], data_dir: Path,
                                                            bench: str) -> None:
    mod, img, txt, see = BENCH[bench]
    records = _records(data_dir, bench)
    key = mod.SOURCE_KEY
    for name in (img, txt, see):
        docs = loaded["docs"][name]
        assert [d[key] for d in docs] == [r[key] for r in records], name
        assert [d["pair_id"] for d in docs] == [content_pair_id(bench, r[key]) for r in records]
    ids = [d["pair_id"] for d in loaded["docs"][img]]
    assert len(set(ids)) == len(ids)
    assert ids == [d["pair_id"] for d in loaded["docs"][txt]] == [d["pair_id"] for d in loaded["docs"][see]]


def test_real_sample_sizes(loaded: dict[str, Any], real_data: Path) -> None:
    assert len(loaded["docs"]["rd_gsm8k_img"]) == 1000
    assert len(loaded["docs"]["rd_math500_img"]) == 400


# --- the pair: text twin == source, same image on img and see, same instruction -------------------------------


@pytest.mark.parametrize("bench", list(BENCH))
def test_prompts_text_twin_is_the_source_and_instruction_is_shared(loaded: dict[str, Any], bench: str) -> None:
    mod, img, txt, see = BENCH[bench]
    tasks, key = loaded["tasks"], mod.SOURCE_KEY
    for doc in loaded["docs"][txt]:
        text_prompt, image_prompt = tasks[txt].doc_to_text(doc), tasks[img].doc_to_text(doc)
        assert text_prompt == f"{mod.TXT_LEAD}\n\n{doc[key]}\n\n{mod.INSTRUCTION}"
        assert image_prompt == f"{mod.IMG_LEAD}\n{mod.INSTRUCTION}"
        assert text_prompt.endswith(image_prompt.splitlines()[-1])
        assert tasks[txt].doc_to_visual(doc) == []
        assert tasks[see].doc_to_text(doc) == mod.SEE_PROMPT
        assert tasks[see].doc_to_target(doc) == doc[key]
        assert tasks[img].doc_to_target(doc) == tasks[txt].doc_to_target(doc)


@pytest.mark.parametrize("bench", list(BENCH))
def test_image_form_is_the_deterministic_render_of_the_source(loaded: dict[str, Any], bench: str) -> None:
    mod, img, _, see = BENCH[bench]
    for doc in loaded["docs"][img][:12]:
        (a,), (b,) = loaded["tasks"][img].doc_to_visual(doc), loaded["tasks"][see].doc_to_visual(doc)
        assert isinstance(a, Image.Image) and a.mode == "RGB" and a.width == TWIN_WIDTH
        expected = png_bytes(render_twin(doc[mod.SOURCE_KEY]))
        assert png_bytes(a) == png_bytes(b) == expected


def test_render_is_byte_identical_across_processes_and_sensitive_to_text() -> None:
    text = "Mia has 1,250 stickers; $\\frac{3}{4}$ of them are red. How many are red?"
    code = ("import hashlib,sys; from rd_eval.twins.render import render_twin, png_bytes; "
            "print(hashlib.sha256(png_bytes(render_twin(sys.argv[1]))).hexdigest())")
    other = subprocess.run([sys.executable, "-c", code, text], capture_output=True, text=True, check=True)
    assert other.stdout.strip() == hashlib.sha256(png_bytes(render_twin(text))).hexdigest()
    assert png_bytes(render_twin(text)) != png_bytes(render_twin(text.replace("1,250", "1,260")))


# --- legibility --------------------------------------------------------------------------------------------------


def _ink_bbox(img: Image.Image) -> tuple[int, int, int, int]:
    bbox = ImageOps.invert(img.convert("L")).point(lambda v: 255 if v >= 128 else 0).getbbox()
    assert bbox is not None, "nothing drawn"
    return bbox


def _ink_height(text: str) -> int:
    _, top, _, bottom = _ink_bbox(render_twin(text))
    return bottom - top


def test_glyphs_are_tall_enough_for_vlm_image_encoders() -> None:
    assert _ink_height("0123456789") >= MIN_DIGIT_PX
    assert _ink_height("x") >= MIN_X_HEIGHT_PX
    assert _ink_height("H") >= MIN_DIGIT_PX


def _sources(data_dir: Path, bench: str) -> list[str]:
    return [r[_source_key(bench)] for r in _records(data_dir, bench)]


def _tallest(data_dir: Path, bench: str, n: int) -> list[str]:
    # Line count grows with length and with explicit newlines; render the likeliest tallest ones.
    return sorted(_sources(data_dir, bench), key=lambda t: len(t) + 60 * t.count("\n"), reverse=True)[:n]


@pytest.mark.parametrize("bench", list(BENCH))
def test_every_character_shown_has_a_glyph(data_dir: Path, bench: str) -> None:
    assert has_glyph("A") and has_glyph("7") and has_glyph("\\") and not has_glyph("€")
    for text in _sources(data_dir, bench):
        shown = displayable_text(text)
        missing = sorted({c for c in shown if not has_glyph(c)})
        assert not missing, (missing, text[:80])
        if text.isascii():
            assert shown == text  # only characters the font lacks are replaced


def test_characters_without_glyphs_get_readable_stand_ins() -> None:
    assert displayable_text("a budget of €1500, 5€ and ¾ of 8 pizzas—each x²") == (
        "a budget of EUR 1500, 5 EUR and 3⁄4 of 8 pizzas--each x^2"
    )
    assert displayable_text("café ☃") == "cafe <U+2603>"


@pytest.mark.parametrize("bench", list(BENCH))
def test_long_problems_and_latex_wrap_without_clipping(data_dir: Path, bench: str) -> None:
    font = _font(TWIN_FONT_SIZE)
    max_width = TWIN_WIDTH - 2 * TWIN_MARGIN
    step = _line_height(font) + LINE_SPACING
    long_latex = "$" + "+".join(f"\\frac{{{i}}}{{{i + 1}}}" for i in range(1, 60)) + "$"
    texts = _tallest(data_dir, bench, 8) + ([long_latex] if bench == "math500" else [])
    for text in texts:
        shown = displayable_text(text)
        lines = wrap_twin_text(shown.strip("\n"), font, max_width)
        assert all(font.getlength(line) <= max_width for line in lines)
        assert "".join("".join(lines).split()) == "".join(shown.split())  # every character kept, in order
        # A line break never cuts a number: read line by line, the image has the text's numbers.
        assert extract_numbers("\n".join(lines)) == extract_numbers(shown), text[:60]
        img = render_twin(text)
        assert img.width == TWIN_WIDTH
        assert img.height == len(lines) * step - LINE_SPACING + 2 * TWIN_MARGIN  # height fits every line
        left, top, right, bottom = _ink_bbox(img)
        slack = 4  # side bearings of single glyphs
        assert left >= TWIN_MARGIN - slack and right <= TWIN_WIDTH - TWIN_MARGIN + slack, text[:60]
        assert top >= TWIN_MARGIN - slack and bottom <= img.height - TWIN_MARGIN + slack, text[:60]
        last_band = img.crop((0, img.height - TWIN_MARGIN - step, img.width, img.height - TWIN_MARGIN + slack))
        assert lines[-1].strip() == "" or ImageOps.invert(last_band.convert("L")).getbbox() is not None
    if bench == "math500":
        latex_lines = wrap_twin_text(long_latex, font, max_width)
        assert len(latex_lines) >= math.ceil(font.getlength(long_latex) / max_width) > 1
        # The generic character split of wrap_text would cut numbers such as {16}{17} in two here.
        assert extract_numbers("\n".join(wrap_text(long_latex, font, max_width))) != extract_numbers(long_latex)


def test_twin_layout_is_render_texts_for_ordinary_text() -> None:
    text = "Mia has 7 apples and buys 5 more. " * 6 + "\n\nHow many apples does Mia have now?"
    twin = render_twin(text)
    plain = render_text(text, width=TWIN_WIDTH, font_size=TWIN_FONT_SIZE, margin=TWIN_MARGIN)
    assert png_bytes(twin) == png_bytes(plain)
    with pytest.raises(ValueError, match="empty"):
        render_twin(" \n ")


@pytest.mark.parametrize("bench", list(BENCH))
def test_text_stays_legible_under_a_vlm_pixel_budget(data_dir: Path, bench: str) -> None:
    digit = _ink_height("0123456789")
    for text in _tallest(data_dir, bench, 10):
        img = render_twin(text)
        scale = min(1.0, math.sqrt(PIXEL_BUDGET / (img.width * img.height)))
        assert digit * scale >= MIN_DIGIT_PX_IN_BUDGET, (img.size, text[:60])
    if bench == "gsm8k":  # every GSM8K image fits the budget whole
        assert all(render_twin(t).width * render_twin(t).height <= PIXEL_BUDGET for t in _tallest(data_dir, bench, 3))


# --- scoring of the two forms --------------------------------------------------------------------------------


def _number_wrong(answer: str) -> str:
    return str(int(float(answer.replace(",", ""))) + 1)


def test_gsm8k_scores_right_and_wrong_with_real_answers(loaded: dict[str, Any], data_dir: Path) -> None:
    records = _records(data_dir, "gsm8k")
    items = []
    for name, form in (("rd_gsm8k_img", "img"), ("rd_gsm8k_txt", "txt")):
        task = loaded["tasks"][name]
        for doc, record in zip(loaded["docs"][name], records, strict=True):
            answer = record["answer"].rpartition("####")[2].strip()
            right = task.process_results(doc, [f"Step by step... so she makes \\boxed{{{answer}}}."])["rd_acc"]
            wrong = task.process_results(doc, [f"The answer is \\boxed{{{_number_wrong(answer)}}}."])["rd_acc"]
            assert right == {"pair_id": doc["pair_id"], "form": form, "correct": 1,
                             "pred": scoring.extract_number(answer), "answer": answer, "error": None,
                             "data_source": json.loads(doc["rd_data_source"])}
            assert wrong["correct"] == 0 and wrong["error"] is None and wrong["pair_id"] == doc["pair_id"]
            items += [right, wrong]
        assert task.aggregation()["rd_acc"](items) == 0.5


def test_math500_scores_right_and_wrong_with_real_answers(loaded: dict[str, Any], data_dir: Path) -> None:
    if "expression" not in scoring.ANSWER_TYPES:
        pytest.skip("rd_eval.scoring.answers has no 'expression' answer type yet")
    records = _records(data_dir, "math500")
    for name, form in (("rd_math500_img", "img"), ("rd_math500_txt", "txt")):
        task = loaded["tasks"][name]
        items = []
        for doc, record in zip(loaded["docs"][name], records, strict=True):
            answer = record["answer"]
            right = task.process_results(doc, [f"Reasoning... the answer is $\\boxed{{{answer}}}$."])["rd_acc"]
            wrong = task.process_results(doc, ["Reasoning... the answer is $\\boxed{-98765}$."])["rd_acc"]
            assert right["correct"] == 1, (answer, right)
            assert wrong["correct"] == 0, (answer, wrong)
            assert right["pair_id"] == wrong["pair_id"] == doc["pair_id"] and right["form"] == form
            assert right["answer"] == answer and right["error"] is None
            items += [right, wrong]
        assert task.aggregation()["rd_acc"](items) == 0.5


@pytest.mark.parametrize("name", ["rd_gsm8k_img", "rd_math500_txt"])
def test_error_response_is_recorded_not_scored(loaded: dict[str, Any], name: str) -> None:
    task = loaded["tasks"][name]
    doc = loaded["docs"][name][0]
    item = task.process_results(doc, [error_response("image unreadable")])["rd_acc"]
    assert item["correct"] is None and item["pred"] is None and item["error"] == "image unreadable"
    assert task.aggregation()["rd_acc"]([item, {"correct": 1}]) == 1.0


# --- perception task ---------------------------------------------------------------------------------------


def _near_miss(text: str, similarity_target: float) -> str:
    """``text`` with letters (never digits) replaced until the similarity falls to about ``similarity_target``."""
    chars = list(text)
    letters = [i for i, c in enumerate(chars) if c.isalpha()]
    n = math.ceil(len(" ".join(text.split())) * (1 - similarity_target))
    for i in letters[:n]:
        chars[i] = "#"
    return "".join(chars)


@pytest.mark.parametrize("bench", list(BENCH))
def test_perception_metric_on_right_and_wrong_transcripts(loaded: dict[str, Any], bench: str) -> None:
    mod, img, _, see = BENCH[bench]
    task = loaded["tasks"][see]
    assert task._metric_fn_kwargs["rd_seen"] == {"threshold": 0.9}  # the YAML's setting reaches the metric
    assert task.higher_is_better() == {"rd_seen": True, "rd_similarity": True}
    items: list[dict[str, Any]] = []
    sims: list[float | None] = []
    for doc in loaded["docs"][see][:25]:
        source = doc[mod.SOURCE_KEY]
        shown = displayable_text(source)
        # Right: the text as the image shows it, also with the renderer's line breaks, in capitals, fenced.
        out = task.process_results(doc, [shown])
        assert out["rd_seen"] == {"pair_id": doc["pair_id"], "seen": 1, "similarity": 1.0, "missing_numbers": [],
                                  "threshold": 0.9, "error": None}
        assert out["rd_similarity"] == 1.0
        items.append(out["rd_seen"])
        sims.append(out["rd_similarity"])
        wrapped = "\n".join(wrap_twin_text(shown, _font(TWIN_FONT_SIZE), TWIN_WIDTH - 2 * TWIN_MARGIN))
        for transcript in (wrapped.upper(), f"```\n{wrapped}\n```"):
            item = task.process_results(doc, [transcript])["rd_seen"]
            assert item["seen"] == 1 and item["similarity"] >= 0.98 and item["missing_numbers"] == []
        # Wrong: one digit misread (the text otherwise intact), half the text lost, or many letters misread.
        digit = re.search(r"[0-9]", shown)
        if digit:
            misread = shown[: digit.start()] + str((int(digit.group()) + 1) % 10) + shown[digit.end():]
            lost_numbers = set(extract_numbers(shown)) - set(extract_numbers(misread))
            if lost_numbers:
                item = task.process_results(doc, [misread])["rd_seen"]
                assert item["seen"] == 0 and set(item["missing_numbers"]) == lost_numbers
                assert item["similarity"] >= 0.9 or len(shown) < 20
                items.append(item)
        out = task.process_results(doc, [shown[: len(shown) // 2]])
        assert out["rd_seen"]["seen"] == 0 and out["rd_similarity"] < 0.9
        items.append(out["rd_seen"])
        sims.append(out["rd_similarity"])
        lost = task.process_results(doc, [_near_miss(shown, 0.8)])["rd_seen"]
        assert lost["seen"] == 0 and lost["missing_numbers"] == [] and lost["similarity"] < 0.9
    err = task.process_results(loaded["docs"][see][0], [error_response("no image")])
    assert err["rd_seen"]["seen"] is None and err["rd_seen"]["error"] == "no image"
    assert err["rd_similarity"] is None
    agg = task.aggregation()
    rate = agg["rd_seen"](items + [err["rd_seen"]])
    assert rate == pytest.approx(sum(i["seen"] for i in items) / len(items))
    assert 0.0 < rate < 1.0
    assert agg["rd_similarity"](sims + [None]) == pytest.approx(sum(sims) / len(sims))


def test_seen_threshold_is_set_in_the_task_yaml(data_dir: Path, tmp_path: Path) -> None:
    """A task YAML that includes rd_gsm8k_see and sets threshold 0.75 judges a near miss as seen."""
    from lmms_eval.tasks import TaskManager, get_task_dict

    custom = tmp_path / "custom"
    custom.mkdir()
    (custom / "my_gsm8k_see.yaml").write_text(
        f"include: {TASKS_DIR / 'rd_gsm8k' / 'rd_gsm8k_see.yaml'}\n"
        "task: my_gsm8k_see\n"
        "metric_list:\n"
        "  - metric: !function rd_eval_tasks.rd_gsm8k.utils.rd_seen\n"
        "    aggregation: !function rd_eval_tasks.rd_gsm8k.utils.mean_seen\n"
        "    higher_is_better: true\n"
        "    threshold: 0.75\n",
        encoding="utf-8",
    )
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv(ENV_VAR, str(data_dir))
        mp.setenv("LMMS_EVAL_DATASETS_CACHE", str(tmp_path / "hf_datasets"))
        manager = TaskManager(include_path=[str(TASKS_DIR / "rd_gsm8k"), str(custom)], include_defaults=False)
        task = get_task_dict(["my_gsm8k_see"], manager)["my_gsm8k_see"]
    doc = next(iter(task.test_docs()))
    near = _near_miss(displayable_text(doc["question"]), 0.8)
    item = task.process_results(doc, [near])["rd_seen"]
    assert item["threshold"] == 0.75 and 0.75 <= item["similarity"] < 0.9 and item["seen"] == 1
    assert gsm_utils.rd_seen([doc["question"]], [near])["rd_seen"]["seen"] == 0  # default 0.9


# --- perception functions (pure), hand-computed ------------------------------------------------------------


@pytest.mark.parametrize(("a", "b", "dist"), [
    ("kitten", "sitting", 3), ("flaw", "lawn", 2), ("", "abc", 3), ("abc", "", 3), ("", "", 0),
    ("same", "same", 0), ("ab", "ba", 2), ("intention", "execution", 5),
])
def test_levenshtein_hand_computed(a: str, b: str, dist: int) -> None:
    assert levenshtein(a, b) == levenshtein(b, a) == dist


def _levenshtein_dp(a: str, b: str) -> int:
    prev = list(range(len(b) + 1))
    for i, ca in enumerate(a, 1):
        cur = [i]
        for j, cb in enumerate(b, 1):
            cur.append(min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (ca != cb)))
        prev = cur
    return prev[-1]


def test_levenshtein_matches_the_textbook_recurrence() -> None:
    rng = random.Random(0)
    for _ in range(300):
        a = "".join(rng.choice("ab1 ") for _ in range(rng.randint(0, 90)))
        b = "".join(rng.choice("ab1 ") for _ in range(rng.randint(0, 90)))
        assert levenshtein(a, b) == _levenshtein_dp(a, b), (a, b)


def test_similarity_and_normalisation_hand_computed() -> None:
    assert similarity("kitten", "sitting") == pytest.approx(1 - 3 / 7)
    assert similarity("", "") == 1.0 and similarity("abc", "") == 0.0
    # Case, runs of whitespace, typographic quotes and dashes, and one code fence do not count.
    assert perception.normalise_text("```\nJanet’s  Ducks\nlay—16\n```") == "janet's ducks lay-16"
    assert similarity("Janet’s ducks lay 16 eggs.", "JANET'S DUCKS\nLAY 16 EGGS.") == 1.0
    assert similarity("abcdefghij 1", "abcdefghiX 1") == pytest.approx(11 / 12)


@pytest.mark.parametrize(("text", "numbers"), [
    ("It costs $1,200.50 for 3 items, 2.50 each", ("1200.5", "3", "2.5")),
    ("the point (0,300) and 1,000,000", ("0", "300", "1000000")),
    ("$1,\\!000$ and $10{,}000$", ("1000", "10000")),
    ("x-3 = -3 and x2 on the 10th, .5 of 007", ("3", "2", "10", "0.5", "7")),
    ("¾ of 8, x²", ("3", "4", "8", "2")),
    ("$\\frac{1}{2}$ + 2.0", ("1", "2")),
    ("no digits here.", ()),
])
def test_extract_numbers_hand_computed(text: str, numbers: tuple[str, ...]) -> None:
    assert extract_numbers(text) == numbers


def test_judge_transcript_rule() -> None:
    ref = "abcdefghij 1"
    assert judge_transcript(ref, "abcdefghiX 1") == perception.Perception(True, pytest.approx(11 / 12), (), 0.9)
    # Two misread letters: numbers all there, similarity 10/12 < 0.9.
    assert judge_transcript(ref, "abcdefghXY 1").seen is False
    assert judge_transcript(ref, "abcdefghXY 1", threshold=0.8).seen is True
    # A misread number is not seen even when the similarity passes.
    miss = judge_transcript("Tom has 1,200 cards and 35 stamps in 2 albums.",
                            "Tom has 1200 cards and 36 stamps in 2 albums.")
    assert miss.seen is False and miss.missing_numbers == ("35",) and miss.similarity > 0.9
    # Numbers in another format still count; a sign is not a number.
    assert judge_transcript("Pay $1,200 now and the rest later, when x - 3 is zero",
                            "pay $1200 now and the rest later, when x-3 is zero").seen is True
    # Boundary: similarity exactly at the threshold is seen.
    assert judge_transcript("abcdefghij", "abcdefghiX", threshold=0.9).seen is True
    for bad in (1.5, -0.1, True, "0.9"):
        with pytest.raises(ValueError, match="threshold"):
            judge_transcript(ref, ref, threshold=bad)  # type: ignore[arg-type]


def test_attribute_failures_hand_computed() -> None:
    img = {"a": 1, "b": 0, "c": 0, "d": 0, "e": None, "f": False, "g": True}
    seen = {"a": 1, "b": 1, "c": 0, "f": True, "e": 1}  # d has no transcription
    txt = {"b": 1, "c": 1, "f": 0}
    out = attribute_failures(img, seen, txt)
    assert out.as_dict() == {
        "n_pairs": 6, "img_correct": 2, "img_failures": 4, "perception_errors": 1, "reasoning_errors": 2,
        "unattributed": 1, "reasoning_share": 2 / 3, "perception_share": 1 / 3, "seeing_not_thinking": 1,
    }  # fmt: skip
    assert attribute_failures(img, seen).seeing_not_thinking is None
    none_failed = attribute_failures({"a": 1}, {})
    assert none_failed.img_failures == 0 and none_failed.reasoning_share is None
    only_unseen = attribute_failures({"a": 0, "b": 0}, {"a": 0, "b": None})
    assert (only_unseen.perception_errors, only_unseen.unattributed, only_unseen.perception_share) == (1, 1, 1.0)
    with pytest.raises(ValueError, match=r"seen\['b'\]"):
        attribute_failures(img, {"b": 0.5})


# --- data sources --------------------------------------------------------------------------------------------


def test_local_path_resolution_and_errors(tmp_path: Path) -> None:
    assert local_path("gsm8k", "test.jsonl", environ={}) is None
    assert local_path("gsm8k", "test.jsonl", environ={ENV_VAR: "  "}) is None
    (tmp_path / "gsm8k").mkdir()
    (tmp_path / "gsm8k" / "test.jsonl").write_text('{"question": "q", "answer": "#### 1"}\n')
    assert local_path("gsm8k", "test.jsonl", environ={ENV_VAR: str(tmp_path)}) == tmp_path / "gsm8k" / "test.jsonl"
    with pytest.raises(LocalDataError) as err:
        local_path("math500", "test.jsonl", environ={ENV_VAR: str(tmp_path)})
    assert str(tmp_path / "math500" / "test.jsonl") in str(err.value) and ENV_VAR in str(err.value)
    with pytest.raises(LocalDataError, match=f"{ENV_VAR}=.*not a folder"):
        local_path("gsm8k", "test.jsonl", environ={ENV_VAR: str(tmp_path / "nowhere")})
    for bench, rel in (("../gsm8k", "test.jsonl"), ("gsm8k", "/etc/passwd"), ("", "test.jsonl")):
        with pytest.raises(ValueError, match="relative path"):
            local_path(bench, rel, environ={ENV_VAR: str(tmp_path)})


def test_read_jsonl_names_the_bad_line(tmp_path: Path) -> None:
    path = tmp_path / "x.jsonl"
    path.write_text('{"a": 1}\n\n{"a": \n')
    with pytest.raises(ValueError, match=r"x\.jsonl:3: corrupt JSON line"):
        read_jsonl(path)
    path.write_text('{"a": 1}\n[1]\n')
    with pytest.raises(ValueError, match=r"x\.jsonl:2: expected a JSON object"):
        read_jsonl(path)


@pytest.mark.parametrize("bench", list(BENCH))
def test_process_docs_reads_the_variable_and_names_a_missing_file(tmp_path: Path, bench: str) -> None:
    import datasets

    placeholder = datasets.Dataset.from_list([{PLACEHOLDER_KEY: "x"}])
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv(ENV_VAR, str(tmp_path))
        with pytest.raises(TaskDataError) as err:  # past lmms-eval's retries (rd_eval.benchmarks.task)
            UTILS[bench].process_docs(placeholder)
    assert isinstance(err.value.__cause__, LocalDataError)
    assert str(tmp_path / bench / "test.jsonl") in str(err.value) and ENV_VAR in str(err.value)
    with pytest.raises(TaskDataError, match="placeholder") as err:
        UTILS[bench].process_docs(datasets.Dataset.from_list([{"question": "q"}]))
    assert isinstance(err.value.__cause__, ValueError)


def test_a_missing_local_file_stops_task_loading_with_that_message(tmp_path: Path) -> None:
    """The check runs while lmms-eval reads the YAML, so its message is what lmms-eval reports (no retries)."""
    from lmms_eval.tasks import TaskManager, get_task_dict

    with pytest.MonkeyPatch.context() as mp:
        mp.setenv(ENV_VAR, str(tmp_path))
        mp.setenv("LMMS_EVAL_DATASETS_CACHE", str(tmp_path / "hf_datasets"))
        manager = TaskManager(include_path=[str(TASKS_DIR / "rd_math500")], include_defaults=False)
        with pytest.raises(LocalDataError, match=re.escape(str(tmp_path / "math500" / "test.jsonl")) + ".*" + ENV_VAR):
            get_task_dict(["rd_math500_see"], manager)


@pytest.mark.parametrize(("bench", "hub"), [("gsm8k", ("openai/gsm8k", "main", "test")),
                                            ("math500", ("HuggingFaceH4/MATH-500", None, "test"))])
def test_without_the_variable_docs_come_from_the_hub(monkeypatch: pytest.MonkeyPatch, data_dir: Path,
                                                     tmp_path: Path, bench: str,
                                                     hub: tuple[str, str | None, str]) -> None:
    import datasets

    mod = BENCH[bench][0]
    calls: list[tuple[Any, ...]] = []

    def fake_load_dataset(path: str, name: str | None = None, *, split: str, **kwargs: Any) -> datasets.Dataset:
        calls.append((path, name, split))
        return datasets.Dataset.from_list(_records(data_dir, bench)[:3])

    monkeypatch.delenv(ENV_VAR, raising=False)
    monkeypatch.setenv("LMMS_EVAL_DATASETS_CACHE", str(tmp_path / "hf_datasets"))
    monkeypatch.setattr(datasets, "load_dataset", fake_load_dataset)
    docs = UTILS[bench].process_docs(datasets.Dataset.from_list([{PLACEHOLDER_KEY: "x"}]))
    assert calls == [hub] and len(docs) == 3 and all(d["pair_id"].startswith(f"{bench}-") for d in docs)

    def offline(*args: Any, **kwargs: Any) -> None:
        raise ConnectionError("offline")

    monkeypatch.setattr(datasets, "load_dataset", offline)
    with pytest.raises(RuntimeError, match=f"{hub[0]}.*{ENV_VAR}"):
        data_sources.load_split(mod.SOURCE)


def test_pair_ids_depend_only_on_the_text() -> None:
    assert content_pair_id("gsm8k", "abc") == "gsm8k-" + hashlib.sha256(b"abc").hexdigest()[:12]
    assert content_pair_id("gsm8k", "abc") != content_pair_id("gsm8k", "abd")
    with pytest.raises(ValueError):
        content_pair_id("", "abc")


# --- end to end ------------------------------------------------------------------------------------------------


def test_lmms_eval_runs_gsm8k_twins_and_perception(tiny_dir: Path, data_dir: Path, tmp_path: Path) -> None:
    from rd_eval.lmms.runs import find_runs, load_paired_samples

    out = tmp_path / "out"
    command = [sys.executable, "-m", "lmms_eval", "--model", "rd_qwen3_vl_moe", "--model_args",
               f"pretrained={tiny_dir}", "--tasks", "rd_gsm8k,rd_gsm8k_see", "--include_path", tasks_path(),
               "--limit", "2", "--log_samples", "--output_path", str(out),
               "--gen_kwargs", "max_new_tokens=8"]  # a random tiny model: the budget only costs time
    result = run(command, tmp_path, extra_env={ENV_VAR: str(data_dir)})
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    (record,) = find_runs(out)
    results = json.loads(record.results_path.read_text())
    assert set(record.samples) == {"rd_gsm8k_img", "rd_gsm8k_txt", "rd_gsm8k_see"}
    for task in ("rd_gsm8k_img", "rd_gsm8k_txt"):
        assert 0.0 <= results["results"][task]["rd_acc,none"] <= 1.0
    assert 0.0 <= results["results"]["rd_gsm8k_see"]["rd_seen,none"] <= 1.0
    assert 0.0 <= results["results"]["rd_gsm8k_see"]["rd_similarity,none"] <= 1.0
    pairs = load_paired_samples(dataclasses.replace(
        record, samples={t: p for t, p in record.samples.items() if not t.endswith("_see")}))
    assert len(pairs) == 4
    expected_ids = [content_pair_id("gsm8k", r["question"]) for r in _records(data_dir, "gsm8k")[:2]]
    assert sorted(pairs[pairs.form == "img"].pair_id) == sorted(pairs[pairs.form == "txt"].pair_id) == sorted(
        expected_ids)
    see_lines = [json.loads(line) for line in Path(record.samples["rd_gsm8k_see"]).read_text().splitlines()]
    seen = {s["rd_seen"]["pair_id"]: s["rd_seen"]["seen"] for s in see_lines}
    assert sorted(seen) == sorted(expected_ids)
    assert all(s["rd_seen"]["threshold"] == 0.9 and s["target"] in {r["question"] for r in
               _records(data_dir, "gsm8k")[:2]} for s in see_lines)
    img = pairs[pairs.form == "img"]
    attribution = attribute_failures(dict(zip(img.pair_id, img.correct.astype(object), strict=True)), seen)
    assert attribution.n_pairs == 2
    assert attribution.perception_errors + attribution.reasoning_errors + attribution.unattributed == (
        attribution.img_failures)
    # rd-eval report reads the perception task beside the pairs: the same flags, joined by the same pair_ids.
    from rd_eval.reports.report import build_report

    (entry,) = build_report([out], n_boot=20)["settings"][0]["perception"]
    assert (entry["benchmark"], entry["n"] + entry["errors"]) == ("rd_gsm8k", 2)
    same = [k for k in attribution.as_dict() if k != "seeing_not_thinking"]  # the report also has the text form
    assert [entry["attribution"][k] for k in same] == [attribution.as_dict()[k] for k in same]


def test_env_var_name_is_documented() -> None:
    for folder in ("rd_gsm8k", "rd_math500"):
        template = next((TASKS_DIR / folder).glob("_default_template_*")).read_text()
        assert ENV_VAR in template and "placeholder.jsonl" in template
    assert os.path.basename(data_sources.__file__) == "sources.py" and ENV_VAR in data_sources.__doc__
