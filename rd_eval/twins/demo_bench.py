"""The embedded ``rd_demo`` mini benchmark: paired problems with an image form and a text twin.

Each :class:`DemoProblem` holds the structured content of one problem. The image form is rendered from
that content (:func:`render_problem`); the text twin is composed from the very same content
(:func:`compose_text_twin`), so both forms carry exactly the same information and share a ``pair_id``.

Regenerate the shipped data with::

    python -m rd_eval.twins.demo_bench --n 40 --seed 0 --out tasks/rd_demo/rd_demo.jsonl
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sys
import tempfile
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from PIL import Image

from rd_eval.twins.render import render_bar_chart, render_table, render_text, stack_vertical

PAIR_ID_PREFIX = "rd_demo-"
MAX_PROBLEMS = 10_000  # pair ids carry four digits
KINDS: tuple[str, ...] = ("arithmetic", "comparison", "table", "bar_chart")
ANSWER_TYPES: tuple[str, ...] = ("number", "choice")
OPTION_LETTERS = "ABCDEFGH"
RECORD_KEYS: tuple[str, ...] = (
    "pair_id", "kind", "title", "context", "question", "choices", "table_header", "table_rows",
    "chart_labels", "chart_values", "text_twin", "answer", "answer_type",
)

AnswerType = Literal["number", "choice"]


def option_lines(choices: Sequence[str]) -> list[str]:
    """Lettered options, one per line: ``A) 37``."""
    return [f"{OPTION_LETTERS[i]}) {c}" for i, c in enumerate(choices)]


def question_block(question: str, choices: Sequence[str]) -> str:
    """The question followed by its lettered options (if any)."""
    return "\n".join([question, *option_lines(choices)])


def compose_text_twin(*, kind: str, title: str, context: str, question: str, choices: Sequence[str],
                      table_header: Sequence[str], table_rows: Sequence[Sequence[str]],
                      chart_labels: Sequence[str], chart_values: Sequence[int]) -> str:
    """The complete problem as plain text, built from the same fields the image is rendered from."""
    parts: list[str] = []
    if kind == "table":
        parts.append(title)
        parts.extend(" | ".join(cells) for cells in [table_header, *table_rows])
    elif kind == "bar_chart":
        parts.append(f"{title} (bar chart)")
        parts.extend(f"{label}: {value}" for label, value in zip(chart_labels, chart_values, strict=True))
    elif context:
        parts.append(context)
    parts.append(question_block(question, choices))
    return "\n".join(parts)


def _check_number(text: str, what: str) -> None:
    try:
        float(text)
    except ValueError:
        raise ValueError(f"{what} {text!r} is not a number") from None


@dataclass(frozen=True)
class DemoProblem:
    """One paired problem. ``text_twin`` must equal :func:`compose_text_twin` of the other fields."""

    pair_id: str
    kind: str
    question: str
    text_twin: str
    answer: str
    answer_type: AnswerType
    choices: tuple[str, ...] = ()
    title: str = ""
    context: str = ""
    table_header: tuple[str, ...] = ()
    table_rows: tuple[tuple[str, ...], ...] = ()
    chart_labels: tuple[str, ...] = ()
    chart_values: tuple[int, ...] = ()

    def __post_init__(self) -> None:
        if not self.pair_id or any(ch.isspace() for ch in self.pair_id):
            raise ValueError(f"pair_id {self.pair_id!r} must be a non-empty string without whitespace")
        if self.kind not in KINDS:
            raise ValueError(f"kind {self.kind!r} is not one of {list(KINDS)}")
        if not self.question.strip():
            raise ValueError(f"{self.pair_id}: question is empty")
        self._check_answer()
        self._check_content()
        expected = compose_text_twin(
            kind=self.kind, title=self.title, context=self.context, question=self.question,
            choices=self.choices, table_header=self.table_header, table_rows=self.table_rows,
            chart_labels=self.chart_labels, chart_values=self.chart_values,
        )
        if self.text_twin != expected:
            raise ValueError(f"{self.pair_id}: text_twin does not match the structured content; "
                             f"expected {expected!r}, got {self.text_twin!r}")

    def _check_answer(self) -> None:
        if self.answer_type == "number":
            if self.choices:
                raise ValueError(f"{self.pair_id}: number problems take no choices, got {self.choices!r}")
            _check_number(self.answer, f"{self.pair_id}: answer")
        elif self.answer_type == "choice":
            if not 2 <= len(self.choices) <= len(OPTION_LETTERS):
                raise ValueError(f"{self.pair_id}: choice problems need 2..{len(OPTION_LETTERS)} choices, "
                                 f"got {len(self.choices)}")
            valid = OPTION_LETTERS[: len(self.choices)]
            if len(self.answer) != 1 or self.answer not in valid:
                raise ValueError(f"{self.pair_id}: answer {self.answer!r} must be one of {list(valid)}")
        else:
            raise ValueError(f"{self.pair_id}: answer_type {self.answer_type!r} is not one of "
                             f"{list(ANSWER_TYPES)}")

    def _check_content(self) -> None:
        is_table, is_chart = self.kind == "table", self.kind == "bar_chart"
        if is_table != bool(self.table_header) or (not is_table and self.table_rows):
            raise ValueError(f"{self.pair_id}: table_header/table_rows must be set exactly for kind 'table'")
        if is_table and not self.table_rows:
            raise ValueError(f"{self.pair_id}: a table needs at least one row")
        for i, row in enumerate(self.table_rows):
            if len(row) != len(self.table_header):
                raise ValueError(f"{self.pair_id}: table row {i} has {len(row)} cells, "
                                 f"header has {len(self.table_header)}")
        if is_chart != bool(self.chart_labels) or len(self.chart_labels) != len(self.chart_values):
            raise ValueError(f"{self.pair_id}: chart_labels/chart_values must be set, with equal lengths, "
                             f"exactly for kind 'bar_chart'")
        if any(isinstance(v, bool) or not isinstance(v, int) or v < 0 for v in self.chart_values):
            raise ValueError(f"{self.pair_id}: chart_values must be non-negative ints, "
                             f"got {self.chart_values!r}")
        if (is_table or is_chart) != bool(self.title):
            raise ValueError(f"{self.pair_id}: title must be set exactly for kinds 'table' and 'bar_chart'")


# ---------------------------------------------------------------------------------------------------------
# Generators: each takes a private Random and returns the fields of one problem (without pair_id/text_twin).

NAMES = ("Mia", "Leo", "Ava", "Sam", "Noah", "Zoe", "Liam", "Emma", "Omar", "Nina", "Ivy", "Ben")
OBJECTS = ("apples", "stickers", "marbles", "pencils", "cards", "books", "shells", "coins")
TABLE_THEMES = (
    ("School supply order", ("Pencils", "Erasers", "Notebooks", "Rulers", "Markers", "Folders")),
    ("Fruit stand sales", ("Apples", "Pears", "Plums", "Lemons", "Mangoes", "Peaches")),
    ("Bakery order", ("Muffins", "Bagels", "Cookies", "Rolls", "Scones", "Pies")),
)
TABLE_HEADER = ("Item", "Price ($)", "Quantity")
CHART_THEMES = (
    ("Books read by each student", ("Ana", "Ben", "Cara", "Dev", "Eli", "Fay")),
    ("Rainy days per month", ("Jan", "Feb", "Mar", "Apr", "May", "Jun")),
    ("Goals scored by each team", ("Red", "Blue", "Green", "Gold", "Gray", "Pink")),
    ("Cars counted each day", ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat")),
)

Fields = dict[str, Any]


def _gen_arithmetic(rng: random.Random) -> Fields:
    name, obj = rng.choice(NAMES), rng.choice(OBJECTS)
    form = rng.randrange(4)
    if form == 0:
        a, b = rng.randint(3, 40), rng.randint(2, 30)
        context, question, answer = f"{name} has {a} {obj} and gets {b} more.", \
            f"How many {obj} does {name} have now?", a + b
    elif form == 1:
        a = rng.randint(10, 60)
        b = rng.randint(2, a - 1)
        context, question, answer = f"{name} had {a} {obj} and gave {b} of them away.", \
            f"How many {obj} does {name} have left?", a - b
    elif form == 2:
        a, b = rng.randint(2, 9), rng.randint(2, 12)
        context, question, answer = f"{name} has {a} boxes with {b} {obj} in each box.", \
            f"How many {obj} does {name} have in total?", a * b
    else:
        a, b = rng.randint(2, 6), rng.randint(3, 10)
        c = rng.randint(1, a * b - 1)
        context, question, answer = (f"{name} has {a} bags with {b} {obj} in each bag and then gives away "
                                     f"{c} {obj}."), f"How many {obj} does {name} have left?", a * b - c
    return {"context": context, "question": question, "answer": str(answer), "answer_type": "number"}


def _gen_comparison(rng: random.Random) -> Fields:
    options: list[str] = []
    values: list[int] = []
    while len(options) < 3:
        if rng.random() < 0.5:
            x, y = rng.randint(10, 60), rng.randint(10, 40)
            text, value = f"{x} + {y}", x + y
        else:
            value = rng.randint(20, 99)
            text = str(value)
        if value not in values:  # distinct values keep the extreme unique
            options.append(text)
            values.append(value)
    largest = rng.random() < 0.5
    target = max(values) if largest else min(values)
    word = "largest" if largest else "smallest"
    return {
        "question": f"Which option has the {word} value?",
        "choices": tuple(options),
        "answer": OPTION_LETTERS[values.index(target)],
        "answer_type": "choice",
    }


def _gen_table(rng: random.Random) -> Fields:
    title, pool = rng.choice(TABLE_THEMES)
    items = rng.sample(pool, 3)
    prices = [rng.randint(1, 9) for _ in items]
    quantities = rng.sample(range(2, 13), 3)  # distinct, so "how many more" is never zero
    rows = tuple((item, str(p), str(q)) for item, p, q in zip(items, prices, quantities, strict=True))
    form = rng.randrange(3)
    if form == 0:
        question = "What is the total cost of all the items in the table, in dollars?"
        answer = sum(p * q for p, q in zip(prices, quantities, strict=True))
    elif form == 1:
        i = rng.randrange(3)
        question = f"How much do all the {items[i]} cost together, in dollars?"
        answer = prices[i] * quantities[i]
    else:
        i, j = rng.sample(range(3), 2)
        if quantities[i] < quantities[j]:
            i, j = j, i
        question = f"How many more {items[i]} than {items[j]} are there?"
        answer = quantities[i] - quantities[j]
    return {"title": title, "table_header": TABLE_HEADER, "table_rows": rows, "question": question,
            "answer": str(answer), "answer_type": "number"}


def _gen_bar_chart(rng: random.Random) -> Fields:
    title, pool = rng.choice(CHART_THEMES)
    start = rng.randrange(len(pool) - 3)
    labels = tuple(pool[start:start + 4])  # consecutive, so months/days keep their natural order
    values = tuple(rng.sample(range(3, 61), 4))  # distinct, so the largest bar is unique
    fields: Fields = {"title": title, "chart_labels": labels, "chart_values": values}
    if rng.random() < 0.5:
        fields.update(question="Which category has the largest value?", choices=labels,
                      answer=OPTION_LETTERS[values.index(max(values))], answer_type="choice")
    else:
        i, j = rng.sample(range(4), 2)
        if values[i] < values[j]:
            i, j = j, i
        question = f"How much larger is the value for {labels[i]} than the value for {labels[j]}?"
        fields.update(question=question, answer=str(values[i] - values[j]), answer_type="number")
    return fields


GENERATORS: dict[str, Callable[[random.Random], Fields]] = {
    "arithmetic": _gen_arithmetic,
    "comparison": _gen_comparison,
    "table": _gen_table,
    "bar_chart": _gen_bar_chart,
}


def make_problem(pair_id: str, kind: str, fields: Mapping[str, Any]) -> DemoProblem:
    """Build a problem from its structured fields, composing the text twin from them."""
    content: Fields = {
        "title": fields.get("title", ""),
        "context": fields.get("context", ""),
        "question": fields["question"],
        "choices": tuple(fields.get("choices", ())),
        "table_header": tuple(fields.get("table_header", ())),
        "table_rows": tuple(tuple(r) for r in fields.get("table_rows", ())),
        "chart_labels": tuple(fields.get("chart_labels", ())),
        "chart_values": tuple(fields.get("chart_values", ())),
    }
    text_twin = compose_text_twin(kind=kind, **content)
    return DemoProblem(pair_id=pair_id, kind=kind, text_twin=text_twin, answer=fields["answer"],
                       answer_type=fields["answer_type"], **content)


def generate_problems(n: int, seed: int) -> list[DemoProblem]:
    """``n`` problems, kinds cycling evenly; the same (n, seed) always gives the same problems.

    Each problem draws from its own Random seeded from one master ``random.Random(seed)``, so the first
    ``k`` problems of a larger ``n`` equal ``generate_problems(k, seed)``.
    """
    if isinstance(n, bool) or not isinstance(n, int) or not 0 <= n <= MAX_PROBLEMS:
        raise ValueError(f"n={n!r} must be an int in 0..{MAX_PROBLEMS}")
    master = random.Random(seed)
    problems = []
    for i in range(n):
        rng = random.Random(master.getrandbits(64))
        kind = KINDS[i % len(KINDS)]
        problems.append(make_problem(f"{PAIR_ID_PREFIX}{i:04d}", kind, GENERATORS[kind](rng)))
    return problems


def render_problem(p: DemoProblem) -> Image.Image:
    """The image form: everything needed to answer, including the question and options."""
    if p.kind in ("arithmetic", "comparison"):
        return render_text(p.text_twin)
    if p.kind == "table":
        visual = render_table(list(p.table_header), [list(r) for r in p.table_rows], p.title)
    else:
        visual = render_bar_chart(list(p.chart_labels), list(p.chart_values), p.title)
    return stack_vertical([visual, render_text(question_block(p.question, p.choices))])


# ---------------------------------------------------------------------------------------------------------
# Records (JSONL rows)


def to_record(p: DemoProblem) -> dict[str, Any]:
    """A JSON-serialisable dict holding everything needed to re-render the problem."""
    return {
        "pair_id": p.pair_id,
        "kind": p.kind,
        "title": p.title,
        "context": p.context,
        "question": p.question,
        "choices": list(p.choices),
        "table_header": list(p.table_header),
        "table_rows": [list(r) for r in p.table_rows],
        "chart_labels": list(p.chart_labels),
        "chart_values": list(p.chart_values),
        "text_twin": p.text_twin,
        "answer": p.answer,
        "answer_type": p.answer_type,
    }


def _str_tuple(value: Any, what: str) -> tuple[str, ...]:
    is_list = isinstance(value, Sequence) and not isinstance(value, str)
    if not is_list or any(not isinstance(v, str) for v in value):
        raise ValueError(f"{what} must be a list of strings, got {value!r}")
    return tuple(value)


def from_record(d: Mapping[str, Any]) -> DemoProblem:
    """Inverse of :func:`to_record`; raises ValueError naming the problem for any malformed record."""
    if not isinstance(d, Mapping):
        raise ValueError(f"an rd_demo record must be a mapping, got {type(d).__name__}")
    where = f"rd_demo record {d.get('pair_id', '<no pair_id>')!r}"
    missing = [k for k in RECORD_KEYS if k not in d]
    extra = sorted(k for k in d if k not in RECORD_KEYS)
    if missing or extra:
        raise ValueError(f"{where}: missing keys {missing}, unknown keys {extra}; "
                         f"expected {list(RECORD_KEYS)}")
    for key in ("pair_id", "kind", "title", "context", "question", "text_twin", "answer", "answer_type"):
        if not isinstance(d[key], str):
            raise ValueError(f"{where}: {key!r} must be a string, got {d[key]!r}")
    rows = d["table_rows"]
    if isinstance(rows, str) or not isinstance(rows, Sequence):
        raise ValueError(f"{where}: 'table_rows' must be a list of lists of strings, got {rows!r}")
    values = d["chart_values"]
    if (isinstance(values, str) or not isinstance(values, Sequence)
            or any(isinstance(v, bool) or not isinstance(v, int) for v in values)):
        raise ValueError(f"{where}: 'chart_values' must be a list of ints, got {values!r}")
    try:
        return DemoProblem(
            pair_id=d["pair_id"], kind=d["kind"], question=d["question"], text_twin=d["text_twin"],
            answer=d["answer"], answer_type=d["answer_type"], choices=_str_tuple(d["choices"], "'choices'"),
            title=d["title"], context=d["context"],
            table_header=_str_tuple(d["table_header"], "'table_header'"),
            table_rows=tuple(_str_tuple(row, f"'table_rows'[{i}]") for i, row in enumerate(rows)),
            chart_labels=_str_tuple(d["chart_labels"], "'chart_labels'"), chart_values=tuple(values),
        )
    except ValueError as exc:
        raise ValueError(f"{where}: {exc}") from exc


def to_jsonl(problems: Iterable[DemoProblem]) -> str:
    """One JSON record per line, sorted by pair_id; pair ids must be unique."""
    ordered = sorted(problems, key=lambda p: p.pair_id)
    ids = [p.pair_id for p in ordered]
    dupes = sorted({i for i in ids if ids.count(i) > 1})
    if dupes:
        raise ValueError(f"duplicate pair_id values: {dupes}")
    return "".join(json.dumps(to_record(p), ensure_ascii=False) + "\n" for p in ordered)


def write_jsonl(problems: Iterable[DemoProblem], path: str) -> None:
    """Write atomically (temp file in the target folder, then os.replace) so readers never see half a file."""
    text = to_jsonl(problems)
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".rd_demo-", suffix=".tmp", dir=folder)
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="\n") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, 0o644)  # mkstemp creates 0600; the data file is meant to be shared and committed
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Generate the rd_demo paired image/text benchmark as JSONL.")
    parser.add_argument("--n", type=int, default=40, help="number of problem pairs (default 40)")
    parser.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    parser.add_argument("--out", default="tasks/rd_demo/rd_demo.jsonl", help="output JSONL path")
    args = parser.parse_args(argv)
    try:
        problems = generate_problems(args.n, args.seed)
    except ValueError as exc:
        parser.error(str(exc))
    write_jsonl(problems, args.out)
    print(f"wrote {len(problems)} rd_demo pairs to {args.out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
