"""Rule-based, offline answer scoring for model responses (no judge model, no network).

Answer types (``ANSWER_TYPES``) and what counts as right:

``"number"``
    A number; the prediction states the gold under the one closeness rule of
    :mod:`rd_eval.scoring.closeness` (``abs_tolerance``: DynaMath's absolute error; ``precision``: MathVista's
    decimals rounded half-up; else equal values, or agreement at the gold's own decimals). The response may wrap
    the number: ``\\boxed{12}``, ``$12$``, ``12 cm``, ``12%``, ``\\frac{3}{4}``, ``x = 12``, ``1,200``.
``"choice"``
    One option letter. The gold is a letter (``"B"``, ``"(B)"``) or, when ``choices`` are given, an
    option's text (MathVista stores ``"Linear"``); the response may name the letter or, with ``choices``,
    the option's text or value ("9 km" for the option ``$9 \\mathrm{~km}$``). Options with the same text
    (MathVista ``['9', '12', '18', '18']``) are one answer. A letter that is not a pick is never read:
    "A:" answering a Q/A pair ("A: no" is the option "No"), names ("point B", "Solution B."), letter
    lists ("(A, B, C, or D)"), a response that only lists the options.
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

Where the answer is taken from (:mod:`rd_eval.scoring.extract`): the text after the last ``</think>``
(and before a follow-on question the model makes up); then the last ``\\boxed{...}``; else the last
"answer is / Answer: / 答案是 ..." line; else a first line that is only the answer; else the type's own last
rule: the last number (``number``; a final LaTeX span such as ``$\\frac{1}{2}$`` first), the last
option-letter statement (``choice``), the last line (the other types). Numbers restated from the question
earlier in the response are therefore never taken when the response marks its answer. A refusal ("cannot
be determined") or a hedge ("1490 or 1500", "if ..., (A); otherwise (B)") answers nothing: it is wrong.

:func:`judge` reads the gold, then the response once, and returns both the answer read and the verdict:
the task layer logs exactly the answer it judged. A gold that cannot be read for its type raises
:class:`~rd_eval.scoring.answer_types.GoldError`; :func:`rd_eval.scoring.item.score_doc` turns it into an
unscored document ("unusable gold: ...") instead of a crash.
"""

from __future__ import annotations

from collections.abc import Sequence

from rd_eval.scoring.answer_types import ALL_LETTERS, ANSWER_TYPES, check_answer_type, gold_error
from rd_eval.scoring.choices import (
    extract_choice,
    extract_letters,
    gold_choice_letters,
    gold_letter_set,
    letters_for,
    read_choice,
    same_answer_letters,
)
from rd_eval.scoring.closeness import check_abs_tolerance
from rd_eval.scoring.extract import final_segment, last_line, math_spans, segment_candidates, strip_markup, unwrap
from rd_eval.scoring.math_parse import MathAnswer, answers_equivalent, parse_answer, text_key
from rd_eval.scoring.numbers import extract_number, gold_number, numbers_equal

__all__ = [
    "ALL_LETTERS",
    "ANSWER_TYPES",
    "extract_answer",
    "extract_choice",
    "extract_letters",
    "extract_number",
    "is_correct",
    "judge",
]


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
        raise gold_error("expression", answer, "is empty")
    return parsed


# ---------------------------------------------------------------------------------------------------------
# Public API


def _check_precision(precision: int | None) -> None:
    if precision is not None and (not isinstance(precision, int) or precision < 0):
        raise ValueError(f"precision must be a non-negative int or None, got {precision!r}")


def extract_answer(
    response: str,
    answer_type: str,
    choices: Sequence[str] = (),
    *,
    precision: int | None = None,
    abs_tolerance: float | None = None,
) -> str | None:
    """What the response answers, for logging: a number, a letter, letters ``"A, C"``, or the answer text.

    ``precision`` and ``abs_tolerance`` are accepted for symmetry with :func:`is_correct`; the logged
    prediction is not rounded.
    """
    check_answer_type(answer_type)
    if answer_type == "number":
        return extract_number(response)
    if answer_type == "choice":
        return extract_choice(response, choices) if choices else read_choice(response, (), ALL_LETTERS)
    if answer_type == "multi_choice":
        return extract_letters(response, choices)
    candidates = _answer_candidates(response)
    if answer_type == "expression":
        parsed = _predicted_math(candidates)
        if parsed is not None:
            return parsed.source
    return candidates[0] if candidates else None


def judge(
    response: str,
    answer: str,
    answer_type: str,
    choices: Sequence[str] = (),
    *,
    precision: int | None = None,
    abs_tolerance: float | None = None,
) -> tuple[str | None, bool]:
    """(the answer read from ``response``, whether it is the gold ``answer``): one extraction for both.

    The gold is read first, so a gold that cannot be read for its type raises
    :class:`~rd_eval.scoring.answer_types.GoldError` (a ValueError) whatever the response. The answer
    returned is the one judged: for text and expression golds, the spelling that matched when one did.
    """
    check_answer_type(answer_type)
    _check_precision(precision)
    check_abs_tolerance(abs_tolerance)
    if answer_type == "number":
        gold = gold_number(answer)
        pred = extract_number(response)
        return pred, numbers_equal(pred, gold, precision, abs_tolerance)
    if answer_type == "choice":
        letters = letters_for(choices) if choices else ALL_LETTERS
        accepted = same_answer_letters(gold_choice_letters(answer, choices), choices)
        pred = read_choice(response, choices, letters)
        return pred, pred in accepted
    if answer_type == "multi_choice":
        gold_set = gold_letter_set(answer, choices)
        pred = extract_letters(response, choices)
        return pred, pred is not None and frozenset(pred.split(", ")) == gold_set
    if answer_type == "text":
        key = text_key(str(answer))
        if not key:
            raise gold_error("text", answer, "is empty")
        candidates = _answer_candidates(response)
        hit = next((c for c in candidates if text_key(c) == key), None)
        return (hit, True) if hit is not None else (candidates[0] if candidates else None, False)
    gold = _gold_expression(answer)
    candidates = _answer_candidates(response)
    if gold.is_text:
        hit = next((c for c in candidates if text_key(c) == gold.text), None)
        if hit is not None:
            return hit, True
    pred = _predicted_math(candidates)
    if pred is None:
        return (candidates[0] if candidates else None), False
    return pred.source, not gold.is_text and answers_equivalent(gold, pred, precision, abs_tolerance)


def is_correct(
    response: str,
    answer: str,
    answer_type: str,
    choices: Sequence[str] = (),
    *,
    precision: int | None = None,
    abs_tolerance: float | None = None,
) -> bool:
    """Whether ``response`` gives the gold ``answer`` under the rules of ``answer_type`` (module docstring).

    ``choices`` (option texts, in letter order) are optional; with them a response naming only an option's
    text or value also counts, and options with the same text are the same answer. ``precision`` rounds
    numbers to that many decimals before comparing and ``abs_tolerance`` accepts an absolute error up to it
    ("number" and "expression"; :mod:`rd_eval.scoring.closeness`). A gold answer that cannot be read for its
    type raises GoldError (a ValueError).
    """
    return judge(response, answer, answer_type, choices, precision=precision, abs_tolerance=abs_tolerance)[1]
