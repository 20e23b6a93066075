"""Rule-based, offline answer scoring for model responses (no judge model, no network).

Answer types (``ANSWER_TYPES``) and what counts as right:

``"number"``
    A number; the prediction matches the gold within ``NUMBER_TOLERANCE`` (1e-6), or, with ``precision``,
    when both rounded half-up to that many decimals are equal (MathVista floats). The response may wrap
    the number: ``\\boxed{12}``, ``$12$``, ``12 cm``, ``12%``, ``\\frac{3}{4}``, ``x = 12``, ``1,200``.
``"choice"``
    One option letter. The gold is a letter (``"B"``, ``"(B)"``) or, when ``choices`` are given, an
    option's text (MathVista stores ``"Linear"``); the response may name the letter or, with ``choices``,
    the option's text or value ("9 km" for the option ``$9 \\mathrm{~km}$``).
``"multi_choice"``
    A set of letters, order-free (LogicVista ``"A, C"``; also ``"AC"``, ``"A and C"``); exact set match.
``"expression"``
    A math answer, LaTeX or plain: numbers, fractions, radicals, pi, degrees, percentages, units,
    intervals and unions, tuples, matrices, ± pairs, unordered lists, equations, inequalities and
    algebraic expressions. Equivalence is numeric or symbolic (see :mod:`rd_eval.scoring.math_parse`): equal
    values, a rounded gold (``8.246``) matched at its precision, a decimal response of 2+ places that is
    the exact gold rounded; an equation matches an equation up to a constant factor. A gold that is words
    (``\\text{Evelyn}``) is matched as text.
``"text"``
    A short text answer; normalised exact match (case, spaces, LaTeX/markdown wrapping, articles and
    number spelling ``5:00`` = ``5:0`` are ignored).

Where the answer is taken from (:mod:`rd_eval.scoring.extract`): the text after the last ``</think>``;
then the last ``\\boxed{...}``; else the last "answer is / Answer: ..." line; else the type's own last
rule: the last number (``number``; a final LaTeX span such as ``$\\frac{1}{2}$`` first), the last
option-letter statement (``choice``), the last line (the other types). Numbers restated from the question
earlier in the response are therefore never taken when the response marks its answer.
"""

from __future__ import annotations

import math
import re
import string
from collections.abc import Sequence
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation

from rd_eval.scoring.extract import final_segment, last_line, math_spans, segment_candidates, strip_markup, unwrap
from rd_eval.scoring.math_parse import MathAnswer, answers_equivalent, constant_value, parse_answer, text_key

__all__ = [
    "ALL_LETTERS",
    "ANSWER_TYPES",
    "NUMBER_TOLERANCE",
    "extract_answer",
    "extract_choice",
    "extract_letters",
    "extract_number",
    "is_correct",
]

ANSWER_TYPES: tuple[str, ...] = ("number", "choice", "multi_choice", "expression", "text")
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
_LEADING_LETTER_RE = re.compile(r"^[\(\[]?([A-Z])[\)\]]?(?![\w'])")
_BARE_STRIP = " \t\r\n()[]{}*_`'\".:;,!"
_OPTION_PREFIX_RE = re.compile(r"^\s*[\(\[]?([A-Z])\s*[\)\]:.]\s*")


def _type_error(answer_type: str) -> ValueError:
    return ValueError(f"unknown answer_type {answer_type!r}; valid types: {list(ANSWER_TYPES)}")


def _gold_error(kind: str, answer: str, need: str) -> ValueError:
    return ValueError(f"{kind} answer {answer!r} {need}; valid answer types: {list(ANSWER_TYPES)}")


def _check_answer_type(answer_type: str) -> None:
    if answer_type not in ANSWER_TYPES:
        raise _type_error(answer_type)


# ---------------------------------------------------------------------------------------------------------
# Numbers


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


def _gold_number(answer: str) -> Decimal:
    text = str(answer).strip()
    try:
        return Decimal(text.replace(",", ""))
    except InvalidOperation:
        pass
    value = _constant_of(text) if text else None
    if value is None:
        raise _gold_error("number", answer, "is not a number")
    return Decimal(value)


def _round(value: Decimal, places: int) -> Decimal:
    return value.quantize(Decimal(1).scaleb(-places), rounding=ROUND_HALF_UP)


def _numbers_equal(pred: str | None, gold: Decimal, precision: int | None) -> bool:
    if pred is None:
        return False
    value = Decimal(pred)
    if precision is not None:
        return _round(value, precision) == _round(gold, precision)
    return abs(value - gold) <= Decimal(str(NUMBER_TOLERANCE))


# ---------------------------------------------------------------------------------------------------------
# Option letters


def _norm_text(text: str) -> str:
    return " ".join(text.lower().split())


def _option_texts(choices: Sequence[str]) -> list[str]:
    """Option texts without a leading copy of their own letter (MathVerse ``"A:$\\sin ..$"``)."""
    out = []
    for i, choice in enumerate(choices):
        text = str(choice)
        m = _OPTION_PREFIX_RE.match(text)
        if m and m.group(1) == ALL_LETTERS[i] and text[m.end():].strip():
            text = text[m.end():]
        out.append(text)
    return out


def _choice_by_text(response: str, choices: Sequence[str]) -> int | None:
    """Index of the single choice whose text appears in the response (longest match wins containment)."""
    resp = _norm_text(response).strip(_BARE_STRIP)
    normed = [_norm_text(c) for c in _option_texts(choices)]
    exact = [i for i, c in enumerate(normed) if c and c == resp]
    if exact and len({normed[i] for i in exact}) == 1:
        return exact[0]  # duplicated option texts (MathVista ['9', '12', '18', '18']): the first
    found = [  # a one-letter option text ("A") is a letter, not a word to look for ("A triangle ...")
        i for i, c in enumerate(normed)
        if len(c) > 1 and re.search(r"(?<![\w])" + re.escape(c) + r"(?![\w])", resp)
    ]
    # Drop choices that only matched inside a longer matched choice ("25" inside "17 + 25").
    found = [i for i in found if not any(normed[j] != normed[i] and normed[i] in normed[j] for j in found)]
    return found[0] if found and len({normed[i] for i in found}) == 1 else None


def _choice_by_value(candidates: Sequence[str], choices: Sequence[str]) -> int | None:
    """Index of the single choice whose math value equals the first candidate that parses as math."""
    pred = next((p for p in map(parse_answer, candidates) if not p.is_text), None)
    if pred is None:
        return None
    options = [parse_answer(c) for c in _option_texts(choices)]
    hits = [i for i, o in enumerate(options) if not o.is_text and answers_equivalent(o, pred)]
    return hits[0] if hits and len({options[i].text for i in hits}) == 1 else None


def _unique_marked(text: str, letters: str) -> str | None:
    found = {m.group(1) or m.group(2) for m in _MARKED_LETTER_RE.finditer(text)} & set(letters)
    return found.pop() if len(found) == 1 else None


def _bare_letter(text: str, letters: str) -> str | None:
    bare = unwrap(text).strip(_BARE_STRIP).upper()
    return bare if len(bare) == 1 and bare in letters else None


def _explicit_letter(text: str, letters: str) -> str | None:
    explicit = [
        m.group(1).upper() for m in _EXPLICIT_CHOICE_RE.finditer(text)
        if m.group(1).upper() in letters
        and (m.group(1).isupper() or _CLAUSE_END_RE.match(text, m.end(1)))
    ]
    return explicit[-1] if explicit else None  # "not A, the answer is B": the final statement wins


_LETTER_THEN_WORD_RE = re.compile(r"\s+(?!(?:because|since|as|is|and|or|which|-)\b)[a-z]")


def _segment_letter(segment: str, letters: str) -> str | None:
    """The letter a marked answer names: ``B``, ``(B) 52``, ``B because ...``, ``option B``.

    Two or more letters ("A or B", "A, C") name no single option; a capital "A"/"I" opening a sentence
    ("A triangle has ...") is a word, not an option.
    """
    seg = unwrap(segment)
    letter = _bare_letter(seg, letters)
    if letter is not None:
        return letter
    several = _letter_set(seg, ALL_LETTERS)
    if several is not None and len(several) > 1:
        return None
    m = _LEADING_LETTER_RE.match(seg.strip())
    if m and m.group(1) in letters and not (m.group(1) in "AI" and _LETTER_THEN_WORD_RE.match(seg.strip(), m.end())):
        return m.group(1)
    return _explicit_letter(seg, letters) or _unique_marked(seg, letters)


def _extract_letter(response: str, letters: str) -> str | None:
    """The letter an unmarked response picks: whole response, "option B", last line, one marked letter."""
    text = strip_markup(response)
    letter = _bare_letter(text, letters) or _explicit_letter(text, letters)
    if letter is not None:
        return letter
    line = last_line(text)
    letter = _bare_letter(line, letters)
    if letter is not None:
        return letter
    return _unique_marked(line, letters) or _unique_marked(text, letters)


def _letters_for(choices: Sequence[str]) -> str:
    if not choices:
        raise ValueError("choices is empty; pass the option texts in order (A, B, ...)")
    if len(choices) > len(ALL_LETTERS):
        raise ValueError(f"{len(choices)} choices given; at most {len(ALL_LETTERS)} can be lettered")
    return ALL_LETTERS[: len(choices)]


def _choice(response: str, choices: Sequence[str], letters: str) -> str | None:
    seg = final_segment(response)
    if seg is not None:
        letter = _segment_letter(seg[0], letters)
        if letter is not None or not choices:
            return letter
        candidates = segment_candidates(seg[0])
        index = _choice_by_text(candidates[0], choices) if candidates else None
        if index is None:
            index = _choice_by_value(candidates, choices)
        return None if index is None else letters[index]
    letter = _extract_letter(response, letters)
    if letter is not None or not choices:
        return letter
    text = strip_markup(response).strip()
    line = text if "\n" not in text else last_line(text)
    index = _choice_by_text(line, choices)
    if index is None:
        index = _choice_by_value(segment_candidates(line), choices)
    return None if index is None else letters[index]


def extract_choice(response: str, choices: Sequence[str]) -> str | None:
    """The option letter the response picks ("B", "(B)", "Answer: b", \\boxed{B}, or B's text), or None."""
    return _choice(response, choices, _letters_for(choices))


_LETTER_WORDS_RE = re.compile(r"\b(?:and|or|both|options?|choices?|letters?)\b", re.I)


def _letter_set(text: str, letters: str) -> frozenset[str] | None:
    """``"A, C"`` / ``"AC"`` / ``"(A) and (C)"`` -> {A, C}; None when the text is not just letters."""
    s = _LETTER_WORDS_RE.sub(" ", unwrap(text))
    s = re.sub(r"[()\[\]{}]", " ", s).strip(" .")
    tokens = [t for t in re.split(r"[\s,;/&+]+", s) if t]
    if not tokens:
        return None
    if all(len(t) == 1 and t.isalpha() for t in tokens):
        found = [t.upper() for t in tokens]
    elif len(tokens) == 1 and tokens[0].isalpha() and tokens[0].isupper() and len(set(tokens[0])) == len(tokens[0]):
        found = list(tokens[0])
    else:
        return None
    if not set(found) <= set(letters):
        return None
    return frozenset(found)


_CLAUSE_CUT_RE = re.compile(r"(?:\.\s|;|\s(?:because|since|as|which|so|but)\s)", re.I)


def _segment_letter_set(segment: str, letters: str) -> frozenset[str] | None:
    seg = unwrap(segment)
    exact = _letter_set(seg, letters)
    if exact is not None:
        return exact
    head = _CLAUSE_CUT_RE.split(seg + " ", maxsplit=1)[0]
    exact = _letter_set(head, letters)
    if exact is not None:
        return exact
    # "Options A and C are correct": standalone capitals; "A" / "I" before a lower-case word are words
    found = {
        m.group(1) for m in re.finditer(r"(?<![A-Za-z'])([A-Z])(?![A-Za-z'])", head)
        if m.group(1) in letters
        and not (m.group(1) in "AI" and re.match(r"\s+(?!and\b|or\b)[a-z]", head[m.end():]))
    }
    return frozenset(found) or None


def extract_letters(response: str, choices: Sequence[str] = ()) -> str | None:
    """The set of option letters a response picks, as ``"A, C"`` (sorted), or None."""
    letters = _letters_for(choices) if choices else ALL_LETTERS
    seg = final_segment(response)
    if seg is not None:
        found = _segment_letter_set(seg[0], letters)
    else:
        found = _letter_set(last_line(response), letters)
        if found is None:
            one = _extract_letter(response, letters)
            found = frozenset(one) if one else None
    return ", ".join(sorted(found)) if found else None


def _gold_choice(answer: str, choices: Sequence[str]) -> set[str]:
    """The letters a choice gold accepts: its letter, or the letter(s) of the option(s) with its text."""
    letters = _letters_for(choices) if choices else ALL_LETTERS
    text = str(answer).strip()
    m = re.fullmatch(r"[\(\[]?\s*([A-Za-z])\s*[\)\]]?\.?", text)
    if m and m.group(1).upper() in letters:
        return {m.group(1).upper()}
    if choices:
        options = _option_texts(choices)
        hits = {letters[i] for i, c in enumerate(options) if c.strip() == text}
        if not hits:
            hits = {letters[i] for i, c in enumerate(options) if text_key(c) == text_key(text) and text_key(text)}
        if hits:
            return hits
    need = "must be a single option letter A-Z" + (" or the text of one of the choices" if choices else "")
    raise _gold_error("choice", answer, need)


def _gold_letter_set(answer: str, choices: Sequence[str]) -> frozenset[str]:
    letters = _letters_for(choices) if choices else ALL_LETTERS
    found = _letter_set(str(answer), letters)
    if found is None:
        raise _gold_error("multi_choice", answer, f"must be option letters such as 'A, C' (within {letters[-1]})")
    return found


# ---------------------------------------------------------------------------------------------------------
# Expressions and text


def _answer_candidates(response: str) -> list[str]:
    """Spellings of the final answer for expression/text scoring: marked segment, else the last line."""
    seg = final_segment(response)
    if seg is not None:
        return segment_candidates(seg[0])
    text = strip_markup(response).strip()
    line = text if "\n" not in text else last_line(text)
    spans = [unwrap(s) for s in math_spans(line)[-1:]]
    out = spans + segment_candidates(line) if line else spans
    return list(dict.fromkeys(c for c in out if c))


def _predicted_math(candidates: Sequence[str]) -> MathAnswer | None:
    for cand in candidates:
        parsed = parse_answer(cand)
        if not parsed.is_text:
            return parsed
    return None


def _gold_expression(answer: str) -> MathAnswer:
    parsed = parse_answer(str(answer))
    if parsed.is_text and not parsed.text:
        raise _gold_error("expression", answer, "is empty")
    return parsed


# ---------------------------------------------------------------------------------------------------------
# Public API


def extract_answer(
    response: str, answer_type: str, choices: Sequence[str] = (), *, precision: int | None = None
) -> str | None:
    """What the response answers, for logging: a number, a letter, letters ``"A, C"``, or the answer text.

    ``precision`` is accepted for symmetry with :func:`is_correct`; the logged prediction is not rounded.
    """
    _check_answer_type(answer_type)
    if answer_type == "number":
        return extract_number(response)
    if answer_type == "choice":
        return extract_choice(response, choices) if choices else _choice(response, (), ALL_LETTERS)
    if answer_type == "multi_choice":
        return extract_letters(response, choices)
    candidates = _answer_candidates(response)
    if answer_type == "expression":
        parsed = _predicted_math(candidates)
        if parsed is not None:
            return parsed.source
    return candidates[0] if candidates else None


def is_correct(
    response: str,
    answer: str,
    answer_type: str,
    choices: Sequence[str] = (),
    *,
    precision: int | None = None,
) -> bool:
    """Whether ``response`` gives the gold ``answer`` under the rules of ``answer_type`` (module docstring).

    ``choices`` (option texts, in letter order) are optional; with them a response naming only an option's
    text or value also counts. ``precision`` rounds numbers to that many decimals before comparing
    ("number" and "expression"). A gold answer that cannot be read for its type raises ValueError.
    """
    _check_answer_type(answer_type)
    if precision is not None and (not isinstance(precision, int) or precision < 0):
        raise ValueError(f"precision must be a non-negative int or None, got {precision!r}")
    if answer_type == "number":
        gold = _gold_number(answer)
        return _numbers_equal(extract_number(response), gold, precision)
    if answer_type == "choice":
        accepted = _gold_choice(answer, choices)
        letters = _letters_for(choices) if choices else ALL_LETTERS
        return _choice(response, choices, letters) in accepted
    if answer_type == "multi_choice":
        gold_set = _gold_letter_set(answer, choices)
        pred = extract_letters(response, choices)
        return pred is not None and frozenset(pred.split(", ")) == gold_set
    candidates = _answer_candidates(response)
    if answer_type == "text":
        key = text_key(str(answer))
        if not key:
            raise _gold_error("text", answer, "is empty")
        return any(text_key(c) == key for c in candidates)
    gold = _gold_expression(answer)
    if gold.is_text:
        return any(text_key(c) == gold.text for c in candidates)
    pred = _predicted_math(candidates)
    return pred is not None and answers_equivalent(gold, pred, precision)
