"""Reading the number a response answers (answer type ``"number"``) and comparing it with a gold number."""

from __future__ import annotations

import math
import re
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation

from rd_eval.scoring.answer_types import NUMBER_TOLERANCE, gold_error
from rd_eval.scoring.extract import final_segment, last_line, math_spans, segment_candidates, strip_markup
from rd_eval.scoring.math_parse import constant_value, parse_answer

# A minus counts only when it does not follow a word character, so "10-3" reads as 10 and 3, not -3.
_NUMBER_RE = re.compile(r"(?<![\w.])(?P<sign>[-\u2212])?\$?(?P<int>\d{1,3}(?:,\d{3})+|\d+)(?P<frac>\.\d+)?(?!\d)")


def _decimal_text(value: Decimal) -> str:
    """``12.0`` -> ``"12"``, ``-0`` -> ``"0"``, ``4.50`` -> ``"4.5"``; no int() round trip, so any length works."""
    if value == 0:
        return "0"
    if value == value.to_integral_value():
        return format(value.to_integral_value(), "f")
    return format(value.normalize(), "f")


def _normalise_number(sign: str, integer: str, frac: str) -> str:
    value = Decimal(integer.replace(",", "") + (frac or ""))
    return _decimal_text(-value if sign else value)


def _format_value(x: float) -> str:
    return _decimal_text(Decimal(repr(x)))


def _last_number(text: str) -> str | None:
    last = None
    for m in _NUMBER_RE.finditer(text):
        last = _normalise_number(m.group("sign") or "", m.group("int"), m.group("frac") or "")
    return last


def _first_number(text: str) -> str | None:
    m = _NUMBER_RE.search(text)
    return None if m is None else _normalise_number(m.group("sign") or "", m.group("int"), m.group("frac") or "")


def _constant_of(candidate: str) -> str | None:
    """The real number a candidate states (``\\frac{3}{4}``, ``x = 12``, ``12 cm``), or None."""
    parsed = parse_answer(candidate)
    if not parsed.values:
        return None
    value = constant_value(parsed.values[-1])
    if value is None or value.imag != 0 or not math.isfinite(value.real):
        return None
    return _format_value(value.real)


def extract_number(response: str) -> str | None:
    """The number the response answers, normalised (``"1,200"`` -> ``"1200"``, ``"\\frac{3}{4}"`` -> ``"0.75"``).

    The marked answer (boxed, then "answer is/Answer:") when there is one; else a final LaTeX span on
    the last line; else the last number in the response.
    """
    seg = final_segment(response)
    if seg is not None:
        candidates = segment_candidates(seg[0])
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


def gold_number(answer: str) -> Decimal:
    text = str(answer).strip()
    try:
        return Decimal(text.replace(",", ""))
    except InvalidOperation:
        pass
    value = _constant_of(text) if text else None
    if value is None:
        raise gold_error("number", answer, "is not a number")
    return Decimal(value)


def _round(value: Decimal, places: int) -> Decimal:
    return value.quantize(Decimal(1).scaleb(-places), rounding=ROUND_HALF_UP)


def numbers_equal(pred: str | None, gold: Decimal, precision: int | None) -> bool:
    if pred is None:
        return False
    value = Decimal(pred)
    if precision is not None:
        return _round(value, precision) == _round(gold, precision)
    return abs(value - gold) <= Decimal(str(NUMBER_TOLERANCE))
