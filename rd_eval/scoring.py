"""Rule-based, offline answer scoring for short model responses (no judge model, no network)."""

from __future__ import annotations

import re
import string
from collections.abc import Sequence
from decimal import Decimal, InvalidOperation

ANSWER_TYPES: tuple[str, ...] = ("number", "choice")
NUMBER_TOLERANCE = 1e-6
ALL_LETTERS = string.ascii_uppercase

# A minus counts only when it does not follow a word character, so "10-3" reads as 10 and 3, not -3.
_NUMBER_RE = re.compile(
    r"(?<![\w.])(?P<sign>[-\u2212])?\$?(?P<int>\d{1,3}(?:,\d{3})+|\d+)(?P<frac>\.\d+)?(?!\d)"
)
_EXPLICIT_CHOICE_RE = re.compile(
    r"\b(?:answer|option|choice)\s*(?:is|:|=|-)?\s*(?:option\s*)?[\(\[]?\s*([A-Za-z])\s*[\)\]]?(?![\w])",
    re.IGNORECASE,
)
# A lowercase letter after "answer is" must end the clause, so the article in "answer is a number" is skipped.
_CLAUSE_END_RE = re.compile(r"\s*[\)\]]?\s*(?:[.,;:!?]|$)")
_MARKED_LETTER_RE = re.compile(r"[\(\[]([A-Z])[\)\]]|(?<![\w])([A-Z])[\).:](?!\w)")
_BARE_STRIP = " \t\r\n()[]{}*_`'\".:;,!"


def _normalise_number(sign: str, integer: str, frac: str) -> str:
    value = Decimal(integer.replace(",", "") + (frac or ""))
    if sign:
        value = -value
    if value == value.to_integral_value():
        return str(int(value))  # "12.0" -> "12", "-0" -> "0"
    return format(value.normalize(), "f")


def extract_number(response: str) -> str | None:
    """The last number in ``response``, normalised ("1,200" -> "1200", "$12.50" -> "12.5"), or None."""
    last = None
    for m in _NUMBER_RE.finditer(response):
        last = _normalise_number(m.group("sign") or "", m.group("int"), m.group("frac") or "")
    return last


def _norm_text(text: str) -> str:
    return " ".join(text.lower().split())


def _choice_by_text(response: str, choices: Sequence[str]) -> int | None:
    """Index of the single choice whose text appears in the response (longest match wins containment)."""
    resp = _norm_text(response).strip(_BARE_STRIP)
    normed = [_norm_text(c) for c in choices]
    exact = [i for i, c in enumerate(normed) if c and c == resp]
    if len(exact) == 1:
        return exact[0]
    found = [
        i for i, c in enumerate(normed)
        if c and re.search(r"(?<![\w])" + re.escape(c) + r"(?![\w])", resp)
    ]
    # Drop choices that only matched inside a longer matched choice ("25" inside "17 + 25").
    found = [i for i in found if not any(j != i and normed[i] in normed[j] for j in found)]
    return found[0] if len(found) == 1 else None


def _extract_letter(response: str, letters: str) -> str | None:
    bare = response.strip(_BARE_STRIP).upper()
    if len(bare) == 1 and bare in letters:
        return bare
    explicit = [
        m.group(1).upper() for m in _EXPLICIT_CHOICE_RE.finditer(response)
        if m.group(1).upper() in letters
        and (m.group(1).isupper() or _CLAUSE_END_RE.match(response, m.end(1)))
    ]
    if explicit:
        return explicit[-1]  # "not A, the answer is B": the final statement wins
    for m in _MARKED_LETTER_RE.finditer(response):
        letter = m.group(1) or m.group(2)
        if letter in letters:
            return letter
    return None


def _letters_for(choices: Sequence[str]) -> str:
    if not choices:
        raise ValueError("choices is empty; pass the option texts in order (A, B, ...)")
    if len(choices) > len(ALL_LETTERS):
        raise ValueError(f"{len(choices)} choices given; at most {len(ALL_LETTERS)} can be lettered")
    return ALL_LETTERS[: len(choices)]


def extract_choice(response: str, choices: Sequence[str]) -> str | None:
    """The option letter the response picks ("B", "(B)", "Answer: b", or just B's text), or None."""
    letters = _letters_for(choices)
    letter = _extract_letter(response, letters)
    if letter is not None:
        return letter
    index = _choice_by_text(response, choices)
    return None if index is None else letters[index]


def _check_answer_type(answer_type: str) -> None:
    if answer_type not in ANSWER_TYPES:
        raise ValueError(f"unknown answer_type {answer_type!r}; valid types: {list(ANSWER_TYPES)}")


def extract_answer(response: str, answer_type: str, choices: Sequence[str] = ()) -> str | None:
    """The prediction for scoring: a number for "number", a letter for "choice" (any letter if no choices)."""
    _check_answer_type(answer_type)
    if answer_type == "number":
        return extract_number(response)
    if choices:
        return extract_choice(response, choices)
    return _extract_letter(response, ALL_LETTERS)


def is_correct(response: str, answer: str, answer_type: str, choices: Sequence[str] = ()) -> bool:
    """Whether ``response`` gives ``answer``. Numbers compare numerically (tolerance 1e-6).

    ``choices`` (option texts) is optional; with it a response naming only an option's text also counts.
    """
    _check_answer_type(answer_type)
    pred = extract_answer(response, answer_type, choices)
    if answer_type == "number":
        try:
            gold = Decimal(answer.replace(",", "").strip())
        except InvalidOperation:
            raise ValueError(f"number answer {answer!r} is not a number") from None
        return pred is not None and abs(Decimal(pred) - gold) <= Decimal(str(NUMBER_TOLERANCE))
    gold_letter = answer.strip().upper()
    if len(gold_letter) != 1 or gold_letter not in ALL_LETTERS:
        raise ValueError(f"choice answer {answer!r} must be a single option letter A-Z")
    return pred == gold_letter
