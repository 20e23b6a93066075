"""Where the final answer sits in a (possibly long, chain-of-thought) model response.

The rule, in order (the first that applies wins, and later rules are not consulted):

1. Reasoning is dropped: only the text after the last ``</think>`` counts, and inside
   ``<answer>...</answer>`` tags only the last tagged block counts.
2. ``\\boxed{...}`` (or ``\\fbox{...}``): the content of the last one, braces balanced.
3. An answer marker: the last "answer is / answer: / answers are / final answer: / correct answer is ..."
   (case-insensitive); the answer is the rest of that line (or the next non-empty line when the marker
   ends its line).
4. Otherwise there is no marked segment and each answer type falls back to its own "last" rule
   (the last number, the last option letter statement, the last line).

A segment is then cut into candidate spellings (:func:`segment_candidates`) so that "12 cm, since
7 + 5 = 12" yields "12 cm" before anything else.
"""

from __future__ import annotations

import re

__all__ = ["final_segment", "last_line", "math_spans", "segment_candidates", "strip_markup", "unwrap"]

_ANSWER_TAG_RE = re.compile(r"<answer>(.*?)(?:</answer>|$)", re.S | re.I)
_MARKER_RE = re.compile(
    r"(?:final\s+answer|correct\s+answer|best\s+answer|the\s+answer|my\s+answer|\banswers?"
    r"|(?:correct|right|final)\s+(?:options?|choices?))"
    r"(?:\s+(?:to|for)\s+(?:this|the)\s+(?:question|problem))?"
    r"\s*(?:is|are|would\s+be|should\s+be|will\s+be|=|:|\uff1a)\s*(?:that\s+)?(?::\s*)?",
    re.I,
)
_WRAP_RE = re.compile(r"\\(?:text|textbf|textit|textrm|mathrm|mathbf|mbox)\s*\{([^{}]*)\}")


def strip_markup(text: str) -> str:
    """Markdown emphasis out (``**B**`` -> ``B``); LaTeX is left for the math parser."""
    return str(text).replace("**", "").replace("__", "")


def _after_reasoning(response: str) -> tuple[str, bool]:
    """(the text that may hold the answer, whether it came from an ``<answer>`` tag)."""
    text = strip_markup(response)
    if "</think>" in text:
        text = text.rsplit("</think>", 1)[1]
    tags = _ANSWER_TAG_RE.findall(text)
    if tags and tags[-1].strip():
        return tags[-1], True
    return text, False


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
    bare = re.findall(r"\\boxed\s+([^\s$]+)", text)  # "\boxed 5"
    return bare[-1] if bare else None


def final_segment(response: str) -> tuple[str, str] | None:
    """(segment, how) for the marked final answer, ``how`` in {"boxed", "marker", "tag"}; None if unmarked."""
    text, tagged = _after_reasoning(response)
    boxed = _last_boxed(text)
    if boxed is not None:
        return boxed, "boxed"
    markers = list(_MARKER_RE.finditer(text))
    if markers:
        marker = markers[-1]
        rest = text[marker.end():]
        line, _, after = rest.partition("\n")
        if not line.strip():
            line = next((ln for ln in after.splitlines() if ln.strip()), "")
        if line.strip():
            return line.strip(), "marker"
    if tagged and text.strip():
        return text.strip(), "tag"
    return None


def last_line(response: str) -> str:
    """The last non-empty line of the response (after any reasoning block)."""
    lines = [ln.strip() for ln in _after_reasoning(response)[0].splitlines() if ln.strip()]
    return lines[-1] if lines else ""


_SPAN_RE = re.compile(r"\$\$(.+?)\$\$|\$(.+?)\$|\\\((.+?)\\\)|\\\[(.+?)\\\]", re.S)


def math_spans(text: str) -> list[str]:
    """LaTeX math spans (``$..$``, ``$$..$$``, ``\\(..\\)``, ``\\[..\\]``) that look like math, in order.

    A span must hold a digit or a LaTeX command and no word of three or more letters outside a command,
    so that two prices ("$5 and $6") are not read as one span.
    """
    out = []
    for m in _SPAN_RE.finditer(text):
        span = next(g for g in m.groups() if g is not None).strip()
        words = re.findall(r"(?<![\\A-Za-z])[A-Za-z]{3,}", span)
        if span and re.search(r"[\d\\]", span) and not words:
            out.append(span)
    return out


_CUT_RE = re.compile(r"(?:\.\s|,\s|;|\s(?:because|since|as|which|where|so|but|and\s+the|therefore)\s)", re.I)
_LAST_IS_RE = re.compile(r".*\b(?:is|are|be|equals|gives|becomes)\b\s*:?\s*(.+)$", re.I | re.S)


def unwrap(text: str) -> str:
    """``\\text{B}`` -> ``B``, ``$x$`` -> ``x``; trailing sentence punctuation and surrounding spaces out."""
    s = _WRAP_RE.sub(r"\1", text).strip().rstrip(".;:?").strip()
    s = re.sub(r"(?<=[^\d)\]}!])!+$", "", s).strip()  # "Yes!" loses its "!", a factorial "5!" keeps it
    if len(s) > 1 and s.startswith("$") and s.endswith("$") and "$" not in s.strip("$"):
        s = s.strip("$").strip()  # one math span: "$\frac{3}{4}$" -> "\frac{3}{4}"
    return s


def segment_candidates(segment: str) -> list[str]:
    """Spellings of an answer segment to try, most literal first: the whole segment, the segment cut at
    the first sentence/clause break, the last math span, the part after the last "is/are", the last
    clause, the part after the last "=", the part from the first digit/bracket on, without duplicates."""
    seg = unwrap(segment)
    out = [seg]
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
