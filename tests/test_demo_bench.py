"""The rd_demo generator is deterministic, its twins match its images, and its records round-trip."""

from __future__ import annotations

import dataclasses
import json
import os
import re
from collections import Counter

import pytest
import rd_eval_tasks

from rd_eval.twins.demo_bench import (
    KINDS,
    OPTION_LETTERS,
    RECORD_KEYS,
    DemoProblem,
    from_record,
    generate_problems,
    main,
    make_problem,
    render_problem,
    to_jsonl,
    to_record,
)
from rd_eval.twins.render import png_bytes

SHIPPED = os.path.join(os.path.dirname(rd_eval_tasks.__file__), "rd_demo", "rd_demo.jsonl")
PROBLEMS = generate_problems(40, 0)


def _shown_strings(p: DemoProblem) -> list[str]:
    """Every string the image form draws, taken from the structured fields."""
    strings = [p.title, p.context, p.question, *p.choices, *p.table_header, *p.chart_labels]
    strings += [cell for row in p.table_rows for cell in row]
    strings += [str(v) for v in p.chart_values]
    return [s for s in strings if s]


def _option_value(text: str) -> int:
    return sum(int(term) for term in text.split("+"))


def test_generation_is_deterministic_and_seed_dependent() -> None:
    assert generate_problems(40, 0) == PROBLEMS
    assert generate_problems(40, 1) != PROBLEMS


def test_smaller_n_is_a_prefix() -> None:
    assert generate_problems(9, 0) == PROBLEMS[:9]


def test_kinds_are_mixed_evenly() -> None:
    assert Counter(p.kind for p in PROBLEMS) == {kind: 10 for kind in KINDS}
    types = Counter(p.answer_type for p in PROBLEMS)
    assert types["number"] > 0 and types["choice"] > 0


def test_pair_ids_are_unique_and_formatted() -> None:
    ids = [p.pair_id for p in PROBLEMS]
    assert len(set(ids)) == len(ids)
    assert all(re.fullmatch(r"rd_demo-\d{4}", i) for i in ids)


def test_shipped_jsonl_equals_generator_output() -> None:
    with open(SHIPPED, encoding="utf-8") as fh:
        shipped = fh.read()
    assert shipped == to_jsonl(PROBLEMS), "regenerate: python -m rd_eval.twins.demo_bench --n 40 --seed 0"
    lines = shipped.splitlines()
    assert len(lines) == 40
    ids = [json.loads(line)["pair_id"] for line in lines]
    assert ids == sorted(ids)


@pytest.mark.parametrize("p", PROBLEMS, ids=lambda p: p.pair_id)
def test_text_twin_carries_everything_the_image_shows(p: DemoProblem) -> None:
    for s in _shown_strings(p):
        assert s in p.text_twin, f"{s!r} is drawn in the image but missing from the text twin"
    for i, choice in enumerate(p.choices):
        assert f"{OPTION_LETTERS[i]}) {choice}" in p.text_twin
    shown_numbers = Counter(n for s in _shown_strings(p) for n in re.findall(r"\d+", s))
    twin_numbers = Counter(re.findall(r"\d+", p.text_twin))
    assert not shown_numbers - twin_numbers


@pytest.mark.parametrize("p", PROBLEMS, ids=lambda p: p.pair_id)
def test_answers_follow_from_the_content(p: DemoProblem) -> None:
    if p.kind == "comparison":
        values = [_option_value(c) for c in p.choices]
        assert len(set(values)) == len(values)
        pick = max if "largest" in p.question else min
        assert p.answer == OPTION_LETTERS[values.index(pick(values))]
    elif p.kind == "bar_chart" and p.answer_type == "choice":
        assert p.choices == p.chart_labels
        assert p.answer == OPTION_LETTERS[p.chart_values.index(max(p.chart_values))]
    elif p.kind == "bar_chart":
        a, b = re.findall(r"value for (\w+)", p.question)
        values = dict(zip(p.chart_labels, p.chart_values, strict=True))
        assert int(p.answer) == values[a] - values[b] > 0
    elif p.kind == "table":
        rows = {name: (int(price), int(qty)) for name, price, qty in p.table_rows}
        if "total cost of all" in p.question:
            expected = sum(price * qty for price, qty in rows.values())
        elif "How many more" in p.question:
            a, b = re.match(r"How many more (\w+) than (\w+)", p.question).groups()
            expected = rows[a][1] - rows[b][1]
        else:
            name = re.search(r"all the (\w+) cost", p.question).group(1)
            expected = rows[name][0] * rows[name][1]
        assert int(p.answer) == expected > 0
    else:
        assert int(p.answer) > 0


@pytest.mark.parametrize("p", PROBLEMS[:8], ids=lambda p: p.pair_id)
def test_render_problem_is_deterministic_rgb(p: DemoProblem) -> None:
    img = render_problem(p)
    assert img.mode == "RGB"
    assert img.width == 448 and 60 <= img.height <= 900
    assert png_bytes(img) == png_bytes(render_problem(p))


def test_different_problems_render_differently() -> None:
    assert len({png_bytes(render_problem(p)) for p in PROBLEMS[:8]}) == 8


def test_record_round_trip() -> None:
    for p in PROBLEMS:
        record = to_record(p)
        assert tuple(record) == RECORD_KEYS
        assert from_record(json.loads(json.dumps(record))) == p


def _record(**changes: object) -> dict[str, object]:
    record = to_record(PROBLEMS[3])  # a bar chart with choices exercises the most fields
    record.update(changes)
    return record


@pytest.mark.parametrize(
    ("record", "message"),
    [
        ("not a dict", "must be a mapping"),
        ({k: v for k, v in _record().items() if k != "answer"}, "missing keys \\['answer'\\]"),
        (_record(extra=1), "unknown keys \\['extra'\\]"),
        (_record(kind="poem"), "kind 'poem' is not one of"),
        (_record(answer_type="essay"), "answer_type 'essay'"),
        (_record(answer="Z"), "answer 'Z' must be one of"),
        (_record(choices="Red"), "'choices' must be a list of strings"),
        (_record(chart_values=[1, "2", 3, 4]), "'chart_values' must be a list of ints"),
        (_record(chart_values=[1, 2, 3]), "equal lengths"),
        (_record(text_twin="something else"), "text_twin does not match"),
        (_record(question=7), "'question' must be a string"),
    ],
)
def test_bad_record_raises_value_error(record: object, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        from_record(record)  # type: ignore[arg-type]


def test_bad_record_error_names_the_pair() -> None:
    with pytest.raises(ValueError, match="rd_demo-0003"):
        from_record(_record(answer="Z"))


def test_problem_fields_are_validated_on_construction() -> None:
    p = PROBLEMS[0]
    with pytest.raises(ValueError, match="number problems take no choices"):
        dataclasses.replace(p, choices=("1", "2"))
    with pytest.raises(ValueError, match="not a number"):
        make_problem("x-1", "arithmetic", {"question": "Q?", "answer": "twelve", "answer_type": "number"})


def test_generate_rejects_bad_n() -> None:
    with pytest.raises(ValueError, match="n=-1"):
        generate_problems(-1, 0)
    assert generate_problems(0, 0) == []


def test_main_writes_sorted_jsonl_atomically(tmp_path) -> None:
    out = tmp_path / "sub" / "demo.jsonl"
    assert main(["--n", "6", "--seed", "3", "--out", str(out)]) == 0
    assert out.read_text(encoding="utf-8") == to_jsonl(generate_problems(6, 3))
    assert sorted(os.listdir(out.parent)) == ["demo.jsonl"]  # no temp file left behind
