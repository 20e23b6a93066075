"""The organism's paired problems (issue 16 item 1): splits disjoint by pair of numbers, deterministic from a
seed; the image shows exactly the text twin's expression on a 192 x 32 canvas, a table's or bar chart's rows each
in a 32-px token row; the spec refuses bad values."""

from __future__ import annotations

import pytest

from rd_eval.organism.problems import Problem, ProblemError, all_problems, make_splits, problem_image
from rd_eval.organism.spec import Architecture, OrganismSpec, OrganismSpecError
from rd_eval.twins.render import png_bytes


@pytest.mark.parametrize("kinds", [("add",), ("add", "sub"), ("add", "max"), ("add", "sub", "max"),
                                   ("add", "max", "table", "bar")])
def test_splits_share_no_pair_of_numbers_and_cover_every_problem(kinds: tuple[str, ...]) -> None:
    splits = make_splits(kinds, seed=3, n_heldout=400, n_validation=200)
    parts = [splits.train, splits.validation, splits.heldout]
    groups = [{p.group for p in part} for part in parts]
    assert not groups[0] & groups[1] and not groups[0] & groups[2] and not groups[1] & groups[2]
    ids = [p.pair_id for part in parts for p in part]
    assert len(ids) == len(set(ids)) == len(all_problems(kinds))
    largest_group = 2 * len(set(kinds) - {"sub"}) + ("sub" in kinds)  # a split takes whole groups
    assert 400 <= len(splits.heldout) < 400 + largest_group and 200 <= len(splits.validation) < 200 + largest_group
    # "37 + 52", "52 + 37" and "max(52, 37)" are one group: all in the same split
    for kind in set(kinds) - {"sub"}:
        assert all(Problem(kind, p.b, p.a) in splits.heldout for p in splits.heldout if p.kind in kinds)
    assert all(Problem("sub", *sorted((p.a, p.b), reverse=True)) in splits.heldout
               for p in splits.heldout if "sub" in kinds)


def test_an_add_only_split_is_the_one_earlier_organisms_were_trained_on() -> None:
    # Groups span kinds now; for one kind they must order and split exactly as the per-kind groups did.
    held = make_splits(("add",), seed=0).heldout
    assert [p.pair_id for p in held[:4]] == ["organism-add-27-30", "organism-add-30-27", "organism-add-21-23",
                                            "organism-add-23-21"]


def test_splits_are_deterministic_for_a_seed_and_differ_between_seeds() -> None:
    assert make_splits(("add",), seed=0) == make_splits(("add",), seed=0)
    assert make_splits(("add",), seed=0).heldout != make_splits(("add",), seed=1).heldout


def test_a_problem_states_its_expression_answer_and_id() -> None:
    assert Problem("add", 37, 52).expression == "37 + 52" and Problem("add", 37, 52).answer == "89"
    assert Problem("sub", 52, 37).answer == "15" and Problem("sub", 52, 37).pair_id == "organism-sub-52-37"
    assert Problem("max", 37, 52).expression == "max(37, 52)" and Problem("max", 37, 52).answer == "52"
    assert Problem("max", 52, 37).answer == "52" and Problem("max", 44, 44).answer == "44"
    with pytest.raises(ProblemError, match="a >= b"):
        Problem("sub", 37, 52)
    with pytest.raises(ProblemError, match="unknown problem kind"):
        Problem("mul", 3, 4)
    with pytest.raises(ProblemError, match="no training problems"):
        make_splits(("add",), seed=0, n_heldout=8100)


def test_the_image_is_192_by_32_deterministic_and_shows_ink() -> None:
    first = problem_image(Problem("max", 99, 99))  # the widest expression
    assert first.size == (192, 32)
    assert png_bytes(first) == png_bytes(problem_image(Problem("max", 99, 99)))
    assert png_bytes(first) != png_bytes(problem_image(Problem("max", 98, 99)))
    dark = [x for x in range(192) if any(first.getpixel((x, y))[0] < 128 for y in range(32))]
    assert dark and max(dark) < 192 - 16  # the whole expression fits, clear of the right edge


def test_a_table_and_a_bar_chart_state_their_content_question_and_answer() -> None:
    table, bar = Problem("table", 37, 52), Problem("bar", 37, 52)
    assert (table.expression, table.question, table.answer) == ("A | 37\nB | 52", "What is A + B?", "89")
    assert table.text_twin == "A | 37\nB | 52\nWhat is A + B?"
    assert (bar.expression, bar.question, bar.answer) == ("37, 52", "What is the larger value?", "52")
    assert bar.text_twin == "Bar chart: 37, 52\nWhat is the larger value?"
    assert Problem("add", 37, 52).text_twin == "37 + 52" and Problem("add", 37, 52).question == ""
    assert (table.pair_id, bar.group) == ("organism-table-37-52", (37, 52))


def _dark_lines(image: object) -> set[int]:
    """The pixel lines (y) holding dark ink: text and rules, not the bars' colour."""
    return {y for y in range(image.height) for x in range(image.width) if max(image.getpixel((x, y))) < 128}


def test_a_table_or_bar_chart_keeps_each_line_inside_one_token_row() -> None:
    table = problem_image(Problem("table", 99, 10))
    assert table.size == (192, 64) and png_bytes(table) == png_bytes(problem_image(Problem("table", 99, 10)))
    assert png_bytes(table) != png_bytes(problem_image(Problem("table", 10, 99)))
    lines = _dark_lines(table)
    # "A | 99" inside token row 0, "B | 10" inside row 1, the rule on row 0's last line; nothing crosses the border
    assert 31 in lines and 32 not in lines and 30 not in lines
    assert any(y < 30 for y in lines) and any(y > 32 for y in lines)
    bar = problem_image(Problem("bar", 99, 10))
    assert bar.size == (192, 64)
    assert _dark_lines(bar) and max(_dark_lines(bar)) < 32  # the values' digits, in the top token row
    blue = [[y for y in range(64) if bar.getpixel((x, y)) == (70, 110, 180)] for x in (50, 146)]
    assert len(blue[0]) > len(blue[1]) > 0 and min(blue[0] + blue[1]) >= 32  # bars by value, in the bottom row


def test_the_spec_refuses_values_that_cannot_work_and_round_trips_through_json() -> None:
    spec = OrganismSpec(seed=4, kinds=("add", "sub"), mix=(1.0, 1.0, 0.5))
    assert OrganismSpec.from_json(spec.to_json()) == spec
    with pytest.raises(OrganismSpecError, match="head size"):
        Architecture(hidden_size=100, num_heads=4)
    with pytest.raises(OrganismSpecError, match="mix"):
        OrganismSpec(mix=(0.5, 0.5))
    with pytest.raises(OrganismSpecError, match="kinds"):
        OrganismSpec(kinds=("mul",))
    with pytest.raises(OrganismSpecError, match="steps"):
        OrganismSpec(steps=0)
    for weights in [(1.0,), (1.0, -1.0), (0.0, 0.0), (1.0, float("nan"))]:
        with pytest.raises(OrganismSpecError, match=r"kind_weights must be empty or 2 non-negative weights"):
            OrganismSpec(kinds=("add", "max"), kind_weights=weights)
    weighted = OrganismSpec(kinds=("add", "max"), kind_weights=(3.0, 1.0))
    assert OrganismSpec.from_json(weighted.to_json()) == weighted
    older = {k: v for k, v in OrganismSpec().to_json().items() if k != "kind_weights"}  # a card written before them
    assert OrganismSpec.from_json(older).kind_weights == ()  # it was trained with the uniform draw


def test_kind_weights_set_each_kinds_share_of_the_examples_and_none_keeps_the_uniform_draw() -> None:
    from collections import Counter

    import numpy as np

    from rd_eval.organism.train import form_counts, step_examples

    weighted = OrganismSpec(kinds=("add", "max"), kind_weights=(3.0, 1.0))
    train = make_splits(weighted.kinds, 0).train
    counts = Counter(e.problem.kind for step in range(100) for batch in step_examples(weighted, train, step).values()
                     for e in batch)
    assert 0.70 < counts["add"] / (counts["add"] + counts["max"]) < 0.80  # 3:1 of 3,200 draws
    assert step_examples(weighted, train, 7) == step_examples(weighted, train, 7)
    uniform = OrganismSpec(kinds=("add", "max"), kind_weights=())
    rng = np.random.default_rng([0, 7])  # the draw every earlier organism was trained with
    expected = {form: [train[int(i)] for i in rng.integers(0, len(train), size=n)]
                for form, n in form_counts(uniform).items() if n}
    assert {f: [e.problem for e in b] for f, b in step_examples(uniform, train, 7).items()} == expected
    with pytest.raises(OrganismSpecError, match="example_seed must be a non-negative int"):
        OrganismSpec(example_seed=-1)
    assert OrganismSpec.from_json(OrganismSpec(example_seed=2).to_json()).example_seed == 2
