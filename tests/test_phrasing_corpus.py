"""The phrasing corpus (tests/phrasing/) against the scorer: every benchmark's real gold answers in the phrasings
models use, labelled right or wrong by construction, scored through the task path (``score_doc``).

Targets, outside the documented limitations (tests/phrasing/limitations.py, docs/scoring_corpus.md): at least
99.5% of right responses accepted and 99.9% of wrong ones rejected, overall and per benchmark. A failure names
the first phrasings that miss. Skipped when the shared sample data (``../shared/data``) is absent.
"""

from __future__ import annotations

import sys
from collections import Counter
from decimal import Decimal
from pathlib import Path

import pytest
from phrasing import reference
from phrasing.corpus import RIGHT_CLASSES, WRONG_CLASSES, build_corpus, item_responses
from phrasing.forms import decimal_of_fraction, perturbed_text, thousands, unicode_math, unit_in, usable_options
from phrasing.items import BENCHMARKS, DATA, Item, inline_options, load_items
from phrasing.limitations import LIMITATIONS, is_limitation
from phrasing.report import Tally, Verdict, counted, failure_line, judge, table, tally

from rd_eval.scoring.item import Gold

REPO = Path(__file__).resolve().parents[1]
RIGHT_TARGET = 99.5
WRONG_TARGET = 99.9
needs_data = pytest.mark.skipif(not DATA.is_dir(), reason=f"shared sample data not found at {DATA}")


@pytest.fixture(scope="module")
def items() -> list[Item]:
    return load_items()


@pytest.fixture(scope="module")
def verdicts(items: list[Item]) -> list[Verdict]:
    return judge(build_corpus(items))


def _misses(chosen: list[Verdict], limit: int = 12) -> str:
    failures = [v for v in chosen if not v.agrees]
    return "\n".join(failure_line(v) for v in failures[:limit]) + (
        f"\n... {len(failures) - limit} more" if len(failures) > limit else "")


# -- the corpus itself --------------------------------------------------------------------------------------------


def test_inline_options_read_the_lettered_list_of_a_question() -> None:
    question = "Which weight? Select from A, B and C. (A) 1 lb  (B) 2 lb (C) 8 lb"
    assert inline_options(question) == ("1 lb", "2 lb", "8 lb")
    assert inline_options("Select from A, B and C  (A)  A  (B)  B (C) C") == ("", "", "")  # letters, no texts
    assert inline_options("choice: (A) Yes (B) No") == ("Yes", "No")
    assert inline_options("(B) first (A) second") == ()  # out of order: not an option list
    assert inline_options("no options here (A)") == ()


def test_surface_forms() -> None:
    assert thousands(Decimal("1490")) == ["1,490", "1{,}490", "1\\,490"]
    assert thousands(Decimal("-12345.5"))[0] == "-12,345.5"
    assert thousands(Decimal("999")) == []
    assert decimal_of_fraction("\\frac{1}{4}") == "0.25" and decimal_of_fraction("-3/8") == "-0.375"
    assert decimal_of_fraction("\\frac{1}{3}") is None and decimal_of_fraction("x") is None
    assert perturbed_text("(2,-2)") == "(2,-3)"
    # the value changes, never the unit's power
    assert perturbed_text("Area $=9 \\pi \\mathrm{cm}^{2}$") == "Area $=0 \\pi \\mathrm{cm}^{2}$"
    assert perturbed_text("x^2") is None
    assert unit_in("How old is he? (Unit: years)") == "years" and unit_in("the side is 4 cm long") == "cm"
    assert unit_in("How many apples?") is None
    assert usable_options(("A", "12", "12", "Yes", "")) == ["", "", "", "Yes", ""]
    assert unicode_math("11\\sqrt2") == "11√2" and unicode_math("\\sqrt{53}") == "√53"
    assert unicode_math("12\\pi") == "12π"
    assert unicode_math("\\frac{\\pi}{2}") is None and unicode_math("x^2") is None


def test_responses_are_labelled_by_construction() -> None:
    item = Item("demo", "d1", "Which weight? (A) 1 lb (B) 2 lb (C) 8 lb (D) 10 lb", Gold("B", "choice"),
                ("1 lb", "2 lb", "8 lb", "10 lb"))
    responses = item_responses(item)
    assert item_responses(item) == responses  # seeded: the same item gives the same corpus
    right = {r.text for r in responses if r.right}
    wrong = {r.text for r in responses if not r.right}
    assert {"B", "(B) 2 lb", "2 lb"} <= right and not right & wrong
    assert "(A) 1 lb (B) 2 lb (C) 8 lb (D) 10 lb" in wrong
    for r in responses:
        if not r.right and r.phrasing != "follow_on_question":
            assert r.text.splitlines()[-1] != "Answer: B", r
    # a made-up follow-on question answered with the gold does not make a wrong answer right, nor the reverse
    follow = {r.right: r.text for r in responses if r.phrasing == "follow_on_question"}
    assert "Answer: B\n\nQuestion 2" in follow[True] and follow[False].endswith("Answer: B")
    duplicated = item_responses(Item("demo", "d3", "?", Gold("C", "choice", ("9", "12", "18", "18")),
                                     ("9", "12", "18", "18")))
    assert not any(r.text.endswith(("Answer: D", "{D}")) for r in duplicated if not r.right)  # D is C's twin
    assert any(r.text.endswith("Answer: A") or r.text.endswith("Answer: B") for r in duplicated if not r.right)
    number = item_responses(Item("demo", "d2", "How far? (Unit: km)", Gold("1490", "number")))
    texts = {(r.phrasing, r.text.splitlines()[-1]) for r in number}
    assert ("with_unit", "Answer: 1490 km") in texts and ("thousands_separator", "The answer is 1,490.") in texts
    assert ("hedge", "1490 or 1639") in texts and ("perturbed_value", "Answer: 1639") in texts
    half = item_responses(Item("demo", "d4", "?", Gold("2.5", "number")))
    small = {(r.phrasing, r.text.splitlines()[-1]) for r in half}
    assert ("number_words", "Counting them in the figure, there are two left.") not in small  # not an integer
    assert ("fraction_decimal", "Answer: 2 1/2") in small and ("fraction_decimal", "Answer: \\frac{5}{2}") in small
    for r in number:  # reasoning before the answer never states the gold
        reasoning = [line for line in r.text.splitlines() if line.startswith("From the figure")]
        assert all("1490" not in line for line in reasoning), r.text


@needs_data
def test_corpus_covers_every_benchmark_and_class(items: list[Item]) -> None:
    responses = build_corpus(items)
    assert {i.benchmark for i in items} == set(BENCHMARKS)
    assert responses == build_corpus(items)  # deterministic
    classes = Counter(r.phrasing for r in responses)
    assert set(classes) == set(RIGHT_CLASSES) | set(WRONG_CLASSES)
    labels = {(r.phrasing, r.right) for r in responses}
    assert all((c, True) in labels for c in RIGHT_CLASSES) and all((c, False) in labels for c in WRONG_CLASSES)
    per_item = Counter(r.item.item_id for r in responses if r.right)
    assert min(per_item.values()) >= 10
    for lim in LIMITATIONS:  # every limitation covers real responses
        assert any(lim.covers(r) for r in responses), lim.name
    # only a class made for a limitation is left out whole; the others keep the responses the scorer must read
    whole = {c for c, n in classes.items() if sum(is_limitation(r) for r in responses if r.phrasing == c) == n}
    assert whole == {"two_units"}


def test_tables_count_what_they_say() -> None:
    item = Item("demo", "d1", "?", Gold("7", "number"))
    rs = item_responses(item)[:2] + [r for r in item_responses(item) if not r.right][:2]
    verdicts = [Verdict(rs[0], True, "7"), Verdict(rs[1], False, None), Verdict(rs[2], False, None),
                Verdict(rs[3], False, None)]
    rows = tally(verdicts, lambda v: v.response.key)
    t = rows[("demo", "number")]
    assert (t.right, t.accepted, t.wrong, t.rejected) == (2, 1, 2, 2)
    assert t.accepted_pct == 50.0 and t.rejected_pct == 100.0 and Tally().accepted_pct is None
    assert "| demo × number | 50.0% (2) | 100.0% (2) |" in table(rows, "benchmark × answer type")


# -- the scorer against the corpus ----------------------------------------------------------------------------------


@needs_data
def test_scorer_meets_targets_overall(verdicts: list[Verdict]) -> None:
    chosen = counted(verdicts, with_limitations=False)
    total = Tally()
    for v in chosen:
        total.add(v)
    assert total.accepted_pct >= RIGHT_TARGET and total.rejected_pct >= WRONG_TARGET, (
        f"right accepted {total.accepted_pct:.2f}% (target {RIGHT_TARGET}), wrong rejected "
        f"{total.rejected_pct:.2f}% (target {WRONG_TARGET}); first misses:\n{_misses(chosen)}")


@needs_data
@pytest.mark.parametrize("benchmark", BENCHMARKS)
def test_scorer_meets_targets_per_benchmark(verdicts: list[Verdict], benchmark: str) -> None:
    chosen = [v for v in counted(verdicts, with_limitations=False) if v.response.item.benchmark == benchmark]
    total = Tally()
    for v in chosen:
        total.add(v)
    assert total.right and total.wrong
    assert total.accepted_pct >= RIGHT_TARGET and total.rejected_pct >= WRONG_TARGET, (
        f"{benchmark}: right accepted {total.accepted_pct:.2f}%, wrong rejected {total.rejected_pct:.2f}%; "
        f"first misses:\n{_misses(chosen)}")


@needs_data
def test_limitations_are_excluded_and_nothing_else(verdicts: list[Verdict]) -> None:
    kept = counted(verdicts, with_limitations=False)
    assert len(kept) == sum(not is_limitation(v.response) for v in verdicts) < len(verdicts)
    assert len(counted(verdicts, with_limitations=True)) == len(verdicts)


# -- math-verify as an independent reference (its own interpreter; skipped where it is not installed) ----------------

REFERENCE_SAMPLE = 300


def test_reference_python_is_named_or_found(tmp_path) -> None:
    with pytest.raises(FileNotFoundError, match="RD_EVAL_MATH_VERIFY_PYTHON"):
        reference.reference_python({reference.PYTHON_ENV: str(tmp_path / "missing" / "python")})
    named = tmp_path / "python"
    named.write_text("")
    assert reference.reference_python({reference.PYTHON_ENV: str(named)}) == named
    found = reference.reference_python({})
    assert found == (reference.DEFAULT_PYTHON if reference.DEFAULT_PYTHON.is_file() else None)


def test_math_verify_applies_to_exact_free_form_golds_only() -> None:
    def verdict(gold: Gold) -> Verdict:
        return Verdict(item_responses(Item("demo", "d", "?", gold))[0], True, None)

    assert reference.applies(verdict(Gold("7", "number"))) and reference.applies(verdict(Gold("\\sqrt2", "expression")))
    assert not reference.applies(verdict(Gold("B", "choice", ("1", "2"))))
    assert not reference.applies(verdict(Gold("1.25", "number", precision=2)))  # MathVista's rounding rule
    assert not reference.applies(verdict(Gold("4:45", "expression")))  # a clock time


@pytest.fixture(scope="module")
def mv_python():
    python = reference.reference_python()
    if python is None:
        pytest.skip(f"math-verify reference interpreter absent: set {reference.PYTHON_ENV} or create "
                    f"{reference.DEFAULT_PYTHON} (pip install -r tests/phrasing/reference-requirements.txt)")
    return python


def test_math_verify_worker_judges_and_reports_failures(mv_python) -> None:
    pairs = [("\\frac{1}{2}", "The answer is $0.5$."), ("7", "Answer: 8"), ("7", "I cannot tell."),
             ("2\\sqrt{3}", "\\boxed{\\sqrt{12}}")]
    assert reference.math_verify_verdicts(mv_python, pairs) == [True, False, False, True]
    with pytest.raises(RuntimeError, match="failed"):
        reference.math_verify_verdicts(Path(sys.executable), [("1", "1")])  # rd-eval's python has no math-verify


@needs_data
def test_rd_eval_is_right_at_least_as_often_as_math_verify(mv_python, verdicts: list[Verdict]) -> None:
    """On a seeded sample of the free-form items math-verify applies to, both judge against the label; rd-eval must
    be right at least as often (else math-verify would earn its place in the scorer, docs/scoring_corpus.md)."""
    comparisons = reference.compare(mv_python, reference.sample(verdicts, REFERENCE_SAMPLE))
    s = reference.summary(comparisons)
    print(f"rd-eval vs math-verify on {s}")
    assert s["compared"] == REFERENCE_SAMPLE
    assert s["math_verify_no_verdict"] <= REFERENCE_SAMPLE // 50, s  # its time limit rarely bites
    assert s["rd_eval_right"] >= s["math_verify_right"], s


# -- perf/scoring_speed.py --------------------------------------------------------------------------------------------


@needs_data
def test_scoring_speed_scores_the_asked_mix(capsys) -> None:
    if str(REPO) not in sys.path:
        sys.path.insert(0, str(REPO))
    from perf import scoring_speed

    result = scoring_speed.measure(300)
    assert result["responses"] == 300 and result["seconds"] > 0
    assert sum(v["responses"] for v in result["by_answer_type"].values()) == 300
    assert {"choice", "number", "expression"} <= set(result["by_answer_type"])
    assert "| all | 300 |" in scoring_speed.table(result)
    more = scoring_speed.sample_responses(40_000)  # more than the corpus holds: drawn again with another seed
    assert len(more) == 40_000 and len(set(map(id, more))) < 40_000
    with pytest.raises(SystemExit):
        scoring_speed.main(["--count", "0"])
    assert "--count must be at least 1" in capsys.readouterr().err
