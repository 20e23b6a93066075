"""Reading the option letter(s) a response answers (answer types ``"choice"`` and ``"multi_choice"``)."""

from __future__ import annotations

import re
from collections.abc import Sequence

from rd_eval.scoring.answer_types import ALL_LETTERS, gold_error
from rd_eval.scoring.extract import final_segment, last_line, locate_answer, segment_candidates, strip_markup, unwrap
from rd_eval.scoring.math_parse import answers_equivalent, parse_answer, text_key

_EXPLICIT_CHOICE_RE = re.compile(
    r"\b(?:answer|option|choice)\s*(?:is|:|=|-)?\s*(?:option\s*)?[\(\[]?\s*([A-Za-z])\s*[\)\]]?(?![\w])",
    re.IGNORECASE,
)
# A lowercase letter after "answer is" must end the clause, so the article in "answer is a number" is skipped.
_CLAUSE_END_RE = re.compile(r"\s*[\)\]]?\s*(?:[.,;:!?]|$)")
_MARKED_LETTER_RE = re.compile(r"[\(\[]([A-Z])[\)\]]|(?<![\w])([A-Z])[\).:](?!\w)")
# "A is correct", "(D) is the right answer", and Chinese "选项A正确" / "故选D": a letter stated as the answer.
_LETTER_IS_ANSWER_RE = re.compile(
    r"(?<![\w'])[\(\[]?([A-Z])[\)\]]?\s+is\s+(?:the\s+)?(?:correct|right|best)\b"
    r"|(?:选项\s*[\(\[（]?\s*([A-Z])[\)\]）]?\s*(?:是|为)?\s*(?:正确|对)"
    r"|(?:选择|故选|应选|选)\s*[\(\[（]?\s*([A-Z])(?![A-Za-z]))"
)
# A word before a capital letter that makes it a name, not an option: "point B", "Figure A", "Solution B", "Let B".
_LABEL_BEFORE_RE = re.compile(
    r"\b(?:figure|fig|point|points|solution|method|case|step|part|table|line|segment|side|vertex|vertices|angle"
    r"|triangle|region|graph|diagram|image|picture|panel|approach|plan|player|person|box|circle|set|group|type"
    r"|shape|section|square|block|city|town|car|team|student|machine|strategy|scenario|object|label|position"
    r"|sample|container|bag|tank|location|let|call|denote|where)\.?\s*$",
    re.I,
)
# "A, B, C, or D", "(A), (B) or (C)": a list of letters names the options, not an answer.
_LETTER_LIST_RE = re.compile(
    r"[\(\[]?\b[A-Z]\b[\)\]]?(?:\s*(?:,\s*(?:or\s+|and\s+)?|/|\s(?:or|and)\s)\s*[\(\[]?\b[A-Z]\b[\)\]]?)+"
)
# An option label that starts an option of a listing: "(A) 5", "B. 6", "C: 7", "D) 8".
_LISTED_LABEL_RE = re.compile(r"(?:^|(?<=\s))[\(\[]?([A-Z])[\)\].:](?=\s|$)", re.M)
# A marked answer that opens with one option and offers another: "(A) 3 or (B) 4".
_LETTER_OR_LETTER_RE = re.compile(r"[\(\[]?([A-Z])[\)\].:]?\s[^\n]{0,40}?\bor\s+[\(\[]?([A-Z])[\)\].:]?(?![\w'])")
_NEGATION_RE = re.compile(r"\b(?:not|neither|nor|rather|instead|than)\b|n't", re.I)
_ANSWER_LABEL_RE = re.compile(r"^\s*A\s*[:\uff1a]\s*(.+)$", re.M)
_LEADING_LETTER_RE = re.compile(r"^[\(\[]?([A-Z])[\)\]]?(?![\w'])")
_BARE_STRIP = " \t\r\n()[]{}*_`'\".:;,!#\u3002"
_OPTION_PREFIX_RE = re.compile(r"^\s*[\(\[]?([A-Z])\s*[\)\]:.]\s*")


def _norm_text(text: str) -> str:
    """Lower case, one space, no closing period: MathVerse's option "The bar is longer." is the answer's words."""
    return " ".join(text.lower().split()).rstrip(" .\u3002")


def _option_texts(choices: Sequence[str]) -> list[str]:
    """Option texts without a leading copy of their own letter (MathVerse ``"A:$\\sin ..$"``)."""
    out = []
    for i, choice in enumerate(choices):
        text = str(choice)
        m = _OPTION_PREFIX_RE.match(text)
        if m and m.group(1) == ALL_LETTERS[i] and text[m.end() :].strip():
            text = text[m.end() :]
        out.append(text)
    return out


def _choice_by_text(response: str, choices: Sequence[str]) -> int | None:
    """Index of the single choice whose text appears in the response (longest match wins containment)."""
    whole = _norm_text(response)
    resp = whole.strip(_BARE_STRIP)
    normed = [_norm_text(c) for c in _option_texts(choices)]
    exact = [i for i, c in enumerate(normed) if c and c in (whole, resp)]  # "... (UK)" keeps its bracket
    if exact and len({normed[i] for i in exact}) == 1:
        return exact[0]  # duplicated option texts (MathVista ['9', '12', '18', '18']): the first
    found = [  # a one-letter option text ("A") is a letter, not a word to look for ("A triangle ...")
        i for i, c in enumerate(normed) if len(c) > 1 and re.search(r"(?<![\w])" + re.escape(c) + r"(?![\w])", resp)
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


def _unique_marked(text: str, letters: str, *, names: bool = True) -> str | None:
    """The one letter marked as an option ("(B)", "B."), not counting letter lists nor, with ``names``
    (unmarked text), names ("point B:", "Solution B."); a bracketed "shape (B)", and any letter in a marked
    answer ("figure B."), is the option."""
    text = _LETTER_LIST_RE.sub(" ", text)
    found = {
        m.group(1) or m.group(2)
        for m in _MARKED_LETTER_RE.finditer(text)
        if not (names and m.group(2) and _LABEL_BEFORE_RE.search(text, max(0, m.start() - 24), m.start()))
    } & set(letters)
    return found.pop() if len(found) == 1 else None


def _bare_letter(text: str, letters: str) -> str | None:
    bare = unwrap(text).strip(_BARE_STRIP)
    bare = re.sub(r"^\d{1,2}[.)]\s+", "", bare).strip(_BARE_STRIP).upper()  # a numbered answer line "1. A"
    return bare if len(bare) == 1 and bare in letters else None


def _explicit_letter(text: str, letters: str) -> str | None:
    explicit = [
        (m.start(), m.group(1).upper())
        for m in _EXPLICIT_CHOICE_RE.finditer(text)
        if m.group(1).upper() in letters and (m.group(1).isupper() or _CLAUSE_END_RE.match(text, m.end(1)))
    ]
    explicit += [(m.start(), m.group(1) or m.group(2) or m.group(3)) for m in _LETTER_IS_ANSWER_RE.finditer(text)]
    explicit = [(pos, x) for pos, x in explicit if x in letters]
    return max(explicit)[1] if explicit else None  # "not A, the answer is B": the final statement wins


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
    hedge = _LETTER_OR_LETTER_RE.match(seg)
    if hedge and hedge.group(1) != hedge.group(2) and not _NEGATION_RE.search(hedge.group(0)):
        return None  # "(A) 3 or (B) 4": two options offered ("B (not A or C)" offers one)
    several = _letter_set(seg, ALL_LETTERS)
    if several is not None and len(several) > 1:
        return None
    m = _LEADING_LETTER_RE.match(seg.strip())
    if m and m.group(1) in letters and not (m.group(1) in "AI" and _LETTER_THEN_WORD_RE.match(seg.strip(), m.end())):
        return m.group(1)
    return _explicit_letter(seg, letters) or _unique_marked(seg, letters, names=False)


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


def letters_for(choices: Sequence[str]) -> str:
    if not choices:
        raise ValueError("choices is empty; pass the option texts in order (A, B, ...)")
    if len(choices) > len(ALL_LETTERS):
        raise ValueError(f"{len(choices)} choices given; at most {len(ALL_LETTERS)} can be lettered")
    return ALL_LETTERS[: len(choices)]


def _is_listing(text: str, letters: str) -> bool:
    """Whether the text ends by listing the options in order ("(A) 5 (B) 6 (C) 7 (D) 8", "A.\\nB.\\nC."): no pick.

    The last option labels must run A, B, C, ... (all of them, or at least three when the options are unknown).
    """
    labels = "".join(m.group(1) for m in _LISTED_LABEL_RE.finditer(text))
    start = labels.rfind("A")
    run = labels[start:] if start >= 0 else ""
    return len(run) >= min(len(letters), 3) > 1 and letters.startswith(run)


def _answer_label_choice(text: str, choices: Sequence[str], letters: str) -> str | None:
    """ "A: no" as the answer half of a Q/A pair: the option whose text follows "A:", when it is not A's."""
    lines = _ANSWER_LABEL_RE.findall(text)
    if not lines:
        return None
    said = _norm_text(re.split(r"[,;.!]\s|[,;]", lines[-1] + " ", maxsplit=1)[0])
    normed = [_norm_text(c) for c in _option_texts(choices)]
    hits = [i for i, c in enumerate(normed) if c and c == said]
    return letters[hits[0]] if hits and normed[0] != said else None


def _lists_option_texts(text: str, choices: Sequence[str]) -> bool:
    """ "Yes\\nNo": every line an option's text, two or more of them: the options listed, no pick."""
    normed = {_norm_text(c) for c in _option_texts(choices)}
    said = {_norm_text(ln).strip(_BARE_STRIP) for ln in text.splitlines() if ln.strip()}
    return len(said) > 1 and said <= normed


def _first_line_option(text: str, choices: Sequence[str], letters: str) -> str | None:
    """ "Yes\\n\\nThe lines never meet ...": a first line that is exactly one option's text, explained after."""
    lines = [ln for ln in text.splitlines() if ln.strip()]
    if len(lines) < 2:
        return None
    normed = [_norm_text(c) for c in _option_texts(choices)]
    first, second = (_norm_text(ln).strip(_BARE_STRIP) for ln in lines[:2])
    hits = [i for i, c in enumerate(normed) if c and c == first]
    return letters[hits[0]] if hits and second not in normed else None


def _refused_or_hedged(raw: str, choices: Sequence[str], letters: str) -> str | None:
    """A refusal/hedge names no option, unless its words are an option's whole text ("Cannot be determined")."""
    if not choices:
        return None
    said = _norm_text(unwrap(raw)).strip(_BARE_STRIP)
    hits = [i for i, c in enumerate(_option_texts(choices)) if _norm_text(c) == said]
    return letters[hits[0]] if hits else None


def read_choice(response: str, choices: Sequence[str], letters: str) -> str | None:
    located = locate_answer(response, tuple(_option_texts(choices)))
    if located.how in ("refusal", "hedge"):
        return _refused_or_hedged(located.raw, choices, letters)
    text = strip_markup(response).strip()
    if located.how in ("", "lead") and _is_listing(text, letters):
        return None
    if located.segment is not None:
        letter = _segment_letter(located.segment, letters)
        if letter is not None or not choices:
            return letter
        candidates = segment_candidates(located.segment)
        index = _choice_by_text(candidates[0], choices) if candidates else None
        if index is None:
            index = _choice_by_value(candidates, choices)
        return None if index is None else letters[index]
    if choices:
        if _lists_option_texts(text, choices):
            return None
        letter = _answer_label_choice(text, choices, letters) or _first_line_option(text, choices, letters)
        if letter is not None:
            return letter
    letter = _extract_letter(response, letters)
    if letter is not None or not choices:
        return letter
    line = text if "\n" not in text else last_line(text)
    index = _choice_by_text(line, choices)
    if index is None:
        index = _choice_by_value(segment_candidates(line), choices)
    return None if index is None else letters[index]


def same_answer_letters(accepted: set[str], choices: Sequence[str]) -> set[str]:
    """``accepted`` with every option whose text equals an accepted one's (MathVista ``['9','12','18','18']``)."""
    if not choices:
        return accepted
    normed = [_norm_text(c) for c in _option_texts(choices)]
    texts = {normed[ALL_LETTERS.index(x)] for x in accepted if ALL_LETTERS.index(x) < len(normed)}
    return accepted | {ALL_LETTERS[i] for i, c in enumerate(normed) if c and c in texts}


def extract_choice(response: str, choices: Sequence[str]) -> str | None:
    """The option letter the response picks ("B", "(B)", "Answer: b", \\boxed{B}, or B's text), or None."""
    return read_choice(response, choices, letters_for(choices))


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


_OR_RE = re.compile(r"\bor\b", re.I)
_CLAUSE_CUT_RE = re.compile(r"(?:\.\s|;|\s(?:because|since|as|which|so|but)\s)", re.I)


def _picked_set(text: str, letters: str) -> frozenset[str] | None:
    """The letters a text picks; "A or C" / "A, C or A" offer alternatives: no set is picked."""
    return None if _OR_RE.search(text) else _letter_set(text, letters)


def _segment_letter_set(segment: str, letters: str) -> frozenset[str] | None:
    seg = unwrap(segment)
    exact = _picked_set(seg, letters)
    if exact is not None:
        return exact
    head = _CLAUSE_CUT_RE.split(seg + " ", maxsplit=1)[0]
    if _OR_RE.search(head):
        return None
    exact = _letter_set(head, letters)
    if exact is not None:
        return exact
    # "Options A and C are correct": standalone capitals; "A" / "I" before a lower-case word are words
    found = {
        m.group(1)
        for m in re.finditer(r"(?<![A-Za-z'])([A-Z])(?![A-Za-z'])", head)
        if m.group(1) in letters and not (m.group(1) in "AI" and re.match(r"\s+(?!and\b|or\b)[a-z]", head[m.end() :]))
    }
    return frozenset(found) or None


def extract_letters(response: str, choices: Sequence[str] = ()) -> str | None:
    """The set of option letters a response picks, as ``"A, C"`` (sorted), or None."""
    letters = letters_for(choices) if choices else ALL_LETTERS
    seg = final_segment(response)
    if seg is not None:
        found = _segment_letter_set(seg[0], letters)
    else:
        line = last_line(response)
        found = _picked_set(line, letters) or _picked_set(_CLAUSE_CUT_RE.split(line + " ", maxsplit=1)[0], letters)
        if found is None:
            one = _extract_letter(response, letters)
            found = frozenset(one) if one else None
    return ", ".join(sorted(found)) if found else None


def gold_choice_letters(answer: str, choices: Sequence[str]) -> set[str]:
    """The letters a choice gold accepts: its letter, or the letter(s) of the option(s) with its text."""
    letters = letters_for(choices) if choices else ALL_LETTERS
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
    raise gold_error("choice", answer, need)


def gold_letter_set(answer: str, choices: Sequence[str]) -> frozenset[str]:
    letters = letters_for(choices) if choices else ALL_LETTERS
    found = _letter_set(str(answer), letters)
    if found is None:
        raise gold_error("multi_choice", answer, f"must be option letters such as 'A, C' (within {letters[-1]})")
    return found
