"""The answer types rd-eval scores and the errors a gold answer of a type raises (one definition for the scorer)."""

from __future__ import annotations

import string

ANSWER_TYPES: tuple[str, ...] = ("number", "choice", "multi_choice", "expression", "text")
ALL_LETTERS = string.ascii_uppercase


class GoldError(ValueError):
    """A gold answer that cannot be read for its answer type (empty, not a number, no such option, ...)."""


def type_error(answer_type: str) -> ValueError:
    return ValueError(f"unknown answer_type {answer_type!r}; valid types: {list(ANSWER_TYPES)}")


def gold_error(kind: str, answer: str, need: str) -> GoldError:
    return GoldError(f"{kind} answer {answer!r} {need}; valid answer types: {list(ANSWER_TYPES)}")


def check_answer_type(answer_type: str) -> None:
    if answer_type not in ANSWER_TYPES:
        raise type_error(answer_type)
