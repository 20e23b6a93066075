"""The organism's held-out split as lmms-eval tasks (issue 16 item 1): rd_organism_img, rd_organism_txt (group
rd_organism) and the perception task rd_organism_see.

- the bundled documents are exactly the held-out split of seed 0 (402 pairs: 201 additions, 201 comparisons), none
  of them trained on;
- the tasks ask the organism's own prompts, show its own images and score with rd-eval's scorer and perception
  check; an edited document is refused;
- `python -m lmms_eval --model rd_qwen3_vl_moe` runs them, and its replies are the in-process replies.
"""

from __future__ import annotations

import importlib.util
import json
import sys
from dataclasses import replace
from pathlib import Path
from types import ModuleType

import pytest
from lmms_cli import run, tasks_path
from test_organism_train import TOY, quiet

from rd_eval.lmms.runs import find_runs, load_paired_samples
from rd_eval.organism.assets import MAX_PIXELS, MIN_PIXELS
from rd_eval.organism.benchmark import (
    DATA_NAME,
    data_text,
    doc_to_target_see,
    doc_to_text_see,
    from_record,
    heldout_problems,
    seen_item,
    to_record,
)
from rd_eval.organism.problems import Problem, make_splits, problem_image
from rd_eval.organism.prompts import TRANSCRIBE_PROMPT, user_text
from rd_eval.organism.spec import OrganismSpec
from rd_eval.organism.train import train
from rd_eval.scoring.doc_errors import ERROR_MARK

TASK_DIR = Path(__file__).resolve().parents[1] / "tasks" / "rd_organism"


def task_utils() -> ModuleType:
    spec = importlib.util.spec_from_file_location("rd_organism_utils", TASK_DIR / "utils.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


UTILS = task_utils()
DOCS = [json.loads(line) for line in (TASK_DIR / DATA_NAME).read_text(encoding="utf-8").splitlines()]


def test_the_bundled_documents_are_the_held_out_split_of_seed_0() -> None:
    assert (TASK_DIR / DATA_NAME).read_text(encoding="utf-8") == data_text(heldout_problems())
    assert len(DOCS) == 402 and len({d["pair_id"] for d in DOCS}) == 402
    assert [d["kind"] for d in DOCS].count("max") == 201
    spec = OrganismSpec()
    train_split = make_splits(("add", "max"), 0, n_heldout=spec.n_heldout, n_validation=spec.n_validation).train
    trained_groups = {p.group for p in train_split}
    assert not any(from_record(d).group in trained_groups for d in DOCS)
    assert DOCS[0] == {"pair_id": "organism-add-27-30", "kind": "add", "a": 27, "b": 30, "expression": "27 + 30",
                       "answer": "57"}


def test_the_tasks_ask_the_organism_s_prompts_and_show_its_images() -> None:
    doc = DOCS[5]
    problem = from_record(doc)
    assert UTILS.doc_to_text_txt(doc, {"pre_prompt": "", "post_prompt": ""}) == user_text(problem, "txt")
    assert problem.expression in UTILS.doc_to_text_txt(doc)
    assert UTILS.doc_to_text_img(doc) == user_text(problem, "img")
    assert problem.expression not in UTILS.doc_to_text_img(doc)
    assert doc_to_text_see(doc) == TRANSCRIBE_PROMPT == UTILS.doc_to_text_see(doc)
    (image,) = UTILS.doc_to_visual_img(doc)
    assert image.tobytes() == problem_image(problem).tobytes()
    assert UTILS.doc_to_visual_txt(doc) == []
    assert UTILS.doc_to_target(doc) == problem.answer and doc_to_target_see(doc) == problem.expression
    assert UTILS.DATA_SOURCE["revision"].startswith("sha256:") and UTILS.DATA_SOURCE["benchmark"] == "organism"


def test_answers_are_scored_by_rd_eval_s_scorer() -> None:
    doc = to_record(Problem("add", 45, 38))
    right = UTILS.process_results_img(doc, ["83"])["rd_acc"]
    assert right["correct"] == 1 and right["pair_id"] == "organism-add-45-38" and right["form"] == "img"
    assert UTILS.process_results_txt(doc, ["84"])["rd_acc"]["correct"] == 0
    error = UTILS.process_results_img(doc, [f"{ERROR_MARK} no image tokens"])["rd_acc"]
    assert error["correct"] is None and error["error"] == "no image tokens"
    assert UTILS.mean_correct([right, error]) == 1.0


def test_the_perception_task_judges_the_transcription() -> None:
    doc = to_record(Problem("add", 45, 38))
    seen = UTILS.process_results_see(doc, ["45 + 38"])["rd_seen"]
    assert seen == {"pair_id": "organism-add-45-38", "seen": 1, "similarity": 1.0, "missing_numbers": [],
                    "threshold": 0.9, "error": None}
    misread = UTILS.process_results_see(doc, ["45 + 33"])["rd_seen"]
    assert misread["seen"] == 0 and misread["missing_numbers"] == ["38"]
    failed = seen_item("organism-add-45-38", "45 + 38", f"{ERROR_MARK} unreadable image")
    assert failed["seen"] is None and failed["error"] == "unreadable image"
    assert UTILS.mean_seen([seen, misread, failed]) == 0.5


@pytest.mark.parametrize(("change", "message"), [
    ({"answer": "84"}, "its kind and numbers give"),
    ({"pair_id": "organism-add-1-2"}, "its kind and numbers give"),
    ({"kind": "mul"}, "unknown problem kind 'mul'"),
    ({"a": "forty"}, "invalid literal"),
])
def test_an_edited_document_is_refused(change: dict[str, str], message: str) -> None:
    doc = {**to_record(Problem("add", 45, 38)), **change}
    with pytest.raises(ValueError, match=message) as caught:
        UTILS.doc_to_target(doc)
    assert DATA_NAME in str(caught.value)


def test_a_document_without_its_keys_names_them() -> None:
    with pytest.raises(ValueError, match=r"lacks \['answer'\]"):
        from_record({k: v for k, v in to_record(Problem("add", 45, 38)).items() if k != "answer"})


def test_python_m_lmms_eval_runs_the_tasks_and_its_replies_are_the_in_process_ones(tmp_path: Path) -> None:
    import torch
    from transformers import AutoModelForImageTextToText, AutoProcessor

    from rd_eval.organism.batches import Encoder, Example
    from rd_eval.organism.evaluate import replies

    checkpoint = tmp_path / "organism"
    train(replace(TOY, steps=2), checkpoint, progress=False, log=quiet)
    out = tmp_path / "out"
    model_args = f"pretrained={checkpoint},min_pixels={MIN_PIXELS},max_pixels={MAX_PIXELS}"
    command = [sys.executable, "-m", "lmms_eval", "--model", "rd_qwen3_vl_moe", "--model_args", model_args,
               "--tasks", "rd_organism,rd_organism_see", "--include_path", tasks_path(), "--output_path", str(out),
               "--log_samples", "--limit", "4", "--batch_size", "4", "--device", "cpu"]
    result = run(command, tmp_path)
    assert result.returncode == 0, (result.stdout + result.stderr)[-3000:]
    (found,) = find_runs(out)
    assert set(found.samples) == {"rd_organism_img", "rd_organism_txt", "rd_organism_see"}
    paired = load_paired_samples(found)
    assert sorted(paired.pair_id.unique()) == sorted(d["pair_id"] for d in DOCS[:4])

    problems = [from_record(d) for d in DOCS[:4]]
    model = AutoModelForImageTextToText.from_pretrained(checkpoint, dtype=torch.bfloat16, use_kernels=False).eval()
    encoder = Encoder(AutoProcessor.from_pretrained(checkpoint))
    for form, task in (("img", "rd_organism_img"), ("txt", "rd_organism_txt"), ("transcribe", "rd_organism_see")):
        logged = [json.loads(line) for line in Path(found.samples[task]).read_text().splitlines()]
        through_lmms = [s["filtered_resps"] for s in sorted(logged, key=lambda s: s["doc_id"])]
        ours = replies(model, encoder, [Example(p, form) for p in problems], batch_size=4)
        assert through_lmms == ours, form
    see = [json.loads(line)["rd_seen"] for line in Path(found.samples["rd_organism_see"]).read_text().splitlines()]
    assert sorted(s["pair_id"] for s in see) == sorted(d["pair_id"] for d in DOCS[:4])
