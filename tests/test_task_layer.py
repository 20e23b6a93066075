"""The one lmms-eval task layer: every task folder's utils.py binds what its YAMLs name, and every task scores a
document into one ScoredDoc (judged, or unscored for an error response) logged with the same fields."""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path
from types import ModuleType

import pytest
import rd_eval_tasks

from rd_eval.benchmarks.task import PairedTask
from rd_eval.scoring.doc_errors import error_response
from rd_eval.scoring.item import Gold, ScoredDoc, score_doc

TASKS_DIR = Path(rd_eval_tasks.__file__).parent
FOLDERS = sorted(p.parent.name for p in TASKS_DIR.glob("rd_*/utils.py"))
FUNCTION = re.compile(r"!function utils\.(\w+)")


def _utils(folder: str) -> ModuleType:
    # lmms-eval loads a task's utils.py by path (`!function utils.fn`); so do we.
    spec = importlib.util.spec_from_file_location("utils", TASKS_DIR / folder / "utils.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("folder", FOLDERS)
def test_utils_binds_every_name_the_yamls_use_and_is_a_few_lines(folder: str) -> None:
    texts = [p.read_text() for p in (TASKS_DIR / folder).iterdir() if p.suffix == ".yaml" or p.name.startswith("_")]
    named = {name for text in texts for name in FUNCTION.findall(text)}
    utils = _utils(folder)
    assert named and not named - set(vars(utils)), f"{folder}: YAMLs name {sorted(named - set(vars(utils)))}"
    code = [line for line in (TASKS_DIR / folder / "utils.py").read_text().splitlines()[1:]
            if line.strip() and not line.startswith(("from ", "import "))]
    assert len(code) <= 2, code


def test_each_benchmark_is_one_paired_task() -> None:
    from rd_eval.benchmarks import BENCHMARKS, gsm8k, math500

    assert all(isinstance(m.TASK, PairedTask) for m in [*BENCHMARKS.values(), gsm8k, math500])


def test_a_judged_document_logs_the_answer_it_extracted() -> None:
    scored = score_doc("p1", "img", "So the total is 12.\nAnswer: 12", Gold("12", "number"))
    assert scored == ScoredDoc(pair_id="p1", form="img", answer="12", correct=True, pred="12", error=None)
    assert scored.scored
    item = scored.metric_item()
    assert list(item) == ["pair_id", "form", "correct", "pred", "answer", "error"]  # the logged field order
    assert item["correct"] == 1 and type(item["correct"]) is int


def test_an_error_response_is_unscored_never_wrong() -> None:
    scored = score_doc("p1", "txt", error_response("image unreadable (12)"), Gold("12", "number"))
    assert not scored.scored
    assert scored.metric_item() == {"pair_id": "p1", "form": "txt", "correct": None, "pred": None, "answer": "12",
                                    "error": "image unreadable (12)"}


def test_a_scored_doc_is_judged_or_unscored_never_both() -> None:
    with pytest.raises(ValueError, match="either judged"):
        ScoredDoc(pair_id="p", form="img", answer="1", correct=True, pred="1", error="boom")
    with pytest.raises(ValueError, match="either judged"):
        ScoredDoc(pair_id="p", form="img", answer="1", correct=None, pred=None, error=None)
    with pytest.raises(ValueError, match="no extracted answer"):
        ScoredDoc(pair_id="p", form="img", answer="1", correct=None, pred="1", error="boom")
    with pytest.raises(ValueError, match="answer_type"):
        Gold("1", "numeral")
