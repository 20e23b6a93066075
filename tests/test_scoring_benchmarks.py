"""Scoring against the real gold answers of the eight sample sets in ``../shared/data``.

For every record: a correct response in several realistic phrasings (boxed, "The answer is ...",
"Answer: ..." after some reasoning, with units, equivalent LaTeX forms) scores right, and wrong answers
(off by one, another letter, the wrong sign, a different fraction or point) score wrong. Numbers the
question states, restated in the response before a marked answer, are never taken for the answer.
The whole module is skipped when the shared data folder is absent (a fresh clone has no ``../shared``).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator, Sequence
from decimal import Decimal
from fractions import Fraction
from pathlib import Path

import pytest

from rd_eval.scoring.answers import extract_answer, is_correct

DATA = Path(__file__).parents[2] / "shared" / "data"
pytestmark = pytest.mark.skipif(not DATA.is_dir(), reason=f"shared sample data not found at {DATA}")
LETTERS = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"
COT = "Let me look at the figure carefully and work through it step by step.\n"


def _need(folder: str) -> Path:
    path = DATA / folder
    if not path.is_dir():
        pytest.skip(f"{path} is absent")
    return path


def _json(folder: str, name: str):
    return json.loads((_need(folder) / name).read_text(encoding="utf-8"))


def _jsonl(folder: str, name: str) -> list[dict]:
    lines = (_need(folder) / name).read_text(encoding="utf-8").splitlines()
    return [json.loads(line) for line in lines if line.strip()]


def assert_scores(gold: str, answer_type: str, right: Sequence[str], wrong: Sequence[str],
                  choices: Sequence[str] = (), precision: int | None = None) -> None:
    """Every response in ``right`` scores correct, every one in ``wrong`` scores incorrect."""
    kwargs = {} if precision is None else {"precision": precision}
    for response in right:
        assert is_correct(response, gold, answer_type, choices, **kwargs), (
            f"{answer_type} gold {gold!r}: {response!r} should be right "
            f"(extracted {extract_answer(response, answer_type, choices, **kwargs)!r})")
    for response in wrong:
        assert not is_correct(response, gold, answer_type, choices, **kwargs), (
            f"{answer_type} gold {gold!r}: {response!r} should be wrong "
            f"(extracted {extract_answer(response, answer_type, choices, **kwargs)!r})")


def phrasings(answer: str) -> list[str]:
    """One answer in the phrasings models use: bare, boxed, 'The answer is', reasoning then 'Answer:'."""
    return [
        answer,
        f"\\boxed{{{answer}}}",
        f"The answer is {answer}.",
        f"{COT}So the final answer is $\\boxed{{{answer}}}$.",
        f"{COT}Answer: {answer}",
        f"<think>{COT}</think>\nAnswer: {answer}",
    ]


def letter_phrasings(letter: str) -> list[str]:
    return [
        letter, f"({letter})", f"\\boxed{{{letter}}}", f"The correct option is ({letter}).",
        f"{COT}Answer: {letter}", f"**Answer:** {letter}", f"<answer>{letter}</answer>",
        f"{COT}Therefore, the answer is {letter}. The other options do not fit.",
    ]


def _decimal_str(value: Decimal) -> str:
    text = format(value.normalize(), "f")
    return "0" if text in ("-0", "") else text


def number_variants(gold: str) -> tuple[list[str], list[str]]:
    """(equivalent spellings, wrong values) of a plain decimal gold: off by one unit in the last place
    (and by one), the wrong sign, the gold with its digits shifted."""
    value = Decimal(gold.replace(",", ""))
    places = max(0, -value.as_tuple().exponent)
    step = Decimal(1).scaleb(-places)
    right = [_decimal_str(value), f"{_decimal_str(value)} units"]
    if places == 0:
        right.append(f"{value}.0")
    wrong = [f"{value + step:.{places}f}", f"{value - step:.{places}f}", _decimal_str(value + 1)]
    if value != 0:
        wrong += [_decimal_str(-value), _decimal_str(value * 10)]
    return right, wrong


def options_from(text: str) -> list[str]:
    """We-Math's option string "A. 300, 400;B. 400, 300; E. No correct answer" as a list of texts."""
    parts = re.split(r";\s*(?=[A-Z]\.)", text.strip())
    return [re.sub(r"^[A-Z]\.\s*", "", p).strip() for p in parts]


def _has_capital_letter_word(text: str) -> bool:
    return re.search(r"(?<![A-Za-z\\])[A-Z](?![A-Za-z])", text) is not None


# ---------------------------------------------------------------------------------------------------------
# MathVista


def _mathvista() -> list[dict]:
    return list(_json("mathvista", "testmini.json").values())


def test_mathvista_free_form_numbers_with_precision() -> None:
    records = [r for r in _mathvista() if r["question_type"] == "free_form"]
    assert records
    for r in records:
        gold, precision, unit = r["answer"], r["precision"], r["unit"] or "units"
        assert r["answer_type"] in ("integer", "float"), r
        if r["answer_type"] == "float":
            assert precision is not None
        right, wrong = number_variants(gold)
        right = [p for a in right for p in phrasings(a)] + [f"{COT}Answer: {gold} {unit}", f"Answer: ${gold}$"]
        if precision:
            right.append(f"Answer: {gold}4")  # more digits than asked for, same value at `precision`
            wrong.append(f"Answer: {gold}6")  # ... rounds up to another value
        assert_scores(gold, "number", right, [f"Answer: {w}" for w in wrong], precision=precision)


def test_mathvista_multi_choice_by_letter_or_option_text() -> None:
    records = [r for r in _mathvista() if r["question_type"] == "multi_choice"]
    assert records
    for r in records:
        choices, gold = r["choices"], r["answer"]
        letter = LETTERS[choices.index(gold)]
        others = [i for i, c in enumerate(choices) if c != gold]
        right = letter_phrasings(letter) + [f"Answer: {gold}", f"{COT}The answer is {gold}."]
        wrong = [f"Answer: {LETTERS[i]}" for i in others] + [f"Answer: {choices[i]}" for i in others]
        assert_scores(gold, "choice", right, wrong, choices=choices)


# ---------------------------------------------------------------------------------------------------------
# MathVerse: letters, numbers with labels/units/degrees, and symbolic answers

_PI_AREA = {  # gold -> (right, wrong)
    "9": (["9\\pi", "9π cm²", "Area = 9\\pi \\text{ cm}^2", "28.27"], ["3\\pi", "6\\pi", "28.3", "-9\\pi"]),
    "2500": (["2500\\pi", "2500π cm^2", "7853.98"], ["50\\pi", "250\\pi", "2500"]),
}
MATHVERSE_SYMBOLIC: dict[str, tuple[list[str], list[str]]] = {
    "(2,2)": (["(2, 2)", "\\left(2,2\\right)", "(2.0, 2.0)"], ["(2,-2)", "(-2,2)", "(2,3)", "2"]),
    "(2,-2)": (["(2, -2)", "\\left( 2, -2 \\right)"], ["(2,2)", "(-2,2)", "(2,-3)"]),
    "\\frac{(x+2)^2}{4}+\\frac{(y-2)^2}{9}=1": (
        ["\\frac{(x+2)^2}{4}+\\frac{(y-2)^2}{9}=1", "(x+2)^2/4 + (y-2)^2/9 = 1", "9(x+2)^2 + 4(y-2)^2 = 36"],
        ["\\frac{(x-2)^2}{4}+\\frac{(y-2)^2}{9}=1", "\\frac{(x+2)^2}{9}+\\frac{(y-2)^2}{4}=1",
         "(x+2)^2 + (y-2)^2 = 1", "1"]),
    "\\frac{y^2}{16}-\\frac{x^2}{25}=1": (
        ["y^2/16 - x^2/25 = 1", "25y^2 - 16x^2 = 400", "-\\frac{x^2}{25}+\\frac{y^2}{16}=1"],
        ["\\frac{x^2}{16}-\\frac{y^2}{25}=1", "\\frac{y^2}{16}+\\frac{x^2}{25}=1", "\\frac{y^2}{4}-\\frac{x^2}{5}=1"]),
    "\\frac{(x+3)^2}{25}-\\frac{(y+3)^2}{25}=1": (
        ["(x+3)^2 - (y+3)^2 = 25", "\\frac{(x+3)^2}{25} - \\frac{(y+3)^2}{25} = 1"],
        ["(x-3)^2 - (y-3)^2 = 25", "(x+3)^2 - (y+3)^2 = 5", "(y+3)^2 - (x+3)^2 = 25"]),
    "$\\left(\\frac{\\sqrt{2}}{2}, \\frac{\\sqrt{2}}{2}\\right)$": (
        ["(\\frac{\\sqrt{2}}{2}, \\frac{\\sqrt{2}}{2})", "(1/\\sqrt{2}, 1/\\sqrt{2})", "(0.71, 0.71)",
         "A = \\left(\\frac{\\sqrt2}{2}, \\frac{\\sqrt2}{2}\\right)"],
        ["(\\frac{1}{2}, \\frac{\\sqrt{3}}{2})", "(-0.71, 0.71)", "(0.7, 0.7)", "\\frac{\\sqrt{2}}{2}"]),
    "$\\frac{4}{5}$": (["\\frac{4}{5}", "4/5", "0.8", "\\sin a = \\frac{4}{5}", "\\dfrac{4}{5}"],
                       ["\\frac{3}{5}", "0.6", "\\frac{5}{4}", "-\\frac{4}{5}"]),
    "-1": (["-1", "10 f(7) + 9 g(-1) = -1", "−1"], ["1", "-2", "0"]),
    "(0,0)": (["(0, 0)", "$(0,0)$"], ["(0,1)", "(1,0)", "0"]),
    "Center $=(20,10)$": (["(20, 10)", "Center = (20,10)", "The center is at $(20, 10)$."],
                          ["(10, 20)", "(20, -10)", "(20, 20)"]),
    "$[-5,-3) \\cup(-3,5]$": (["[-5,-3) \\cup (-3,5]", "[-5, -3) ∪ (-3, 5]", "(-3,5] \\cup [-5,-3)"],
                              ["[-5,5]", "[-5,-3] \\cup [-3,5]", "(-5,-3) \\cup (-3,5)", "[-5,-3)"]),
    "=\\frac{7}{4}": (["\\frac{7}{4}", "7/4", "1.75", "m = \\frac{7}{4}", "slope = 1.75"],
                      ["\\frac{4}{7}", "-\\frac{7}{4}", "\\frac{7}{3}"]),
    "(-2,1]": (["(-2, 1]", "\\left(-2, 1\\right]"], ["[-2,1)", "(-2,1)", "[-2, 1]", "(-1,2]"]),
    "$y_2=(x+2)^3=y_1(x+2)$": (["y_2 = (x+2)^3", "(x+2)^3", "y_2 = x^3 + 6x^2 + 12x + 8"],
                               ["(x-2)^3", "y_2 = (x+2)^2", "x^3 + 8"]),
    "$y_2=(x+2)$^3$=y_1(x+2)$": (["y_2 = (x+2)^3", "(x+2)^3"], ["(x-2)^3", "y_2 = (x+2)^2"]),
    "$g(x)=\\ln x+4$": (["g(x) = \\ln(x) + 4", "\\ln x + 4", "4 + \\ln x"],
                        ["\\ln x - 4", "\\ln(x+4)", "\\ln x + 3"]),
    "g(x)=(x+2)^2+1": (["g(x) = (x+2)^2 + 1", "x^2 + 4x + 5"], ["(x-2)^2+1", "(x+2)^2 - 1", "g(x) = x^2 + 1"]),
    "g(x)=(x+2)$^2$+1": (["g(x) = (x+2)^2 + 1", "x^2 + 4x + 5"], ["(x-2)^2+1", "(x+2)^2 - 1"]),
    "$y \\leq 2 x+3$": (["y \\le 2x+3", "y ≤ 2x + 3", "2x + 3 \\geq y", "y \\leq 2x + 3"],
                        ["y \\geq 2x+3", "y < 2x+3", "y \\leq 2x - 3", "y = 2x + 3"]),
    "$\\frac{\\pi}{25} \\mathrm{~cm}^{2}$": (["\\frac{\\pi}{25}", "\\pi/25 cm^2", "0.04\\pi"],
                                            ["\\frac{\\pi}{5}", "\\frac{2\\pi}{25}", "25\\pi"]),
    "$\\frac{121 \\pi}{4} \\mathrm{~m}^{2}$": (["\\frac{121\\pi}{4}", "30.25\\pi", "121π/4 m^2"],
                                              ["\\frac{121\\pi}{2}", "121\\pi", "\\frac{11\\pi}{4}"]),
    "$\\frac{147 \\pi}{4} \\mathrm{~cm}^{2}$": (["\\frac{147\\pi}{4}", "36.75\\pi cm^2"],
                                               ["\\frac{147\\pi}{3}", "\\frac{49\\pi}{4}"]),
    "$\\frac{338 \\pi}{3} \\mathrm{~mm}^{2}$": (["\\frac{338}{3}\\pi", "\\frac{338\\pi}{3} mm^2"],
                                               ["\\frac{338\\pi}{2}", "\\frac{169\\pi}{3}"]),
    "S 23.5 ^\\circ W": (["S 23.5° W", "S23.5°W", "S 23.5^\\circ W"], ["S 23.5° E", "N 23.5° W", "S 66.5° W"]),
    "S 23.5 $^{\\circ}$ W": (["S 23.5° W"], ["N 23.5° W", "S 24.5° W"]),
    "\\sqrt{AB^2+BD^2+DF^2}": (["\\sqrt{AB^2 + BD^2 + DF^2}", "AF = \\sqrt{AB^2+BD^2+DF^2}",
                                "\\sqrt{DF^2 + AB^2 + BD^2}"],
                               ["\\sqrt{AB^2+BD^2}", "AB^2+BD^2+DF^2", "AB + BD + DF"]),
}
for _g in ("$9 \\pi \\mathrm{cm}^{2}$", "Area $=9 \\pi \\mathrm{cm}^{2}$"):
    MATHVERSE_SYMBOLIC[_g] = _PI_AREA["9"]
for _g in ("$2500 \\pi \\mathrm{cm}^{2}$", "Area $=2500 \\pi \\mathrm{cm}^{2}$"):
    MATHVERSE_SYMBOLIC[_g] = _PI_AREA["2500"]
for _g in list(MATHVERSE_SYMBOLIC):
    if _g.startswith("$\\frac") and "pi" in _g:
        MATHVERSE_SYMBOLIC["Area " + _g.replace("$\\frac", "$=\\frac", 1)] = MATHVERSE_SYMBOLIC[_g]
MATHVERSE_SYMBOLIC["$(\\frac{\\sqrt{2}}{2}, \\frac{\\sqrt{2}}{2})$"] = \
    MATHVERSE_SYMBOLIC["$\\left(\\frac{\\sqrt{2}}{2}, \\frac{\\sqrt{2}}{2}\\right)$"]

# Answers that a rule cannot score beyond exact (normalised) text: a piecewise function in words.
MATHVERSE_TEXT_ONLY = {"When x<=3 $f(x)=-x+1$, when x>3, $f(x)=x-5$"}


def _mathverse() -> list[dict]:
    return list(_json("mathverse", "mv_data_public_subset.json").values())


def _plain_number(gold: str) -> str | None:
    """The one number of a gold that is a number with a label, unit or degree sign, else None."""
    if re.search(r"\\(?:pi|frac|sqrt)|[(),\[\]]|(?<![A-Za-z])[NSEW](?![A-Za-z])", gold):
        return None
    numbers = re.findall(r"-?\d+(?:\.\d+)?", re.sub(r"\^\{?\d\}?|\{\d\}", "", gold))
    return numbers[0] if len(numbers) == 1 else None


def test_mathverse_every_expression_gold_is_covered() -> None:
    golds = {r["answer"] for r in _mathverse()
             if r["question_type"] == "free_form" and not re.fullmatch(r"\(?[A-F]\)?", r["answer"])}
    uncovered = {g for g in golds if g not in MATHVERSE_SYMBOLIC and g not in MATHVERSE_TEXT_ONLY
                 and _plain_number(g) is None}
    assert not uncovered, f"MathVerse gold answers without a test case: {sorted(uncovered)}"


def test_mathverse_numbers_with_labels_units_and_degrees() -> None:
    golds = sorted({r["answer"] for r in _mathverse() if r["question_type"] == "free_form"
                    and r["answer"] not in MATHVERSE_SYMBOLIC and _plain_number(r["answer"]) is not None})
    assert len(golds) > 30
    for gold in golds:
        number = _plain_number(gold)
        right, wrong = number_variants(number)
        degrees = "circ" in gold or "°" in gold or "掳" in gold
        extra = [f"{number}°", f"{number}^\\circ", f"x = {number}^\\circ"] if degrees else \
            [f"{number} cm", f"x = {number}", f"The value is approximately {number} units."]
        if re.search(r"\^\\circ\s*T|\$\s*T|°\s*T|掳T", gold):
            extra += [f"{number}°T", f"{int(Decimal(number)):03d}^\\circ T", f"bearing {number}° T"]
            wrong += [str((int(Decimal(number)) + 180) % 360)]
        right = [p for a in right + extra for p in phrasings(a)]
        assert_scores(gold, "expression", right, [f"Answer: {w}" for w in wrong])


def test_mathverse_symbolic_answers_and_equivalent_forms() -> None:
    golds = {r["answer"] for r in _mathverse()}
    used = [g for g in MATHVERSE_SYMBOLIC if g in golds]
    assert len(used) >= 20
    for gold in used:
        right, wrong = MATHVERSE_SYMBOLIC[gold]
        right = [p for a in right for p in phrasings(a)[1:5]]
        assert_scores(gold, "expression", right, [f"{COT}Answer: {w}" for w in wrong] +
                      [f"\\boxed{{{w}}}" for w in wrong])


def test_mathverse_text_only_answers_match_their_own_wording() -> None:
    for gold in MATHVERSE_TEXT_ONLY & {r["answer"] for r in _mathverse()}:
        assert_scores(gold, "expression", [f"Answer: {gold}"], ["Answer: f(x) = x - 5"])


def test_mathverse_letters_with_and_without_printed_options() -> None:
    seen = 0
    for r in _mathverse():
        gold = r["answer"]
        if not re.fullmatch(r"\(?[A-F]\)?", gold):
            continue
        letter = gold.strip("()")
        choices = r["choices"] or ()
        n = len(choices) or 6
        wrong = [f"Answer: {LETTERS[i]}" for i in range(n) if LETTERS[i] != letter]
        assert_scores(gold, "choice", letter_phrasings(letter), wrong, choices=choices)
        seen += 1
    assert seen > 50


def test_mathverse_text_only_testmini_records_score_like_their_visualizer_twins() -> None:
    records = _json("mathverse", "testmini_text_only.json")
    for r in records:
        gold = r["answer"]
        if r["question_type"] == "multi-choice":  # gold is the option text, e.g. "090^\circ T"
            choices = [line[3:] for line in r["question"].split("Choice:\n")[1].splitlines()]
            assert_scores(gold, "choice", [f"Answer: {LETTERS[choices.index(gold)]}"],
                          [f"Answer: {LETTERS[(choices.index(gold) + 1) % len(choices)]}"], choices=choices)
        elif gold in MATHVERSE_SYMBOLIC:
            right, wrong = MATHVERSE_SYMBOLIC[gold]
            assert_scores(gold, "expression", [f"Answer: {right[0]}"], [f"Answer: {wrong[0]}"])
        elif gold not in MATHVERSE_TEXT_ONLY:
            right, wrong = number_variants(_plain_number(gold))
            assert_scores(gold, "expression", [f"Answer: {right[0]}"], [f"Answer: {wrong[0]}"])


# ---------------------------------------------------------------------------------------------------------
# MATH-Vision


def test_mathvision_free_form_and_lettered_options() -> None:
    records = _jsonl("math_vision", "testmini.jsonl")
    free = [r for r in records if not r["options"]]
    lettered = [r for r in records if r["options"]]
    assert free and lettered
    for r in free:
        right, wrong = number_variants(r["answer"])
        assert_scores(r["answer"], "expression", [p for a in right for p in phrasings(a)],
                      [f"Answer: {w}" for w in wrong])
        assert_scores(r["answer"], "number", phrasings(right[0]), [f"Answer: {w}" for w in wrong])
    for r in lettered:
        options, letter = r["options"], r["answer"]
        index = LETTERS.index(letter)
        right = letter_phrasings(letter)
        text = options[index]
        if text.strip("()") != letter and not _has_capital_letter_word(text):
            right += [f"Answer: {text}", f"{COT}The answer is {text}"]
        wrong = [f"Answer: {LETTERS[i]}" for i in range(len(options)) if i != index]
        wrong += [f"Answer: {o}" for i, o in enumerate(options)
                  if i != index and o.strip("()") not in LETTERS and not _has_capital_letter_word(o)]
        assert_scores(letter, "choice", right, wrong, choices=options)


def test_mathvision_option_values_match_by_value() -> None:
    records = {r["id"]: r for r in _jsonl("math_vision", "testmini.jsonl")}
    cases = [("767", "The distance is 9 km.", True), ("767", "Answer: 12 km", False),
             ("2280", "\\boxed{5}", True), ("2280", "\\boxed{\\frac{5}{2}}", False),
             ("2474", "Answer: \\frac{3}{4}\\sqrt{2}", True), ("2474", "Answer: \\frac{\\sqrt{6}}{2}", False),
             ("1284", "Answer: 720°", True), ("1284", "Answer: 360^\\circ", False),
             ("336", "Answer: 13%", True), ("336", "Answer: 12\\%", False)]
    for rid, response, expected in cases:
        if rid not in records:
            pytest.skip(f"MATH-Vision record {rid} not in the sample")
        r = records[rid]
        assert is_correct(response, r["answer"], "choice", r["options"]) is expected, (rid, response)


# ---------------------------------------------------------------------------------------------------------
# We-Math


def test_wemath_letters_and_option_texts() -> None:
    records = _json("we_math", "testmini.json")
    assert records
    for r in records:
        options, letter = options_from(r["option"]), r["answer"]
        index = LETTERS.index(letter)
        assert index < len(options), r
        right = letter_phrasings(letter) + [f"Answer: {letter}. {options[index]}"]
        if not _has_capital_letter_word(options[index]) and options.count(options[index]) == 1:
            right.append(f"{COT}Answer: {options[index]}")
        wrong = [f"Answer: {LETTERS[i]}" for i in range(len(options)) if i != index]
        wrong += [f"Answer: {LETTERS[i]}. {o}" for i, o in enumerate(options) if i != index]
        assert_scores(letter, "choice", right, wrong, choices=options)


# ---------------------------------------------------------------------------------------------------------
# LogicVista (multi_choice: a set of letters)


def test_logicvista_letter_sets() -> None:
    records = list(_json("logicvista", "dataset.json").values())
    assert records
    for r in records:
        gold = r["answer"]
        letters = sorted(set(re.findall(r"[A-E]", gold)))
        assert letters, r
        spelled = ", ".join(letters)
        right = [f"Answer: {spelled}", f"\\boxed{{{''.join(letters)}}}", f"{COT}The correct options are: {spelled}",
                 f"<answer>{' and '.join(letters)}</answer>", f"{COT}Answer: ({letters[0]})" + "".join(
                     f", ({x})" for x in letters[1:])]
        extra = next(x for x in "ABCDE" if x not in letters)
        other = next(x for x in "EDCBA" if x not in letters)
        wrong = [f"Answer: {other}", f"Answer: {spelled}, {extra}",
                 f"The question lists (A), (B), (C), (D) and (E).\nAnswer: {other}"]
        if len(letters) > 1:
            wrong.append(f"Answer: {letters[0]}")
        assert_scores(gold, "multi_choice", right, wrong, choices=("A", "B", "C", "D", "E"))


# ---------------------------------------------------------------------------------------------------------
# DynaMath (seed questions and their generated variants)


def _dynamath_records() -> Iterator[tuple[str, dict]]:
    root = _need("dynamath")
    for path in sorted(root.glob("**/dataset.json")):
        for qid, r in json.loads(path.read_text(encoding="utf-8")).items():
            yield f"{path.parent.name}/{qid}", r


def _dynamath_text_wrong(gold: str) -> str:
    """An edge "BF" reversed ("FB"), a node "D" -> "E", a time/date/point with its first digit bumped."""
    if re.fullmatch(r"[A-Z]{2,}", gold):
        return gold[::-1]
    if re.fullmatch(r"[A-Z]", gold):
        return LETTERS[(LETTERS.index(gold) + 1) % 26]
    m = re.search(r"\d", gold)
    assert m, gold
    return gold[:m.start()] + str((int(m.group()) + 1) % 10) + gold[m.end():]


def test_dynamath_all_variants() -> None:
    types: dict[str, int] = {}
    for where, r in _dynamath_records():
        gold, kind = r["answer"], r["answer_type"]
        types[kind] = types.get(kind, 0) + 1
        if kind == "float":
            right, wrong = number_variants(gold)
            assert_scores(gold, "expression", [p for a in right[:1] for p in phrasings(a)] + [f"Answer: {right[1]}"],
                          [f"Answer: {w}" for w in wrong])
        elif kind == "multiple choice":
            wrong = [f"Answer: {x}" for x in "ABCDE" if x != gold]
            assert_scores(gold, "choice", letter_phrasings(gold), wrong)
        else:
            assert kind == "text", (where, kind)
            right = [f"Answer: {gold}", f"\\boxed{{{gold}}}", f"{COT}The answer is {gold}."]
            assert_scores(gold, "text", right, [f"Answer: {_dynamath_text_wrong(gold)}"])
    assert types.get("float", 0) > 100 and types.get("multiple choice") and types.get("text"), types


def test_dynamath_text_answers_in_their_own_formats() -> None:
    assert_scores("5:0", "text", ["Answer: 5:00", "The time shown is 5:00."], ["Answer: 5:30", "Answer: 6:00"])
    assert_scores("(1.000, -4.000)", "text", ["Answer: (1, -4)", "\\boxed{(1.0, -4.0)}"],
                  ["Answer: (1, 4)", "Answer: (-1, -4)"])
    assert_scores("(1.000, -4.000)", "expression", ["Answer: (1, -4)"], ["Answer: (1, 4)"])
    assert_scores("BF", "text", ["Answer: BF", "The first edge added is BF."], ["Answer: BE"])


# ---------------------------------------------------------------------------------------------------------
# GSM8K (numbers, often with thousands separators; the question's numbers restated)


def _gsm8k() -> list[tuple[str, str]]:
    out = []
    for r in _jsonl("gsm8k", "test.jsonl"):
        out.append((r["question"], r["answer"].split("####")[-1].strip()))
    return out


def test_gsm8k_numbers() -> None:
    records = _gsm8k()
    assert len(records) >= 100
    for _question, gold in records:
        value = int(gold.replace(",", ""))
        with_commas = f"{value:,}"
        right = [f"The answer is {gold}.", f"\\boxed{{{value}}}", f"{COT}Answer: ${with_commas}",
                 f"#### {gold}", f"{COT}So she makes {with_commas} dollars in total.", f"Answer: {value}.00"]
        wrong = [f"Answer: {value + 1}", f"\\boxed{{{value - 1}}}", f"Answer: {value * 10}"]
        assert_scores(gold, "number", right, wrong)


def test_gsm8k_numbers_restated_from_the_question_are_not_the_answer() -> None:
    checked = 0
    for question, gold in _gsm8k():
        value = int(gold.replace(",", ""))
        stated = [n.replace(",", "") for n in re.findall(r"\d[\d,]*(?:\.\d+)?", question)]
        if str(value) in stated:
            # The gold appears in the question: restating it must not score a wrong final answer.
            wrong = f"The problem says {value}. {COT}Answer: {value + 1}"
            assert not is_correct(wrong, gold, "number"), (question, wrong)
        if stated and stated[0] != str(value):
            # The final answer marked, then the question's first number restated afterwards.
            right = f"{COT}Answer: {gold}\nCheck: the question starts from {stated[0]}."
            assert is_correct(right, gold, "number"), (question, right)
            checked += 1
    assert checked > 100


# ---------------------------------------------------------------------------------------------------------
# MATH-500 (LaTeX expressions)


def _math500() -> list[str]:
    return [r["answer"] for r in _jsonl("math500", "test.jsonl")]


def _bump_digit(gold: str) -> str | None:
    m = re.search(r"\d", gold)
    if m is None:
        return None
    return gold[:m.start()] + str((int(m.group()) + 1) % 10) + gold[m.end():]


_FRAC_RE = re.compile(r"^(-?)\\[dt]?frac\{(\d+)\}\{(\d+)\}$")


def _math500_equivalents(gold: str) -> list[str]:
    """Equivalent spellings derived from the gold's own text: \\dfrac for \\frac, spaces/\\left out,
    and for a plain fraction its a/b and (terminating) decimal forms."""
    out = [gold.replace("\\frac", "\\dfrac"), re.sub(r"(?<![A-Za-z])\s+", "", gold),
           gold.replace("\\left", "").replace("\\right", "")]
    m = _FRAC_RE.match(gold.replace(" ", ""))
    if m:
        sign, num, den = m.groups()
        value = Fraction(int(num), int(den)) * (-1 if sign else 1)
        out.append(f"{sign}{num}/{den}")
        if 2 ** 20 % value.denominator == 0 or 10 ** 6 % value.denominator == 0:
            out.append(_decimal_str(Decimal(value.numerator) / Decimal(value.denominator)))
        out.append(f"\\frac{{{num}}}{{{den}}}".replace("\\frac", "-\\frac" if sign else "\\frac"))
    return list(dict.fromkeys(out))


def test_math500_expressions() -> None:
    golds = _math500()
    assert len(golds) >= 100
    for gold in golds:
        right = [f"\\boxed{{{gold}}}", f"{COT}The final answer is ${gold}$.", f"{COT}Answer: {gold}"]
        right += [f"\\boxed{{{e}}}" for e in _math500_equivalents(gold)]
        wrong = []
        bumped = _bump_digit(gold)
        if bumped is not None:
            wrong.append(f"\\boxed{{{bumped}}}")
        elif gold.startswith("\\text{"):
            wrong.append("\\boxed{\\text{Alice}}")
        m = _FRAC_RE.match(gold.replace(" ", ""))
        if m and m.group(2) != m.group(3):
            wrong.append(f"\\boxed{{{m.group(1)}\\frac{{{m.group(3)}}}{{{m.group(2)}}}}}")  # flipped fraction
        if re.fullmatch(r"-?\d+(?:\.\d+)?", gold) and float(gold) != 0:
            wrong.append(f"\\boxed{{{gold[1:] if gold.startswith('-') else '-' + gold}}}")  # wrong sign
        assert_scores(gold, "expression", right, wrong)


MATH500_TRICKY = [
    # (gold, right, wrong)
    ("\\left( 3, \\frac{\\pi}{2} \\right)", ["(3, \\pi/2)", "(3, 1.5708)"], ["(3, \\pi)", "(\\frac{\\pi}{2}, 3)"]),
    ("\\frac{14}{3}", ["4\\frac{2}{3}", "14/3", "4.67", "4.667"], ["4.6", "4.7", "\\frac{3}{14}"]),
    ("3\\sqrt{13}", ["\\sqrt{117}", "3 \\sqrt{13}", "10.82"], ["13\\sqrt{3}", "10.8"]),
    ("6 - 5i", ["6-5i", "-5i + 6"], ["6+5i", "5i - 6"]),
    ("1 \\pm \\sqrt{19}", ["1+\\sqrt{19}, 1-\\sqrt{19}", "1-\\sqrt{19}, 1+\\sqrt{19}"], ["1+\\sqrt{19}"]),
    ("3, 5, 7", ["7, 5, 3", "3,5,7"], ["3, 5", "3, 5, 9"]),
    ("90^\\circ", ["90", "90°", "90 degrees"], ["45^\\circ", "180"]),
    ("10,\\!080", ["10080", "10,080"], ["10081", "1008"]),
    ("\\$32,\\!348", ["32348", "\\$32,348", "32,348 dollars"], ["32349"]),
    ("1\\frac{4}{5}", ["9/5", "1.8", "\\frac{9}{5}"], ["\\frac{4}{5}", "1.4"]),
    ("52_8", ["52_8", "52_{8}"], ["42", "52"]),
    ("x^5 - x^4 + x^3 - x^2 + x - 1", ["(x-1)(x^4+x^2+1)"], ["x^5 + x^4 + x^3 - x^2 + x - 1"]),
    ("(a+5)(b+2)", ["(b+2)(a+5)", "ab + 2a + 5b + 10"], ["(a+2)(b+5)"]),
    ("5x - 7y + 11z + 4 = 0", ["-10x + 14y - 22z - 8 = 0"], ["5x - 7y + 11z - 4 = 0"]),
    ("\\begin{pmatrix} -1/3 \\\\ 2/3 \\\\ 5/3 \\end{pmatrix}",
     ["\\begin{bmatrix} -\\frac13 \\\\ \\frac23 \\\\ \\frac53 \\end{bmatrix}", "(-1/3, 2/3, 5/3)"],
     ["\\begin{pmatrix} 1/3 \\\\ 2/3 \\\\ 5/3 \\end{pmatrix}"]),
    ("(-\\infty, 0]", ["(-\\infty,0]", "(-∞, 0]"], ["(-\\infty, 0)", "[0, \\infty)"]),
    ("\\text{(C)}", ["C", "(C)", "\\text{C}"], ["B", "(D)"]),
    ("\\text{Evelyn}", ["Evelyn", "\\text{evelyn}"], ["Navin"]),
    ("\\frac{270}7\\text{ degrees}", ["\\frac{270}{7}", "270/7 degrees"], ["\\frac{7}{270}", "38.5"]),
    ("x \\in [-2,7]", ["[-2, 7]", "x \\in [-2, 7]"], ["(-2, 7)", "[-7, 2]"]),
    ("-\\frac{\\pi}{6}", ["-\\pi/6", "-0.5236"], ["\\frac{\\pi}{6}", "-\\frac{\\pi}{3}"]),
    ("\\cot x", ["\\frac{\\cos x}{\\sin x}", "1/\\tan x"], ["\\tan x", "\\cos x"]),
]


@pytest.mark.parametrize(("gold", "right", "wrong"), MATH500_TRICKY, ids=[c[0] for c in MATH500_TRICKY])
def test_math500_equivalent_forms(gold: str, right: list[str], wrong: list[str]) -> None:
    if gold not in set(_math500()):
        pytest.skip(f"{gold!r} is not in the MATH-500 sample")
    assert_scores(gold, "expression", [f"\\boxed{{{r}}}" for r in right] + [f"Answer: {r}" for r in right],
                  [f"\\boxed{{{w}}}" for w in wrong] + [f"Answer: {w}" for w in wrong])
