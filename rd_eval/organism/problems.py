"""The organism's paired problems: two-number arithmetic, comparisons, small tables and bar charts, shown as an
image and stated as text.

A problem is a pure value (kind and two operands); its text twin, its image and its answer all derive from it.
Kinds, after rd_demo's (arithmetic, comparison, table, bar chart):
- ``add`` (``37 + 52``), ``sub`` (``52 - 37``) and ``max``, the comparison (``max(37, 52)``: the larger number):
  the image is the expression on one line (192 x 32), and the expression is the question;
- ``table``: a ruled two-row table (``A | 37`` over ``B | 52``, 192 x 64), asked "What is A + B?";
- ``bar``: a bar chart of two bars with their values printed above them (192 x 64), asked "What is the larger
  value?".
Every text line of an image lies inside one 32-px row of merged image tokens: a line split across two token rows
did not train (shared/notes/organism_feasibility.md), a two-row table laid out this way did (docs/organism_log.md).
Problems are split into train / validation / held-out by a seeded shuffle of *groups*: a group holds the problems
of one unordered pair of numbers, of every kind (``37 + 52``, ``52 + 37``, ``max(52, 37)``), so no pair of numbers
is in two splits.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from types import MappingProxyType

from PIL import Image, ImageDraw

from rd_eval.twins.render import BAR_FILL, render_text

# The symbols each kind's expression is written with (also what the organism's tokenizer must know).
OPERATORS: MappingProxyType[str, str] = MappingProxyType(
    {"add": "+", "sub": "-", "max": "max(,)", "table": "A B |", "bar": ","})
# The question of a kind whose image shows data rather than an expression (asked in the prompt of both forms).
QUESTIONS: MappingProxyType[str, str] = MappingProxyType(
    {"table": "What is A + B?", "bar": "What is the larger value?"})
OPERAND_RANGE = range(10, 100)  # two-digit operands
PAIR_ID_PREFIX = "organism"

# 32 px is one row of merged 32x32 image tokens: 192 x 32 gives 6 tokens. A line centred in a 64 px image splits
# each digit across two token rows and did not train (shared/notes/organism_feasibility.md), so a table or chart
# puts each of its text lines in a token row of its own.
IMAGE_WIDTH = 192
TOKEN_ROW = 32
IMAGE_ROWS: MappingProxyType[str, int] = MappingProxyType({"add": 1, "sub": 1, "max": 1, "table": 2, "bar": 2})
FONT_SIZE = 24
BAR_WIDTH = 40
BAR_LEFT = (30, 126)  # x of each bar's left edge


class ProblemError(ValueError):
    """A problem or split request that cannot be met."""


@dataclass(frozen=True, order=True)
class Problem:
    kind: str
    a: int
    b: int

    def __post_init__(self) -> None:
        if self.kind not in OPERATORS:
            raise ProblemError(f"unknown problem kind {self.kind!r}; known: {', '.join(OPERATORS)}")
        if self.kind == "sub" and self.a < self.b:
            raise ProblemError(f"sub problems keep a >= b (non-negative answers), got {self.a} - {self.b}")

    @property
    def expression(self) -> str:
        """Exactly what the image shows, as text (the transcription target); with :attr:`question`, the text twin."""
        if self.kind == "max":
            return f"max({self.a}, {self.b})"
        if self.kind == "table":
            return f"A | {self.a}\nB | {self.b}"
        if self.kind == "bar":
            return f"{self.a}, {self.b}"
        return f"{self.a} {OPERATORS[self.kind]} {self.b}"

    @property
    def question(self) -> str:
        """What is asked of a table or chart, in both forms' prompts; "" where the expression is the question."""
        return QUESTIONS.get(self.kind, "")

    @property
    def text_twin(self) -> str:
        """The problem as text: the expression, introduced as a chart for a bar chart, and the question."""
        shown = f"Bar chart: {self.expression}" if self.kind == "bar" else self.expression
        return f"{shown}\n{self.question}" if self.question else shown

    @property
    def answer(self) -> str:
        if self.kind in ("max", "bar"):
            return str(max(self.a, self.b))
        return str(self.a + self.b if self.kind in ("add", "table") else self.a - self.b)

    @property
    def image_size(self) -> tuple[int, int]:
        """(width, height) of the image form: a multiple of the 32-px merged image token on each side."""
        return IMAGE_WIDTH, TOKEN_ROW * IMAGE_ROWS[self.kind]

    @property
    def pair_id(self) -> str:
        return f"{PAIR_ID_PREFIX}-{self.kind}-{self.a}-{self.b}"

    @property
    def group(self) -> tuple[int, int]:
        """Problems of one group (one unordered pair of numbers, every kind) always share a split."""
        low, high = sorted((self.a, self.b))
        return (low, high)


def all_problems(kinds: tuple[str, ...]) -> tuple[Problem, ...]:
    for kind in kinds:
        if kind not in OPERATORS:
            raise ProblemError(f"unknown problem kind {kind!r}; known: {', '.join(OPERATORS)}")
    return tuple(Problem(kind, a, b) for kind in kinds for a in OPERAND_RANGE for b in OPERAND_RANGE
                 if kind != "sub" or a >= b)


@dataclass(frozen=True)
class Splits:
    train: tuple[Problem, ...]
    validation: tuple[Problem, ...]
    heldout: tuple[Problem, ...]

    def named(self, name: str) -> tuple[Problem, ...]:
        if name not in SPLIT_NAMES:
            raise ProblemError(f"unknown split {name!r}; known: {', '.join(SPLIT_NAMES)}")
        return getattr(self, name)


SPLIT_NAMES = ("train", "validation", "heldout")


def make_splits(kinds: tuple[str, ...], seed: int, *, n_heldout: int = 400, n_validation: int = 200) -> Splits:
    """Held-out, validation and train problems, from a seeded shuffle of problem groups.

    The held-out and validation splits take whole groups until they hold at least their size; train takes the
    rest. The same kinds and seed always give the same splits."""
    if n_heldout < 1 or n_validation < 0:
        raise ProblemError(f"split sizes must be held-out >= 1 and validation >= 0, got {n_heldout}, {n_validation}")
    groups: dict[tuple[int, int], list[Problem]] = {}
    for problem in all_problems(kinds):
        groups.setdefault(problem.group, []).append(problem)
    order = sorted(groups)
    random.Random(seed).shuffle(order)
    taken: list[list[Problem]] = [[], []]
    rest: list[Problem] = []
    for key in order:
        if len(taken[0]) < n_heldout:
            taken[0].extend(groups[key])
        elif len(taken[1]) < n_validation:
            taken[1].extend(groups[key])
        else:
            rest.extend(groups[key])
    if not rest:
        raise ProblemError(f"split sizes {n_heldout} + {n_validation} leave no training problems")
    # Held-out and validation keep the shuffled order, so their first N problems are a fair sample of the split.
    return Splits(train=tuple(sorted(rest)), validation=tuple(taken[1]), heldout=tuple(taken[0]))


def _line(text: str) -> Image.Image:
    return render_text(text, width=IMAGE_WIDTH, font_size=FONT_SIZE, margin=0)


def _paste_in_row(canvas: Image.Image, line: Image.Image, x: int, row: int, what: str) -> None:
    """Paste a rendered line into token row `row`, centred vertically: never resized (that would blur it)."""
    if line.height > TOKEN_ROW:
        raise ProblemError(f"{what!r} renders {line.height} px tall, more than a {TOKEN_ROW} px token row")
    canvas.paste(line, (x, row * TOKEN_ROW + (TOKEN_ROW - line.height) // 2))


def problem_image(problem: Problem) -> Image.Image:
    """The image form, drawn with the project's renderer on a white canvas of :attr:`Problem.image_size`.

    One-line kinds: the expression, padded (never resized) to 192 x 32: the renderer sizes its canvas to the text
    (30 px tall at font 24) and the processor needs sides that are multiples of 32. A table: two ruled rows, one
    per token row. A bar chart: the values in the top token row, each over its bar, the bars (height by value) in
    the bottom one."""
    canvas = Image.new("RGB", problem.image_size, (255, 255, 255))
    if problem.kind == "table":
        for row, (label, value) in enumerate((("A", problem.a), ("B", problem.b))):
            _paste_in_row(canvas, _line(f" {label}  |  {value}"), 0, row, problem.expression)
        ImageDraw.Draw(canvas).line((0, TOKEN_ROW - 1, IMAGE_WIDTH - 1, TOKEN_ROW - 1), fill=(0, 0, 0))
    elif problem.kind == "bar":
        draw = ImageDraw.Draw(canvas)
        bottom = 2 * TOKEN_ROW - 1
        for left, value in zip(BAR_LEFT, (problem.a, problem.b), strict=True):
            height = max(2, round(value / max(OPERAND_RANGE) * (TOKEN_ROW - 2)))
            draw.rectangle((left, bottom - height + 1, left + BAR_WIDTH, bottom), fill=BAR_FILL)
            _paste_in_row(canvas, _line(str(value)), left + 4, 0, problem.expression)
    else:
        _paste_in_row(canvas, _line(problem.expression), 0, 0, problem.expression)
    return canvas
