"""Rule-based scoring: real response formats, right and wrong answers, and error paths."""

from __future__ import annotations

import time

import pytest

from rd_eval.scoring.answers import (
    ANSWER_TYPES,
    extract_answer,
    extract_choice,
    extract_letters,
    extract_number,
    is_correct,
)


@pytest.mark.parametrize(
    ("response", "expected"),
    [
        ("12", "12"),
        ("12.0", "12"),
        ("1,200", "1200"),
        ("-3", "-3"),
        ("\u22127", "-7"),
        ("$12", "12"),
        ("$12.50", "12.5"),
        ("12 apples", "12"),
        ("The answer is 12.", "12"),
        ("**12**", "12"),
        ("Mia had 7, bought 5, so she has 12 apples now.", "12"),
        ("x = -4.50", "-4.5"),
        ("US$1,200.00 in total", "1200"),
        ("10-3", "3"),
        ("3.14159", "3.14159"),
        ("0.0", "0"),
        ("no digits here", None),
        ("", None),
    ],
)
def test_extract_number(response: str, expected: str | None) -> None:
    assert extract_number(response) == expected


CHOICES = ["37", "52", "17 + 25"]


@pytest.mark.parametrize(
    ("response", "expected"),
    [
        ("B", "B"),
        ("b", "B"),
        ("(B)", "B"),
        ("B)", "B"),
        ("B.", "B"),
        ("**B**", "B"),
        ("Answer: B", "B"),
        ("answer: (c)", "C"),
        ("The answer is b", "B"),
        ("The answer is B because 52 > 37.", "B"),
        ("Option A is smaller, so the answer is B.", "B"),
        ("B) 52", "B"),
        ("52", "B"),
        ("The larger one is 52.", "B"),
        ("17 + 25", "C"),
        ("The answer is a number.", None),
        ("D", None),
        ("I am not sure.", None),
        ("", None),
    ],
)
def test_extract_choice(response: str, expected: str | None) -> None:
    assert extract_choice(response, CHOICES) == expected


def test_extract_choice_maps_label_text_to_letter() -> None:
    assert extract_choice("Blue", ["Red", "Blue", "Green"]) == "B"
    assert extract_choice("green.", ["Red", "Blue", "Green"]) == "C"
    assert extract_choice("Red or Blue", ["Red", "Blue", "Green"]) is None  # ambiguous


def test_extract_choice_needs_choices() -> None:
    with pytest.raises(ValueError, match="choices is empty"):
        extract_choice("A", [])


@pytest.mark.parametrize(
    ("response", "answer", "expected"),
    [
        ("12", "12", True),
        ("The answer is 12.", "12", True),
        ("12.0000000001", "12", True),
        ("1,200", "1200", True),
        ("$-3", "-3", True),
        ("-3", "-3", True),
        ("12.5", "12", False),
        ("13", "12", False),
        ("7 + 5 = 12, wait, 13", "12", False),
        ("I don't know", "12", False),
        ("", "12", False),
    ],
)
def test_is_correct_number(response: str, answer: str, expected: bool) -> None:
    assert is_correct(response, answer, "number") is expected


@pytest.mark.parametrize(
    ("response", "answer", "expected"),
    [
        ("B", "B", True),
        ("(b)", "B", True),
        ("Answer: B", "B", True),
        ("A", "B", False),
        ("The answer is C.", "B", False),
        ("nothing", "B", False),
    ],
)
def test_is_correct_choice(response: str, answer: str, expected: bool) -> None:
    assert is_correct(response, answer, "choice") is expected
    assert is_correct(response, answer, "choice", CHOICES) is expected


def test_is_correct_choice_by_text_needs_the_choices() -> None:
    assert is_correct("52", "B", "choice", CHOICES)
    assert not is_correct("37", "B", "choice", CHOICES)
    assert not is_correct("52", "B", "choice")  # without option texts a bare number picks no letter


def test_extract_answer_dispatches_on_type() -> None:
    assert extract_answer("It is 42.", "number") == "42"
    assert extract_answer("Answer: C", "choice", CHOICES) == "C"


ALL_TYPES = "\\['number', 'choice', 'multi_choice', 'expression', 'text'\\]"


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: is_correct("12", "12", "essay"), f"unknown answer_type 'essay'; valid types: {ALL_TYPES}"),
        (lambda: extract_answer("12", "float"), "unknown answer_type 'float'"),
        (lambda: is_correct("12", "twelve", "number"), f"number answer 'twelve' is not a number; .*{ALL_TYPES}"),
        (lambda: is_correct("B", "BB", "choice"), f"choice answer 'BB' must be a single option letter.*{ALL_TYPES}"),
        (lambda: is_correct("B", "Z", "choice", ["x", "y"]), "choice answer 'Z' .* or the text of one of the choices"),
        (lambda: is_correct("A", "A1", "multi_choice"),
         f"multi_choice answer 'A1' must be option letters.*{ALL_TYPES}"),
        (lambda: is_correct("A", "A, E", "multi_choice", "ABCD"), "multi_choice answer 'A, E'"),
        (lambda: is_correct("12", "  $ $ ", "expression"), f"expression answer '  \\$ \\$ ' is empty.*{ALL_TYPES}"),
        (lambda: is_correct("yes", " ", "text"), "text answer ' ' is empty"),
        (lambda: is_correct("12", "12", "number", precision=-1), "precision must be a non-negative int"),
    ],
)
def test_errors_name_the_bad_value(call, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        call()


def test_answer_types() -> None:
    assert ANSWER_TYPES == ("number", "choice", "multi_choice", "expression", "text")


# ---------------------------------------------------------------------------------------------------------
# Where the answer is taken from: </think>, \boxed, "answer is"/"Answer:", then the type's last rule


@pytest.mark.parametrize(
    ("response", "expected"),
    [
        ("\\boxed{12}", "12"),
        ("The answer is $\\boxed{12}$ apples.", "12"),
        ("12 cm", "12"),
        ("$12$", "12"),
        ("12%", "12"),
        ("Answer: 12 cm^2", "12"),
        ("Answer: x = 12", "12"),
        ("\\boxed{\\frac{3}{4}}", "0.75"),
        ("Answer: 3/4", "0.75"),
        ("Answer: -\\dfrac{1}{2}", "-0.5"),
        ("Answer: 2 \\times 6 = 12", "12"),
        ("Answer: 12 apples, because 7 + 5 = 12", "12"),
        ("So the probability is $\\frac{1}{4}$.", "0.25"),
        ("First \\boxed{7}, then corrected: \\boxed{9}", "9"),
        ("\\boxed{9}\nAnswer: 7", "9"),  # boxed is preferred over an "Answer:" line
        ("The answer is 4.\nCheck: the question gave 12 and 3.", "4"),  # marked answer over the last number
        ("<think>12 / 3 = 4, or is it 5?</think>\nAnswer: 4", "4"),
        ("<think>Answer: 5</think> so 4", "4"),
        ("<answer>4</answer>", "4"),
        ("Answer:\n\n4", "4"),
    ],
)
def test_extract_number_prefers_the_marked_answer(response: str, expected: str) -> None:
    assert extract_number(response) == expected


@pytest.mark.parametrize(
    ("response", "answer", "precision", "expected"),
    [
        ("Answer: 1.24", "1.2", 1, True),
        ("Answer: 1.25", "1.2", 1, False),  # half-up: 1.3
        ("Answer: 1.15", "1.2", 1, True),
        ("Answer: 0.333", "0.33", 2, True),
        ("Answer: 0.34", "0.33", 2, False),
        ("Answer: 1/3", "0.33", 2, True),
        ("Answer: 70.35", "70.4", 1, True),
        ("Answer: 7", "7", 0, True),
        ("Answer: 7.4", "7", 0, True),
        ("Answer: 7.5", "7", 0, False),
        ("Answer: 1.2000001", "1.2", None, True),  # tolerance 1e-6 without precision
        ("Answer: 1.21", "1.2", None, True),  # a gold with decimals is rounded: 1.21 is 1.2 at its places (issue 14)
        ("Answer: 1.25", "1.2", None, False),
        ("Answer: 12%", "12", None, True),
        ("Answer: \\$1,450,000", "1,450,000", None, True),
        ("Answer: 1450001", "1,450,000", None, False),
    ],
)
def test_number_precision_and_wrappers(response: str, answer: str, precision: int | None, expected: bool) -> None:
    assert is_correct(response, answer, "number", precision=precision) is expected


@pytest.mark.parametrize(
    ("response", "answer"),
    [
        # The gold (12) is a number of the question; the response restates it, then answers something else.
        ("There are 12 apples and 3 children, so each child gets 4.\nAnswer: 4", "12"),
        ("Given AB = 12 and BC = 5, the area is \\boxed{30}.", "12"),
        ("The question says 12 apples. The answer is 4.", "12"),
        ("Step 1: 12 apples. Step 2: 12 / 3 = 4.\nAnswer: $4$", "12"),
        ("Answer: 4 (the question mentions 12 apples)", "12"),
    ],
)
def test_numbers_restated_from_the_question_are_not_the_answer(response: str, answer: str) -> None:
    assert not is_correct(response, answer, "number")
    assert not is_correct(response, answer, "expression")


def test_unmarked_responses_fall_back_to_the_last_number() -> None:
    assert is_correct("Mia had 7 and bought 5, so she has 12 now.", "12", "number")
    # A limitation, kept visible: with no marked answer, a number restated after the answer is taken.
    assert extract_number("So 3 are blue out of 5.") == "5"


# ---------------------------------------------------------------------------------------------------------
# Option letters


OPTIONS = ["$5 \\mathrm{~km}$", "$8 \\mathrm{~km}$", "$9 \\mathrm{~km}$", "$12 \\mathrm{~km}$", "$15 \\mathrm{~km}$"]


@pytest.mark.parametrize(
    ("response", "expected"),
    [
        ("\\boxed{C}", "C"),
        ("\\boxed{\\text{(C)}}", "C"),
        ("Answer: C. 9 km", "C"),
        ("Answer: (C) 9 km", "C"),
        ("The correct option is (C).", "C"),
        ("Answer: 9 km", "C"),  # by value
        ("The distance is $9\\,\\text{km}$.", "C"),
        ("\\boxed{9}", "C"),
        ("Answer: C\n\nOption (A) is too short and (E) too long.", "C"),
        ("Looking at (A), (B) and (C): each is possible.", None),  # several marked letters: none chosen
        ("Answer: A or B", None),  # a hedge names no single option
        ("Answer: 10 km", None),
        ("Options: (A) 5 km (B) 8 km (C) 9 km. I cannot tell from the image.", None),
    ],
)
def test_extract_choice_cases(response: str, expected: str | None) -> None:
    assert extract_choice(response, OPTIONS) == expected


def test_choice_gold_given_as_option_text() -> None:
    shapes = ["Lanceolate", "Heart-shaped", "Linear", "Spatulate"]
    assert is_correct("Answer: C", "Linear", "choice", shapes)
    assert is_correct("The leaf is linear.", "Linear", "choice", shapes)
    assert not is_correct("Answer: B", "Linear", "choice", shapes)
    assert not is_correct("Answer: Heart-shaped", "Linear", "choice", shapes)
    duplicated = ["9", "12", "18", "18"]  # a real MathVista option list
    for response in ("Answer: C", "Answer: D", "Answer: 18"):
        assert is_correct(response, "18", "choice", duplicated)
    assert not is_correct("Answer: 12", "18", "choice", duplicated)
    assert is_correct("Answer: (B)", "(B)", "choice")  # MathVerse writes some golds in parentheses


def test_choice_texts_with_their_own_letter_prefix() -> None:
    options = ["A:$\\sin \\left(0^{\\circ}\\right)$", "B:$\\cos \\left(0^{\\circ}\\right)$", "C:This is a function"]
    assert extract_choice("Answer: This is a function", options) == "C"
    assert extract_choice("Answer: B", options) == "B"


def test_article_a_is_not_option_a() -> None:
    assert extract_choice("Answer: A triangle cannot have two right angles.", "ABCDE") is None
    assert extract_choice("Answer: A because the pattern repeats", "ABCDE") == "A"


# ---------------------------------------------------------------------------------------------------------
# Sets of letters (LogicVista)


@pytest.mark.parametrize(
    ("response", "expected"),
    [
        ("Answer: A, C", "A, C"),
        ("Answer: C, A", "A, C"),
        ("Answer: A and C", "A, C"),
        ("\\boxed{AC}", "A, C"),
        ("\\boxed{A, C}", "A, C"),
        ("The correct options are (A) and (C).", "A, C"),
        ("Answer: Options A and C are correct.", "A, C"),
        ("Answer: C, since D is too small", "C"),
        ("Answer: B", "B"),
        ("B", "B"),
        ("I think it is none of them.", None),
    ],
)
def test_extract_letters(response: str, expected: str | None) -> None:
    assert extract_letters(response, "ABCDE") == expected


@pytest.mark.parametrize(
    ("response", "answer", "expected"),
    [
        ("Answer: A, C", "A, C", True),
        ("Answer: C and A", "AC", True),
        ("Answer: A", "A, C", False),
        ("Answer: A, B, C", "A, C", False),
        ("Answer: C", "C", True),
        ("Answer: C, D", "C", False),
    ],
)
def test_multi_choice_is_an_exact_set(response: str, answer: str, expected: bool) -> None:
    assert is_correct(response, answer, "multi_choice", "ABCDE") is expected
    assert is_correct(response, answer, "multi_choice") is expected


# ---------------------------------------------------------------------------------------------------------
# Expressions


@pytest.mark.parametrize(
    ("response", "answer", "expected"),
    [
        ("Answer: $\\frac{1}{2}$", "\\frac{1}{2}", True),
        ("Answer: 0.5", "\\frac{1}{2}", True),
        ("Answer: 1/2", "\\frac{1}{2}", True),
        ("Answer: \\dfrac12", "\\frac{1}{2}", True),
        ("Answer: 2/4", "\\frac{1}{2}", True),
        ("Answer: 2/3", "\\frac{1}{2}", False),
        ("Answer: -1/2", "\\frac{1}{2}", False),
        ("Answer: 50%", "50", True),
        ("Answer: 2\\pi", "2\\pi", True),
        ("Answer: 6.28", "2\\pi", True),
        ("Answer: 6.3", "2\\pi", False),  # one decimal is not enough to stand for an exact gold
        ("Answer: \\sqrt{8}", "2\\sqrt{2}", True),
        ("Answer: 2\\sqrt{3}", "2\\sqrt{2}", False),
        ("Answer: 8.2462", "8.246", True),  # a rounded gold: agrees at its precision
        ("Answer: \\sqrt{68}", "8.246", True),
        ("Answer: 8.247", "8.246", False),
        ("Answer: 8.25", "8.246", True),  # the gold rounded to the response's 2 places
        ("Answer: 8.2", "8.246", False),
        ("Answer: 45°", "45^\\circ", True),
        ("Answer: 45 degrees", "45", True),
        ("Answer: 12 cm^2", "Area $=12 \\mathrm{~cm}^{2}$", True),
        ("Answer: (1, 2)", "(1,2)", True),
        ("Answer: (2, 1)", "(1,2)", False),
        ("Answer: [1, 2)", "[1,2)", True),
        ("Answer: [1, 2]", "[1,2)", False),
        ("Answer: 2, 1", "1, 2", True),  # a bare list is order-free
        ("Answer: x = 3", "3", True),
        ("Answer: y = 2x + 1", "y = 2x + 1", True),
        ("Answer: 2x - y + 1 = 0", "y = 2x + 1", True),
        ("Answer: 2x + 1", "y = 2x + 1", True),
        ("Answer: x^2 + 2x + 1", "(x+1)^2", True),
        ("Answer: x^2 + 1", "(x+1)^2", False),
        ("Answer: 3 + 4i", "3+4i", True),
        ("Answer: 3 - 4i", "3+4i", False),
        ("Answer: \\log_2 8", "3", True),
        ("Answer: 5!", "120", True),
        ("Answer: 1.5 \\times 10^{3}", "1500", True),
        ("Answer: 1.5e3", "1500", True),
        ("Answer: it is 5", "5", True),
        ("Answer: 5 or 6", "5", False),
    ],
)
def test_expression_equivalence(response: str, answer: str, expected: bool) -> None:
    assert is_correct(response, answer, "expression") is expected


def test_expression_precision() -> None:
    assert is_correct("Answer: 2.0944", "2.0944", "expression", precision=2)
    assert is_correct("Answer: \\frac{2\\pi}{3}", "2.09", "expression", precision=2)
    assert not is_correct("Answer: 2.1", "2.09", "expression", precision=2)


@pytest.mark.parametrize(
    "response",
    [
        "Answer: 2^{2^{2^{2^{2^{2}}}}}",
        "Answer: 10^{100000}",
        "Answer: 9^{9^{9}}",
        "Answer: 1000!",
        "Answer: " + "(" * 300 + "1" + ")" * 300,
        "Answer: " + "1" * 5000,
        "Answer: " + "x+" * 3000 + "1",
        "\\boxed{" * 200 + "1" + "}" * 200,
        "answer is " * 2000,
    ],
)
def test_hostile_answers_return_quickly(response: str) -> None:
    start = time.perf_counter()
    for answer_type, gold in (("expression", "3"), ("number", "3"), ("text", "3")):
        assert is_correct(response, gold, answer_type) is False
        extract_answer(response, answer_type)
    assert time.perf_counter() - start < 2.0


def test_no_eval_of_the_response() -> None:
    assert not is_correct("Answer: __import__('os').system('true')", "0", "expression")
    assert not is_correct("\\boxed{().__class__}", "0", "expression")


# ---------------------------------------------------------------------------------------------------------
# Text


@pytest.mark.parametrize(
    ("response", "answer", "expected"),
    [
        ("Answer: Yes", "yes", True),
        ("Answer: **Yes**, because the lines are parallel.", "Yes", True),
        ("The answer is \\text{Tokyo}.", "tokyo", True),
        ("Answer: the lower half", "Lower half", True),
        ("Answer: 05:00", "5:0", True),
        ("Answer: not yes", "yes", False),
        ("Answer: No", "Yes", False),
        ("The answer is not Tokyo, it is Osaka.", "Tokyo", False),
        ("Tokyo", "Tokyo", True),
    ],
)
def test_text_answers(response: str, answer: str, expected: bool) -> None:
    assert is_correct(response, answer, "text") is expected


def test_extract_answer_for_every_type() -> None:
    assert extract_answer("Answer: 12 cm", "number") == "12"
    assert extract_answer("Answer: (C) 9 km", "choice", OPTIONS) == "C"
    assert extract_answer("Answer: C", "choice") == "C"
    assert extract_answer("Answer: C and A", "multi_choice", "ABCD") == "A, C"
    assert extract_answer("So the answer is $\\frac{3}{4}$.", "expression") == "\\frac{3}{4}"
    assert extract_answer("Answer: Lower half.", "text") == "Lower half"
    assert extract_answer("Answer: 1.24", "number", precision=1) == "1.24"  # logged as the model wrote it
    for answer_type in ANSWER_TYPES:
        assert extract_answer("", answer_type, "ABCD") is None
