"""Safe parsing and equivalence of math answers (LaTeX or plain) for rule-based scoring.

A small hand-written tokenizer and recursive-descent parser turns an answer such as ``\\frac{3}{4}``,
``2\\sqrt{13}``, ``(-\\infty, 0]``, ``x \\in [-2,7]``, ``\\frac{y^2}{16}-\\frac{x^2}{25}=1`` or
``Area $=9.4 \\mathrm{~cm}^{2}$`` into a tree; nothing is ever passed to ``eval``. Two answers are
equivalent when their trees agree numerically: constants are evaluated (complex arithmetic, so ``6-5i``
works), expressions with variables are evaluated at a few fixed pseudo-random points, equations and
inequalities compare ``lhs - rhs`` up to a constant factor. Evaluation is bounded (input length, nesting,
exponent size, factorial size), so no comparison can hang.

One value however it is written: a ratio ``5:12`` is 5/12 (``5:00`` is a time, not a ratio), ``2 1/2`` a mixed
number, ``\\binom{12}{4}`` 495, ``1{,}490`` and ``1\\,490`` one number; ``18 (3 * 6)`` is 18 (a bracket after an
answer that equals it is its working, not a factor); a unit in another script (``4.40米``) goes like ``cm``. Each
item of a list may hold one ``\\pm`` (``\\{1\\pm\\sqrt{5},-2\\}`` is three values).

Numbers compare by the one rule of :mod:`rd_eval.scoring.closeness`, shared with "number" answers: a decimal
gold ``8.246`` accepts anything that rounds (half-up) to it at its places (``8.2462``, ``\\sqrt{68}``), a response
``4.67`` (2 or more decimals) for an exact gold ``\\frac{14}{3}`` counts when it is the gold rounded to those
decimals, and ``precision`` / ``abs_tolerance`` replace those when a benchmark fixes its own rule.
"""

from __future__ import annotations

import cmath
import math
import random
import re
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from fractions import Fraction

from rd_eval.scoring.closeness import check_abs_tolerance, numbers_agree
from rd_eval.scoring.math_tokens import (
    CONSTANTS,
    FUNCTIONS,
    UNIT_POWER,
    UNIT_WORDS,
    ParseError,
    Tok,
    normalize_latex,
    text_key,
    tokenize,
)

__all__ = [
    "MathAnswer",
    "ParseError",
    "answers_equivalent",
    "constant_value",
    "normalize_latex",
    "parse_answer",
    "text_key",
]

MAX_INPUT = 400  # characters: longer "answers" are not parsed (they are prose)
MAX_DEPTH = 60
MAX_EXPONENT = 2000.0
MAX_LITERAL_EXPONENT = 400  # a written number beyond 1e400 is no answer (and would be slow to make exact)
MAX_BINOM = 1000  # \binom{1000}{500} still fits a float
EXACT_TOL = 1e-9
SAMPLE_POINTS = 5

_ATOM_START = ("num", "sym", "const", "func", "frac", "sqrt", "binom", "base")


class _Parser:
    def __init__(self, toks: list[Tok]):
        self.toks = toks
        self.i = 0
        self.depth = 0

    def peek(self, k: int = 0) -> Tok | None:
        j = self.i + k
        return self.toks[j] if j < len(self.toks) else None

    def take(self) -> Tok:
        tok = self.peek()
        if tok is None:
            raise ParseError("unexpected end")
        self.i += 1
        return tok

    def expect(self, kind: str, text: str | None = None) -> Tok:
        tok = self.take()
        if tok.kind != kind or (text is not None and tok.text != text):
            raise ParseError(f"expected {text or kind}, got {tok.text!r}")
        return tok

    def at(self, kind: str, text: str | None = None) -> bool:
        tok = self.peek()
        return tok is not None and tok.kind == kind and (text is None or tok.text == text)

    # answer := group (rel group)*
    def answer(self):
        parts = [self.group()]
        ops = []
        while self.at("rel"):
            ops.append(self.take().text)
            parts.append(self.group())
        if self.peek() is not None:
            raise ParseError(f"trailing {self.peek().text!r}")
        if not ops:
            return parts[0]
        return ("rel", tuple(ops), tuple(parts))

    def group(self):
        items = [self.union()]
        while self.at("comma"):
            self.take()
            items.append(self.union())
        return items[0] if len(items) == 1 else ("bag", tuple(items))

    def union(self):
        parts = [self.expr()]
        while self.at("cup"):
            self.take()
            parts.append(self.expr())
        if len(parts) == 1:
            return parts[0]
        if not all(p[0] in ("seq", "bag") for p in parts):
            raise ParseError("\\cup joins intervals or sets only")
        return ("union", tuple(parts))

    def expr(self):
        self.depth += 1
        if self.depth > MAX_DEPTH:
            raise ParseError("too deeply nested")
        node = self.term()
        while self.at("op", "+") or self.at("op", "-") or self.at("pm"):
            op = self.take().text
            kind = {"+": "add", "-": "sub", "pm": "pm", "mp": "mp"}[op]
            node = (kind, _arith(node), _arith(self.term()))
        self.depth -= 1
        return node

    def term(self):
        node = self.unary()
        while True:
            tok = self.peek()
            if tok is None:
                return node
            if tok.kind == "op" and tok.text in "*/":
                self.take()
                right = self.unary()
                node = ("mul" if tok.text == "*" else "div", _arith(node), _arith(right))
            elif tok.kind == "num" and _unsigned(node)[0] == "num":
                node = self.mixed_number(node)
            elif tok.kind == "frac" and _is_int_literal(node):
                frac = self.postfix()
                if frac[0] == "div" and _is_int_literal(frac[1]) and _is_int_literal(frac[2]):
                    node = ("add", node, frac)  # 1\frac{4}{5}: a mixed number
                else:
                    node = ("mul", node, _arith(frac))
            elif tok.kind in _ATOM_START or (tok.kind == "lp" and tok.text in ("(", "{", "\\begin")):
                right = self.power()
                node = ("mul", _arith(node), _arith(right))
            elif tok.kind == "unit":
                self.take()
                self.skip_unit_power()
                while self.at("op") and self.peek().text in "*/" and self.peek(1) is not None \
                        and self.peek(1).kind == "unit":  # a compound unit: km / h, kg * m/s
                    self.i += 2
                    self.skip_unit_power()
            else:
                return node

    def mixed_number(self, whole):
        """``2 1/2`` is 2.5 (``-2 1/2`` is -2.5); two numbers side by side are no product ("1 490" is not 490)."""
        num, slash, den = self.peek(), self.peek(1), self.peek(2)
        if not (_is_int_literal(_unsigned(whole)) and num.decimals == 0 and slash is not None and slash.text == "/"
                and den is not None and den.kind == "num" and den.decimals == 0):
            raise ParseError(f"two numbers side by side: {num.text!r} after a number")
        self.i += 3
        frac = ("div", self.atom_of(num), self.atom_of(den))
        if whole[0] == "neg":
            return ("neg", ("add", whole[1], frac))
        return ("add", whole, frac)

    @staticmethod
    def atom_of(tok: Tok):
        value = Decimal(tok.text)
        if abs(value.adjusted()) > MAX_LITERAL_EXPONENT:  # "1e99999999" would build a 100-million-digit integer
            raise ParseError(f"number {tok.text!r} is out of range")
        return ("num", Fraction(value), tok.decimals)

    def skip_unit_power(self) -> None:
        if self.at("op", "^") and self.peek(1) is not None and self.peek(1).kind in ("num", "lp"):
            save = self.i
            self.take()
            arg = self.atom()
            if not (arg[0] == "num" and arg[1] in (2, 3)):
                self.i = save

    def unary(self):
        if self.at("pm"):  # "\\pm 7": both 7 and -7
            return ("pm" if self.take().text == "pm" else "mp", ("num", Fraction(0), 0), _arith(self.unary()))
        if self.at("op", "-"):
            self.take()
            return ("neg", _arith(self.unary()))
        if self.at("op", "+"):
            self.take()
            return self.unary()
        return self.power()

    def power(self):
        base = self.postfix()
        if self.at("op", "^"):
            self.take()
            if self.at("op", "-") or self.at("op", "+"):
                sign = self.take().text
                exp = self.power()
                exp = ("neg", _arith(exp)) if sign == "-" else exp
            else:
                exp = self.power()
            return ("pow", _arith(base), _arith(exp))
        return base

    def postfix(self):
        node = self.atom()
        while self.at("op", "!"):
            self.take()
            node = ("fact", _arith(node))
        return node

    def atom(self):
        tok = self.take()
        if tok.kind == "num":
            return self.atom_of(tok)
        if tok.kind == "base":
            return ("sym", tok.text)
        if tok.kind == "sym":
            return ("sym", tok.text)
        if tok.kind == "const":
            return ("const", tok.text)
        if tok.kind == "frac":
            num = self.braced()
            den = self.braced()
            return ("div", _arith(num), _arith(den))
        if tok.kind == "binom":
            return ("binom", _arith(self.braced()), _arith(self.braced()))
        if tok.kind == "sqrt":
            index = None
            if self.at("lp", "["):
                self.take()
                index = self.expr()
                self.expect("rp", "]")
            arg = _arith(self.braced())
            if index is None:
                return ("func", "sqrt", arg)
            return ("pow", arg, ("div", ("num", Fraction(1), 0), _arith(index)))
        if tok.kind == "func":
            return self.function(tok.text, tok.sub)
        if tok.kind == "op" and tok.text == "|":
            inner = self.expr()
            self.expect("op", "|")
            return ("abs", _arith(inner))
        if tok.kind == "lp":
            return self.bracketed(tok.text)
        raise ParseError(f"unexpected {tok.text!r}")

    def braced(self):
        """A LaTeX argument: ``{...}`` or a single token."""
        if self.at("lp", "{"):
            self.take()
            node = self.expr()
            self.expect("rp", "}")
            return node
        return self.postfix()

    def function(self, name: str, sub: str = ""):
        base = None
        power = None
        if sub:
            if name != "log":
                raise ParseError(f"subscript on \\{name}")
            base = _arith(_Parser(tokenize(sub)).answer())
        if self.at("op", "^"):
            self.take()
            power = self.postfix()
        if self.at("lp", "(") or self.at("lp", "{"):
            arg = self.postfix()
        else:
            arg = self.power()
        node = ("func", name, _arith(arg))
        if base is not None:
            node = ("div", node, ("func", "ln", base))
        if power is not None:
            if power == ("neg", ("num", Fraction(1), 0)):
                raise ParseError("inverse function notation")
            node = ("pow", node, _arith(power))
        return node

    def bracketed(self, opener: str):
        if opener == "\\begin":  # matrix: rows split by \\, cells by &
            rows = []
            cells = []
            while not self.at("rp", "\\end"):
                cells.append(_arith(self.expr()))
                if self.at("op", "&"):
                    self.take()
                elif self.at("row"):
                    self.take()
                    rows.append(tuple(cells))
                    cells = []
            self.take()
            if cells:
                rows.append(tuple(cells))
            if rows and all(len(r) == 1 for r in rows):
                return ("seq", "(", ")", tuple(r[0] for r in rows))  # a column vector reads as a tuple
            return ("seq", "[", "]", tuple(("seq", "(", ")", r) for r in rows))
        items = [self.expr()]
        while self.at("comma"):
            self.take()
            items.append(self.expr())
        close = self.take()
        if close.kind != "rp":
            raise ParseError(f"expected a closing bracket, got {close.text!r}")
        pairs = {"(": ")", "[": "]", "{": "}", "\\{": "\\}"}
        if opener == "\\{":
            if close.text != "\\}":
                raise ParseError("unbalanced set braces")
            return ("bag", tuple(items))
        if len(items) == 1:
            if close.text != pairs[opener]:
                raise ParseError("unbalanced brackets")
            return items[0]
        if opener == "{" or close.text not in (")", "]"):
            raise ParseError("unbalanced brackets")
        return ("seq", opener, close.text, tuple(_arith(x) for x in items))


def _is_int_literal(node) -> bool:
    return node[0] == "num" and node[2] == 0 and node[1].denominator == 1


def _unsigned(node):
    return node[1] if node[0] == "neg" else node


def _arith(node):
    """Arithmetic operands must be scalars, not tuples, intervals or lists."""
    if node[0] in ("seq", "bag", "union", "rel", "text"):
        raise ParseError("a tuple or list cannot be an operand")
    return node


# ---------------------------------------------------------------------------------------------------------
# Answers: labels, ± expansion, units

_LABEL_RE = re.compile(
    r"^\s*(?P<label>(?:[A-Za-z][A-Za-z ]{0,40}?|\\unit\{[^{}]*\}\s*)(?:_\{?[A-Za-z0-9]+\}?)?"
    r"(?:\s*\(\s*[A-Za-z](?:\s*,\s*[A-Za-z])*\s*\))?)\s*(?P<op>=|\\in(?![A-Za-z]))\s*(?P<rest>.*)$",
    re.S,
)
_FILLER_RE = re.compile(
    r"^\s*(?:(?:is|are|be|equals?|equal\s+to|of|approximately|approx\.?|about|around|roughly|nearly|exactly|"
    r"only|just|then|thus|so|therefore|hence|final|answer|result|value)(?![A-Za-z])\s*:?\s*|:\s*)+",
    re.I,
)


@dataclass(frozen=True)
class MathAnswer:
    """A parsed answer: the value(s) it states and, for equations/inequalities, the relation."""

    source: str
    values: tuple  # candidate value trees (a chain "y = a = b" gives a and b)
    relation: tuple | None  # ("rel", ops, parts) when the answer is an equation or inequality
    text: str  # text_key of the source, for answers that are words
    trailing: tuple | None = None  # the constant after the last "=" of an equation ("sin a = 4/5")
    exact: tuple | None = None  # the constant before an "≈" ("12\\sqrt{3} \\approx 20.8"): the answer before rounding

    @property
    def is_text(self) -> bool:
        return not self.values and self.relation is None


# Words in another script (Chinese, Japanese, Korean, Cyrillic) are never math: a trailing run is a unit ("4.40米").
_FOREIGN_UNIT_RE = re.compile(
    r"\s*[\u0400-\u04ff\u3040-\u30ff\u3400-\u9fff\uac00-\ud7af]+" + UNIT_POWER + r"\s*[\u3002.]?\s*$"
)


_TRAILING_WORD_RE = re.compile(r"(?:\s|(?<=[\d)}]))([A-Za-z]+(?:/[A-Za-z]+)?)" + UNIT_POWER + r"\s*\.?\s*$")
_DANGLING_PER_RE = re.compile(r"\s*(?:/|\*|\bper)$")


def _strip_trailing_units(s: str) -> str:
    """``56.55 units^3`` -> ``56.55``; ``9.4 square centimeters`` -> ``9.4``; ``12 apples`` -> ``12``; ``12 厘米``
    -> ``12``.

    Up to three trailing words go, but only when what is left is a constant.
    """
    s = _FOREIGN_UNIT_RE.sub("", s).rstrip() or s
    cur = s
    for _ in range(3):
        m = _TRAILING_WORD_RE.search(cur)
        if not m:
            return s
        word = m.group(1)
        low = word.lower()
        if low in FUNCTIONS or low in CONSTANTS or not (low in UNIT_WORDS or len(word) >= 3 or word == "T"):
            return s
        cur = _DANGLING_PER_RE.sub("", cur[: m.start()].rstrip())  # "60 km / h", "5 meters per second"
        if not cur:
            return s
        try:
            node = _Parser(tokenize(cur)).answer()
        except (ParseError, RecursionError, ZeroDivisionError, InvalidOperation):
            continue
        if node[0] != "rel" and not _free_symbols(node):
            return cur
    return s


def _split_label(s: str) -> tuple[str | None, str, str]:
    """(label, op, rest) for ``Area = 9.4``, ``g(x)=..``, ``x \\in [..]``; (None, "", s) otherwise."""
    m = _LABEL_RE.match(s)
    if not m:
        return None, "", s
    label = m.group("label").strip()
    words = re.findall(r"[A-Za-z]+", re.sub(r"\\unit\{([^{}]*)\}", r"\1", label))
    if any(w.lower() in FUNCTIONS for w in words) or not m.group("rest").strip():
        return None, "", s
    return label, m.group("op"), m.group("rest")


_LEADING_EQUALS_RE = re.compile(r"^\s*(?:=|:)\s*")
_LEADING_WORD_RE = re.compile(r"^\s*[A-Za-z:]")
_THOUSANDS_RE = re.compile(r"^-?\d{1,3}(?:,\d{3})+(?:\.\d+)?$")


def parse_answer(text: str) -> MathAnswer:
    """Parse a gold or extracted answer; words that are not math give a text-only answer."""
    source = str(text)
    key = text_key(source)
    if len(source) > MAX_INPUT:
        return MathAnswer(source, (), None, key)
    s = normalize_latex(source)
    s = s.strip().rstrip(".").strip()
    s = _LEADING_EQUALS_RE.sub("", s)
    s = _FILLER_RE.sub("", s) if _LEADING_WORD_RE.match(s) else s
    if not s:
        return MathAnswer(source, (), None, key)
    label, op, rest = _split_label(s)
    try:
        if label is not None:
            values, relation = _parse_labelled(label, op, rest)
        else:
            values, relation = _parse_plain(s)
    except (ParseError, RecursionError, ZeroDivisionError, InvalidOperation, OverflowError):
        return MathAnswer(source, (), None, key)
    trailing = None
    if relation is not None and relation[1][-1] == "=":
        last = relation[2][-1]
        if last[0] not in ("seq", "bag", "union") and not _free_symbols(last) - {"i", "e"}:
            trailing = last
    return MathAnswer(source, values, relation, key, trailing, _exact_before_approx(source))


_APPROX_RE = re.compile(r"\\(?:approx|simeq|doteq)(?![A-Za-z])|\u2248")


def _exact_before_approx(source: str):
    """The constant an answer states before its first "≈" (``12\\sqrt{3} \\approx 20.8`` -> 12√3), or None."""
    parts = _APPROX_RE.split(source, maxsplit=1)
    if len(parts) < 2:
        return None
    exact = parse_answer(parts[0])
    if len(exact.values) != 1 or constant_value(exact.values[0]) is None:
        return None
    return exact.values[0]


def _parse_core(s: str):
    remark = _REMARK_RE.match(s.strip())
    if remark and _REMARK_WORD_RE.search(remark.group("remark")):
        s = remark.group("head")  # "3.14 (approximately)", "12 (\\unit{units})": a remark in words, no factor
    s = _strip_trailing_units(s.strip())
    compact = s.replace(" ", "")
    if _THOUSANDS_RE.match(compact):
        s = compact.replace(",", "")
    if s.count(":") == 1:
        return _ratio(*s.split(":"))
    worked = _WORKING_RE.match(s)
    if worked:
        head = _constant_tree(_strip_trailing_units(worked.group("head")))
        work = _constant_tree(worked.group("work"))
        if head is not None and work is not None and _working_of(_ev(head, {}), _ev(work, {})):
            return head  # "18 (3 * 6)": the bracket shows how 18 was found, it is no factor
    return _expand_pm(_Parser(tokenize(s)).answer())


def _working_of(head: complex, work: complex) -> bool:
    """The bracket restates the answer: the same value, or the same as a percentage ("25% (1/4)", "0.5 (50%)": the
    percent sign is gone by now)."""
    return _close(head, work) or _close(head, 100 * work) or _close(100 * head, work)


# An answer followed by a remark in words in brackets: "3.14 (approximately)", "45 (degrees)".
_REMARK_RE = re.compile(r"^(?P<head>.*?\S)\s*\((?P<remark>(?:[A-Za-z][A-Za-z .,'-]*|\s*\\unit\{[^{}]*\}\s*))\)$")
_REMARK_WORD_RE = re.compile(r"[A-Za-z]{3,}")
# An answer followed by its working in brackets: "18 (3 * 6)", "20 (= 4 x 5)".
_WORKING_RE = re.compile(r"^(?P<head>.*?\S)\s+\(\s*=?(?P<work>[^()]*)\)$")


def _constant_tree(s: str):
    """The tree of a constant (``3 * 6``, ``3 * 6 = 18`` gives 18), or None for anything else."""
    try:
        node = _Parser(tokenize(s)).answer()
    except (ParseError, RecursionError, ZeroDivisionError, InvalidOperation):
        return None
    if node[0] == "rel" and all(o == "=" for o in node[1]):
        node = node[2][-1]
    if _pm_count(node) or constant_value(node) is None:
        return None
    return node


def _ratio(left: str, right: str):
    """``5:12`` has the value 5/12 (a ratio answered as a fraction matches it); ``5:00`` is a time, not a ratio."""
    a, b = _constant_tree(left), _constant_tree(right)
    if a is None or b is None or constant_value(b) == 0:
        raise ParseError(f"{left}:{right} is not a ratio of two numbers")
    return ("div", a, b)


_PM_KINDS = ("pm", "mp")
_COLLECTIONS = ("seq", "bag", "union", "rel")


def _pm_count(node) -> int:
    return (node[0] in _PM_KINDS) + sum(_pm_count(c) for c in _children(node))


def _pm_variants(node) -> list:
    """The two values of a scalar holding one ± (``\\frac{1 \\pm \\sqrt{5}}{2}``, ``\\pm 7``)."""
    if node[0] in _PM_KINDS:
        first, second = ("add", "sub") if node[0] == "pm" else ("sub", "add")
        return [(first, node[1], node[2]), (second, node[1], node[2])]
    for i, child in enumerate(node):
        if isinstance(child, tuple) and child and isinstance(child[0], str) and _pm_count(child):
            return [node[:i] + (v,) + node[i + 1:] for v in _pm_variants(child)]
    return [node]


def _expand_pm(node):
    """``1 \\pm \\sqrt{19}`` -> the list {1 + √19, 1 - √19}; each item of a list may hold one ± (``\\{1\\pm\\sqrt{5},
    -2\\}`` is three values). A ± inside a tuple, an interval or a relation, or two in one item, is ambiguous."""
    if not _pm_count(node):
        return node
    items = node[1] if node[0] == "bag" else (node,)
    if any(item[0] in _COLLECTIONS or _pm_count(item) > 1 for item in items):
        raise ParseError("a \\pm inside a tuple, interval or relation, or more than one \\pm in an item")
    return ("bag", tuple(v for item in items for v in _pm_variants(item)))


def _parse_plain(s: str):
    node = _parse_core(s)
    if node[0] != "rel":
        return (node,), None
    ops, parts = node[1], node[2]
    if all(o == "=" for o in ops) and parts[0][0] not in ("seq", "bag", "union") \
            and not _free_symbols(parts[0]) - {"i", "e"}:
        return (parts[-1],), None  # "2*3 = 6": a computation, its value is the last part
    return (), node  # an equation or inequality in the variables


def _parse_labelled(label: str, op: str, rest: str):
    node = _parse_core(rest)
    parts = node[2] if node[0] == "rel" and all(o == "=" for o in node[1]) else (node,)
    if node[0] == "rel" and not all(o == "=" for o in node[1]):
        raise ParseError("a labelled inequality")
    relation = None
    if op == "=" and re.fullmatch(r"[A-Za-z](?:_\{?[A-Za-z0-9]+\}?)?", label):
        name = label.replace("{", "").replace("}", "")
        # the whole chain "y_2 = (x+2)^3 = y_1(x+2)": an equation on its first link alone would accept any last link
        relation = ("rel", ("=",) * len(parts), (("sym", name), *parts))
    return tuple(parts), relation


# ---------------------------------------------------------------------------------------------------------
# Evaluation

class _EvalError(ArithmeticError):
    pass


def _children(node) -> tuple:
    """The subtrees of a node, whatever its kind."""
    kind = node[0]
    if kind in ("num", "sym", "const", "text"):
        return ()
    if kind == "seq":
        return node[3]
    if kind in ("bag", "union"):
        return node[1]
    if kind == "rel":
        return node[2]
    if kind == "func":
        return (node[2],)
    return node[1:]


def _free_symbols(node) -> set[str]:
    if node[0] == "sym":
        return {node[1]}
    out: set[str] = set()
    for child in _children(node):
        out |= _free_symbols(child)
    return out


_FUNCS = {
    "sin": cmath.sin, "cos": cmath.cos, "tan": cmath.tan, "sinh": cmath.sinh, "cosh": cmath.cosh,
    "tanh": cmath.tanh, "arcsin": cmath.asin, "arccos": cmath.acos, "arctan": cmath.atan, "ln": cmath.log,
    "log": cmath.log, "exp": cmath.exp, "sqrt": cmath.sqrt, "abs": abs,
    "cot": lambda z: 1 / cmath.tan(z), "sec": lambda z: 1 / cmath.cos(z), "csc": lambda z: 1 / cmath.sin(z),
}
_INF = complex(math.inf, 0)


def _ev(node, env: dict[str, complex]) -> complex:
    kind = node[0]
    if kind == "num":
        return complex(node[1])
    if kind == "sym":
        if node[1] == "i":
            return 1j
        if node[1] == "e":
            return complex(math.e)
        return env[node[1]]
    if kind == "const":
        return complex(math.pi) if node[1] == "pi" else _INF
    if kind == "neg":
        v = _ev(node[1], env)
        return complex(-v.real, -v.imag) if math.isinf(v.real) else -v
    if kind == "add":
        return _ev(node[1], env) + _ev(node[2], env)
    if kind == "sub":
        return _ev(node[1], env) - _ev(node[2], env)
    if kind == "mul":
        return _ev(node[1], env) * _ev(node[2], env)
    if kind == "div":
        d = _ev(node[2], env)
        if d == 0:
            raise _EvalError("division by zero")
        return _ev(node[1], env) / d
    if kind == "pow":
        b, e = _ev(node[1], env), _ev(node[2], env)
        if abs(e) > MAX_EXPONENT or (abs(b) > 1e6 and abs(e) > 60):
            raise _EvalError("exponent too large")
        if b == 0 and e.real <= 0:
            raise _EvalError("zero to a non-positive power")
        if e.imag == 0 and e.real == int(e.real) and b.imag == 0:
            return complex(b.real ** int(e.real))
        return b ** e
    if kind == "fact":
        v = _ev(node[1], env)
        if v.imag != 0 or v.real != int(v.real) or not 0 <= v.real <= 170:
            raise _EvalError("factorial of a non-integer")
        return complex(math.factorial(int(v.real)))
    if kind == "abs":
        return complex(abs(_ev(node[1], env)))
    if kind == "binom":
        n, k = _ev(node[1], env), _ev(node[2], env)
        if any(v.imag != 0 or v.real != int(v.real) for v in (n, k)) or not 0 <= k.real and 0 <= n.real <= MAX_BINOM:
            raise _EvalError("a binomial coefficient of non-integers or too large")
        return complex(math.comb(int(n.real), int(k.real)))
    if kind == "func":
        v = _ev(node[2], env)
        return complex(_FUNCS[node[1]](v))
    raise _EvalError(f"not a scalar: {kind}")


def _points(names: set[str]) -> list[dict[str, complex]]:
    rng = random.Random(20240611)
    ordered = sorted(names - {"i", "e"})
    return [{n: complex(rng.uniform(0.37, 2.91)) for n in ordered} for _ in range(SAMPLE_POINTS)]


def _literal_decimals(node) -> int | None:
    """Decimals of a plain decimal literal (``8.246`` -> 3, ``-0.5`` -> 1); None for anything else."""
    if node[0] == "neg":
        node = node[1]
    if node[0] == "num" and node[2] > 0:
        return node[2]
    return None


def _close(a: complex, b: complex, tol: float = EXACT_TOL) -> bool:
    if any(math.isinf(v) for v in (a.real, b.real, a.imag, b.imag)):
        return (math.isinf(a.real) and math.isinf(b.real) and (a.real > 0) == (b.real > 0))
    if any(math.isnan(v) for v in (a.real, b.real, a.imag, b.imag)):
        return False
    return abs(a - b) <= tol * max(1.0, abs(a), abs(b))


def constant_value(node) -> complex | None:
    """The value of a tree without variables, or None (variables, not a scalar, or not computable)."""
    if node[0] in ("seq", "bag", "union", "rel", "text") or _free_symbols(node) - {"i", "e"}:
        return None
    try:
        return _ev(node, {})
    except (_EvalError, ArithmeticError, ValueError, OverflowError, TypeError):
        return None


@dataclass(frozen=True)
class _Rule:
    """How numbers are compared: decimal places to round to (MathVista), or an absolute tolerance (DynaMath)."""

    precision: int | None = None
    abs_tolerance: float | None = None


def _scalars_equal(gold, pred, rule: _Rule) -> bool:
    names = _free_symbols(gold) | _free_symbols(pred)
    names -= {"i", "e"}
    if not names:
        g, p = constant_value(gold), constant_value(pred)
        if g is None or p is None:
            return False
        if g.imag != 0 or p.imag != 0 or not (math.isfinite(g.real) and math.isfinite(p.real)):
            return _close(g, p)
        return numbers_agree(g.real, p.real, gold_places=_literal_decimals(gold), pred_places=_literal_decimals(pred),
                             precision=rule.precision, abs_tolerance=rule.abs_tolerance)
    ok = 0
    for env in _points(names):
        try:
            g, p = _ev(gold, env), _ev(pred, env)
        except (_EvalError, ArithmeticError, ValueError, OverflowError):
            continue
        if not _close(g, p, 1e-7):
            return False
        ok += 1
    return ok >= 2


def _items_equal(gold, pred, rule: _Rule) -> bool:
    gk, pk = gold[0], pred[0]
    if gk == "seq" or pk == "seq":
        if gk != pk or gold[1:3] != pred[1:3] or len(gold[3]) != len(pred[3]):
            return False
        return all(_items_equal(g, p, rule) for g, p in zip(gold[3], pred[3], strict=True))
    if gk in ("bag", "union") or pk in ("bag", "union"):
        if gk != pk or len(gold[1]) != len(pred[1]):
            return False
        remaining = list(pred[1])
        for g in gold[1]:  # order-free: match every gold item to a distinct predicted one
            hit = next((j for j, p in enumerate(remaining) if _items_equal(g, p, rule)), None)
            if hit is None:
                return False
            remaining.pop(hit)
        return True
    if gk == "rel" or pk == "rel":
        return False
    return _scalars_equal(gold, pred, rule)


_FLIP = {">": "<", ">=": "<="}


def _relation_form(rel) -> tuple[str, tuple] | None:
    """``L op R`` as (op, L - R) with op one of = < <= != (> and >= flipped)."""
    ops, parts = rel[1], rel[2]
    if len(ops) != 1 or any(p[0] in ("seq", "bag", "union") for p in parts):
        return None
    op, (left, right) = ops[0], parts
    if op in _FLIP:
        return _FLIP[op], ("sub", right, left)
    if op == "in":
        return None
    return op, ("sub", left, right)


def _relations_equal(gold, pred) -> bool:
    gf, pf = _relation_form(gold), _relation_form(pred)
    if gf is None or pf is None or gf[0] != pf[0]:
        return False
    names = (_free_symbols(gf[1]) | _free_symbols(pf[1])) - {"i", "e"}
    if not names:
        return False
    ratios = []
    for env in _points(names):
        try:
            g, p = _ev(gf[1], env), _ev(pf[1], env)
        except (_EvalError, ArithmeticError, ValueError, OverflowError):
            continue
        if abs(g) < 1e-12:
            if abs(p) > 1e-9:
                return False
            continue
        ratios.append(p / g)
    if len(ratios) < 2 or abs(ratios[0]) < 1e-12:
        return False
    if gf[0] in ("<", "<=") and (abs(ratios[0].imag) > 1e-9 or ratios[0].real <= 0):
        return False  # an inequality may only be scaled by a positive factor
    return all(_close(r, ratios[0], 1e-7) for r in ratios)


def answers_equivalent(gold: MathAnswer, pred: MathAnswer, precision: int | None = None,
                       abs_tolerance: float | None = None) -> bool:
    """Whether ``pred`` states ``gold``: same value(s), equation, interval, tuple or (for words) text.

    Numbers compare by the rule of :mod:`rd_eval.scoring.closeness` (``precision``, ``abs_tolerance``)."""
    check_abs_tolerance(abs_tolerance)
    rule = _Rule(precision, abs_tolerance)
    if gold.is_text or pred.is_text:
        return bool(gold.text) and gold.text == pred.text
    if gold.relation is not None and pred.relation is not None and _relations_equal(gold.relation, pred.relation):
        return True
    if gold.relation is not None and not gold.values:
        return False
    # A predicted equation "sin a = 4/5" states the value after its last "=" (a gold equation never does);
    # "12\sqrt{3} \approx 20.8" states both the exact value and its rounding: either may be the gold's form.
    guess = pred.values[-1] if pred.values else pred.trailing
    guesses = [v for v in (guess, pred.exact) if v is not None]
    return any(_items_equal(g, v, rule) for g in gold.values for v in guesses)
