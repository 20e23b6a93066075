"""The organism's paired problems: two-number arithmetic and comparisons, shown as an image and stated as text.

A problem is a pure value (kind and two operands); its text twin, its image and its answer all derive from it.
Kinds: ``add`` (``37 + 52``), ``sub`` (``52 - 37``) and ``max``, the comparison (``max(37, 52)``: the larger
number). Problems are split into train / validation / held-out by a seeded shuffle of *groups*: a group holds the
problems of one unordered pair of numbers, of every kind (``37 + 52``, ``52 + 37``, ``max(52, 37)``), so no pair of
numbers is in two splits.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from types import MappingProxyType

from PIL import Image

from rd_eval.twins.render import render_text

# The symbols each kind's expression is written with (also what the organism's tokenizer must know).
OPERATORS: MappingProxyType[str, str] = MappingProxyType({"add": "+", "sub": "-", "max": "max(,)"})
OPERAND_RANGE = range(10, 100)  # two-digit operands
PAIR_ID_PREFIX = "organism"

# 32 px is one row of merged 32x32 image tokens: 192 x 32 gives 6 tokens. Taller (64 px) images split each digit
# across two token rows and did not train (shared/notes/organism_feasibility.md).
IMAGE_WIDTH = 192
IMAGE_HEIGHT = 32
FONT_SIZE = 24


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
        """The problem as text; also exactly what its image shows (the transcription target)."""
        if self.kind == "max":
            return f"max({self.a}, {self.b})"
        return f"{self.a} {OPERATORS[self.kind]} {self.b}"

    @property
    def answer(self) -> str:
        if self.kind == "max":
            return str(max(self.a, self.b))
        return str(self.a + self.b if self.kind == "add" else self.a - self.b)

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


def problem_image(problem: Problem) -> Image.Image:
    """The image form: the expression drawn by the project's renderer, padded (never resized) to 192 x 32.

    The renderer sizes its canvas to the text (30 px tall at font 24); the processor needs sides that are
    multiples of 32, and a resize would blur the digits, so the rendered line is pasted on a white 32 px band."""
    line = render_text(problem.expression, width=IMAGE_WIDTH, font_size=FONT_SIZE, margin=0)
    if line.height > IMAGE_HEIGHT:
        raise ProblemError(f"{problem.expression!r} renders {line.height} px tall, more than {IMAGE_HEIGHT}")
    canvas = Image.new("RGB", (IMAGE_WIDTH, IMAGE_HEIGHT), (255, 255, 255))
    canvas.paste(line, (0, (IMAGE_HEIGHT - line.height) // 2))
    return canvas
