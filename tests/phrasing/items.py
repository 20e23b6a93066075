"""The items the phrasing corpus is built from: every sample record in ``../shared/data``, read through the
project's own benchmark readers, so the gold, answer type, choices and precision are exactly what the tasks
score with (``rd_eval.benchmarks.schema.BenchDoc.gold``, :meth:`rd_eval.benchmarks.exact_twin.ExactTwin.gold`).

The option texts a choice item can be answered with are the document's ``choices``, else the ``(A) ... (B) ...``
list written in its question (LogicVista and DynaMath put their options there); they are read here only to
phrase responses, never passed to the scorer, which gets the reader's ``Gold`` unchanged.
"""

from __future__ import annotations

import json
import random
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from rd_eval.scoring.item import Gold

DATA = Path(__file__).resolve().parents[3] / "shared" / "data"
BENCHMARKS = ("mathvista", "mathvision", "mathverse", "wemath", "logicvista", "dynamath", "gsm8k", "math500")
# GSM8K (1,000) and MATH-500 (400) are sampled (seeded) so that no benchmark dominates the totals
EXACT_TWIN_SAMPLE = 150
LETTERS = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"


@dataclass(frozen=True)
class Item:
    """One benchmark document: who it is, what it asks, what it is scored against, the options it lists."""

    benchmark: str
    item_id: str
    question: str
    gold: Gold
    options: tuple[str, ...] = ()


_INLINE_OPTION = re.compile(r"\(([A-H])\)")


def inline_options(question: str) -> tuple[str, ...]:
    """``"... (A) 1 lb (B) 2 lb (C) 8 lb"`` -> ``("1 lb", "2 lb", "8 lb")``; () unless the marks run A, B, C, ...
    in order; an option written as its own letter ("(A) A") or left empty stays "" (it has no text to say)."""
    marks = list(_INLINE_OPTION.finditer(question))
    first = next((i for i, m in enumerate(marks) if m.group(1) == "A"), None)
    if first is None:
        return ()
    marks = marks[first:]
    if len(marks) < 2 or [m.group(1) for m in marks] != list(LETTERS[: len(marks)]):
        return ()
    texts = []
    for i, mark in enumerate(marks):
        end = marks[i + 1].start() if i + 1 < len(marks) else len(question)
        text = question[mark.end():end].strip().rstrip(",;").strip()
        texts.append("" if text == mark.group(1) else " ".join(text.split()))
    return tuple(texts)


def _bench_items(name: str, docs: Sequence) -> list[Item]:
    items = []
    for doc in docs:
        options = doc.choices or (inline_options(doc.question) if doc.answer_type == "choice" else ())
        items.append(Item(benchmark=name, item_id=doc.pair_id, question=doc.question, gold=doc.gold,
                          options=tuple(options)))
    return items


def _six_items(data: Path) -> list[Item]:
    from rd_eval.benchmarks import dynamath, logicvista, mathverse, mathvision, mathvista, wemath
    from rd_eval.data.sources import ENV_VAR, MirrorReader

    environ = {ENV_VAR: str(data)}
    items: list[Item] = []
    readers: list[tuple[str, object, Callable]] = [
        ("mathvista", mathvista, lambda m, r: m.mirror_docs(False, r)),
        ("mathvision", mathvision, lambda m, r: m.mirror_docs(False, r)),
        ("mathverse", mathverse, lambda m, r: m.mirror_docs("txt", False, r)),
        ("wemath", wemath, lambda m, r: m.mirror_docs(False, r)),
        ("logicvista", logicvista, lambda m, r: m.mirror_docs(False, r)),
        ("dynamath", dynamath, lambda m, r: m.mirror_docs(False, r)),
    ]
    for name, module, read in readers:
        reader = MirrorReader.from_env(module.NAME, module.FOLDER, environ)
        items += _bench_items(name, read(module, reader))
    return items


def _exact_twin_items(data: Path, sample: int | None) -> list[Item]:
    from rd_eval.benchmarks import gsm8k, math500

    items: list[Item] = []
    for module, folder in ((gsm8k, "gsm8k"), (math500, "math500")):
        path = data / folder / "test.jsonl"
        lines = [line for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
        docs = [module.to_doc(json.loads(line), f"{path}:{n}") for n, line in enumerate(lines, start=1)]
        if sample is not None and sample < len(docs):
            docs = random.Random(f"phrasing/{folder}").sample(docs, sample)
        for doc in docs:
            gold = Gold(doc[module.TARGET_KEY], module.ANSWER_TYPE)
            question = doc.get("question") or doc.get("problem") or ""
            items.append(Item(benchmark=module.BENCHMARK, item_id=doc["pair_id"], question=question, gold=gold))
    return items


def load_items(data: Path = DATA, exact_twin_sample: int | None = EXACT_TWIN_SAMPLE) -> list[Item]:
    """Every benchmark's sample documents in ``data`` (GSM8K and MATH-500 sampled to ``exact_twin_sample``)."""
    if not data.is_dir():
        raise FileNotFoundError(f"shared sample data not found at {data} (expected ../shared/data next to the repo)")
    return _six_items(data) + _exact_twin_items(data, exact_twin_sample)
