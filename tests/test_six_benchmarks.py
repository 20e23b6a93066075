"""The six visual reasoning benchmarks as paired lmms-eval tasks (image form + text twin).

Documents come from a local mirror (RD_EVAL_DATA_DIR): the project's real samples in ``../shared/data`` when
present (MathVista's sample has no images, so synthetic images are added in a temporary copy), otherwise
synthetic records of the same schemas written here. The Hugging Face path is checked on small in-memory
datasets of each benchmark's Hub schema. One end-to-end run transcribes and evaluates MATH-Vision with a tiny
random checkpoint through lmms-eval's command line.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable, Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import datasets
import pytest
import rd_eval_tasks
from lmms_cli import run, tasks_path
from PIL import Image

from rd_eval.analysis.gaps import compare_runs
from rd_eval.benchmarks import BENCHMARKS, TRANSCRIPT_TWINS, dynamath, gold, mathverse, mathvision, mathvista, prompts
from rd_eval.benchmarks.gold import numeric_answer
from rd_eval.benchmarks.schema import BenchDoc
from rd_eval.data.revisions import PINS, UNPINNED
from rd_eval.data.sources import LocalDataError
from rd_eval.lmms.runs import find_runs, load_paired_samples
from rd_eval.rendering.gaps_markdown import gaps_markdown
from rd_eval.scoring.answers import ALL_LETTERS
from rd_eval.scoring.doc_errors import error_response
from rd_eval.scoring.item import mean_correct, worst_case_accuracy
from rd_eval.twins.transcripts import TRANSCRIBE_PROMPT, TranscriptError, TranscriptSet

TASKS_DIR = Path(rd_eval_tasks.__file__).parent
SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
NAMES = ("mathverse", "mathvista", "mathvision", "wemath", "logicvista", "dynamath")
FOLDERS = {"mathverse": "mathverse", "mathvista": "mathvista", "mathvision": "math_vision", "wemath": "we_math",
           "logicvista": "logicvista", "dynamath": "dynamath"}
PAIRED_GROUPS = {f"rd_{b}": (f"rd_{b}_img", f"rd_{b}_txt") for b in NAMES} | {
    "rd_mathverse_vd": ("rd_mathverse_vd_img", "rd_mathverse_vd_txt")}
TRANSCRIBE_TASKS = tuple(f"rd_{b}_transcribe" for b in TRANSCRIPT_TWINS)
LEAF_TASKS = tuple(t for pair in PAIRED_GROUPS.values() for t in pair) + TRANSCRIBE_TASKS
ALL_NAMES = LEAF_TASKS + tuple(PAIRED_GROUPS) + ("rd_six", "rd_six_img", "rd_six_txt")


# ---------------------------------------------------------------------------------------------------------
# Mirrors: the real samples (with MathVista images added) or synthetic records of the same schemas


def _image(path: Path, seed: int = 0) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (40 + seed % 7, 30), (seed * 37 % 256, 90, 160)).save(path)


def _dump(path: Path, data: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, ensure_ascii=False), encoding="utf-8")


def _synthetic_mathvista(root: Path) -> None:
    records = {
        "1": {"question": "How far is the spring compressed?", "image": "images/1.jpg", "choices": None,
              "unit": None, "precision": 1, "answer": "1.2", "question_type": "free_form", "answer_type": "float",
              "pid": "1", "metadata": {"split": "testmini"}},
        "21": {"question": "How many dots are in each group?", "image": "images/21.jpg", "choices": None,
               "unit": None, "precision": None, "answer": "-2", "question_type": "free_form",
               "answer_type": "integer", "pid": "21", "metadata": {"split": "testmini"}},
        "41": {"question": "Which leaf shape is shown?", "image": "images/41.jpg",
               "choices": ["Lanceolate", "Heart-shaped", "Linear"], "unit": None, "precision": None,
               "answer": "Linear", "question_type": "multi_choice", "answer_type": "text", "pid": "41",
               "metadata": {"split": "testmini"}},
    }
    _dump(root / "mathvista" / "testmini.json", records)


def _synthetic_mathverse(root: Path) -> None:
    folder = root / "mathverse"
    versions = ["Text Dominant", "Text Lite", "Vision Intensive", "Text Only"]
    pages: dict[str, Any] = {}
    lines = []
    problems = [
        ("432", "Find the distance between (-3, 4) and (5, 2). Round to three decimal places.", None, "8.246"),
        (None, "Which relation is shown?", ["A:This is a function", "B:This is not a function"], "B"),
    ]
    for j, (index, question, choices, answer) in enumerate(problems):
        pids = {v: str(4 * j + k + 1) for k, v in enumerate(versions)}
        pids |= {"Vision Dominant": str(485 + j), "Vision Only": str(606 + j)}
        for version, pid in pids.items():
            text = "" if version == "Vision Only" else question
            pages[pid] = {"question": text, "image": None if version == "Text Only" else f"{pid}.png",
                          "choices": None if version == "Vision Only" else choices, "answer": answer, "unit": None,
                          "precision": None, "question_type": "multi_choice" if choices else "free_form",
                          "pid": pid, "metadata": {"problem_version": version}}
            if version != "Text Only":
                _image(folder / "images" / f"{pid}.png", int(pid))
        lines.append({"visualizer_problem": j, "testmini_problem_index": index,
                      "testmini_text_only_sample_index": index, "pid": pids})
    _dump(folder / "mv_data_public_subset.json", pages)
    (folder / "pairs.jsonl").write_text("".join(json.dumps(line) + "\n" for line in lines), encoding="utf-8")
    _dump(folder / "testmini_text_only.json", [{
        "sample_index": "432", "problem_index": "432", "problem_version": "Text Only", "question": problems[0][1],
        "image": "", "answer": "8.246", "question_type": "free-form", "metadata": {"split": "testmini"},
        "query_wo": "", "query_cot": ""}])


def _synthetic_math_vision(root: Path) -> None:
    folder = root / "math_vision"
    records = [
        {"id": "4", "question": "How many different digits can you find in this picture?\n<image1>", "options": [],
         "answer": "6", "solution": None, "level": 1, "subject": "counting", "image": "images/4.jpg"},
        {"id": "46", "question": "What do you see from above?\n<image1>", "options": ["A", "B", "C", "D", "E"],
         "answer": "A", "solution": None, "level": 2, "subject": "descriptive geometry", "image": "images/46.jpg"},
        {"id": "175", "question": "<image1>\nWhich relation holds?", "options": ["$f(x)=-g(x)+2$", "$f(x)=-g(x)-2$"],
         "answer": "B", "solution": None, "level": 3, "subject": "analytic geometry", "image": "images/175.jpg"},
    ]
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "testmini.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
    for r in records:
        _image(folder / r["image"], int(r["id"]))


def _synthetic_we_math(root: Path) -> None:
    folder = root / "we_math"
    rows = []
    for key, answer in (("2steps_1", "C"), ("2steps_2", "A"), ("2steps_multi", "B")):
        image = f"2steps/image/1-{key[-1]}.png"
        rows.append({"ID": "2steps_1", "split": "testmini", "knowledge concept": "Length units",
                     "question": f"According to the diagram ({key}): OA = ( ) m",
                     "option": "A. 300;B. 400;C. 3000;D. 4000; E. No correct answer", "answer": answer,
                     "image_path": image, "key": key, "question number": 1, "knowledge concept description": ""})
        _image(folder / image, len(rows))
    _dump(folder / "testmini.json", rows)


def _synthetic_logicvista(root: Path) -> None:
    folder = root / "logicvista"
    records = {}
    for i, answer in enumerate(("C", "A, C", "B")):
        key = f"v1_{i}"
        records[key] = {"imagename": f"{key}.png", "question": "Which choice (A, B, C, or D) fits the pattern?",
                        "answer": answer, "reasoning": "", "skill": ["inductive"], "broad_capability": [],
                        "specific_capability": [], "imagesource": "", "sourcelink": "", "liscenced": "false"}
        _image(folder / "images" / f"{key}.png", i)
    _dump(folder / "dataset.json", records)


def _synthetic_dynamath(root: Path) -> None:
    folder = root / "dynamath" / "10trials"
    for trial in range(1, 11):
        records = {
            "1": {"question": "What is the period of this function? Answer with a floating-point number.",
                  "answer": f"{2.0944 * trial:.4f}", "image": "image/image1.png", "answer_type": "float",
                  "subject": "analytic geometry", "level": "high school"},
            "11": {"question": "Which option is right? (A) 1 (B) 2 (C) 3", "answer": "ABC"[trial % 3],
                   "image": "image/image11.png", "answer_type": "multiple choice", "subject": "algebra",
                   "level": "high school"},
        }
        _dump(folder / f"trial{trial}" / "dataset.json", records)
        for record in records.values():
            _image(folder / f"trial{trial}" / record["image"], trial)


SYNTHETIC: dict[str, Callable[[Path], None]] = {
    "mathverse": _synthetic_mathverse, "mathvista": _synthetic_mathvista, "math_vision": _synthetic_math_vision,
    "we_math": _synthetic_we_math, "logicvista": _synthetic_logicvista, "dynamath": _synthetic_dynamath,
}


def build_mirror(root: Path, *, mathvista_images: bool) -> Path:
    """A mirror under ``root``: real sample folders linked in when ``../shared/data`` exists, else synthetic."""
    root.mkdir(parents=True, exist_ok=True)
    for folder, synthetic in SYNTHETIC.items():
        real = SHARED_DATA / folder
        if not real.is_dir():
            synthetic(root)
        elif folder == "mathvista":
            (root / folder).mkdir(parents=True, exist_ok=True)
            (root / folder / "testmini.json").symlink_to(real / "testmini.json")
        else:
            (root / folder).symlink_to(real, target_is_directory=True)
    if mathvista_images:  # the real MathVista sample has no images: add synthetic ones in this copy
        records = json.loads((root / "mathvista" / "testmini.json").read_text(encoding="utf-8"))
        for i, record in enumerate(records.values()):
            target = root / "mathvista" / record["image"]
            if not target.exists():
                _image(target, i)
    else:
        for record in json.loads((root / "mathvista" / "testmini.json").read_text(encoding="utf-8")).values():
            (root / "mathvista" / record["image"]).unlink(missing_ok=True)
    return root


def write_transcripts(folder: Path, ids: dict[str, list[str]]) -> Path:
    for benchmark in TRANSCRIPT_TWINS:
        entries = {pid: f"[figure of {benchmark} {pid}] lengths 3 and 4; labels A, B, C" for pid in ids[benchmark]}
        TranscriptSet(benchmark=benchmark, transcriber="test", model_args="", prompt=TRANSCRIBE_PROMPT,
                      entries=entries).save(folder)
    return folder


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """RD_EVAL_DATA_DIR at a mirror, RD_EVAL_TRANSCRIPTS at transcripts of every text-twin document, and an
    lmms-eval TaskManager over the rd tasks."""
    from lmms_eval.tasks import TaskManager

    base = tmp_path_factory.mktemp("six")
    mirror = build_mirror(base / "mirror", mathvista_images=True)
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("RD_EVAL_DATA_DIR", str(mirror))
        mp.setenv("LMMS_EVAL_DATASETS_CACHE", str(base / "datasets_cache"))
        ids = {b: list(BENCHMARKS[b].load("txt")["pair_id"]) for b in NAMES}
        transcripts = write_transcripts(base / "transcripts", ids)
        mp.setenv("RD_EVAL_TRANSCRIPTS", str(transcripts))
        # Only this file's folders: other task families' YAMLs are not indexed (nor can they break the index).
        folders = [str(TASKS_DIR / f"rd_{b}") for b in NAMES] + [str(TASKS_DIR / "rd_six")]
        manager = TaskManager(include_path=folders, include_defaults=False)
        yield {"mirror": mirror, "transcripts": transcripts, "manager": manager, "ids": ids, "tasks": {},
               "real": SHARED_DATA.is_dir()}


def task(env: dict[str, Any], name: str) -> Any:
    from lmms_eval.tasks import get_task_dict

    if name not in env["tasks"]:
        env["tasks"][name] = get_task_dict([name], env["manager"])[name]
    return env["tasks"][name]


def text_docs(env: dict[str, Any], name: str) -> list[dict[str, Any]]:
    """Documents as lmms-eval gives them to prompts and scoring: without the image column."""
    return list(task(env, name).test_docs_no_media())


# ---------------------------------------------------------------------------------------------------------
# The YAMLs through lmms-eval's TaskManager


def test_every_task_and_group_is_indexed(env: dict[str, Any]) -> None:
    assert sorted(env["manager"].all_tasks) == sorted(ALL_NAMES)
    yamls = sorted(p.stem for b in [*NAMES, "six"] for p in (TASKS_DIR / f"rd_{b}").glob("*.yaml"))
    assert yamls == sorted(ALL_NAMES)  # one YAML per task or group; the templates are extensionless


@pytest.mark.parametrize("group", sorted(PAIRED_GROUPS) + ["rd_six", "rd_six_img", "rd_six_txt"])
def test_groups_list_their_tasks_and_never_average(env: dict[str, Any], group: str) -> None:
    from lmms_eval.tasks import get_task_dict

    ((configured, subtasks),) = get_task_dict([group], env["manager"]).items()
    assert configured.group_name == group
    assert configured.config["aggregate_metric_list"] is None  # forms and benchmarks are never averaged
    if group in PAIRED_GROUPS:
        assert sorted(subtasks) == sorted(PAIRED_GROUPS[group])
    elif group == "rd_six":
        assert sorted(g.group_name for g in subtasks) == sorted(f"rd_{b}" for b in NAMES)
    else:
        form = group.rsplit("_", 1)[1]
        assert sorted(subtasks) == sorted(f"rd_{b}_{form}" for b in NAMES)


@pytest.mark.parametrize("name", LEAF_TASKS)
def test_every_task_loads_with_its_visuals(env: dict[str, Any], name: str) -> None:
    t = task(env, name)
    full, plain = t.test_docs(), text_docs(env, name)  # full documents decode their image when read
    assert len(full) == len(plain) > 0
    assert "image" not in plain[0]  # prompts and scoring never see the image
    gen = t.config.generation_kwargs
    assert gen["temperature"] == 0 and gen["do_sample"] is False and gen["max_new_tokens"] >= 1024
    for doc in (full[0], full[len(full) - 1]):
        visuals = t.doc_to_visual(doc)
        if name.endswith("_txt"):
            assert visuals == []
        else:
            assert len(visuals) == 1 and isinstance(visuals[0], Image.Image) and visuals[0].mode == "RGB"
    if name.endswith("_transcribe"):
        assert t.doc_to_text(plain[0]) == TRANSCRIBE_PROMPT
        assert set(t.aggregation()) == {"rd_transcript"}
    else:
        expected = {"rd_acc", "rd_worst"} if name.startswith("rd_dynamath") else {"rd_acc"}
        assert set(t.aggregation()) == expected and all(t.higher_is_better().values())


@pytest.mark.parametrize("benchmark", NAMES)
def test_pair_ids_match_across_forms(env: dict[str, Any], benchmark: str) -> None:
    img = [d["pair_id"] for d in text_docs(env, f"rd_{benchmark}_img")]
    txt = [d["pair_id"] for d in text_docs(env, f"rd_{benchmark}_txt")]
    assert img == txt and len(set(img)) == len(img)
    assert txt == env["ids"][benchmark]
    if benchmark in TRANSCRIPT_TWINS:
        assert [d["pair_id"] for d in text_docs(env, f"rd_{benchmark}_transcribe")] == img
    else:
        assert [d["pair_id"] for d in text_docs(env, "rd_mathverse_vd_img")] == img
        assert [d["pair_id"] for d in text_docs(env, "rd_mathverse_vd_txt")] == txt
    if env["real"]:
        expected = {"mathverse": 81, "mathvista": 50, "mathvision": 50, "wemath": 56, "logicvista": 50,
                    "dynamath": 200}
        assert len(img) == expected[benchmark]


def test_pair_ids_are_the_datasets_own_ids(env: dict[str, Any]) -> None:
    ids = env["ids"]
    assert "1" in ids["mathvista"] and "4" in ids["mathvision"]
    assert "432" in ids["mathverse"]  # MathVerse problem_index
    assert any(pid.startswith("visualizer-") for pid in ids["mathverse"])  # no testmini index in the mirror
    assert "2steps_1/2steps_multi" in ids["wemath"] and "v1_0" in ids["logicvista"]
    assert ids["dynamath"][:10] == [f"1-v{k}" for k in range(1, 11)]  # question-major, variants 1-10
    docs_ = text_docs(env, "rd_dynamath_img")
    assert {d["group_id"] for d in docs_[:10]} == {"1"} and [d["variant"] for d in docs_[:10]] == list(range(1, 11))


@pytest.mark.parametrize("benchmark", NAMES)
def test_both_forms_share_the_wording_and_the_gold(env: dict[str, Any], benchmark: str) -> None:
    img_task, txt_task = task(env, f"rd_{benchmark}_img"), task(env, f"rd_{benchmark}_txt")
    for img_doc, txt_doc in zip(text_docs(env, f"rd_{benchmark}_img"), text_docs(env, f"rd_{benchmark}_txt"),
                                strict=True):
        img_prompt, txt_prompt = img_task.doc_to_text(img_doc), txt_task.doc_to_text(txt_doc)
        instruction = img_prompt.splitlines()[-1]
        assert instruction.startswith("Think step by step") and txt_prompt.endswith(instruction)
        for key in ("answer", "answer_type", "choices", "precision"):
            assert img_doc[key] == txt_doc[key], (img_doc["pair_id"], key)
        if benchmark in TRANSCRIPT_TWINS:
            assert img_prompt.startswith(prompts.LEAD + "\n\n") and txt_prompt.startswith(prompts.LEAD + "\n\n")
            assert f"{benchmark} {txt_doc['pair_id']}]" in txt_prompt  # the transcript stands in for the image
            problem = img_prompt[len(prompts.LEAD):-len(instruction)].strip()
            assert problem and problem in txt_prompt  # the same question and choices in both forms
        else:
            assert prompts.TRANSCRIPT_LABEL not in txt_prompt
            assert img_doc["question"] == "" and img_prompt.startswith(prompts.LEAD_IMAGE_ONLY)  # Vision-Only
            assert txt_doc["question"] and txt_doc["question"] in txt_prompt  # Text-Only states it all


def _right(doc: dict[str, Any]) -> str:
    return f"Let me work it out step by step.\nAnswer: {doc['answer']}"


def _wrong(doc: dict[str, Any]) -> str:
    kind = doc["answer_type"]
    if kind == "number":
        return f"Answer: {Decimal(doc['answer']) + 7}"
    if kind == "choice":  # the next option whose text differs (equal option texts are all right: ['18', '18'])
        n, gold_index, texts = max(len(doc["choices"]), 2), ALL_LETTERS.index(doc["answer"]), doc["choices"]
        other = next(i % n for i in range(gold_index + 1, gold_index + n)
                     if not texts or texts[i % n] != texts[gold_index])
        return f"Answer: {ALL_LETTERS[other]}"
    if kind == "multi_choice":
        return "Answer: " + ("B" if doc["answer"] != "B" else "A")
    return "Answer: 987654321"


@pytest.mark.parametrize("benchmark", NAMES)
def test_real_gold_answers_score_right_and_wrong(env: dict[str, Any], benchmark: str) -> None:
    for form in ("img", "txt"):
        t = task(env, f"rd_{benchmark}_{form}")
        items = []
        for doc in text_docs(env, f"rd_{benchmark}_{form}"):
            right = t.process_results(doc, [_right(doc)])["rd_acc"]
            wrong = t.process_results(doc, [_wrong(doc)])["rd_acc"]
            assert right["correct"] == 1, (doc["pair_id"], doc["answer_type"], doc["answer"], right["pred"])
            assert wrong["correct"] == 0, (doc["pair_id"], doc["answer_type"], doc["answer"], wrong["pred"])
            assert {k: right[k] for k in ("pair_id", "form", "answer", "error")} == {
                "pair_id": doc["pair_id"], "form": form, "answer": doc["answer"], "error": None}
            items += [right, wrong]
        assert t.aggregation()["rd_acc"](items) == 0.5


def test_answer_types_of_the_real_samples(env: dict[str, Any]) -> None:
    kinds = {b: {d["answer_type"] for d in text_docs(env, f"rd_{b}_txt")} for b in NAMES}
    assert kinds["wemath"] == {"choice"}
    assert "choice" in kinds["mathvista"] and "number" in kinds["mathvista"]
    assert "multi_choice" in kinds["logicvista"] or env["real"]  # the real sample has single letters only
    assert "number" in kinds["dynamath"] and "choice" in kinds["dynamath"]


@pytest.mark.parametrize("form", ["img", "txt"])
def test_error_response_is_recorded_not_scored(env: dict[str, Any], form: str) -> None:
    t = task(env, f"rd_mathvision_{form}")
    doc = text_docs(env, f"rd_mathvision_{form}")[0]
    item = t.process_results(doc, [error_response(f"image unreadable (expected {doc['answer']})")])["rd_acc"]
    assert item == {"pair_id": doc["pair_id"], "form": form, "correct": None, "pred": None,
                    "answer": doc["answer"], "error": f"image unreadable (expected {doc['answer']})",
                    "data_source": json.loads(doc["rd_data_source"])}
    right = t.process_results(doc, [_right(doc)])["rd_acc"]
    assert t.aggregation()["rd_acc"]([item, right]) == 1.0 and t.aggregation()["rd_acc"]([item]) == 0.0


def test_dynamath_worst_case_over_variants(env: dict[str, Any]) -> None:
    t = task(env, "rd_dynamath_img")
    by_question: dict[str, list[dict[str, Any]]] = {}
    for doc in text_docs(env, "rd_dynamath_img"):
        by_question.setdefault(doc["group_id"], []).append(doc)
    (q1, first), (q2, second) = list(by_question.items())[:2]
    assert len(first) == len(second) == 10
    items = [t.process_results(d, [_right(d)])["rd_worst"] for d in first]
    items += [t.process_results(d, [_right(d) if d["variant"] != 3 else _wrong(d)])["rd_worst"] for d in second]
    assert {i["group_id"] for i in items} == {q1, q2}
    worst, mean = t.aggregation()["rd_worst"], t.aggregation()["rd_acc"]
    assert worst(items) == 0.5  # the second question fails on one variant
    assert mean([{k: v for k, v in i.items() if k != "group_id"} for i in items]) == 0.95
    errored = items[:10] + [t.process_results(d, [error_response("oom")])["rd_worst"] for d in second]
    assert worst(errored) == 1.0  # a question with an unscored variant cannot be judged: left out
    assert worst([]) == 0.0


# ---------------------------------------------------------------------------------------------------------
# Transcripts and the local mirror


def test_missing_transcripts_name_the_command(env: dict[str, Any], tmp_path: Path,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    from lmms_eval.tasks import get_task_dict

    t = task(env, "rd_mathvision_txt")
    doc = text_docs(env, "rd_mathvision_txt")[0]
    monkeypatch.setenv("RD_EVAL_TRANSCRIPTS", str(tmp_path))  # a folder without transcripts
    with pytest.raises(TranscriptError, match=r"rd-eval twins transcribe --model MODEL .*--tasks rd_mathvision_img"):
        t.doc_to_text(doc)
    TranscriptSet(benchmark="mathvision", transcriber="m", model_args="", prompt="p",
                  entries={"other": "x"}).save(tmp_path)
    with pytest.raises(TranscriptError, match=rf"{doc['pair_id']!r}.*rd-eval twins transcribe"):
        t.doc_to_text(doc)
    monkeypatch.delenv("RD_EVAL_TRANSCRIPTS")
    with pytest.raises(TranscriptError, match="RD_EVAL_TRANSCRIPTS is not set.*rd-eval twins transcribe"):
        get_task_dict(["rd_wemath_txt"], env["manager"])  # the task checks its first document when built


def test_failed_transcriptions_are_left_out_of_the_text_twin(env: dict[str, Any], tmp_path: Path,
                                                              monkeypatch: pytest.MonkeyPatch,
                                                              caplog: pytest.LogCaptureFixture) -> None:
    from lmms_eval.tasks import get_task_dict

    ids = [str(i) for i in env["ids"]["logicvista"]]
    failed = {pid: "image check failed" for pid in ids[:2]}
    TranscriptSet(benchmark="logicvista", transcriber="m", model_args="", prompt=TRANSCRIBE_PROMPT,
                  entries={pid: "a figure" for pid in ids[2:]}, failed=failed).save(tmp_path)
    monkeypatch.setenv("RD_EVAL_TRANSCRIPTS", str(tmp_path))
    with caplog.at_level("WARNING", logger="rd_eval.benchmarks.six"):
        built = get_task_dict(["rd_logicvista_txt"], env["manager"])["rd_logicvista_txt"]
    kept = [str(d["pair_id"]) for d in built.test_docs_no_media()]
    assert kept == ids[2:]  # the image form keeps all; the two pairs become image-only in the report
    assert "rd_logicvista_txt: 2 documents left out, their transcription failed" in caplog.text
    assert ids[0] in caplog.text and ids[1] in caplog.text


def test_mirror_without_images_fails_image_forms_only(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    mirror = build_mirror(tmp_path / "mirror", mathvista_images=False)
    monkeypatch.setenv("RD_EVAL_DATA_DIR", str(mirror))
    with pytest.raises(LocalDataError, match=r"mathvista: .*images/.* does not exist.*RD_EVAL_DATA_DIR"):
        mathvista.load("img")
    assert len(mathvista.load("txt")) > 0  # the text twin needs no image
    monkeypatch.setenv("RD_EVAL_DATA_DIR", str(tmp_path / "nowhere"))
    with pytest.raises(LocalDataError, match="RD_EVAL_DATA_DIR"):
        mathvision.load("txt")
    with pytest.raises(ValueError, match="unknown form 'vd_img'"):
        mathvision.load("vd_img")


# ---------------------------------------------------------------------------------------------------------
# The Hugging Face path, on in-memory datasets of each Hub schema


def _hub(rows: list[dict[str, Any]], image_column: str | None) -> datasets.Dataset:
    if image_column is None:
        return datasets.Dataset.from_list(rows)
    features = datasets.Dataset.from_list(rows).features  # the text columns, inferred from every row
    features[image_column] = datasets.Image()
    for i, row in enumerate(rows):  # row i's image is red i * 40, to follow it through reordering
        row[image_column] = Image.new("RGB", (16, 12), (i * 40, 0, 0))
    return datasets.Dataset.from_list(rows, features=features)


HUB_ROWS: dict[str, Callable[[], list[dict[str, Any]]]] = {
    "mathvista": lambda: [
        {"pid": "1", "question": "Q1", "image": "images/1.jpg", "choices": None, "unit": None, "precision": 2.0,
         "answer": "1.25", "question_type": "free_form", "answer_type": "float", "query": "q"},
        {"pid": "2", "question": "Q2", "image": "images/2.jpg", "choices": ["yes", "no"], "unit": "cm",
         "precision": None, "answer": "no", "question_type": "multi_choice", "answer_type": "text", "query": "q"}],
    "mathvision": lambda: [
        {"id": "7", "question": "<image1> Q", "options": ["1", "2"], "image": "images/7.jpg", "answer": "B",
         "solution": None, "level": 1, "subject": "s"}],
    "wemath": lambda: [
        {"ID": "3steps_1", "split": "testmini", "knowledge concept": "k", "question": "Q",
         "option": "A. 1;B. 2", "answer": "A", "key": "3steps_multi", "question number": 1,
         "knowledge concept description": ""}],
    "logicvista": lambda: [
        {"id": "v2_5", "question": "Q", "answer": "A, D", "reasoning": "", "skill": ["deductive"]}],
    "dynamath": lambda: [
        {"id": str(q), "question_id": qid, "question": f"Q{q}", "image": "image/x.png", "ground_truth": gt,
         "answer_type": kind, "subject": "s", "knowledge_level": "k"}
        for qid, q, gt, kind in ((5, 2, "B", "multiple choice"), (0, 1, "3.1416", "float"), (501, 1, "6.2832", "float"),
                                 (7, 2, "C", "multiple choice"))],
}


def _pinned(benchmark: str) -> str | None:
    revision = PINS[benchmark].revision
    return None if revision == UNPINNED else revision


@pytest.mark.parametrize("benchmark", sorted(HUB_ROWS))
def test_hub_datasets_become_the_same_documents(benchmark: str, monkeypatch: pytest.MonkeyPatch) -> None:
    module = BENCHMARKS[benchmark]
    calls = []

    def fake_load_dataset(path: str, name: str | None = None, *, split: str, revision: str | None = None,
                          **kwargs: Any) -> datasets.Dataset:
        calls.append((path, name, split, revision))
        return _hub(HUB_ROWS[benchmark](), module.HUB.image_column)

    monkeypatch.delenv("RD_EVAL_DATA_DIR", raising=False)
    monkeypatch.delenv("RD_EVAL_DATASET_REVISIONS", raising=False)
    monkeypatch.setattr(datasets, "load_dataset", fake_load_dataset)
    img, txt = module.load("img"), module.load("txt")
    assert calls == [(module.HUB.path, module.HUB.name, module.HUB.split, _pinned(benchmark))] * 2
    record = json.loads(txt[0]["rd_data_source"])
    assert (record["source"], record["dataset"], record["revision"]) == (
        "hub", module.HUB.path, _pinned(benchmark) or UNPINNED)
    assert "image" in img.column_names and "image" not in txt.column_names
    assert img["pair_id"] == txt["pair_id"] and isinstance(img[0]["image"], Image.Image)
    assert img.select_columns([c for c in img.column_names if c != "image"]).to_list() == txt.to_list()
    got = [BenchDoc.from_row(r) for r in txt]
    expected = {
        "mathvista": [("1", "1.25", "number", 2, None), ("2", "B", "choice", None, None)],
        "mathvision": [("7", "B", "choice", None, None)],
        "wemath": [("3steps_1/3steps_multi", "A", "choice", None, None)],
        "logicvista": [("v2_5", "A, D", "multi_choice", None, None)],
        "dynamath": [("1-v1", "3.1416", "number", None, dynamath.FLOAT_TOLERANCE),
                     ("1-v2", "6.2832", "number", None, dynamath.FLOAT_TOLERANCE), ("2-v1", "B", "choice", None, None),
                     ("2-v2", "C", "choice", None, None)],
    }[benchmark]
    assert [(d.pair_id, d.answer, d.answer_type, d.precision, d.abs_tolerance) for d in got] == expected
    if benchmark == "dynamath":  # question-major, variants by question_id; images follow their rows
        assert [d.group_id for d in got] == ["1", "1", "2", "2"] and [d.variant for d in got] == [1, 2, 1, 2]
        assert [img[i]["image"].getpixel((0, 0))[0] for i in range(4)] == [40, 80, 0, 120]
    if benchmark == "mathvista":
        assert got[1].question == "Q2 (Unit: cm)" and got[1].choices == ("yes", "no")


def test_hub_mathverse_pairs_vision_forms_with_text_only_by_problem_index(monkeypatch: pytest.MonkeyPatch) -> None:
    def row(index: str, version: str, question: str, answer: str, kind: str) -> dict[str, Any]:
        return {"sample_index": f"{index}-{version}", "problem_index": index, "problem_version": version,
                "question": question, "answer": answer, "question_type": kind, "metadata": {"split": "testmini"},
                "query_wo": "", "query_cot": "", "question_for_eval": question}

    text_only = [row("1", "Text Only", "Find the bearing.\nChoice:\nA. 090^\\circ T\nB. 180^\\circ T", "090^\\circ T",
                     "multi-choice"),
                 row("2", "Text Only", "Find the area.", "Area $=9.4 \\mathrm{~cm}^{2}$", "free-form")]
    vision = [row("2", "Vision Only", "", "9.4", "free-form"), row("1", "Vision Only", "", "A", "multi-choice")]

    def fake_hub(path: str, name: str | None = None, *, split: str, revision: str | None = None,
                 **kwargs: Any) -> datasets.Dataset:
        assert (path, revision) == ("CaraJ/MathVerse-lmmseval", PINS["mathverse"].revision)
        if (name, split) == ("testmini_text_only", "text_only"):
            return datasets.Dataset.from_list([{**r, "image": ""} for r in text_only])
        assert (name, split) in (("testmini_version_split", "vision_only"), ("testmini_version_split",
                                                                             "vision_dominant"))
        return _hub([dict(r) for r in vision], "image")

    monkeypatch.delenv("RD_EVAL_DATA_DIR", raising=False)
    monkeypatch.delenv("RD_EVAL_DATASET_REVISIONS", raising=False)
    monkeypatch.setattr(datasets, "load_dataset", fake_hub)
    img, vd, txt = mathverse.load("img"), mathverse.load("vd_img"), mathverse.load("txt")
    assert txt["pair_id"] == ["1", "2"] and img["pair_id"] == vd["pair_id"] == ["2", "1"]
    twin = {d.pair_id: d for d in map(BenchDoc.from_row, txt)}
    assert (twin["1"].answer, twin["1"].answer_type, twin["1"].show_choices) == ("A", "choice", False)
    assert twin["1"].choices == ("090^\\circ T", "180^\\circ T")
    assert (twin["2"].answer, twin["2"].answer_type) == ("9.4", "number")
    for r in img.select_columns([c for c in img.column_names if c != "image"]):
        doc = BenchDoc.from_row(r)
        assert (doc.answer, doc.answer_type, doc.choices) == (twin[doc.pair_id].answer,
                                                              twin[doc.pair_id].answer_type, twin[doc.pair_id].choices)


# ---------------------------------------------------------------------------------------------------------
# Gold normalisation and metrics


@pytest.mark.parametrize(("answer", "number"), [
    ("Area $=9.4 \\mathrm{~cm}^{2}$", "9.4"), ("315^\\circT", "315"), ("217 ^\\circ T", "217"), ("118掳T", "118"),
    ("$h=58$", "58"), ("4.4 m", "4.4"), ("56.55 units $^{3}$", "56.55"), ("1,200", "1200"), ("-.5", "-0.5"),
    ("2.0944", "2.0944"), ("9 \\pi", None), ("(2,-2)", None), ("\\frac{4}{5}", None), ("Center $=(20,10)$", None),
    ("x = 3 = y", None), ("S 23.5 ^\\circ W", None), ("4:45", None), ("", None),
])
def test_numeric_gold(answer: str, number: str | None) -> None:
    assert numeric_answer(answer) == number


def test_option_helpers() -> None:
    assert gold.parse_lettered_options("A. 300, 400;B. 400, 300; C. 1") == ["300, 400", "400, 300", "1"]
    assert gold.parse_lettered_options("A:40°\nB:60°") == ["40°", "60°"]
    assert gold.parse_lettered_options("B. 1;A. 2") is None
    assert gold.choice_letters("A, C") == "A, C" and gold.choice_letters("C and A") == "A, C"
    assert gold.choice_letters("Area") is None and gold.choice_letter("(b)") == "B"
    assert gold.choice_letter("E", 4) is None
    assert gold.strip_image_tags("<image1>\nIn the picture above") == "In the picture above"
    repeated = "Find the bearing.\nChoice:\nA. 090^\\circ T\nB. 180^\\circ T\nChoice:\nA. 090^\\circ T\nB. 180^\\circ T"
    assert mathverse.question_choices(repeated) == ["090^\\circ T", "180^\\circ T"]
    assert mathverse.question_choices("Choices:\nA:40°\nB:60°") == ["40°", "60°"]
    assert mathverse.question_choices("No options here") == []


def test_mean_and_worst_reject_bad_items() -> None:
    with pytest.raises(ValueError, match=r"'correct' must be 0, 1 or None"):
        mean_correct([{"correct": 0.5}])
    with pytest.raises(ValueError, match="group_id"):
        worst_case_accuracy([{"correct": 1}])
    assert mean_correct([]) == 0.0


# ---------------------------------------------------------------------------------------------------------
# Pair integrity: what the report gives when forms do not pair up


def _fake_run(out: Path, samples: dict[str, list[dict[str, Any]]]) -> Path:
    folder = out / "fake"
    folder.mkdir(parents=True)
    stamp = "20260101_000000"
    scores = {t: {"rd_acc,none": mean_correct([s["rd_acc"] for s in rows])} for t, rows in samples.items()}
    results = {"results": scores, "configs": {t: {} for t in samples},
               "config": {"model": "fake", "model_args": "pretrained=fake"}}
    (folder / f"{stamp}_results.json").write_text(json.dumps(results))
    for t, rows in samples.items():
        (folder / f"{stamp}_samples_{t}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return out


def test_unpaired_ids_are_counted_never_averaged(env: dict[str, Any], tmp_path: Path) -> None:
    samples: dict[str, list[dict[str, Any]]] = {}
    for form in ("img", "txt"):
        t = task(env, f"rd_mathvision_{form}")
        plain = text_docs(env, f"rd_mathvision_{form}")
        keep = plain[1:] if form == "img" else plain[:-1]  # one id only in txt, one only in img
        answer = _right if form == "txt" else _wrong
        samples[f"rd_mathvision_{form}"] = [{"doc_id": i, **t.process_results(d, [answer(d)])}
                                            for i, d in enumerate(keep)]
    frame = load_paired_samples(find_runs(_fake_run(tmp_path / "runs", samples))[0])
    table = compare_runs(frame, None, n_boot=200)
    (row,) = table["rows"]
    n = len(text_docs(env, "rd_mathvision_img"))
    assert row["benchmark"] == "rd_mathvision"
    assert (row["base"]["n_pairs"], row["base"]["img_only"], row["base"]["txt_only"]) == (n - 2, 1, 1)
    assert (row["base"]["acc_img"], row["base"]["acc_txt"]) == (0.0, 100.0)  # over the n - 2 pairs only
    assert f"| rd_mathvision | base | {n - 2} | 1 / 1 |" in gaps_markdown(table, title="t")
    # A benchmark whose forms share no id at all is an error naming the counts, not a silent number.
    one_sided = _fake_run(tmp_path / "one_sided", {"rd_mathvision_img": samples["rd_mathvision_img"]})
    with pytest.raises(ValueError, match=rf"no pair_id has both .*img-only {n - 1}, txt-only 0"):
        compare_runs(load_paired_samples(find_runs(one_sided)[0]), None, n_boot=200)


# ---------------------------------------------------------------------------------------------------------
# End to end: transcribe, then run both forms through lmms-eval's command line


SMALL_IMAGES = 64 * 32 * 32  # pixels: a few dozen image tokens per image


def test_transcribe_then_evaluate_mathvision_end_to_end(env: dict[str, Any], tiny_dir: Path, tmp_path: Path,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    from rd_eval.commands import main as cli

    transcripts = tmp_path / "T"
    monkeypatch.setenv("LMMS_EVAL_DATASETS_CACHE", str(tmp_path / "datasets_cache"))
    # A tiny random model would write the task's 1024 tokens per document: cap generation.
    # Real benchmark images are large: cap the tiny model's image tokens (lmms-eval Qwen3-VL's max_pixels).
    model_args = f"pretrained={tiny_dir},min_pixels={SMALL_IMAGES // 4},max_pixels={SMALL_IMAGES}"
    code = cli.main(["twins", "transcribe", "--model", "rd_qwen3_vl_moe", "--model_args", model_args,
                     "--tasks", "rd_mathvision_img", "--out", str(transcripts), "--limit", "2",
                     "--gen_kwargs", "max_new_tokens=8"])
    assert code == 0, (transcripts / "logs" / "transcribe.log").read_text()[-3000:]
    made = TranscriptSet.load(transcripts / "mathvision.transcripts.json")
    first_two = env["ids"]["mathvision"][:2]
    assert sorted(made.entries) == sorted(first_two) and made.transcriber == "rd_qwen3_vl_moe"

    out = tmp_path / "out"
    result = run([sys.executable, "-m", "lmms_eval", "--model", "rd_qwen3_vl_moe", "--model_args",
                  model_args, "--tasks", "rd_mathvision", "--include_path", tasks_path(), "--limit", "2",
                  "--log_samples", "--output_path", str(out), "--gen_kwargs", "max_new_tokens=8"], tmp_path,
                 extra_env={"RD_EVAL_TRANSCRIPTS": str(transcripts),
                            "RD_EVAL_DATA_DIR": os.environ["RD_EVAL_DATA_DIR"]})
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    (run_record,) = find_runs(out)
    assert set(run_record.samples) == {"rd_mathvision_img", "rd_mathvision_txt"}
    frame = load_paired_samples(run_record)
    assert sorted(frame[frame.form == "img"].pair_id) == sorted(frame[frame.form == "txt"].pair_id) == sorted(first_two)
    (row,) = compare_runs(frame, None, n_boot=100)["rows"]
    assert (row["benchmark"], row["base"]["n_pairs"], row["base"]["img_only"], row["base"]["txt_only"]) == (
        "rd_mathvision", 2, 0, 0)
    lines = run_record.samples["rd_mathvision_txt"].read_text().splitlines()
    txt_inputs = [json.loads(line)["input"] for line in lines if line.strip()]
    assert all(prompts.TRANSCRIPT_LABEL in text for text in txt_inputs)
    # The data source: declared in the task config of the results JSON, and read (with the mirror's content
    # hash) in every logged rd_acc item.
    configs = json.loads(run_record.results_path.read_text())["configs"]
    mirror = str(Path(os.environ["RD_EVAL_DATA_DIR"]) / "math_vision")
    for form in ("img", "txt"):
        declared = configs[f"rd_mathvision_{form}"]["metadata"]["rd_data_source"]
        assert (declared["source"], declared["dataset"], declared["benchmark"]) == ("local", mirror, "mathvision")
        items = [json.loads(line)["rd_acc"]["data_source"] for line in
                 run_record.samples[f"rd_mathvision_{form}"].read_text().splitlines() if line.strip()]
        assert len({json.dumps(i, sort_keys=True) for i in items}) == 1 and items[0]["dataset"] == mirror
        assert items[0]["revision"].startswith("sha256:") and items[0]["files"] >= 1
