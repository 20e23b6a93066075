"""Issue 14's failure classes on the extraction side: where the answer is taken from and which option it names.

Each class is a group of natural phrasings (written for these tests) that the scorer at commit f75ab41 read
wrong; the assertions are the reading a careful human grader would make. Some phrasings in a group were already
read right and stay as guards: the new rules must not take them (a pick after weighing options is no hedge, a
refusal the sentence goes past is not final, working that starts with math is not an answer stated first).
"""

from __future__ import annotations

import time

import pytest

import rd_eval.scoring.answers as answers
import rd_eval.scoring.item as item
from rd_eval.scoring.answers import extract_answer, extract_choice, extract_number, is_correct
from rd_eval.scoring.item import Gold, score_doc

FOUR = ["5", "6", "7", "8"]
LENGTHS = ["5 cm", "6 cm", "7 cm", "8 cm"]
YES_NO = ["Yes", "No"]


# ---------------------------------------------------------------------------------------------------------
# Reading a letter that is not an answer


@pytest.mark.parametrize(
    ("response", "choices", "expected"),
    [
        ("A: no", YES_NO, "B"),  # "A:" is the answer half of a Q/A pair, not option A
        ("Q: Are the two lines parallel?\nA: No, they meet at the top.", YES_NO, "B"),
        ("A: Capacitor", ["Resistor", "Capacitor", "Inductor"], "B"),
        ("A: no", ["No", "Yes"], "A"),  # the text agrees with the letter: still A
    ],
)
def test_a_colon_is_an_answer_label_not_option_a(response: str, choices: list[str], expected: str) -> None:
    assert extract_choice(response, choices) == expected


@pytest.mark.parametrize(
    "response",
    [
        "Solution B.\nWe subtract 3 cm from 10 cm to get 7 cm.",
        "Look at point B: it is 7 cm from the origin.",
        "In Figure A. the shaded strip is 7 cm long.",
        "Method B: add the pieces, 7 cm in all.",
    ],
)
def test_labels_are_not_option_letters(response: str) -> None:
    assert extract_choice(response, LENGTHS) == "C"  # the answer is the length 7 cm, option C


@pytest.mark.parametrize(
    "response",
    [
        "Let A be the area. Then A = 7.",
        "Let B: the set of blue marbles; it has 7 members.",
        "Label the triangle's vertices A, B and C. The missing side is 7.",
    ],
)
def test_variables_are_not_option_letters(response: str) -> None:
    assert extract_choice(response, FOUR) == "C"


@pytest.mark.parametrize(
    "response",
    [
        "Please choose one of (A, B, C, or D).",
        "I cannot tell which of A, B, C or D is meant.",
        "The options are (A), (B), (C) and (D).",
        "Pick A, B, C, or D.",
    ],
)
def test_a_letter_list_is_no_answer(response: str) -> None:
    assert extract_choice(response, FOUR) is None


@pytest.mark.parametrize(
    ("response", "expected"),
    [
        ("The answer is C.\n\nQuestion 2: Which is larger, 3 or 4?\n(A) 3 (B) 4\nAnswer: B", "C"),
        ("Answer: D\n\nQ: What is 2 + 3?\nA. 5 B. 6\nAnswer: A", "D"),
        ("So the answer is \\boxed{A}.\n\n### Question\nHow many sides has a hexagon?\nThe answer is \\boxed{6}", "A"),
        ("Answer: (B)\nHuman: Now solve this one. Options: (A) 1 (B) 2\nAssistant: The answer is A.", "B"),
    ],
)
def test_a_made_up_follow_on_question_is_not_the_answer(response: str, expected: str) -> None:
    assert extract_choice(response, FOUR) == expected


def test_a_follow_on_question_keeps_the_first_number_answer() -> None:
    response = "The answer is 14.\n\nQuestion: Tom has 3 apples and eats 1. How many are left?\nAnswer: 2"
    assert extract_number(response) == "14"


# ---------------------------------------------------------------------------------------------------------
# Refusals and restatements


@pytest.mark.parametrize(
    "response",
    [
        "The value cannot be determined from the graph alone; we would need f(0).",
        "There is not enough information to find x, since the figure does not give angle 2.",
        "It is impossible to determine the length without knowing side 3.",
        "Answer: cannot be determined (we need f(0)).",
    ],
)
def test_a_refusal_is_no_answer(response: str) -> None:
    assert extract_number(response) is None
    assert not is_correct(response, "0", "number")
    assert not is_correct(response, "2", "expression")


@pytest.mark.parametrize(
    ("response", "expected"),
    [
        ("We cannot determine the height directly, so we use the Pythagorean theorem: h = sqrt(25 - 9) = 4.", "4"),
        ("The side cannot be found from the angle alone, but the perimeter gives 3 * 4 = 12.", "12"),
        ("It was 10 or 12 by the first count; the chart says 12.", "12"),
    ],
)
def test_a_refusal_or_hedge_the_response_goes_past_is_not_final(response: str, expected: str) -> None:
    assert extract_number(response) == expected


def test_a_refusal_that_is_an_option_is_that_option() -> None:
    choices = ["3", "4", "Cannot be determined"]
    assert extract_choice("The answer is: cannot be determined.", choices) == "C"
    assert extract_choice("Cannot be determined", choices) == "C"


@pytest.mark.parametrize(
    ("response", "choices"),
    [
        ("(A) 5 (B) 6 (C) 7 (D) 8", FOUR),
        ("A. 5\nB. 6\nC. 7\nD. 8", FOUR),
        ("The choices are:\nA) Yes\nB) No", YES_NO),
        ("Options: A: 5, B: 6, C: 7, D: 8.", FOUR),
    ],
)
def test_listing_the_options_is_no_answer(response: str, choices: list[str]) -> None:
    assert extract_choice(response, choices) is None
    assert not is_correct(response, "B", "choice", choices)


def test_a_listing_followed_by_a_pick_is_the_pick() -> None:
    assert extract_choice("A. 5\nB. 6\nC. 7\nD. 8\nAnswer: C", FOUR) == "C"


# ---------------------------------------------------------------------------------------------------------
# Answer markers


@pytest.mark.parametrize(
    ("response", "expected"),
    [
        ("答案:C", "C"),
        ("所以答案是 B。", "B"),
        ("选项A正确", "A"),
        ("经过计算，故选D。", "D"),
        ("最终答案：(C)", "C"),
        ("选项A正确，选项B错误。", "A"),
        ("选项B错误，选项C是正确的", "C"),
    ],
)
def test_chinese_choice_markers(response: str, expected: str) -> None:
    assert extract_choice(response, FOUR) == expected


@pytest.mark.parametrize(
    ("response", "expected"),
    [
        ("先算 3 + 9 = 12，所以答案是 12", "12"),
        ("答案：7\n验证：7 × 2 = 14", "7"),
        ("The answer (arabic numerals) is 7, since 3 + 4 = 7 and 2 are left over.", "7"),
        ("the answer (in cm) is 12; the other side is 5", "12"),
    ],
)
def test_number_markers(response: str, expected: str) -> None:
    assert extract_number(response) == expected


@pytest.mark.parametrize(
    ("response", "expected"),
    [
        ("B###", "B"),
        ("### C", "C"),
        ("1. A", "A"),
        ("A is correct.", "A"),
        ("I think D is the right answer because 8 > 7.", "D"),
        ("The correct option is \\boxed{D.", "D"),
        ("\\boxed{C. 7", "C"),
    ],
)
def test_letter_answer_forms(response: str, expected: str) -> None:
    assert extract_choice(response, FOUR) == expected


@pytest.mark.parametrize(
    ("response", "gold", "expected"),
    [
        ("None of the other answers is correct", "B", True),
        ("None of the other answers is correct.", "A", False),
        ("I checked each value: none of the other answers is correct", "B", True),
    ],
)
def test_option_text_containing_answer_is_is_no_marker(response: str, gold: str, expected: bool) -> None:
    choices = ["3", "None of the other answers is correct", "5"]
    assert is_correct(response, gold, "choice", choices) is expected


@pytest.mark.parametrize(
    ("response", "expected"),
    [
        ("12\nBecause 3 * 4 = 12, and the 2 short sides do not count.", "12"),
        ("**45**\n\nExplanation: the 3 rows of 15 seats give 45, with 2 aisles.", "45"),
        ("$\\frac{3}{4}$\nReason: 3 of the 4 equal parts are shaded, 1 is not.", "0.75"),
        ("x = 6\nCheck: 2 * 6 + 3 = 15, as given.", "6"),
    ],
)
def test_an_answer_stated_first_wins_over_later_numbers(response: str, expected: str) -> None:
    assert extract_number(response) == expected


def test_a_math_answer_stated_first() -> None:
    assert is_correct("\\frac{1}{3}\nBecause 1 of the 3 equal parts is shaded, not 2.", "\\frac{1}{3}", "expression")
    assert is_correct("30^\\circ\nThe two base angles are 75 each, and 180 - 150 = 30.", "30^\\circ", "expression")
    assert is_correct("-13x+3\nExpanding gives 2x - 15x + 3 in all.", "-13x+3", "expression")
    assert is_correct("g(x)=(x+2)^2+1\nBecause the graph moved 2 left and 1 up.", "g(x)=(x+2)^2+1", "expression")
    assert is_correct("Evelyn\nExplanation: her line is the steepest, 5 km in 2 h.", "Evelyn", "text")


@pytest.mark.parametrize(
    ("response", "expected"),
    [
        ("2x + 3 = 7\n2x = 4\nx = 2", "2"),  # working, line by line: the last line answers
        ("3 + 4\n= 7", "7"),
        ("We need the area of the triangle.\nBecause the base is 4 and the height 3, the area is 6.", "6"),
        ("Find the area\nSince the base is 4 and the height 3, the area is 6.", "6"),
    ],
)
def test_working_that_starts_with_math_is_not_an_answer_stated_first(response: str, expected: str) -> None:
    assert extract_number(response) == expected


@pytest.mark.parametrize(
    ("response", "expected"),
    [
        ("No\n\nThe two lines meet at the top of the figure.", "B"),
        ("**Yes**\nBoth triangles have the same three sides.", "A"),
        ("Yes\nNo", None),  # the options listed, one a line
    ],
)
def test_an_option_text_stated_first(response: str, expected: str | None) -> None:
    assert extract_choice(response, YES_NO) == expected


def test_a_letter_stated_first_wins_over_options_discussed_after() -> None:
    response = "B\n\nExplanation: option A is 5, which is too small, and option D is 8."
    assert extract_choice(response, FOUR) == "B"


# ---------------------------------------------------------------------------------------------------------
# Hedged answers


@pytest.mark.parametrize(
    "response",
    [
        "If the lines are parallel, (A) Yes; if not, (B) No.",
        "The answer is (A) Yes if the triangle is isosceles, otherwise (B) No.",
        "Either A or B, depending on whether the angle is acute.",
        "Answer: A or B",
        "Answer: (A) Yes or (B) No",
    ],
)
def test_a_hedge_between_options_is_wrong(response: str) -> None:
    assert not is_correct(response, "A", "choice", YES_NO)
    assert not is_correct(response, "B", "choice", YES_NO)


@pytest.mark.parametrize(
    "response",
    [
        "The year is 1490 or 1500.",
        "Answer: 1490 or 1500",
        "It was either 1490 or 1500, the sources disagree.",
        "So x = 3 or x = -3.",
    ],
)
def test_a_hedge_between_numbers_is_wrong(response: str) -> None:
    assert not is_correct(response, "1490", "number")
    assert extract_number(response) is None


@pytest.mark.parametrize("response", ["A, C or A", "Answer: A or C", "The answer is A, C, or D.", "A or C\nBoth fit."])
def test_a_hedge_between_letter_sets_is_wrong(response: str) -> None:
    for gold in ("A, C", "A", "C", "A, C, D"):
        assert not is_correct(response, gold, "multi_choice", FOUR)


def test_a_letter_set_stated_first() -> None:
    assert is_correct("A, C\nBecause both are even numbers.", "A, C", "multi_choice", FOUR)


@pytest.mark.parametrize(
    "response",
    [
        "$y = 2x + 1$ or $y = 2x - 1$",
        "The answer is $\\frac{1}{2}$ or $\\frac{1}{3}$.",
        "So it is $y=(x+1)^2$, or $y=(x-1)^2$",
    ],
)
def test_a_hedge_between_expressions_is_wrong(response: str) -> None:
    for gold in ("y = 2x + 1", "\\frac{1}{2}", "y=(x+1)^2", "y = 2x - 1", "\\frac{1}{3}", "y=(x-1)^2"):
        assert not is_correct(response, gold, "expression")


@pytest.mark.parametrize(
    ("response", "expected"),
    [
        ("Answer: B. Neither A nor C works.", "B"),
        ("The answer is C, whether or not the figure is to scale.", "C"),
        ("Option A or B would be too small, so the answer is D.", "D"),
        ("Answer: B. 4 (not A or C)", "B"),
    ],
)
def test_a_choice_made_after_weighing_options_is_not_a_hedge(response: str, expected: str) -> None:
    assert extract_choice(response, FOUR) == expected


@pytest.mark.parametrize(
    "response",
    [
        "If the pattern continues, the answer is (B); otherwise it is (A).",
        "If the angle is obtuse the answer is A, else it is B.",
        "Assuming the figure is to scale, the answer is B; if it is not, the answer is A.",
    ],
)
def test_a_hedge_around_the_marker_is_wrong(response: str) -> None:
    assert extract_choice(response, YES_NO) is None


@pytest.mark.parametrize(
    ("response", "expected"),
    [
        ("Using either the formula or the graph, the answer is 12.", "12"),
        ("The answer is 6 (or 6.0).", "6"),
        ("The share is 10% or 0.1.", "0.1"),
        ("If we double 6, the answer is 12.", "12"),
    ],
)
def test_words_of_a_hedge_around_one_answer_are_no_hedge(response: str, expected: str) -> None:
    assert extract_number(response) == expected


def test_a_name_inside_a_marked_answer_is_the_option() -> None:
    assert extract_choice("The answer is figure (B).", FOUR) == "B"
    assert extract_choice("It is shape (C).", FOUR) == "C"
    assert extract_choice("Figure (B) matches, so the answer is figure (B).", FOUR) == "B"


# ---------------------------------------------------------------------------------------------------------
# Duplicate option texts, option texts ending in a period, display blocks


DUPLICATES = ["9", "12", "18", "18"]


@pytest.mark.parametrize(
    ("response", "gold"),
    [("18", "18"), ("C", "18"), ("D", "18"), ("The answer is 18", "D"), ("D", "C"), ("(C) 18", "D")],
)
def test_duplicate_option_texts_are_one_answer(response: str, gold: str) -> None:
    assert is_correct(response, gold, "choice", DUPLICATES)


def test_duplicate_option_texts_do_not_accept_other_options() -> None:
    assert not is_correct("B", "18", "choice", DUPLICATES)
    assert not is_correct("12", "D", "choice", DUPLICATES)


PERIOD_OPTIONS = ["A. The bar is longer.", "B. The bars are equal.", "C. The bar is shorter."]


@pytest.mark.parametrize(
    ("response", "gold"),
    [
        ("The bars are equal", "B"),
        ("Answer: the bar is shorter.", "C"),
        ("The bar is longer", "A"),
    ],
)
def test_option_text_ending_in_a_period_matches(response: str, gold: str) -> None:
    assert is_correct(response, gold, "choice", PERIOD_OPTIONS)


def test_option_text_ending_in_a_period_as_gold() -> None:
    assert is_correct("C", "The bar is shorter", "choice", PERIOD_OPTIONS)


@pytest.mark.parametrize(
    ("response", "gold", "answer_type"),
    [
        ("The final answer is\n$$\n18\n$$", "18", "number"),
        ("So the area is:\n\\[\n\\frac{1}{2}\n\\]", "\\frac{1}{2}", "expression"),
        ("Hence\n$$\nx = 4\n$$", "4", "expression"),
        ("Final answer:\n\\[\n12 \\text{ cm}\n\\]\n", "12", "number"),
    ],
)
def test_a_display_block_is_read_whole(response: str, gold: str, answer_type: str) -> None:
    assert is_correct(response, gold, answer_type)


# ---------------------------------------------------------------------------------------------------------
# Found by the phrasing corpus (H3): an answer followed by its explanation, listings without choices,
# options whose own words refuse or hedge, option text ending in a bracket


@pytest.mark.parametrize(
    ("response", "expected"),
    [
        ("B, because that is what the figure shows.", "B"),
        ("(C) since the other bars are shorter", "C"),
        ("D. The other options do not fit the pattern.", "D"),
    ],
)
def test_a_letter_then_its_explanation(response: str, expected: str) -> None:
    assert extract_choice(response, FOUR) == expected


@pytest.mark.parametrize(
    ("response", "gold"),
    [
        ("\\left( 3, \\frac{\\pi}{2} \\right), because that is what the figure shows.", "(3, \\frac{\\pi}{2})"),
        ("The answer is 3, 5, 7. The other possibilities do not fit.", "3, 5, 7"),
        ("(2, -1), since both equations hold there", "(2, -1)"),
    ],
)
def test_an_expression_then_its_explanation(response: str, gold: str) -> None:
    assert is_correct(response, gold, "expression")


@pytest.mark.parametrize("response", ["A.\nB.\nC.\nD.", "(A)\n(B)\n(C)", "A) \nB) \nC) \nD) \nE) "])
def test_a_listing_without_choices_is_no_answer(response: str) -> None:
    assert extract_answer(response, "choice") is None


@pytest.mark.parametrize(
    ("response", "choices", "expected"),
    [
        ("(C) Insufficient Information", ["1", "2", "Insufficient Information"], "C"),
        ("Answer: (D) either C or D", ["either A or B", "only C", "only D", "either C or D"], "D"),
        ("The answer is: not enough information", ["4", "5", "Not enough information"], "C"),
    ],
)
def test_an_option_whose_words_refuse_or_hedge_is_an_answer(response: str, choices: list[str], expected: str) -> None:
    assert extract_choice(response, choices) == expected


def test_option_text_ending_in_a_bracket() -> None:
    choices = ["23,500 (France); 23,000 (UK)", "23,650 (France); 23,200 (UK)"]
    assert extract_choice("23,650 (France); 23,200 (UK)", choices) == "B"
    assert extract_choice("The answer is 23,650 (France); 23,200 (UK).", choices) == "B"


# ---------------------------------------------------------------------------------------------------------
# One extraction per response: the logged pred is the answer judged


@pytest.mark.parametrize(
    ("response", "gold"),
    [
        ("The answer is 18 (3 times 6).", Gold("18", "number")),
        ("Answer: B", Gold("B", "choice", ("5", "6"))),
        ("The bars are equal", Gold("B", "choice", tuple(PERIOD_OPTIONS))),
        ("**Evelyn** ran farthest, twice as far as Ann.", Gold("Evelyn", "text")),
        ("So x = 4, which is \\frac{8}{2}", Gold("4", "expression")),
        ("Answer: A, C", Gold("A, C", "multi_choice", ("1", "2", "3"))),
    ],
)
def test_the_logged_pred_is_the_judged_answer(response: str, gold: Gold) -> None:
    scored = score_doc("p1", "img", response, gold)
    pred, correct = answers.judge(response, gold.answer, gold.answer_type, gold.choices)
    assert (scored.pred, scored.correct) == (pred, correct)
    assert scored.pred == extract_answer(response, gold.answer_type, gold.choices)
    assert scored.correct is is_correct(response, gold.answer, gold.answer_type, gold.choices)


def test_a_text_answer_logs_the_spelling_that_matched() -> None:
    scored = score_doc("p1", "img", "Evelyn, because she ran 5 km", Gold("Evelyn", "text"))
    assert scored.correct is True
    assert scored.pred == "Evelyn"


def test_score_doc_extracts_once(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[str] = []
    real = answers.extract_number
    monkeypatch.setattr(answers, "extract_number", lambda r: calls.append(r) or real(r))
    scored = score_doc("p1", "img", "So 12.", Gold("12", "number"))
    assert scored.correct is True and len(calls) == 1


# ---------------------------------------------------------------------------------------------------------
# A gold that cannot be judged is a marked data error of the document, not a crash of the run


@pytest.mark.parametrize(
    ("gold", "reason"),
    [
        (Gold("", "choice", ("1", "2")), "choice answer ''"),
        (Gold("  ", "text"), "text answer"),
        (Gold("", "expression"), "expression answer ''"),
        (Gold("twelve-ish", "number"), "number answer 'twelve-ish' is not a number"),
        (Gold("Q", "multi_choice", ("1", "2")), "multi_choice answer 'Q'"),
    ],
)
def test_an_unusable_gold_is_an_unscored_data_error(gold: Gold, reason: str) -> None:
    scored = score_doc("v1_382", "img", "The answer is B", gold)
    assert scored.correct is None and scored.pred is None and not scored.scored
    assert scored.error is not None and scored.error.startswith("unusable gold: ") and reason in scored.error
    problem = item.gold_problem(gold)
    assert problem is not None and reason in problem


def test_a_usable_gold_has_no_problem() -> None:
    assert item.gold_problem(Gold("B", "choice", ("1", "2"))) is None
    assert item.gold_problem(Gold("12", "number")) is None


# ---------------------------------------------------------------------------------------------------------
# Speed: the new rules stay linear


def test_long_listing_like_responses_score_quickly() -> None:
    response = " ".join(f"({chr(65 + i % 4)}) {i}" for i in range(5000)) + "\nQuestion: more?\nAnswer: B or C"
    start = time.perf_counter()
    for _ in range(3):
        is_correct(response, "B", "choice", FOUR)
        extract_number(response)
    assert time.perf_counter() - start < 2.0


# ---------------------------------------------------------------------------------------------------------
# DynaMath's absolute tolerance reaches the verdict through the one judged extraction


def test_abs_tolerance_is_threaded_through_score_doc() -> None:
    gold = Gold("20425.7025", "number", abs_tolerance=0.001)
    assert score_doc("141-v9", "img", "Answer: 20425.702", gold).correct is True
    assert score_doc("141-v9", "img", "Answer: 20425.7", gold).correct is False
    assert is_correct("x = 2.0009", "2", "expression", abs_tolerance=0.001)


def test_a_bad_abs_tolerance_is_refused_at_the_edge() -> None:
    with pytest.raises(ValueError, match="abs_tolerance must be a finite number >= 0"):
        Gold("1", "number", abs_tolerance=-0.5)
    with pytest.raises(ValueError, match="abs_tolerance"):
        is_correct("1", "1", "number", abs_tolerance=float("nan"))
