"""The task-name grammar: ``rd_<benchmark>_<form>``.

A paired benchmark ``rd_mathvista`` is run as two lmms-eval tasks, ``rd_mathvista_img`` (the problem as an
image) and ``rd_mathvista_txt`` (its text twin). Beside the pairs run auxiliary tasks that carry no answers:
``_see`` (perception check) and ``_transcribe`` (transcription). A name without a form suffix is its own
benchmark (a user's task scored outside the pairing).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

TASK_PREFIX = "rd_"
PAIRED_FORMS: tuple[str, ...] = ("img", "txt")
AUXILIARY_FORMS: tuple[str, ...] = ("see", "transcribe")
# Forms a routing record names (the perception check's routing is recorded too; transcription is not paired).
RECORDED_FORMS: tuple[str, ...] = (*PAIRED_FORMS, "see")

# The six paired benchmarks of docs/design.md §5, in the order tables list them.
SIX_BENCHMARKS: tuple[str, ...] = ("rd_mathvista", "rd_mathverse", "rd_mathvision", "rd_wemath", "rd_logicvista",
                                   "rd_dynamath")

_IMAGE_TASK = re.compile(rf"^{TASK_PREFIX}(?P<name>[a-z0-9_]+?)_img$")


@dataclass(frozen=True)
class TaskName:
    """One lmms-eval task name read by the grammar: ``benchmark`` is the task group (``rd_mathvista``)."""

    task: str
    benchmark: str
    form: str  # one of PAIRED_FORMS or AUXILIARY_FORMS, or "" for a name without a form suffix

    @property
    def paired(self) -> bool:
        return self.form in PAIRED_FORMS

    @property
    def auxiliary(self) -> bool:
        return self.form in AUXILIARY_FORMS


def parse_task(task: str) -> TaskName:
    for form in (*PAIRED_FORMS, *AUXILIARY_FORMS):
        suffix = f"_{form}"
        if task.endswith(suffix) and len(task) > len(suffix):
            return TaskName(task, task[: -len(suffix)], form)
    return TaskName(task, task, "")


def benchmark_of(task: str) -> str:
    """``rd_demo_img`` / ``rd_demo_txt`` -> ``rd_demo``; other names are their own benchmark."""
    name = parse_task(task)
    return name.benchmark if name.paired else task


def form_of_task(task: str) -> str:
    """The form a routing record names: ``img``, ``txt``, ``see``, or "" for other tasks."""
    form = parse_task(task).form
    return form if form in RECORDED_FORMS else ""


def is_auxiliary(task: str) -> bool:
    return parse_task(task).auxiliary


def task_of(benchmark: str, form: str) -> str:
    """``rd_mathvista``, ``img`` -> ``rd_mathvista_img``."""
    return f"{benchmark}_{form}"


def image_task_name(image_task: str) -> str | None:
    """The bare benchmark name of an image-form task (``rd_mathvista_img`` -> ``mathvista``), None otherwise."""
    match = _IMAGE_TASK.match(image_task)
    return None if match is None else match.group("name")
