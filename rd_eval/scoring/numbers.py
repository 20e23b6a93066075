"""Reading the number a response answers (answer type ``"number"``) and comparing it with a gold number.

Where the number is read (the first rule that applies): the marked answer (boxed, then "answer is/Answer:", see
:mod:`rd_eval.scoring.extract`); else a final LaTeX span on the last line; else the last number in the response.
A number is one value however it is written: ``1/4`` (0.25), ``1:3`` (a ratio, 1/3), ``2 1/2`` (a mixed number,
2.5), ``24π`` and ``24\\pi`` (75.398...), ``\\binom{12}{4}`` (495), ``1{,}490`` and ``1\\,490`` (LaTeX thousands
separators), ``18 (3 * 6)`` and ``25% (1/4)`` (the bracket is the working), ``4.40米`` (a unit in another script),
``1.5e3``; a marked ``7,5`` is 7.5 (a decimal comma; ``1,200`` is 1200). When the text read has no digit at all,
the last number word counts ("three objects are left" is 3).

An answer that states two values is no number: a hedge (the extraction flags "1490 or 1500"; inside a marked answer
this module also sees ``1490 \\text{ or } 1500``, "between 10 and 12", "12 (maybe 13)") and ``±7`` (both 7 and -7)
read as None against a single gold number, so they score wrong.

Comparison (:func:`numbers_equal`) follows the one rule of :mod:`rd_eval.scoring.closeness` that expressions
follow too: ``abs_tolerance`` (DynaMath), else ``precision`` (MathVista), else equal values, else a gold written
with decimals (``3.5``) accepts a response that rounds half-up to it at its places (``3.50``, ``3.4999``), an integer
gold is exact.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from decimal import Decimal
from itertools import pairwise

from rd_eval.scoring.answer_types import gold_error
from rd_eval.scoring.closeness import check_abs_tolerance, numbers_agree
from rd_eval.scoring.extract import final_segment, last_line, math_spans, segment_candidates, strip_markup
from rd_eval.scoring.math_parse import constant_value, parse_answer

__all__ = ["GoldNumber", "extract_number", "gold_number", "numbers_equal"]

# A number in prose, with what makes it one value: a fraction "1/4" (not a date "3/4/2020"), a ratio "1:3", a mixed
# number "2 1/2", a multiple of pi or of a root ("10 \sqrt{3}", "10√3"); or a LaTeX fraction, binomial or root
# without "$". An exponent is no number: "12 cm^2" is 12. A minus counts only when it does not
# follow a word character, so "10-3" reads as 10 and 3, not -3; a "±" makes two values.
_ROOT = r"(?:\\sqrt\s*\{\s*\d+\s*\}|\\sqrt\s*\d+|\u221a\s*\d+)"
_NUMBER_RE = re.compile(
    r"(?<![\w./^])(?<!\^\{)(?<!\^ )"
    r"(?P<sign>[-\u2212\u00b1])?\$?(?P<int>\d{1,3}(?:,\d{3})+|\d{1,3}(?:[\u00a0\u2009\u202f]\d{3})+|\d+)"
    r"(?P<frac>\.\d+)?(?P<exp>[eE][-+]?\d{1,3}(?!\d))?(?![\d]|[eE][-+]?\d)"
    r"(?P<tail>\s+\d+\s*/\s*\d+(?![\d/])|\s*/\s*\d+(?:\.\d+)?(?![\d/]|\.\d)|\s*:\s*\d+(?:\.\d+)?(?![\d:]))?"
    rf"(?P<factor>\s*(?:\u03c0|\\pi(?![A-Za-z])|{_ROOT}))?"
    rf"|(?P<latex>-?(?:\\[dt]?(?:frac|binom)\s*\{{\s*\d+\s*\}}\s*\{{\s*\d+\s*\}}|{_ROOT}))"
)
_UNITS = {
    "zero": 0, "one": 1, "two": 2, "three": 3, "four": 4, "five": 5, "six": 6, "seven": 7, "eight": 8, "nine": 9,
    "ten": 10, "eleven": 11, "twelve": 12, "thirteen": 13, "fourteen": 14, "fifteen": 15, "sixteen": 16,
    "seventeen": 17, "eighteen": 18, "nineteen": 19,
}
_TENS = {"twenty": 20, "thirty": 30, "forty": 40, "fifty": 50, "sixty": 60, "seventy": 70, "eighty": 80, "ninety": 90}
_WORD_RE = re.compile(
    rf"\b(?:(?P<tens>{'|'.join(_TENS)})(?:[-\s](?P<unit>{'|'.join(list(_UNITS)[1:10])}))?"
    rf"|(?P<small>{'|'.join(_UNITS)}))\b",
    re.I,
)
# "one" is a pronoun as often as a number: "the first one", "which one", "one of them" are no answers.
_PRONOUN_ONE_RE = re.compile(
    r"(?:\b(?:the|this|that|which|each|any|every|no|first|second|third|last|other|another|right|wrong|correct|"
    r"larger|smaller|bigger|same|only\s+the)\s+)$",
    re.I,
)
_ONE_OF_RE = re.compile(r"\s+(?:of|another)\b", re.I)
_PLUS_MINUS = ("\u00b1", "\\pm", "\\mp")


@dataclass(frozen=True)
class GoldNumber:
    """A gold number and the decimal places it was written with (None when not written as a decimal: exact)."""

    value: Decimal
    places: int | None


def _decimal_text(value: Decimal) -> str:
    """``12.0`` -> ``"12"``, ``-0`` -> ``"0"``, ``4.50`` -> ``"4.5"``; no int() round trip, so any length works."""
    if value == 0:
        return "0"
    if value == value.to_integral_value():
        return format(value.to_integral_value(), "f")
    return format(value.normalize(), "f")


def _normalise_number(sign: str, integer: str, frac: str, exponent: str = "") -> str:
    digits = re.sub(r"[,\u00a0\u2009\u202f]", "", integer)
    value = Decimal(digits + (frac or "") + (exponent or ""))
    return _decimal_text(-value if sign else value)


def _format_value(x: float) -> str:
    return _decimal_text(Decimal(repr(x)))


class _TwoValues(Exception):
    """The candidate states two values (``±7``): no single number."""


def _constant_of(candidate: str) -> str | None:
    """The real number a candidate states (``\\frac{3}{4}``, ``x = 12``, ``12 cm``), or None.

    Raises _TwoValues for a ``±`` answer, which states two numbers.
    """
    parsed = parse_answer(candidate)
    if not parsed.values:
        return None
    node = parsed.values[-1]
    if node[0] == "bag" and any(pm in candidate for pm in _PLUS_MINUS):
        raise _TwoValues(candidate)
    value = constant_value(node)
    if value is None or value.imag != 0 or not math.isfinite(value.real):
        return None
    return _format_value(value.real)


def _match_value(m: re.Match[str]) -> str | None:
    if m.group("sign") == "\u00b1":
        raise _TwoValues(m.group(0))
    if m.group("latex") or m.group("tail") or m.group("factor"):
        value = _constant_of(m.group(0).replace("\u2212", "-").lstrip("$"))
        if value is not None:
            return value
    return _normalise_number(m.group("sign") or "", m.group("int"), m.group("frac") or "", m.group("exp") or "")


def _word_number(text: str) -> str | None:
    """The last number word of a text with no digit ("three objects are left" -> "3"), or None."""
    last = None
    for m in _WORD_RE.finditer(text):
        if m.group("small") and m.group("small").lower() == "one" and (
                _PRONOUN_ONE_RE.search(text[max(0, m.start() - 24):m.start()])
                or _ONE_OF_RE.match(text, m.end())):
            continue
        if m.group("tens"):
            last = _TENS[m.group("tens").lower()] + (_UNITS[m.group("unit").lower()] if m.group("unit") else 0)
        else:
            last = _UNITS[m.group("small").lower()]
    return None if last is None else str(last)


def _last_number(text: str) -> str | None:
    matches = list(_NUMBER_RE.finditer(text))
    if not matches:
        return None if re.search(r"\d", text) else _word_number(text)
    return _match_value(matches[-1])


def _first_number(text: str) -> str | None:
    m = _NUMBER_RE.search(text)
    if m is None:
        return None if re.search(r"\d", text) else _word_number(text)
    return _match_value(m)


_DECIMAL_COMMA_RE = re.compile(r"^[-\u2212]?\d+,\d{1,2}$")
_HEDGE_WORD_RE = re.compile(r"\b(?:or|maybe|possibly|perhaps|between)\b", re.I)
_BETWEEN_AND_RE = re.compile(r"\band\b", re.I)


def _numbers_or_numbers(segment: str) -> bool:
    """A hedge between numbers inside a marked answer, which the extraction's hedge test does not open:
    ``1490 \\text{ or } 1500``, ``12 (possibly 13)``, ``between 10 and 12``: the number after the hedge word differs
    from the number before it. ``12 or 12.0`` is one number; "12 apples or so" names no second number."""
    parts = _HEDGE_WORD_RE.split(_BETWEEN_AND_RE.sub(" or ", segment) if "between" in segment.lower() else segment)
    for before, after in pairwise(parts):
        first_after = _NUMBER_RE.search(after)
        last_before = list(_NUMBER_RE.finditer(before))
        if first_after and last_before and _match_value(first_after) != _match_value(last_before[-1]):
            return True
    return False


def _read_number(response: str) -> str | None:
    seg = final_segment(response)
    if seg is not None:  # an empty segment is a hedge or a refusal the extraction flagged: no answer
        if _numbers_or_numbers(seg[0]):
            raise _TwoValues(seg[0])
        candidates = segment_candidates(seg[0])
        if candidates and _DECIMAL_COMMA_RE.match(candidates[0]):  # "Réponse : 7,5" is 7.5, not the list 7, 5
            return _decimal_text(Decimal(candidates[0].replace("\u2212", "-").replace(",", ".")))
        for cand in candidates:
            value = _constant_of(cand)
            if value is not None:
                return value
        return _first_number(candidates[0]) if candidates else None
    spans = math_spans(last_line(response))
    if spans:
        value = _constant_of(spans[-1])
        if value is not None:
            return value
    return _last_number(strip_markup(response))


def extract_number(response: str) -> str | None:
    """The number the response answers, normalised (``"1,200"`` -> ``"1200"``, ``"\\frac{3}{4}"`` -> ``"0.75"``);
    None when it answers none or two (module docstring)."""
    try:
        return _read_number(response)
    except _TwoValues:
        return None


def gold_number(answer: str) -> GoldNumber:
    """The gold of a "number" answer: ``"1,450,000"``, ``"3.50"`` (2 places), ``"\\frac{1}{3}"`` (exact)."""
    text = str(answer).strip()
    plain = text.replace(",", "")
    if re.fullmatch(r"[-+]?(?:\d+\.?\d*|\.\d+)", plain):
        places = len(plain.split(".")[1]) if "." in plain else None
        return GoldNumber(Decimal(plain), places or None)
    try:
        value_text = _constant_of(text) if text else None
    except _TwoValues:
        value_text = None
    if value_text is None:
        raise gold_error("number", answer, "is not a number")
    return GoldNumber(Decimal(value_text), None)


def numbers_equal(pred: str | None, gold: GoldNumber, precision: int | None,
                  abs_tolerance: float | None = None) -> bool:
    """Whether the extracted number ``pred`` states ``gold`` (the rule of :mod:`rd_eval.scoring.closeness`)."""
    check_abs_tolerance(abs_tolerance)
    if pred is None:
        return False
    places = len(pred.split(".")[1]) if "." in pred else None
    return numbers_agree(gold.value, Decimal(pred), gold_places=gold.places, pred_places=places,
                         precision=precision, abs_tolerance=abs_tolerance)
