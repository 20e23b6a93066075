"""Score the phrasing corpus and print its figures: right-accepted % and wrong-rejected % per benchmark x answer
type and per phrasing class, with and without the documented limitations (:mod:`.limitations`).

    PYTHONPATH=tests python -m phrasing.report [--failures N] [--all]

It scores with whichever ``rd_eval`` is imported first (the line "scorer:" names it), so the scorer of another
tree is measured with ``PYTHONPATH=<tree>:<this repo>`` run from that tree (docs/scoring_corpus.md).
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from .corpus import Response, build_corpus
from .items import load_items
from .limitations import is_limitation


@dataclass(frozen=True)
class Verdict:
    """A corpus response and what the scorer made of it."""

    response: Response
    correct: bool
    pred: str | None

    @property
    def agrees(self) -> bool:
        return self.correct == self.response.right


def judge(responses: Iterable[Response]) -> list[Verdict]:
    """Each response scored through the task path (:func:`rd_eval.scoring.item.score_doc`)."""
    from rd_eval.scoring.item import score_doc

    out = []
    for r in responses:
        scored = score_doc(r.item.item_id, "txt", r.text, r.item.gold)
        out.append(Verdict(r, bool(scored.correct), scored.pred))
    return out


@dataclass
class Tally:
    right: int = 0
    accepted: int = 0
    wrong: int = 0
    rejected: int = 0

    def add(self, v: Verdict) -> None:
        if v.response.right:
            self.right += 1
            self.accepted += v.correct
        else:
            self.wrong += 1
            self.rejected += not v.correct

    @property
    def accepted_pct(self) -> float | None:
        return 100.0 * self.accepted / self.right if self.right else None

    @property
    def rejected_pct(self) -> float | None:
        return 100.0 * self.rejected / self.wrong if self.wrong else None


def tally(verdicts: Iterable[Verdict], key) -> dict:
    out: dict = {}
    for v in verdicts:
        out.setdefault(key(v), Tally()).add(v)
    return dict(sorted(out.items()))


def counted(verdicts: Sequence[Verdict], with_limitations: bool) -> list[Verdict]:
    """The verdicts the targets count: all of them, or those outside the documented limitations."""
    return list(verdicts) if with_limitations else [v for v in verdicts if not is_limitation(v.response)]


def _pct(value: float | None, n: int) -> str:
    return "–" if value is None else f"{value:.1f}% ({n})"


def table(rows: dict, header: str) -> str:
    lines = [f"| {header} | right accepted | wrong rejected |", "|---|---:|---:|"]
    total = Tally()
    for key, t in rows.items():
        name = " × ".join(key) if isinstance(key, tuple) else key
        lines.append(f"| {name} | {_pct(t.accepted_pct, t.right)} | {_pct(t.rejected_pct, t.wrong)} |")
        total.right += t.right
        total.accepted += t.accepted
        total.wrong += t.wrong
        total.rejected += t.rejected
    lines.append(f"| **all** | {_pct(total.accepted_pct, total.right)} | {_pct(total.rejected_pct, total.wrong)} |")
    return "\n".join(lines)


def failure_line(v: Verdict) -> str:
    r = v.response
    return (f"{r.item.benchmark} {r.item.item_id} [{r.phrasing}, {'right' if r.right else 'wrong'}] gold "
            f"{r.item.gold.answer!r} ({r.item.gold.answer_type}): {r.text[-160:]!r} -> pred {v.pred!r}, "
            f"scored {'correct' if v.correct else 'incorrect'}")


def main(argv: Sequence[str] | None = None) -> int:
    import rd_eval

    parser = argparse.ArgumentParser(prog="python -m phrasing.report", description=__doc__.split("\n")[0])
    parser.add_argument("--failures", type=int, default=20, help="print up to N disagreements (default 20)")
    parser.add_argument("--all", action="store_true", help="count the documented limitations too")
    args = parser.parse_args(argv)
    start = time.perf_counter()
    verdicts = judge(build_corpus(load_items()))
    seconds = time.perf_counter() - start
    print(f"scorer: {rd_eval.__file__}\nresponses: {len(verdicts)} in {seconds:.1f} s")
    for with_lim in ((False, True) if not args.all else (True,)):
        chosen = counted(verdicts, with_lim)
        label = "all phrasings" if with_lim else "outside the documented limitations"
        print(f"\n## {label}: {len(chosen)} responses\n")
        print(table(tally(chosen, lambda v: v.response.key), "benchmark × answer type"))
        print()
        print(table(tally(chosen, lambda v: v.response.phrasing), "phrasing class"))
    failures = [v for v in counted(verdicts, args.all) if not v.agrees]
    print(f"\n{len(failures)} disagreements" + (f"; the first {args.failures}:" if failures and args.failures else ""))
    for v in failures[: args.failures]:
        print("  " + failure_line(v))
    return 0


if __name__ == "__main__":
    sys.exit(main())
