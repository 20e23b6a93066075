"""Gold answers of the six benchmarks as the datasets state them, normalised for scoring: option letters,
option texts, plain numbers stated with labels and units, free-form answers; and the option lists and image
tags found in question texts."""

from __future__ import annotations

import re
from collections.abc import Sequence

from rd_eval.scoring.answers import ALL_LETTERS

_LETTER_RE = re.compile(r"^\s*[\(\[]?\s*([A-Za-z])\s*[\)\]]?\s*[.:]?\s*$")
_LETTER_LIST_RE = re.compile(r"^\s*[A-Za-z](?:\s*(?:,|;|and|&|\s)\s*[A-Za-z])*\s*$")


def choice_letter(answer: str, n_choices: int | None = None) -> str | None:
    """``"B"``, ``"(B)"``, ``" b. "`` -> ``"B"``; None when the answer is not one option letter (within range)."""
    m = _LETTER_RE.match(answer)
    if m is None:
        return None
    letter = m.group(1).upper()
    if n_choices is not None and ALL_LETTERS.index(letter) >= n_choices:
        return None
    return letter


def choice_letters(answer: str) -> str | None:
    """``"A, C"`` / ``"A C"`` / ``"AC"`` -> ``"A, C"`` (sorted, unique); None when not a list of letters."""
    text = answer.strip()
    if re.fullmatch(r"[A-Za-z]{2,6}", text) and text.isupper():
        letters = list(text)
    elif _LETTER_LIST_RE.match(text):
        letters = re.findall(r"(?<![A-Za-z])[A-Za-z](?![A-Za-z])", re.sub(r"\band\b", " ", text))
    else:
        return None
    letters = sorted({c.upper() for c in letters})
    return ", ".join(letters) if letters else None


def _norm_option(text: str) -> str:
    text = re.sub(r"\\(?:mathrm|text|operatorname)\{([^{}]*)\}", r"\1", str(text))
    text = text.replace("$", "").replace("\\hline", "").replace("^\\circ", "°").replace("^{\\circ}", "°")
    return " ".join(text.lower().replace("\u00a0", " ").split()).replace(" °", "°")


def option_index(answer: str, choices: Sequence[str]) -> int | None:
    """Index of the choice whose text is ``answer`` (exact, then normalised); None if none or ambiguous."""
    exact = [i for i, c in enumerate(choices) if str(c).strip() == answer.strip()]
    if exact:
        return exact[0]  # duplicated option texts: the first one, as the dataset's own letter would be
    normed = _norm_option(answer)
    loose = [i for i, c in enumerate(choices) if _norm_option(c) == normed]
    return loose[0] if len(loose) == 1 else None


_NUMBER = r"[-−]?(?:\d+(?:,\d{3})*(?:\.\d+)?|\.\d+)"
_UNIT_WORDS = (
    r"(?:square|cubic|sq\.?|units?|cm|mm|km|m|ft|feet|foot|in|inches|yd|mi|miles?|g|kg|mg|lb|lbs|s|sec|seconds?|"
    r"min|minutes?|h|hours?|days?|years?|degrees?|deg|ml|l|L|cc|N|J|W|V|A|Pa|kPa|%|°|T)"
)


def numeric_answer(answer: str) -> str | None:
    """The number a gold answer states, with labels and units removed; None if anything else is left.

    ``"Area $=9.4 \\mathrm{~cm}^{2}$"`` -> ``"9.4"``, ``"315^\\circ T"`` -> ``"315"``, ``"$h=58$"`` -> ``"58"``,
    ``"1,200"`` -> ``"1200"``; ``"9 \\pi"``, ``"(2,-2)"`` or ``"\\frac{4}{5}"`` -> None (not a plain number).
    """
    text = str(answer).strip()
    if not text:
        return None
    text = text.replace("$", " ").replace("\\,", " ").replace("~", " ").replace("\\!", " ")
    text = text.replace("掳", "°")  # a mis-decoded degree sign found in MathVerse answers
    text = re.sub(r"\\(?:mathrm|text|textrm|operatorname|mbox)\s*\{([^{}]*)\}", r" \1 ", text)
    text = re.sub(r"\^\s*\{?\s*\\circ\s*\}?", " ° ", text)
    text = re.sub(r"\\(?:circ|degree)", " ° ", text)
    text = re.sub(r"\\%", " % ", text)
    if text.count("=") == 1:  # "Area = 9.4", "y = 21.61": a label or variable, then the value
        left, right = text.split("=")
        if re.fullmatch(r"\s*[A-Za-z][A-Za-z ]{0,30}(?:_\{?\w+\}?)?\s*", left):
            text = right
        else:
            return None
    elif "=" in text:
        return None
    text = re.sub(r"\^\s*\{?\s*[23]\s*\}?", " ", text)  # square / cubic unit exponents
    words = text.split()
    numbers = [w for w in words if re.fullmatch(_NUMBER, w)]
    others = [w for w in words if not re.fullmatch(_NUMBER, w)]
    if len(numbers) != 1:
        # "4.4m" / "315°T": a number glued to its unit
        glued = re.fullmatch(rf"\s*({_NUMBER})\s*((?:{_UNIT_WORDS}\s*)+)", text)
        if glued is None:
            return None
        numbers, others = [glued.group(1)], glued.group(2).split()
    if not all(re.fullmatch(rf"{_UNIT_WORDS}+", w) for w in others):
        return None
    value = numbers[0].replace(",", "").replace("−", "-")
    if value.startswith("."):
        value = "0" + value
    elif value.startswith("-."):
        value = "-0" + value[1:]
    return value


def free_form_gold(answer: str) -> tuple[str, str]:
    """(answer, answer_type) of a free-form gold answer: a plain number, else an expression or text."""
    number = numeric_answer(answer)
    if number is not None:
        return number, "number"
    text = str(answer).strip()
    if re.search(r"[\\^=<>()\[\]{}+*/]|\d", text):
        return text, "expression"
    return text, "text"


_OPTION_MARK = re.compile(r"(?:^|(?<=[;\n]))\s*([A-H])\s*[.:．：]\s*")


def parse_lettered_options(text: str) -> list[str] | None:
    """``"A. 300, 400;B. 400, 300; C. ..."`` or ``"A:40°\\nB:60°"`` -> option texts; None unless the marks run
    A, B, C, ... in order."""
    marks = list(_OPTION_MARK.finditer(text))
    if len(marks) < 2 or [m.group(1) for m in marks] != list(ALL_LETTERS[: len(marks)]):
        return None
    options = []
    for i, m in enumerate(marks):
        end = marks[i + 1].start() if i + 1 < len(marks) else len(text)
        options.append(text[m.end():end].strip().rstrip(";").strip())
    return options if all(options) else None


_INLINE_MARK = re.compile(r"\(\s*([A-H])\s*\)")


def parse_inline_options(text: str) -> list[str] | None:
    """Option texts listed inline at the end of a question: ``"... Select from A, B and C. (A) True (B)False
    (C)Insufficient Information"`` -> ``["True", "False", "Insufficient Information"]``.

    The marks ``(A)``, ``(B)``, ... must run in order from the last ``(A)`` to the end of the text, at least two
    of them; each option is the text up to the next mark, without the separators around it. None when there is
    no such run, or when an option has no text (``"(A) (B) (C) (D)"``: the options are drawn in the image).
    """
    marks = list(_INLINE_MARK.finditer(text))
    starts = [i for i, m in enumerate(marks) if m.group(1) == "A"]
    if not starts:
        return None
    run = marks[starts[-1]:]
    if len(run) < 2 or [m.group(1) for m in run] != list(ALL_LETTERS[: len(run)]):
        return None
    options = []
    for i, m in enumerate(run):
        end = run[i + 1].start() if i + 1 < len(run) else len(text)
        options.append(" ".join(text[m.end():end].split()).strip(",; "))
    return options if all(options) else None


_IMAGE_TAG = re.compile(r"<image\d*>")


def strip_image_tags(text: str) -> str:
    """Remove ``<image1>``-style placeholders (MathVision), tidying the whitespace they leave."""
    text = _IMAGE_TAG.sub("", text)
    return re.sub(r"\n{3,}", "\n\n", re.sub(r"[ \t]+\n", "\n", text)).strip()
