"""The rd_demo YAML tasks load through lmms-eval's TaskManager and score both forms of every pair."""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

import pytest
import rd_eval_tasks
from lmms_eval.tasks import TaskManager, get_task_dict
from PIL import Image

from rd_eval.scoring.doc_errors import error_response
from rd_eval.twins.demo_bench import from_record

TASKS_DIR = os.path.dirname(rd_eval_tasks.__file__)
WRONG = {"number": "-999", "choice": "Z"}


@pytest.fixture(scope="module")
def loaded(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    with pytest.MonkeyPatch.context() as mp:
        # Keep the datasets cache out of the user's home so the test is hermetic.
        mp.setenv("LMMS_EVAL_DATASETS_CACHE", str(tmp_path_factory.mktemp("hf_datasets")))
        manager = TaskManager(include_path=TASKS_DIR, include_defaults=False)
        group_dict = get_task_dict(["rd_demo"], manager)
        task_dict = get_task_dict(["rd_demo_img", "rd_demo_txt"], manager)
        yield {"manager": manager, "group": group_dict, "tasks": task_dict}


def _docs(task: Any) -> list[dict[str, Any]]:
    return list(task.test_docs())


def test_only_the_yaml_tasks_are_indexed(loaded: dict[str, Any]) -> None:
    # The extensionless template is never a task of its own.
    demo = [name for name in loaded["manager"].all_tasks if name.startswith("rd_demo")]
    assert demo == ["rd_demo", "rd_demo_img", "rd_demo_txt"]


def test_group_holds_both_forms_without_an_aggregate(loaded: dict[str, Any]) -> None:
    ((group, subtasks),) = loaded["group"].items()
    assert group.group_name == "rd_demo"
    assert sorted(subtasks) == ["rd_demo_img", "rd_demo_txt"]
    assert group.config["aggregate_metric_list"] is None  # the two forms must never be averaged


@pytest.mark.parametrize("name", ["rd_demo_img", "rd_demo_txt"])
def test_each_task_has_40_docs_and_the_generation_settings(loaded: dict[str, Any], name: str) -> None:
    task = loaded["tasks"][name]
    assert len(_docs(task)) == 40
    gen = task.config.generation_kwargs
    assert gen["max_new_tokens"] == 16 and gen["temperature"] == 0 and gen["do_sample"] is False
    assert gen["until"] == ["\n\n"]
    assert task.OUTPUT_TYPE == "generate_until"


def test_img_task_gives_one_rgb_image_and_txt_task_none(loaded: dict[str, Any]) -> None:
    img_task, txt_task = loaded["tasks"]["rd_demo_img"], loaded["tasks"]["rd_demo_txt"]
    for doc in _docs(img_task)[:8]:
        visuals = img_task.doc_to_visual(doc)
        assert len(visuals) == 1
        assert isinstance(visuals[0], Image.Image) and visuals[0].mode == "RGB"
    for doc in _docs(txt_task):
        assert txt_task.doc_to_visual(doc) == []


def test_prompts_share_the_answer_instruction_and_only_txt_carries_the_problem(loaded: dict[str, Any]) -> None:
    img_task, txt_task = loaded["tasks"]["rd_demo_img"], loaded["tasks"]["rd_demo_txt"]
    for img_doc, txt_doc in zip(_docs(img_task), _docs(txt_task), strict=True):
        p = from_record(txt_doc)
        img_prompt, txt_prompt = img_task.doc_to_text(img_doc), txt_task.doc_to_text(txt_doc)
        assert p.text_twin in txt_prompt
        assert p.question not in img_prompt  # the image alone carries the problem
        instruction = img_prompt.splitlines()[-1]
        assert instruction.startswith("Reply with only") and txt_prompt.endswith(instruction)
        assert txt_task.doc_to_target(txt_doc) == p.answer


def test_pair_ids_match_across_forms(loaded: dict[str, Any]) -> None:
    img_ids = [d["pair_id"] for d in _docs(loaded["tasks"]["rd_demo_img"])]
    txt_ids = [d["pair_id"] for d in _docs(loaded["tasks"]["rd_demo_txt"])]
    assert img_ids == txt_ids
    assert len(set(img_ids)) == 40


@pytest.mark.parametrize(("name", "form"), [("rd_demo_img", "img"), ("rd_demo_txt", "txt")])
def test_process_results_scores_right_and_wrong(loaded: dict[str, Any], name: str, form: str) -> None:
    task = loaded["tasks"][name]
    items = []
    for doc in _docs(task):
        p = from_record(doc)
        right = task.process_results(doc, [f"The answer is {p.answer}."])["rd_acc"]
        wrong = task.process_results(doc, [WRONG[p.answer_type]])["rd_acc"]
        assert right == {
            "pair_id": p.pair_id, "form": form, "correct": 1, "pred": p.answer, "answer": p.answer, "error": None,
        }  # fmt: skip
        assert wrong["correct"] == 0 and wrong["pair_id"] == p.pair_id and wrong["form"] == form
        assert wrong["error"] is None
        items += [right, wrong]
    aggregate = task.aggregation()["rd_acc"]
    assert aggregate(items) == 0.5
    assert task.higher_is_better()["rd_acc"] is True


@pytest.mark.parametrize(("name", "form"), [("rd_demo_img", "img"), ("rd_demo_txt", "txt")])
def test_error_response_is_recorded_not_scored(loaded: dict[str, Any], name: str, form: str) -> None:
    task = loaded["tasks"][name]
    doc = _docs(task)[0]
    p = from_record(doc)
    # Even an error reason that happens to contain the right answer must not be scored.
    response = error_response(f"image unreadable (expected {p.answer})")
    item = task.process_results(doc, [response])["rd_acc"]
    assert item == {
        "pair_id": p.pair_id, "form": form, "correct": None, "pred": None, "answer": p.answer,
        "error": f"image unreadable (expected {p.answer})",
    }  # fmt: skip
    right = task.process_results(doc, [f"The answer is {p.answer}."])["rd_acc"]
    wrong = task.process_results(doc, [WRONG[p.answer_type]])["rd_acc"]
    aggregate = task.aggregation()["rd_acc"]
    # The error item is skipped: 1 right of 2 scored, not 1 of 3.
    assert aggregate([right, item, wrong]) == 0.5
    assert aggregate([item, right]) == 1.0
    assert aggregate([item, item]) == 0.0  # nothing scored
    assert aggregate([]) == 0.0


def test_error_response_without_reason_still_marks_an_error(loaded: dict[str, Any]) -> None:
    task = loaded["tasks"]["rd_demo_img"]
    doc = _docs(task)[0]
    item = task.process_results(doc, [error_response("")])["rd_acc"]
    assert item["correct"] is None and item["pred"] is None
    assert isinstance(item["error"], str) and item["error"]


def test_mean_correct_rejects_other_values(loaded: dict[str, Any]) -> None:
    aggregate = loaded["tasks"]["rd_demo_img"].aggregation()["rd_acc"]
    with pytest.raises(ValueError, match=r"'correct' must be 0, 1 or None \(error\).*0\.5"):
        aggregate([{"correct": 1}, {"correct": None}, {"correct": 0.5}])
