"""Surface forms of one gold answer: the strings a model could write for it (right) or for another answer (wrong).

Pure functions of the gold and the item's options; the corpus (:mod:`.corpus`) puts them into sentences.
"""

from __future__ import annotations

import re
from decimal import Decimal, InvalidOperation
from fractions import Fraction

LETTERS = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"
_UNITS = ("cm", "mm", "km", "m", "kg", "g", "years", "degrees", "units", "hours", "minutes", "seconds", "meters",
          "dollars", "km/h", "N", "cm^2")


def as_decimal(text: str) -> Decimal | None:
    """The gold as an exact decimal when it is a plain number (``"1,200"``, ``"-3.5"``), else None."""
    cleaned = text.strip().replace(",", "").replace("$", "")
    if not re.fullmatch(r"-?(?:\d+(?:\.\d*)?|\.\d+)", cleaned):
        return None
    try:
        return Decimal(cleaned)
    except InvalidOperation:
        return None


def plain(value: Decimal) -> str:
    """A decimal without exponent or trailing zeros: ``Decimal("2.50")`` -> ``"2.5"``."""
    text = format(value.normalize(), "f")
    return text if text not in ("-0",) else "0"


def with_places(value: Decimal, places: int) -> str:
    return format(value.quantize(Decimal(1).scaleb(-places)), "f")


def thousands(value: Decimal) -> list[str]:
    """``1490`` -> ``["1,490", "1{,}490", "1\\,490"]``; [] below 1000 (no separator to write)."""
    if abs(value) < 1000:
        return []
    whole, _, frac = plain(value).partition(".")
    sign = "-" if whole.startswith("-") else ""
    digits = whole.lstrip("-")
    groups = []
    while digits:
        groups.insert(0, digits[-3:])
        digits = digits[:-3]
    tail = f".{frac}" if frac else ""
    return [sign + sep.join(groups) + tail for sep in (",", "{,}", "\\,")]


def simple_fraction(value: Decimal) -> Fraction | None:
    """The value as a fraction with a small denominator (2..16) when it is exactly one, else None."""
    if value == value.to_integral_value():
        return None
    frac = Fraction(value)
    return frac if 1 < frac.denominator <= 16 else None


def fraction_forms(frac: Fraction) -> list[str]:
    sign = "-" if frac < 0 else ""
    num, den = abs(frac.numerator), frac.denominator
    return [f"{sign}\\frac{{{num}}}{{{den}}}", f"{sign}{num}/{den}", f"${sign}\\dfrac{{{num}}}{{{den}}}$"]


def decimal_of_fraction(gold: str) -> str | None:
    """``"\\frac{1}{4}"`` / ``"-\\frac{3}{8}"`` / ``"3/4"`` -> its terminating decimal; None otherwise."""
    m = re.fullmatch(r"\s*\$?(-?)\s*(?:\\[dt]?frac\{(\d+)\}\{(\d+)\}|(\d+)\s*/\s*(\d+))\$?\s*", gold)
    if m is None:
        return None
    num, den = int(m.group(2) or m.group(4)), int(m.group(3) or m.group(5))
    if den == 0:
        return None
    frac = Fraction(num, den) * (-1 if m.group(1) else 1)
    rest = frac.denominator
    for p in (2, 5):
        while rest % p == 0:
            rest //= p
    if rest != 1 or frac.denominator == 1:
        return None
    return plain(Decimal(frac.numerator) / Decimal(frac.denominator))


def perturbed_number(value: Decimal, precision: int | None) -> Decimal:
    """A value clearly different from ``value`` under any tolerance or rounding the scorer may apply."""
    step = max(Decimal(1), abs(value) / 10)
    step = step.to_integral_value() if value == value.to_integral_value() else step
    out = value + step
    if precision is not None:
        out = out.quantize(Decimal(1).scaleb(-precision))
    return out


def perturbed_text(gold: str) -> str | None:
    """The gold with its last value digit changed (``"(2,-2)"`` -> ``"(2,-3)"``); digits of exponents and
    subscripts (``cm^{2}``, ``y_2``) are left alone, since changing a unit's power or a variable's name is not a
    different answer everywhere. None when no digit can be changed."""
    digits = [m for m in re.finditer(r"\d", gold) if not re.search(r"[\^_]\{?\s*$", gold[: m.start()])]
    if not digits:
        return None
    last = digits[-1]
    changed = str((int(last.group()) + 1) % 10)
    if changed == "0" and (last.start() == 0 or not gold[last.start() - 1].isdigit()) and last.end() < len(gold) \
            and gold[last.end():last.end() + 1].isdigit():
        changed = "2"  # never write a leading zero, which could read as the same number
    return gold[: last.start()] + changed + gold[last.end():]


def unit_in(question: str) -> str | None:
    """The unit the question names (``(Unit: years)``, or a unit word it uses), else None."""
    m = re.search(r"\(Unit:\s*([^)]+)\)", question)
    if m:
        return m.group(1).strip()
    for unit in _UNITS:
        if re.search(rf"(?<![A-Za-z])\\?(?:mathrm\{{\s*~?)?{re.escape(unit)}(?![A-Za-z])", question):
            return unit
    return None


def mentions_percent(question: str) -> bool:
    return "%" in question or "percent" in question.lower()


def usable_options(options: tuple[str, ...]) -> list[str]:
    """Option texts a response can name unambiguously: non-empty, not a bare letter, none equal to another."""
    keys = [" ".join(o.lower().replace("$", "").split()) for o in options]
    out = []
    for text, key in zip(options, keys, strict=True):
        out.append(text if key and not re.fullmatch(r"\(?[a-z]\)?", key) and keys.count(key) == 1 else "")
    return out


def unicode_math(latex: str) -> str | None:
    """``"12\\pi"`` -> ``"12π"``, ``"11\\sqrt2"`` -> ``"11√2"``, ``"\\sqrt{53}"`` -> ``"√53"``: the gold as plain
    text with Unicode symbols; None when it has none of them or other LaTeX is left."""
    text = re.sub(r"\\sqrt\{(\w+)\}|\\sqrt\s*(\d+)", lambda m: "√" + (m.group(1) or m.group(2)), latex)
    text = re.sub(r"\\pi(?![A-Za-z])", "π", text).replace(" ", "")
    return text if text != latex.replace(" ", "") and "\\" not in text and "{" not in text else None


def strip_dollars(text: str) -> str:
    return text.replace("$", "").strip()
