"""rd_demo requests exactly as lmms-eval builds them, and probes of what adapters hand to `model.generate`."""

from __future__ import annotations

import importlib.util
import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import rd_eval_tasks
import torch
from lmms_eval.api.instance import Instance

from rd_eval.routing.shards import merge_routing_records

TASKS_DIR = Path(os.path.dirname(rd_eval_tasks.__file__)) / "rd_demo"
# rd_demo's generation_kwargs as lmms-eval hands them over (temperature cast to float).
N_DOCS = 4
RD_DEMO_GEN = {"max_new_tokens": 16, "temperature": 0.0, "do_sample": False, "until": ["\n\n"]}

def _rd_demo_utils() -> Any:
    # lmms-eval loads a task's utils.py by path (`!function utils.fn`); so do we.
    spec = importlib.util.spec_from_file_location("rd_demo_utils", TASKS_DIR / "utils.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


UTILS = _rd_demo_utils()
DOCS = [json.loads(line) for line in (TASKS_DIR / "rd_demo.jsonl").read_text().splitlines()[:N_DOCS]]
PROMPT_KWARGS = {"pre_prompt": "", "post_prompt": ""}


def rd_demo_requests(form: str, gen: dict[str, Any] = RD_DEMO_GEN, *, task: str | None = None, n: int = N_DOCS,
                     doc_to_visual: Callable[[dict], Any] | None = None) -> tuple[list[Instance], dict]:
    """The requests lmms-eval makes for rd_demo_<form> (its first `n` docs), and the task_dict entry."""
    task = task or f"rd_demo_{form}"
    doc_to_text = getattr(UTILS, f"doc_to_text_{form}")
    doc_to_visual = doc_to_visual or getattr(UTILS, f"doc_to_visual_{form}")
    requests = [
        Instance(request_type="generate_until", idx=0,
                 arguments=(doc_to_text(doc, PROMPT_KWARGS), dict(gen), doc_to_visual, i, task, "test"),
                 metadata={"task": task, "doc_id": i, "repeats": 1})
        for i, doc in enumerate(DOCS[:n])
    ]
    return requests, {task: {"test": DOCS[:n]}}


def run(model: Any, *batches: tuple[list[Instance], dict]) -> list[str]:
    requests: list[Instance] = []
    for task_requests, task_dict in batches:
        requests += task_requests
        model.task_dict.update(task_dict)
    return model.generate_until(requests)


def records_of(routing_dir: Path, task: str) -> dict[int, dict[str, Any]]:
    return {r["doc_id"]: r for r in merge_routing_records(routing_dir) if r["task"] == task}


class GenerateCalls:
    """Records the keyword arguments of every `model.generate` call (inputs and settings), then generates."""

    def __init__(self, model: torch.nn.Module) -> None:
        self.calls: list[dict[str, Any]] = []
        self._generate = model.generate

    def __call__(self, **kwargs: Any) -> Any:
        self.calls.append(kwargs)
        return self._generate(**kwargs)


def assert_same_calls(stock: list[dict[str, Any]], ours: list[dict[str, Any]]) -> None:
    assert len(stock) == len(ours)
    for expected, got in zip(stock, ours, strict=True):
        assert sorted(expected) == sorted(got)
        for key, value in expected.items():
            if isinstance(value, torch.Tensor):
                assert value.dtype == got[key].dtype and torch.equal(value, got[key]), key
            else:
                assert value == got[key], key
