"""Where the final answer sits in a (possibly long, chain-of-thought) model response.

The rule, in order (the first that applies wins, and later rules are not consulted):

1. Reasoning is dropped: only the text after the last ``</think>`` counts, and inside
   ``<answer>...</answer>`` tags only the last tagged block counts. A made-up follow-on question the model
   writes after it has answered ("Question 2: ...", "Q: ...", "Human: ...") is cut off with all after it.
2. ``\\boxed{...}`` (or ``\\fbox{...}``): the content of the last one, braces balanced (an unclosed last box
   gives the rest of its line).
3. An answer marker: the last "answer is / answer: / answers are / final answer: / correct answer is ..."
   (case-insensitive; a parenthesis may sit before the verb, "the answer (in cm) is"; also ``答案是`` /
   ``答案：`` and "Respuesta:", "Réponse :", "Antwort:"); the answer is the rest of that line, or the next
   non-empty line, or the display block (``$$ .. $$``, ``\\[ .. \\]``) that follows it. A marker inside an
   option's own text ("None of the other answers is correct") is no marker.
4. An unmarked answer stated first: a first line that is only a number, a letter or one math span, with
   an explanation after it ("12\\nBecause ...", "B, because ..."); two such lines are a list, not an answer.
5. Otherwise there is no marked segment and each answer type falls back to its own "last" rule
   (the last number, the last option letter statement, the last line or display block).

A refusal ("cannot be determined", "not enough information"; not one the sentence goes past: "cannot find
x directly, so ... = 4") and a hedge ("1490 or 1500", "$a$ or $b$", "either A or B", "if ..., (A); otherwise
(B)"), in the marked segment or, unmarked, in the last sentence, are no answer, unless the words are an
option's own text ("Insufficient information"):
:func:`final_segment` returns the empty segment with ``how`` "refusal" / "hedge", which every answer type
reads as nothing (and so as wrong).

A segment is then cut into candidate spellings (:func:`segment_candidates`) so that "12 cm, since
7 + 5 = 12" yields "12 cm" before anything else.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from decimal import Decimal

__all__ = [
    "Located",
    "final_segment",
    "last_line",
    "locate_answer",
    "math_spans",
    "segment_candidates",
    "strip_markup",
    "unwrap",
]

_ANSWER_TAG_RE = re.compile(r"<answer>(.*?)(?:</answer>|$)", re.S | re.I)
_MARKER_RE = re.compile(
    r"(?:(?:final\s+answer|correct\s+answer|best\s+answer|the\s+answer|my\s+answer|\banswers?"
    r"|(?:correct|right|final)\s+(?:options?|choices?))"
    r"(?:\s+(?:to|for)\s+(?:this|the)\s+(?:question|problem))?"
    r"(?:\s*\([^()\n]{2,40}\))?"  # "the answer (arabic numerals) is 7"; not "answer (A) is"
    r"\s*(?:is|are|would\s+be|should\s+be|will\s+be|=|:|\uff1a)\s*(?:that\s+)?(?::\s*)?"
    r"|(?:最终|正确)?答案\s*(?:应该是|应为|是|为|[:\uff1a])\s*[:\uff1a]?\s*"
    r"|\b(?:respuesta|r[ée]ponse|antwort|risposta|resposta)(?:\s+(?:final|finale|correcta))?\s*[:\uff1a]\s*)",
    re.I,
)
# A header the model writes to start a question of its own after answering (cut off, with all after it).
_FOLLOW_ON_RE = re.compile(
    r"^[ \t]*(?:#+[ \t]*)?(?:question|problem|exercise|human|user|q)(?:[ \t]*\d+)?[ \t]*(?:[:.\uff1a]|$)",
    re.I | re.M,
)
_REFUSAL_RE = re.compile(
    r"\b(?:cannot|can\s?not|can't|unable\s+to|impossible\s+to|not\s+possible\s+to|no\s+way\s+to)\s+"
    r"(?:be\s+)?(?:determined?|calculated?|computed?|found|find|answer(?:ed)?|tell|know|decided?)\b"
    r"|\b(?:not\s+enough|insufficient)\s+(?:information|data|info)\b|\bundeterminable\b"
    r"|无法(?:确定|判断|计算|得出)",
    re.I,
)
# After "cannot determine x directly", these words go on to an answer: "..., so we use ... = 4" is no refusal.
_GOES_ON_RE = re.compile(r"\b(?:so|therefore|thus|hence|instead|but|however)\b|=", re.I)
_CONDITIONAL_HEDGE_RE = re.compile(r"\bif\b.*\b(?:otherwise|if\s+not|else)\b", re.I | re.S)
# Only in the answer itself: "either A or B" before a marker ("using either the formula or the graph") is no hedge.
_ALTERNATIVES_RE = re.compile(r"\beither\b.*\bor\b|\bdepending\s+on\b", re.I | re.S)
_PLAIN_NUMBER = r"[-\u2212]?\d[\d,]*(?:\.\d+)?"
# "1490 or 1500": two plain numbers (a unit or % may follow the first) offered as alternatives.
_NUMBER_HEDGE_RE = re.compile(
    rf"(?<![\w.^/])({_PLAIN_NUMBER})\s*(%)?\s*(?:[a-z]{{1,8}}\s+)?\bor\s+(?:maybe\s+|perhaps\s+)?(?:[a-z]\s*=\s*)?"
    rf"({_PLAIN_NUMBER})"
    r"(?![\d/.^]*\d)(?!\s*[/^*])(\s*%)?",
    re.I,
)
# Where an answer's explanation starts: "X, because ...", "X. The other options ...".
_CONNECTOR_RE = re.compile(r",?\s+(?:because|since|as|which|so|therefore)\s|(?<!^\d)(?<!^\d\d)(?<!\s)\.\s+(?=[A-Z])")
# "$y=x+2$ or $y=x+3$": two different math spans offered as alternatives.
_SPAN_HEDGE_RE = re.compile(r"\$([^$\n]+)\$\s*,?\s*\bor\s+\$([^$\n]+)\$")
_SENTENCE_END_RE = re.compile(r"(?<=[.!?\u3002])\s+")
# An unmarked first line that is only an answer: a number, an option letter, or one math span.
_LEAD_RE = re.compile(
    r"[\(\[]?[A-Z][\)\]]?\.?|[-\u2212]?\$?\d[\d,]*(?:\.\d+)?\s*%?\.?"
    r"|\$[^$\n]{1,60}\$\.?|\\\([^\n]{1,60}\\\)\.?"
)
# A line that explains the line before it: that line was the answer.
_EXPLAINS_RE = re.compile(r"(?:because|explanation|reason(?:ing)?|justification|this is because|here'?s why)\b", re.I)
_WORD_RE = re.compile(r"(?<![\\A-Za-z])[A-Za-z]{3,}")
_ONE_VARIABLE_RE = re.compile(r"[A-Za-z](?:_\{?\w+\}?)?\s*=\s*[^=]+")
_WRAP_RE = re.compile(r"\\(?:text|textbf|textit|textrm|mathrm|mathbf|mbox)\s*\{([^{}]*)\}")


def strip_markup(text: str) -> str:
    """Markdown emphasis out (``**B**`` -> ``B``); LaTeX is left for the math parser."""
    return str(text).replace("**", "").replace("__", "")


def _has_mark(text: str) -> bool:
    return bool(re.search(r"\\(?:boxed|fbox)\s*\{", text) or _MARKER_RE.search(text))


def _before_follow_on(text: str) -> str:
    """The text before a made-up follow-on question, when an answer was marked before it."""
    for m in _FOLLOW_ON_RE.finditer(text):
        if m.start() > 0 and _has_mark(text[: m.start()]):
            return text[: m.start()]
    return text


def _after_reasoning(response: str) -> tuple[str, bool]:
    """(the text that may hold the answer, whether it came from an ``<answer>`` tag)."""
    text = strip_markup(response)
    if "</think>" in text:
        text = text.rsplit("</think>", 1)[1]
    tags = _ANSWER_TAG_RE.findall(text)
    if tags and tags[-1].strip():
        return tags[-1], True
    return _before_follow_on(text), False


def _last_boxed(text: str) -> str | None:
    starts = [m.end() for m in re.finditer(r"\\(?:boxed|fbox)\s*\{", text)]
    for start in reversed(starts):
        depth = 1
        for j in range(start, len(text)):
            if text[j] == "{":
                depth += 1
            elif text[j] == "}":
                depth -= 1
                if depth == 0:
                    content = text[start:j].strip()
                    if content:
                        return content
                    break
        else:  # never closed ("\boxed{D."): the rest of its line
            content = text[start:].split("\n", 1)[0].strip()
            if content:
                return content
    bare = re.findall(r"\\boxed\s+([^\s$]+)", text)  # "\boxed 5"
    return bare[-1] if bare else None


_OPENERS = {"$$": "$$", "\\[": "\\]"}


def _block_from(lines: list[str]) -> str:
    """The first non-empty line, or the content of the display block that opens there."""
    rest = [ln.strip() for ln in lines if ln.strip()]
    if not rest:
        return ""
    closer = _OPENERS.get(rest[0])
    if closer is None:
        return rest[0]
    body = []
    for ln in rest[1:]:
        if ln == closer:
            break
        body.append(ln)
    return " ".join(body)


def _masked_spans(text: str, options: tuple[str, ...]) -> list[tuple[int, int]]:
    """Where an option whose own text holds a marker ("None of the other answers is correct") occurs."""
    spans: list[tuple[int, int]] = []
    lowered = text.lower()
    if len(lowered) != len(text):  # a letter whose lower case is longer ("İ"): positions would not line up
        return spans
    for option in options:
        key = " ".join(str(option).split()).lower().rstrip(" .")
        if key and _MARKER_RE.search(key):
            start = lowered.find(key)
            while start >= 0:
                spans.append((start, start + len(key)))
                start = lowered.find(key, start + 1)
    return spans


def _marker_segment(text: str, options: tuple[str, ...]) -> tuple[str, str] | None:
    """(the answer after the last marker, the sentence before that marker: "If ..., the answer is")."""
    masked = _masked_spans(text, options) if options else []
    markers = [m for m in _MARKER_RE.finditer(text) if not any(a <= m.start() < b for a, b in masked)]
    if not markers:
        return None
    start = markers[-1].start()
    sentence_start = max(text.rfind(". ", 0, start), text.rfind("\n", 0, start)) + 1
    context = text[sentence_start:start]
    rest = text[markers[-1].end() :]
    line, _, after = rest.partition("\n")
    if line.strip() in _OPENERS:
        line, after = "", rest
    segment = line.strip() or _block_from(after.splitlines())
    return (segment, context) if segment else None


def _mathy(line: str) -> bool:
    """Only math: a digit or a LaTeX command, no word of three letters or more outside a command."""
    return len(line) <= 60 and bool(re.search(r"[\d\\]", line)) and not _WORD_RE.search(line)


def _is_lead(line: str) -> bool:
    """A line that is only an answer: a number, a letter, one math span, or short bare math whose "=" (if any)
    names one variable ("x = 4", not the working "2x + 3 = 7")."""
    if _LEAD_RE.fullmatch(line):
        return True
    return len(line) <= 40 and _mathy(line) and ("=" not in line or bool(_ONE_VARIABLE_RE.fullmatch(line)))


def _lead_segment(text: str) -> str | None:
    """A first line that is only an answer, with an explanation after it ("12\\nBecause ...", "B, because ...")."""
    lines = [ln.strip().strip("# ") for ln in text.strip().splitlines() if ln.strip()]
    if not lines:
        return None
    head = _CONNECTOR_RE.split(lines[0], maxsplit=1)
    if len(head) > 1 and _is_lead(head[0].strip()):
        return head[0].strip()
    if len(lines) < 2:
        return None
    if _is_lead(lines[0]) and not (_LEAD_RE.fullmatch(lines[1]) or _mathy(lines[1])):
        return lines[0]  # (a second bare line would make it a list, "A.\\nB.", or working, not an answer)
    if len(lines[0]) <= 100 and lines[0][-1] not in ".?!:" and _EXPLAINS_RE.match(lines[1]):
        return lines[0]  # "g(x)=(x+2)^2+1\\nBecause ...": what the next line explains is the answer
    return None


@dataclass(frozen=True)
class Located:
    """Where a response's answer was found: ``segment`` (empty for a refusal or hedge), ``how`` it was found
    ("boxed", "marker", "tag", "lead", "refusal", "hedge", or "" when unmarked) and the ``raw`` text judged
    a refusal/hedge (so that an option whose text is "Cannot be determined" can still be matched)."""

    segment: str | None
    how: str
    raw: str = ""


def _flag(text: str, context: str = "") -> str | None:
    """ "refusal" when ``text`` refuses, "hedge" when it (or the sentence around its marker) hedges, else None."""
    head = re.split(r";|\s(?:because|since)\s", text, maxsplit=1)[0]
    refusal = _REFUSAL_RE.search(head)
    if refusal and not _GOES_ON_RE.search(text, refusal.end()):
        return "refusal"
    if _CONDITIONAL_HEDGE_RE.search(context + text) or _ALTERNATIVES_RE.search(text):
        return "hedge"
    if _MARKER_RE.search(context) and re.search(r"\bif\b", context, re.I):
        return "hedge"  # "the answer is B; if it is not, the answer is A": two answers under a condition
    for m in _NUMBER_HEDGE_RE.finditer(text):
        first, second = (
            Decimal(m.group(i).replace(",", "").replace("\u2212", "-")) / (100 if m.group(i + 1) else 1) for i in (1, 3)
        )
        if first != second:  # "6 or 6.0", "10% or 0.1" restate one number
            return "hedge"
    if any(m.group(1).strip() != m.group(2).strip() for m in _SPAN_HEDGE_RE.finditer(text)):
        return "hedge"
    return None


def _without_flagged_options(text: str, options: tuple[str, ...]) -> str:
    """``text`` with the options whose own words refuse or hedge ("Insufficient Information", "either C or D")
    blanked out, so that naming such an option is an answer."""
    for option in options:
        key = " ".join(str(option).split()).lower()
        if not key or _flag(key) is None or len(text.lower()) != len(text):
            continue
        start = text.lower().find(key)
        while start >= 0:  # str.find, not a regex built per response
            text = text[:start] + " " * len(key) + text[start + len(key) :]
            start = text.lower().find(key, start + len(key))
    return text


def locate_answer(response: str, options: tuple[str, ...] = ()) -> Located:
    """The marked final answer (rules 1-4 of the module docstring), a refusal/hedge, or unmarked."""
    text, tagged = _after_reasoning(response)
    found: tuple[str, str] | None = None
    context = ""
    boxed = _last_boxed(text)
    if boxed is not None:
        found = (boxed, "boxed")
    else:
        marked = _marker_segment(text, options)
        if marked is not None:
            found = (marked[0], "marker")
            context = marked[1]
        elif tagged and text.strip():
            found = (text.strip(), "tag")
        else:
            lead = _lead_segment(text)
            if lead is not None:
                found = (lead, "lead")
    if found is not None:
        flag = _flag(_without_flagged_options(found[0], options), _without_flagged_options(context, options))
        return Located(found[0], found[1]) if flag is None else Located("", flag, found[0])
    sentence = _without_flagged_options(_SENTENCE_END_RE.split(_last_line_of(text))[-1], options)
    flag = _flag(sentence)
    if flag == "hedge" and ";" in sentence and _flag(sentence.rsplit(";", 1)[1]) is None:
        flag = None  # "between 10 or 12 came; the chart says 12": the last clause settles it
    return Located(None, "") if flag is None else Located("", flag, sentence)


def final_segment(response: str) -> tuple[str, str] | None:
    """(segment, how) for the marked final answer, ``how`` in {"boxed", "marker", "tag", "lead"}, or
    ("", "refusal"/"hedge") for an answer that is none; None if unmarked (see :func:`locate_answer`)."""
    located = locate_answer(response)
    return None if located.segment is None else (located.segment, located.how)


def _last_line_of(text: str) -> str:
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    if not lines:
        return ""
    if lines[-1] in ("$$", "\\]"):  # a display block closes the response: its content
        opener = "$$" if lines[-1] == "$$" else "\\["
        for i in range(len(lines) - 2, -1, -1):
            if lines[i] == opener:
                return " ".join(lines[i + 1 : -1])
    return lines[-1]


def last_line(response: str) -> str:
    """The last non-empty line of the response (after any reasoning block); a closing display block whole."""
    return _last_line_of(_after_reasoning(response)[0])


_SPAN_RE = re.compile(r"\$\$(.+?)\$\$|\$(.+?)\$|\\\((.+?)\\\)|\\\[(.+?)\\\]", re.S)


def math_spans(text: str) -> list[str]:
    """LaTeX math spans (``$..$``, ``$$..$$``, ``\\(..\\)``, ``\\[..\\]``) that look like math, in order.

    A span must hold a digit or a LaTeX command and no word of three or more letters outside a command,
    so that two prices ("$5 and $6") are not read as one span.
    """
    out = []
    for m in _SPAN_RE.finditer(text):
        span = next(g for g in m.groups() if g is not None).strip()
        if span and re.search(r"[\d\\]", span) and not _WORD_RE.search(span):
            out.append(span)
    return out


_CUT_RE = re.compile(r"(?:\.\s|,\s|;|\s(?:because|since|as|which|where|so|but|and\s+the|therefore)\s)", re.I)
_LAST_IS_RE = re.compile(r".*\b(?:is|are|be|equals|gives|becomes)\b\s*:?\s*(.+)$", re.I | re.S)


def unwrap(text: str) -> str:
    """``\\text{B}`` -> ``B``, ``$x$`` -> ``x``; trailing sentence punctuation and surrounding spaces out."""
    s = _WRAP_RE.sub(r"\1", text).strip().rstrip(".;:?\u3002").strip()
    s = re.sub(r"(?<=[^\d)\]}!])!+$", "", s).strip()  # "Yes!" loses its "!", a factorial "5!" keeps it
    if len(s) > 1 and s.startswith("$") and s.endswith("$") and "$" not in s.strip("$"):
        s = s.strip("$").strip()  # one math span: "$\frac{3}{4}$" -> "\frac{3}{4}"
    return s


def segment_candidates(segment: str) -> list[str]:
    """Spellings of an answer segment to try, most literal first: the whole segment, the segment cut at
    the first sentence/clause break, the last math span, the part after the last "is/are", the last
    clause, the part after the last "=", the part from the first digit/bracket on, without duplicates."""
    seg = unwrap(segment)
    out = [seg, unwrap(_CONNECTOR_RE.split(seg, maxsplit=1)[0])]  # "(3, 5), because ..." before any comma cut
    cut = _CUT_RE.split(seg + " ", maxsplit=1)[0]
    out.append(unwrap(cut))
    spans = math_spans(seg)
    if spans:
        out.append(unwrap(spans[-1]))
    m = _LAST_IS_RE.match(seg)
    if m:
        out.append(unwrap(m.group(1)))
        out.append(unwrap(_CUT_RE.split(m.group(1) + " ", maxsplit=1)[0]))
    out.append(unwrap(re.split(r",\s|;", seg)[-1]))
    if "=" in seg:
        out.append(unwrap(seg.rsplit("=", 1)[1]))
    m = re.search(r"[-\d(\[\\]", seg)  # "bearing 053° T" -> "053° T": leading words out
    if m and m.start() > 0:
        out.append(unwrap(seg[m.start():]))
    seen: list[str] = []
    for c in out:
        if c and c not in seen:
            seen.append(c)
    return seen
