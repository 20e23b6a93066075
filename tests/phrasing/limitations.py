"""Documented limitations: classes of responses the scorer deliberately does not read, each with its reason
(docs/scoring_corpus.md lists them). A limitation is a stated class (a phrasing class, narrowed by answer type
and a property of the item), never a list of individual failures.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

from .corpus import Response
from .forms import usable_options

FREE_FORM = ("number", "expression", "text")


def _always(response: Response) -> bool:
    return True


def _option_names_letters(response: Response) -> bool:
    """The gold option's text itself names option letters (MATH-Vision's "either C or D")."""
    item = response.item
    texts = usable_options(item.options)
    index = "ABCDEFGH".find(item.gold.answer) if item.gold.answer_type == "choice" else -1
    return 0 <= index < len(texts) and re.search(r"(?<![A-Za-z])[A-H](?![A-Za-z])", texts[index]) is not None


@dataclass(frozen=True)
class Limitation:
    name: str
    phrasing: str
    answer_types: tuple[str, ...]
    reason: str
    applies: Callable[[Response], bool] = _always

    def covers(self, response: Response) -> bool:
        return (response.phrasing == self.phrasing and response.item.gold.answer_type in self.answer_types
                and self.applies(response))


LIMITATIONS: tuple[Limitation, ...] = (
    Limitation(
        "restated question, free-form gold", "restate_question", FREE_FORM,
        "The scorer is given the response and the gold, never the question: an unmarked response that only restates "
        "the question is read by the type's last-value rule, so a question whose last number or expression equals "
        "the gold (\"4 dots in 2 equal groups\" for 2; \"Simplify $\\sqrt{242}$\" for 11\\sqrt2) scores right."),
    Limitation(
        "option text that names option letters, said alone", "option_text", ("choice",),
        "An option whose text names letters (\"either C or D\") said without its own letter is a hedge between "
        "letters as far as the words go; the scorer reads hedges as no answer.", _option_names_letters),
    Limitation(
        "one value in two units", "two_units", ("number",),
        "\"4 cm or 40 mm\" and \"4 cm (or 40 mm)\" state two different numbers, which the scorer reads as a hedge "
        "(no answer): telling a unit conversion from a hedge needs unit arithmetic it does not do, and accepting a "
        "hedge (\"4 or 40\") would be worse than rejecting a restated unit."),
)


def is_limitation(response: Response) -> bool:
    return any(lim.covers(response) for lim in LIMITATIONS)
