"""The prompts of the paired tasks: one wording for both forms of a pair.

The lead, the problem text and the answer instruction are identical; the image form attaches the image, the
text twin puts its transcript (or, for MathVerse, the dataset's own Text-Only wording) in its place.
lmms-eval's ``pre_prompt``/``post_prompt`` affixes (:func:`with_affixes`) apply identically to both forms.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

from rd_eval.benchmarks.schema import BenchDoc
from rd_eval.scoring.answers import ALL_LETTERS

Kwargs = Mapping[str, Any] | None

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



def with_affixes(body: str, kwargs: Kwargs) -> str:
    """``body`` between the task's ``pre_prompt`` and ``post_prompt`` (lmms_eval_specific_kwargs)."""
    kwargs = kwargs or {}
    return f"{kwargs.get('pre_prompt', '')}{body}{kwargs.get('post_prompt', '')}"


def asked_places(precision: int | None, abs_tolerance: float | None) -> int | None:
    """The decimal places a number answer is asked for: ``precision``, else the places an absolute tolerance
    resolves (0.001 -> 3: DynaMath asks for three decimals and accepts an error of 0.001), else None."""
    if precision is not None or abs_tolerance is None or abs_tolerance <= 0:
        return precision
    return max(0, round(-math.log10(abs_tolerance)))


def answer_instruction(answer_type: str, precision: int | None = None, abs_tolerance: float | None = None) -> str:
    """The answer-format sentence, identical in both forms of a pair."""
    if answer_type not in _ANSWER_FORMAT:
        raise ValueError(f"unknown answer_type {answer_type!r}; valid types: {list(_ANSWER_FORMAT)}")
    text = _ANSWER_FORMAT[answer_type]
    precision = asked_places(precision, abs_tolerance)
    if answer_type == "number" and precision is not None:
        places = "an integer" if precision == 0 else f"{precision} decimal place{'s' if precision != 1 else ''}"
        text += f" Round the number to {places}."
    return text


def format_choices(choices: Sequence[str]) -> str:
    """``Choices:`` then ``(A) ...`` lines; "" without choices."""
    if not choices:
        return ""
    if len(choices) > len(ALL_LETTERS):
        raise ValueError(f"{len(choices)} choices cannot be lettered A-Z")
    return "Choices:\n" + "\n".join(f"({ALL_LETTERS[i]}) {c}" for i, c in enumerate(choices))


def problem_text(doc: BenchDoc) -> str:
    """The problem as text: the question, then its lettered choices (when the dataset lists them)."""
    parts = [doc.question.strip(), format_choices(doc.choices) if doc.show_choices else ""]
    return "\n".join(p for p in parts if p)



def prompt_img(doc: BenchDoc, kwargs: Kwargs = None) -> str:
    """The image form's text: lead, problem text, answer instruction (the image is attached)."""
    problem = problem_text(doc)
    instruction = answer_instruction(doc.answer_type, doc.precision, doc.abs_tolerance)
    body = f"{LEAD}\n\n{problem}\n\n{instruction}" if problem else f"{LEAD_IMAGE_ONLY}\n\n{instruction}"
    return with_affixes(body, kwargs)


def prompt_txt(doc: BenchDoc, kwargs: Kwargs = None, transcript: str | None = None) -> str:
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
    parts.append(answer_instruction(doc.answer_type, doc.precision, doc.abs_tolerance))
    return with_affixes("\n\n".join(parts), kwargs)

