"""Tokens of a math answer (LaTeX or plain): string-level normalisation, the tokenizer and its vocabulary.

:func:`normalize_latex` turns LaTeX/unicode cosmetics into one spelling per operator and marks units
(``\\unit{..}``); :func:`tokenize` cuts the result into :class:`Tok` tokens for the parser of
:mod:`rd_eval.scoring.math_parse`; :func:`text_key` is the comparison key of an answer that is words.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from decimal import Decimal

__all__ = [
    "CONSTANTS",
    "FUNCTIONS",
    "UNIT_POWER",
    "UNIT_WORDS",
    "ParseError",
    "Tok",
    "normalize_latex",
    "text_key",
    "tokenize",
]


class ParseError(ValueError):
    """The string is not a math answer this parser understands."""


# ---------------------------------------------------------------------------------------------------------
# Normalisation (string level)

_UNICODE = {
    "\u2212": "-", "\u2013": "-", "\u2014": "-", "\u00d7": "*", "\u22c5": "*", "\u00b7": "*", "\u00f7": "/",
    "\u221a": "\\sqrt", "\u03c0": "\\pi", "\u221e": "\\infty", "\u2264": "<=", "\u2265": ">=", "\u2260": "!=",
    "\u222a": "\\cup", "\u00b1": "\\pm", "\u00b2": "^2", "\u00b3": "^3", "\u2248": "=", "\uff0c": ",",
    "\u00b0": "\\circ ", "\u63b3": "\\circ ", "\u00ba": "\\circ ",  # 掳: a mis-decoded degree sign (MathVerse)
}
_COMMANDS = [(re.compile(pattern), replacement) for pattern, replacement in [
    (r"\\[dt]frac", r"\\frac"),
    (r"\\[dt]binom", r"\\binom"),
    (r"\\(?:cdot|times|ast)(?![A-Za-z])", "*"),
    (r"\\div(?![A-Za-z])", "/"),
    (r"\\(?:leq|leqslant|le)(?![A-Za-z])", "<="),
    (r"\\(?:geq|geqslant|ge)(?![A-Za-z])", ">="),
    (r"\\(?:neq|ne)(?![A-Za-z])", "!="),
    (r"\\lt(?![A-Za-z])", "<"),
    (r"\\gt(?![A-Za-z])", ">"),
    (r"\\(?:approx|simeq|doteq|equiv)(?![A-Za-z])", "="),
    (r"\\(?:left|right|bigl|bigr|Bigl|Bigr|big|Big|displaystyle|textstyle)(?![A-Za-z])", ""),
    (r"\\(?:quad|qquad|hline|limits|nolimits)(?![A-Za-z])", " "),
    (r"\\[,;: ]", " "),
    (r"\\!", ""),
    (r"~", " "),
]]
# Brace-less arguments: \frac43, \frac 59, \frac{270}7, \frac9{19}, \sqrt2
_BRACELESS = [(re.compile(pattern), replacement) for pattern, replacement in [
    (r"\\frac\s*(\d)\s*(\d)", r"\\frac{\1}{\2}"),
    (r"\\frac\s*(\d)\s*(?=\{)", r"\\frac{\1}"),
    (r"\\frac\s*(\{[^{}]*\})\s*([0-9A-Za-z])", r"\\frac\1{\2}"),
    (r"\\sqrt\s*(\d)", r"\\sqrt{\1}"),
]]
_UNICODE_ROOT_RE = re.compile(r"\u221a\s*(\d+(?:\.\d+)?)")
_ESCAPED_BRACKET_RE = re.compile(r"\\[()\[\]]")
# A thousands separator between a digit and exactly three more: LaTeX ",\!", "{,}", "\," (thin space), "\ ";
# a no-break or thin space.
_THOUSANDS_SEP_RE = re.compile(r"(?<=\d)(?:,\\!\s*|\{,\}|\\[,;: ]|[\u00a0\u2009\u202f])(?=\d{3}(?!\d))")
_DEGREE_RE = re.compile(r"(?:\^\s*)?(?:\{\s*\\circ\s*\}|\\circ|\\degree)(?:\s*T(?![A-Za-z]))?")
_TEXT_GROUP_RE = re.compile(r"\\(?:text|textrm|textbf|textit|mathrm|mathbf|mathit|mbox|rm|operatorname)\s*\{([^{}]*)\}")
UNIT_POWER = r"(?:\s*\^\s*\{?\s*[23]\s*\}?)?"
UNIT_WORDS = frozenset(
    """mm cm dm m km um nm in inch inches ft foot feet yd yard yards mi mile miles g kg mg lb lbs oz ton tons
    s sec secs second seconds min mins minute minutes h hr hrs hour hours day days week weeks month months
    year years l ml cc unit units sq square cubic degree degrees deg rad radian radians meter meters metre
    metres centimeter centimeters centimetre centimetres kilometer kilometers kilometre kilometres millimeter
    millimeters gram grams kilogram kilograms liter liters litre litres mph kmh cent cents dollar dollars
    euro euros yuan pound pounds percent mile km/h m/s cm/s""".split()
)
# Names the tokenizer knows; any other letter run of 3+ letters is prose, not math.
FUNCTIONS = frozenset(
    "sin cos tan cot sec csc arcsin arccos arctan sinh cosh tanh ln log exp sqrt abs".split()
)
CONSTANTS = {"pi": "pi", "infty": "inf", "infinity": "inf", "inf": "inf"}
# Two-letter runs that are English words, not products of two variables ("it is 5" is prose, not i*t*i*s*5).
STOPWORDS = frozenset("is it in on at of to be by or an as we so if no do he me my up us am".split())
GREEK = frozenset(
    """alpha beta gamma delta epsilon varepsilon zeta eta theta vartheta iota kappa lambda mu nu xi rho sigma
    tau upsilon phi varphi chi psi omega Gamma Delta Theta Lambda Xi Sigma Phi Psi Omega""".split()
)


def _text_group(m: re.Match[str]) -> str:
    content = m.group(1).replace("~", " ").strip()
    word = content.lower().replace(" ", "")
    if not content:
        return " "
    if word in UNIT_WORDS or (content.isalpha() and len(content) >= 2 and word not in FUNCTIONS):
        return f" \\unit{{{content}}} "
    return f" {content} "


def normalize_latex(text: str) -> str:
    """LaTeX/unicode cosmetics out, one spelling for each operator; units become ``\\unit{..}`` markers."""
    s = _UNICODE_ROOT_RE.sub(r"\\sqrt{\1}", str(text))  # "√66" is the root of 66 (LaTeX's "\sqrt66" is 6√6)
    for k, v in _UNICODE.items():
        s = s.replace(k, v)
    s = s.replace("\\\\", " \\cr ")  # matrix row separator, before the one-backslash commands below
    s = s.replace("\\$", " ").replace("$", " ")
    latex = "\\" in s  # the LaTeX passes below are skipped for plain answers ("12", "x + 1"): speed
    if latex:
        s = _ESCAPED_BRACKET_RE.sub(" ", s)
    s = _THOUSANDS_SEP_RE.sub("", s)  # "10,\!080", "1{,}490", "1\,490": one number, not a list or a product
    if latex or "~" in s:
        for pattern, replacement in _COMMANDS:
            s = pattern.sub(replacement, s)
    if latex:
        s = _DEGREE_RE.sub(" ", s)
    s = s.replace("\\%", " ").replace("%", " ")
    if latex:
        for _ in range(2):  # \text{...} inside \frac{..}{\text{..}} etc.: two passes cover real answers
            s = _TEXT_GROUP_RE.sub(_text_group, s)
        for pattern, replacement in _BRACELESS:
            s = pattern.sub(replacement, s)
    return " ".join(s.split())


def text_key(text: str) -> str:
    """Comparison key of a short text answer: lower case, no LaTeX/markdown wrapping, canonical numbers."""
    s = _TEXT_GROUP_RE.sub(lambda m: f" {m.group(1)} ", str(text))
    s = s.replace("\\$", " ").replace("$", " ").replace("**", " ").replace("\\%", "%").replace("\\", " ")
    s = s.replace("{", " ").replace("}", " ").lower()
    s = " ".join(s.split()).strip(" \t\r\n.,;:!?\"'`*()[]")
    s = re.sub(r"^(?:the|a|an)\s+", "", s)

    def canon(m: re.Match[str]) -> str:
        value = Decimal(m.group(0)).normalize()
        return format(value, "f")

    s = re.sub(r"\d+(?:\.\d+)?", canon, s)
    return s.replace(" ", "")


# ---------------------------------------------------------------------------------------------------------
# Tokens and tree

@dataclass(frozen=True)
class Tok:
    kind: str  # num sym const func frac sqrt binom op lp rp rel comma cup pm unit word base row
    text: str
    decimals: int = 0
    sub: str = ""  # a function's subscript: the base of \\log_{2}


# Tree nodes are tuples: ("num", Fraction, decimals) ("sym", name) ("const", name) ("neg", a)
# ("add"/"sub"/"mul"/"div"/"pow", a, b) ("fact", a) ("func", name, a) ("abs", a)
# Answer-level: ("seq", open, close, items) ("union", parts) ("bag", items) ("rel", ops, parts) ("text", key)

_NUM_RE = re.compile(r"(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+(?![\d.]))?")


_LETTERS_RE = re.compile(r"[A-Za-z]+")
_COMMAND_RE = re.compile(r"\\([A-Za-z]+|\{|\}|\\)")


def tokenize(s: str) -> list[Tok]:
    toks: list[Tok] = []
    i, n = 0, len(s)
    while i < n:
        c = s[i]
        if c.isspace():
            i += 1
            continue
        m = _NUM_RE.match(s, i)
        if m and (c.isdigit() or (c == "." and i + 1 < n and s[i + 1].isdigit())):
            lit = m.group(0)  # "1.5e3" is one number; "2e" is 2 times e
            frac = lit.lower().split("e")[0]
            decimals = len(frac.split(".")[1]) if "." in frac else 0
            toks.append(Tok("num", lit, decimals))
            i += len(lit)
            if i < n and s[i] == "_":  # 52_8, 4210_{5}: a number in another base, kept as a name
                sub = re.match(r"_\s*\{?\s*(\d+)\s*\}?", s[i:])
                if sub:
                    toks[-1] = Tok("base", f"{lit}_{sub.group(1)}")
                    i += sub.end()
            continue
        if c.isascii() and c.isalpha():
            run = _LETTERS_RE.match(s, i).group(0)
            i += len(run)
            low = run.lower()
            if low in FUNCTIONS:
                i = _function_token(s, i, low, toks)
            elif low in CONSTANTS:
                toks.append(Tok("const", CONSTANTS[low]))
            elif len(run) <= 2 and low not in STOPWORDS:
                for ch in run:
                    toks.append(Tok("sym", ch))
                i = _subscript(s, i, toks)
            else:
                toks.append(Tok("word", run))
            continue
        if c == "\\":
            m = _COMMAND_RE.match(s, i)
            if not m:
                raise ParseError(f"stray backslash in {s!r}")
            name = m.group(1)
            i = m.end()
            if name == "{":
                toks.append(Tok("lp", "\\{"))
            elif name == "}":
                toks.append(Tok("rp", "\\}"))
            elif name in ("\\", "cr"):
                toks.append(Tok("row", "\\\\"))
            elif name == "frac":
                toks.append(Tok("frac", name))
            elif name == "sqrt":
                toks.append(Tok("sqrt", name))
            elif name == "binom":
                toks.append(Tok("binom", name))
            elif name in ("pm", "mp"):
                toks.append(Tok("pm", name))
            elif name == "cup":
                toks.append(Tok("cup", name))
            elif name == "in":
                toks.append(Tok("rel", "in"))
            elif name == "unit":
                m2 = re.match(r"\s*\{([^{}]*)\}", s[i:])
                i += m2.end() if m2 else 0
                toks.append(Tok("unit", m2.group(1) if m2 else ""))
            elif name in FUNCTIONS:
                i = _function_token(s, i, name, toks)
            elif name in CONSTANTS:
                toks.append(Tok("const", CONSTANTS[name]))
            elif name in GREEK:
                toks.append(Tok("sym", name))
                i = _subscript(s, i, toks)
            elif name in ("begin", "end"):
                m2 = re.match(r"\s*\{[a-zA-Z*]*\}", s[i:])
                i += m2.end() if m2 else 0
                toks.append(Tok("lp" if name == "begin" else "rp", "\\" + name))
            else:
                raise ParseError(f"unsupported command \\{name}")
            continue
        two = s[i:i + 2]
        if two in ("<=", ">=", "!="):
            toks.append(Tok("rel", two))
            i += 2
            continue
        if c in "=<>":
            toks.append(Tok("rel", c))
        elif c in "+-*/^!|&":
            toks.append(Tok("op", c))
        elif c in "([{":
            toks.append(Tok("lp", c))
        elif c in ")]}":
            toks.append(Tok("rp", c))
        elif c in ",;":
            toks.append(Tok("comma", ","))
        elif c == "'":
            toks.append(Tok("op", "'"))
        else:
            raise ParseError(f"unexpected character {c!r}")
        i += 1
    return toks


def _function_token(s: str, i: int, name: str, toks: list[Tok]) -> int:
    m = re.match(r"_\s*(?:\{([^{}]*)\}|([A-Za-z0-9]))", s[i:])
    sub = "" if m is None else (m.group(1) if m.group(1) is not None else m.group(2))
    toks.append(Tok("func", name, sub=sub.strip()))
    return i + (m.end() if m else 0)


def _subscript(s: str, i: int, toks: list[Tok]) -> int:
    """Glue ``_1`` / ``_{AB}`` onto the symbol just read: ``y_2`` is one name."""
    m = re.match(r"_\s*(?:\{([^{}]*)\}|([A-Za-z0-9]))", s[i:])
    if m:
        sub = (m.group(1) if m.group(1) is not None else m.group(2)).replace(" ", "")
        toks[-1] = Tok("sym", f"{toks[-1].text}_{sub}")
        return i + m.end()
    return i
