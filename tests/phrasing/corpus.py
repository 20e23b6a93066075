"""The phrasing corpus: for every benchmark item, responses phrased the ways models answer, each labelled right
or wrong by construction and tagged with its phrasing class.

Right responses state the gold (its letter, its option text, its value in another notation); wrong ones state
something else (another option, a perturbed value) or nothing (a refusal, a hedge between two answers, a listing
of the options, the question restated). Reasoning before an answer uses numbers and letters that are not the
answer. Deterministic: each item's choices come from ``random.Random("<benchmark>/<item id>")``.
"""

from __future__ import annotations

import random
import re
from collections.abc import Iterator
from dataclasses import dataclass
from decimal import Decimal

from .forms import (
    LETTERS,
    as_decimal,
    decimal_of_fraction,
    fraction_forms,
    mentions_percent,
    perturbed_number,
    perturbed_text,
    plain,
    simple_fraction,
    strip_dollars,
    thousands,
    unicode_math,
    unit_in,
    usable_options,
    with_places,
)
from .items import Item

RIGHT_CLASSES = ("bare", "boxed", "answer_colon", "answer_is", "bold", "display_math", "chain_of_thought",
                 "trailing_explanation", "answer_first", "think_block", "other_language", "marker_variants",
                 "follow_on_question", "letter_forms", "option_text", "letter_and_text", "with_unit", "percent",
                 "two_units", "thousands_separator", "fraction_decimal", "equation_form", "number_words",
                 "unicode_math", "within_tolerance")
WRONG_CLASSES = ("other_option", "perturbed_value", "refusal", "hedge", "option_listing", "restate_question",
                 "gold_then_other_final", "follow_on_question", "letter_as_label")
NUMBER_WORDS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten", "eleven",
                "twelve")
CHINESE_UNITS = {"m": "米", "meters": "米", "cm": "厘米", "km": "千米", "kg": "千克", "g": "克"}
SMALLER_UNIT = {"cm": ("mm", 10), "m": ("cm", 100), "meters": ("cm", 100), "km": ("m", 1000), "kg": ("g", 1000)}
_REFUSAL_WORDS = re.compile(r"determin|impossible|cannot|can not|insufficient|not enough|none of", re.IGNORECASE)


@dataclass(frozen=True)
class Response:
    """One corpus response: the item it answers, its phrasing class, its label, its text."""

    item: Item
    phrasing: str
    right: bool
    text: str

    @property
    def key(self) -> tuple[str, str]:
        return self.item.benchmark, self.item.gold.answer_type


def _distractors(rng: random.Random, item: Item) -> tuple[int, int]:
    """Two small integers that, with their sum, are not the gold and appear in no option (reasoning numbers)."""
    taken = set(re.findall(r"\d+", item.gold.answer + " " + " ".join(item.options)))
    while True:
        a, b = rng.randint(3, 97), rng.randint(3, 97)
        if a != b and not {str(a), str(b), str(a + b)} & taken:
            return a, b


def _reasoning(rng: random.Random, item: Item) -> str:
    a, b = _distractors(rng, item)
    return (f"Let me work through this step by step.\nFrom the figure, the first part is {a} and the second is {b}, "
            f"so together they give {a} + {b} = {a + b}.\n")


def _key(option: str) -> str:
    return " ".join(option.replace("$", "").lower().split())


class _Phraser:
    """The responses of one item; each method yields (phrasing class, right, text)."""

    def __init__(self, item: Item) -> None:
        self.item = item
        self.gold = item.gold
        self.rng = random.Random(f"{item.benchmark}/{item.item_id}")
        self.cot = _reasoning(self.rng, item)
        self.n_options = max(len(item.options), 4)
        self.letter_of = LETTERS.index(self.gold.answer) if self.gold.answer_type == "choice" else None
        self.texts = usable_options(item.options)
        # the gold option's text, when it has one a response can say
        self.gold_text = self.texts[self.letter_of] if self.letter_of is not None and self.letter_of < len(
            self.texts) else ""
        self.say = self._say()  # the answer in prose
        self.math = self._math()  # the answer inside math ($..$, \boxed{})
        self.other = self._other()  # a wrong answer in prose (None when none can be built)

    # -- what the answer and a wrong answer look like --------------------------------------------------------
    def _say(self) -> str:
        return self.gold.answer.strip()

    def _math(self) -> str:
        return strip_dollars(self.gold.answer)

    def _wrong_letters(self) -> list[str]:
        """Letters of the other options; an option whose text equals the gold option's (MathVista lists
        ``['9', '12', '18', '18']``) is the same answer, so it is never offered as a wrong one."""
        same = [i for i, text in enumerate(self.item.options) if self.letter_of is not None
                and self.letter_of < len(self.item.options) and _key(text)
                and _key(text) == _key(self.item.options[self.letter_of])]
        letters = [c for i, c in enumerate(LETTERS[: self.n_options]) if c != self.gold.answer and i not in same]
        self.rng.shuffle(letters)
        return letters

    def _other(self) -> str | None:
        kind = self.gold.answer_type
        if kind == "choice":
            return self._wrong_letters()[0]
        if kind == "multi_choice":
            letters = self.gold.answer.split(", ")
            return ", ".join(letters[:-1]) if len(letters) > 1 else f"{letters[0]}, {'B' if letters[0] != 'B' else 'C'}"
        value = as_decimal(self.gold.answer)
        if kind == "number" and value is not None:
            return plain(perturbed_number(value, self.gold.precision))
        return perturbed_text(self.say)

    # -- right -----------------------------------------------------------------------------------------------
    def right(self) -> Iterator[tuple[str, str]]:
        say, math, cot = self.say, self.math, self.cot
        yield "bare", say
        yield "boxed", f"{cot}So the final answer is $\\boxed{{{math}}}$."
        yield "boxed", f"\\boxed{{{math}}}"
        yield "answer_colon", f"{cot}Answer: {say}"
        yield "answer_colon", f"{cot}Final Answer: {say}"
        yield "answer_is", f"The answer is {say}."
        yield "answer_is", f"{cot}Therefore, the correct answer is {say}."
        yield "bold", f"{cot}**Final answer:** {say}"
        yield "bold", f"{cot}The answer is **{say}**."
        yield "trailing_explanation", f"{say}, because that is what the figure shows once everything is counted."
        yield "trailing_explanation", f"The answer is {say}. The other possibilities do not fit the figure."
        yield "think_block", f"<think>{cot}Maybe it is {self.other}? No, let me re-check.</think>\n{say}"
        yield "other_language", f"计算过程：{cot}答案：{say}"
        yield "other_language", f"{cot}Respuesta: {say}"
        yield "other_language", f"{cot}Réponse : {say}"
        a, b = _distractors(self.rng, self.item)
        yield "answer_first", f"{say}\nBecause {a} + {b} = {a + b}, and the figure shows the rest."
        yield "follow_on_question", f"{cot}Answer: {say}\n\n{self._follow_on()}{self.other}"
        kind = self.gold.answer_type
        if kind == "choice":
            yield from self._right_choice()
        else:
            yield "display_math", f"{cot}The final answer is\n$$\n{math}\n$$"
            yield "display_math", f"{cot}Therefore\n\\[\n{math}\n\\]"
            yield "chain_of_thought", (f"{cot}Then subtracting what is left over, we get the result.\n"
                                       f"So the answer is {say}.")
        if kind == "number":
            yield from self._right_number()
        if kind == "expression":
            decimal = decimal_of_fraction(self._math())
            if decimal is not None:
                yield "fraction_decimal", f"{cot}Answer: {decimal}"
            plain_text = unicode_math(self._math())
            if plain_text is not None:
                yield "unicode_math", f"{cot}Answer: {plain_text}"

    def _follow_on(self) -> str:
        """A made-up next question, as models sometimes append; its own answer (the caller's) is not this item's."""
        if self.gold.answer_type in ("choice", "multi_choice"):
            return "Question 2: Which of the two shapes has more sides?\n(A) the square (B) the triangle\nAnswer: "
        return "Question 2: How many sides does the other shape have?\nAnswer: "

    def _right_choice(self) -> Iterator[tuple[str, str]]:
        letter, cot = self.gold.answer, self.cot
        wrong = self._wrong_letters()[0]
        for text in (f"({letter})", f"{letter}.", f"Option {letter}", f"The correct option is ({letter}).",
                     f"{cot}Answer: ({letter})", f"{cot}**({letter})**", f"<answer>{letter}</answer>",
                     f"{cot}### Final Answer\n({letter})"):
            yield "letter_forms", text
        for text in (f"{letter} is correct.", f"选项{letter}正确", f"{cot}\\boxed{{{letter}.", f"{cot}答案:{letter}"):
            yield "marker_variants", text
        yield "chain_of_thought", (f"{cot}Option ({wrong}) does not match, so it is ruled out.\n"
                                   f"Therefore, the answer is ({letter}).")
        text = self.gold_text
        if text:
            yield "option_text", text
            yield "option_text", f"{cot}The answer is {text.rstrip('.')}."
            yield "letter_and_text", f"({letter}) {text}"
            yield "letter_and_text", f"{letter}. {text}"
            yield "letter_and_text", f"{cot}Answer: ({letter}) {text}"

    def _right_number(self) -> Iterator[tuple[str, str]]:
        value, cot = as_decimal(self.gold.answer), self.cot
        if value is None:
            return
        unit = unit_in(self.item.question)
        if unit:
            yield "with_unit", f"{cot}Answer: {self.say} {unit}"
            yield "with_unit", f"The answer is {self.say} {unit}."
            if unit in CHINESE_UNITS:
                yield "with_unit", f"{cot}答案：{self.say}{CHINESE_UNITS[unit]}"
            if unit in SMALLER_UNIT:
                smaller, factor = SMALLER_UNIT[unit]
                yield "two_units", f"{cot}Answer: {self.say} {unit} (or {plain(value * factor)} {smaller})"
                yield "two_units", f"{cot}Answer: {self.say} {unit} or {plain(value * factor)} {smaller}"
        yield "marker_variants", f"{cot}The answer (arabic numerals) is {self.say}."
        if value == value.to_integral_value() and 0 <= value < len(NUMBER_WORDS):
            yield "number_words", f"Counting them in the figure, there are {NUMBER_WORDS[int(value)]} left."
        if mentions_percent(self.item.question):
            yield "percent", f"{cot}Answer: {self.say}%"
        for n, text in enumerate(thousands(value)):
            yield "thousands_separator", f"{cot}The answer is {text}." if n == 0 else f"{cot}$\\boxed{{{text}}}$"
        frac = simple_fraction(value)
        if frac is not None:
            for text in fraction_forms(frac):
                yield "fraction_decimal", f"{cot}Answer: {text}"
            if abs(frac) > 1:
                whole, rest = divmod(abs(frac.numerator), frac.denominator)
                sign = "-" if frac < 0 else ""
                yield "fraction_decimal", f"{cot}Answer: {sign}{whole} {rest}/{frac.denominator}"
        yield "equation_form", f"{cot}So $x = {self.say}$."
        places = -value.as_tuple().exponent if isinstance(value.as_tuple().exponent, int) else 0
        if self.gold.precision is not None and places > self.gold.precision:
            yield "within_tolerance", f"{cot}Answer: {with_places(value, self.gold.precision)}"
        tolerance = getattr(self.gold, "abs_tolerance", None)  # DynaMath: |answer - gold| <= 0.001
        if tolerance:
            half = Decimal(str(tolerance)) / 2
            yield "within_tolerance", f"{cot}Answer: {plain(value + half)}"
            yield "within_tolerance", f"{cot}Answer: {plain(value - half)}"

    # -- wrong -----------------------------------------------------------------------------------------------
    def wrong(self) -> Iterator[tuple[str, str]]:
        cot, other, kind = self.cot, self.other, self.gold.answer_type
        if kind == "choice":
            for w in self._wrong_letters()[:2]:
                yield "other_option", f"{cot}Answer: {w}"
                yield "other_option", f"\\boxed{{{w}}}"
            wrong_texts = [t for i, t in enumerate(self.texts) if t and i != self.letter_of]
            if wrong_texts:
                yield "other_option", f"{cot}The answer is {self.rng.choice(wrong_texts).rstrip('.')}."
        elif other is not None:
            tolerance = getattr(self.gold, "abs_tolerance", None)
            value = as_decimal(self.gold.answer)
            if tolerance and value is not None:
                yield "perturbed_value", f"{cot}Answer: {plain(value + 3 * Decimal(str(tolerance)))}"
            yield "perturbed_value", f"{cot}Answer: {other}"
            yield "perturbed_value", f"$\\boxed{{{strip_dollars(other)}}}$"
            yield "perturbed_value", f"The answer is {other}."
        if not _REFUSAL_WORDS.search(self.gold_text):
            a = _distractors(self.rng, self.item)[0]
            yield "refusal", "The answer cannot be determined from the given information."
            yield "refusal", f"{cot}Without more information it is impossible to determine the answer."
            yield "refusal", f"The value cannot be determined, since f({a}) is not given in the figure."
            yield "refusal", "I'm sorry, but I can't determine the answer from the image provided."
        if other is not None:
            yield from self._hedges(other)
            yield "gold_then_other_final", (f"At first glance the answer looks like {self.say}, but re-checking "
                                            f"the figure changes it.\nAnswer: {other}")
        if other is not None:
            yield "follow_on_question", f"{cot}Answer: {other}\n\n{self._follow_on()}{self.say}"
        if kind == "choice":
            letter = self.gold.answer
            yield "letter_as_label", f"Point {letter} is on the circle, but where it lies cannot be determined."
            yield "letter_as_label", f"Solution {letter}.\nI am unable to answer this from the image."
            yield "letter_as_label", f"{letter}: no, none of this can be read from the figure, so I cannot answer."
        yield from self._listings()
        tail = self.item.question.strip()[-300:]
        yield "restate_question", f"The question asks: {tail}"
        yield "restate_question", f"{tail}\nLet me think about this carefully."

    def _hedges(self, other: str) -> Iterator[tuple[str, str]]:
        if self.gold.answer_type == "choice":
            letter = self.gold.answer
            yield "hedge", f"If the pattern continues, the answer is ({letter}); otherwise it is ({other})."
            yield "hedge", f"The answer is either ({letter}) or ({other})."
            yield "hedge", f"{letter} or {other}"
            return
        yield "hedge", f"{self.say} or {other}"
        yield "hedge", f"{self.cot}The answer is either {self.say} or {other}."
        value = as_decimal(self.gold.answer)
        if self.gold.answer_type == "number" and value is not None and value > 0:
            yield "hedge", f"{self.cot}So $x = \\pm {self.say}$."

    def _listings(self) -> Iterator[tuple[str, str]]:
        if self.gold.answer_type not in ("choice", "multi_choice"):
            return
        letters = LETTERS[: self.n_options]
        if any(self.texts):
            yield "option_listing", " ".join(f"({c}) {t}" for c, t in zip(letters, self.item.options, strict=False))
        yield "option_listing", f"The options are ({', '.join(letters[:-1])}, or {letters[-1]})."
        yield "option_listing", "\n".join(f"{c}." for c in letters)


def item_responses(item: Item) -> list[Response]:
    """Every response of one item, right ones first."""
    phraser = _Phraser(item)
    out = [Response(item, phrasing, True, text) for phrasing, text in phraser.right()]
    out += [Response(item, phrasing, False, text) for phrasing, text in phraser.wrong()]
    return out


def build_corpus(items: list[Item]) -> list[Response]:
    """The corpus of ``items``, in item order."""
    return [response for item in items for response in item_responses(item)]
