"""Perception ("seeing") checks for exact twins, and failure attribution (docs/design.md §3.2).

Where the text in an image is known exactly (a rendered twin), the model is asked to transcribe the image.
The image counts as **seen** when

1. every number of the reference text appears in the transcript, numbers compared as normalised numbers
   (``1,200`` = ``1200``, ``2.50`` = ``2.5``; signs are ignored, so ``x-3`` and ``x - 3`` agree), and
2. the normalised similarity of transcript and reference is at least a threshold (default 0.9).

Similarity = ``1 - levenshtein(a, b) / max(len(a), len(b))`` over texts normalised by :func:`normalise_text`
(Unicode NFKC, typographic quotes and dashes as ASCII, case folded, runs of whitespace as one space), so line
breaks where the renderer wrapped, or letter case, do not count as misreadings.

Failure attribution splits the image-form failures of paired problems into **perception errors** (not seen)
and **reasoning errors** (seen). Every function here is pure.
"""

from __future__ import annotations

import math
import numbers
import re
import unicodedata
from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal
from functools import lru_cache

DEFAULT_SEEN_THRESHOLD = 0.9

# A number: thousands-grouped ("1,200"; a leading 0 is no group, so "(0,300)" is 0 and 300), plain digits,
# or a bare decimal (".5"). ASCII digits only. Digits glued to letters still count ("x2", "10th").
_NUMBER_RE = re.compile(
    r"(?<![0-9])(?:[1-9][0-9]{0,2}(?:,[0-9]{3})+(?![0-9])|[0-9]+)(?:\.[0-9]+)?(?![0-9])"
    r"|(?<![\w.])\.[0-9]+(?![0-9])"
)
# LaTeX spacing inside numbers: "1,\!000" and "10{,}000" are 1000 and 10000.
_LATEX_NUMBER_SPACING = (("\\!", ""), ("{,}", ","))
_ASCII_PUNCT = str.maketrans({
    "\u2018": "'", "\u2019": "'", "\u201a": "'", "\u201b": "'", "\u2032": "'",
    "\u201c": '"', "\u201d": '"', "\u201e": '"', "\u2033": '"',
    "\u2010": "-", "\u2011": "-", "\u2012": "-", "\u2013": "-", "\u2014": "-", "\u2212": "-",
})
_FENCE_RE = re.compile(r"^\s*```[^\n]*\n(?P<body>.*?)\n?```\s*$", re.DOTALL)


def check_threshold(threshold: float) -> float:
    if isinstance(threshold, bool) or not isinstance(threshold, (int, float)) or not 0.0 <= threshold <= 1.0:
        raise ValueError(f"seen threshold must be a number in [0, 1], got {threshold!r}")
    return float(threshold)


def normalise_number(literal: str) -> str:
    """Canonical form of one unsigned number literal: ``"1,200"`` -> ``"1200"``, ``"2.50"`` -> ``"2.5"``."""
    value = Decimal(literal.replace(",", ""))
    if value == value.to_integral_value():
        return str(int(value))
    return format(value.normalize(), "f")


def extract_numbers(text: str) -> tuple[str, ...]:
    """The distinct numbers of ``text``, normalised, in order of first appearance.

    The text is NFKC-normalised first ("¾" -> 3 and 4, "x²" -> 2), LaTeX spacing inside numbers is removed,
    and signs are ignored.
    """
    text = unicodedata.normalize("NFKC", text)
    for old, new in _LATEX_NUMBER_SPACING:
        text = text.replace(old, new)
    seen: dict[str, None] = {}
    for m in _NUMBER_RE.finditer(text):
        seen.setdefault(normalise_number(m.group(0)), None)
    return tuple(seen)


def strip_code_fence(text: str) -> str:
    """The body of a transcript wrapped in one Markdown code fence; other text unchanged."""
    m = _FENCE_RE.match(text)
    return m.group("body") if m else text


def normalise_text(text: str) -> str:
    """Text as compared for similarity: NFKC, ASCII quotes/dashes, case folded, whitespace runs as one space."""
    text = unicodedata.normalize("NFKC", strip_code_fence(text)).translate(_ASCII_PUNCT)
    return " ".join(text.casefold().split())


def levenshtein(a: str, b: str) -> int:
    """Edit distance (insertions, deletions, substitutions of one character each).

    Bit-parallel (Hyyrö 2003) over Python integers: linear in ``len(a)`` big-integer operations, so a
    2,000-character transcript takes milliseconds.
    """
    if len(a) < len(b):
        a, b = b, a
    m = len(b)
    if m == 0:
        return len(a)
    peq: dict[str, int] = {}
    for i, ch in enumerate(b):
        peq[ch] = peq.get(ch, 0) | (1 << i)
    full = (1 << m) - 1
    last = 1 << (m - 1)
    vp, vn, dist = full, 0, m
    for ch in a:
        x = peq.get(ch, 0)
        d0 = ((((x & vp) + vp) & full) ^ vp) | x | vn
        hp = vn | (~(d0 | vp) & full)
        hn = d0 & vp
        if hp & last:
            dist += 1
        elif hn & last:
            dist -= 1
        hp = ((hp << 1) | 1) & full
        hn = (hn << 1) & full
        vp = hn | (~(d0 | hp) & full)
        vn = hp & d0
    return dist


@lru_cache(maxsize=256)
def similarity(reference: str, transcript: str) -> float:
    """``1 - levenshtein / max length`` of the normalised texts, in [0, 1]; 1.0 when both are empty."""
    a, b = normalise_text(reference), normalise_text(transcript)
    longest = max(len(a), len(b))
    if longest == 0:
        return 1.0
    return 1.0 - levenshtein(a, b) / longest


@dataclass(frozen=True)
class Perception:
    """Whether a transcript shows the reference was seen, and why."""

    seen: bool
    similarity: float
    missing_numbers: tuple[str, ...]  # reference numbers absent from the transcript (normalised)
    threshold: float


def judge_transcript(reference: str, transcript: str, threshold: float = DEFAULT_SEEN_THRESHOLD) -> Perception:
    """Seen = every reference number is in the transcript and similarity >= ``threshold``."""
    threshold = check_threshold(threshold)
    found = set(extract_numbers(transcript))
    missing = tuple(n for n in extract_numbers(reference) if n not in found)
    sim = similarity(reference, transcript)
    return Perception(seen=not missing and sim >= threshold, similarity=sim, missing_numbers=missing,
                      threshold=threshold)


# --- failure attribution ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Attribution:
    """Image-form failures split into perception errors (not seen) and reasoning errors (seen).

    Only pairs with a known image-form outcome count. A failure whose seen flag is missing (no transcription,
    or an error doc) is ``unattributed`` and left out of both shares.
    """

    n_pairs: int  # pairs with a known image-form outcome
    img_correct: int
    img_failures: int
    perception_errors: int
    reasoning_errors: int
    unattributed: int
    reasoning_share: float | None  # reasoning / (reasoning + perception); None when nothing was attributed
    perception_share: float | None
    seeing_not_thinking: int | None  # seen, right in text, wrong in image; None without text outcomes

    def as_dict(self) -> dict[str, int | float | None]:
        return dict(self.__dict__)


def _flag(value: object, *, what: str, key: str) -> bool | None:
    # Accepts Python and numpy bools/numbers; None, NaN and pandas' NA mean unknown.
    if value is None or type(value).__name__ == "NAType":
        return None
    if isinstance(value, numbers.Real):
        if math.isnan(float(value)):
            return None
        if float(value) in (0.0, 1.0):
            return bool(value)
    raise ValueError(f"{what}[{key!r}] must be 0, 1, True, False or None (unknown), got {value!r}")


def attribute_failures(img_correct: Mapping[str, object], seen: Mapping[str, object],
                       txt_correct: Mapping[str, object] | None = None) -> Attribution:
    """Attribute image-form failures to perception or reasoning.

    ``img_correct`` and ``seen`` map pair_id -> 0/1/bool, or None where unknown (an error doc); ``seen``
    may lack pairs. With ``txt_correct`` also count the "seeing but not thinking" pairs (docs/design.md §3.2):
    right as text, wrong as image, and seen.
    """
    n = right = perception = reasoning = unattributed = snt = 0
    for pair_id, value in img_correct.items():
        img = _flag(value, what="img_correct", key=pair_id)
        if img is None:
            continue
        n += 1
        if img:
            right += 1
            continue
        was_seen = _flag(seen.get(pair_id), what="seen", key=pair_id)
        if was_seen is None:
            unattributed += 1
        elif was_seen:
            reasoning += 1
            if txt_correct is not None and _flag(txt_correct.get(pair_id), what="txt_correct", key=pair_id):
                snt += 1
        else:
            perception += 1
    attributed = reasoning + perception
    return Attribution(
        n_pairs=n,
        img_correct=right,
        img_failures=n - right,
        perception_errors=perception,
        reasoning_errors=reasoning,
        unattributed=unattributed,
        reasoning_share=reasoning / attributed if attributed else None,
        perception_share=perception / attributed if attributed else None,
        seeing_not_thinking=snt if txt_correct is not None else None,
    )
