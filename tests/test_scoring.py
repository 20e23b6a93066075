"""Rule-based scoring: real response formats, right and wrong answers, and error paths."""

from __future__ import annotations

import pytest

from rd_eval.scoring import extract_answer, extract_choice, extract_number, is_correct


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


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: is_correct("12", "12", "essay"), "unknown answer_type 'essay'; valid types: \\['number', 'choice'\\]"),
        (lambda: extract_answer("12", "float"), "unknown answer_type 'float'"),
        (lambda: is_correct("12", "twelve", "number"), "number answer 'twelve' is not a number"),
        (lambda: is_correct("B", "BB", "choice"), "single option letter"),
    ],
)
def test_errors_name_the_bad_value(call, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        call()
