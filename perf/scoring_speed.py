"""Scoring speed: 10,000 responses of the phrasing corpus (tests/phrasing/, every benchmark and answer type mixed)
through the task path, :func:`rd_eval.scoring.item.score_doc` (extraction once, judgement, the logged ``pred``).

The responses are a seeded sample of the corpus, drawn again (with other seeds) when it holds fewer than asked.
The time is the scoring loop alone, in this process, after the corpus is built; the first response includes any
lazy imports the scorer makes (sympy), as in a real run. Target: under 10 s for 10,000 on the 2-core dev machine.

    python perf/scoring_speed.py [--count 10000] [--json OUT.json]

To time another tree's scorer: ``cd <tree> && PYTHONPATH=<tree> python <this repo>/perf/scoring_speed.py`` (the line
"scorer:" names the rd_eval that was timed).
"""

from __future__ import annotations

import argparse
import random
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
# appended, not prepended: a PYTHONPATH naming another tree's rd_eval wins (see the docstring)
for extra in (REPO, REPO / "tests"):
    if str(extra) not in sys.path:
        sys.path.append(str(extra))

from perf.common import format_table, publish  # noqa: E402

COUNT = 10_000
TARGET_SECONDS = 10.0


def sample_responses(count: int, seed: int = 0) -> list[Any]:
    """``count`` corpus responses, a seeded shuffle of the whole corpus (repeated when it is smaller)."""
    from phrasing.corpus import build_corpus
    from phrasing.items import load_items

    corpus = build_corpus(load_items())
    out: list[Any] = []
    round_ = 0
    while len(out) < count:
        shuffled = list(corpus)
        random.Random(seed + round_).shuffle(shuffled)
        out += shuffled[: count - len(out)]
        round_ += 1
    return out


def measure(count: int = COUNT) -> dict[str, Any]:
    """Time ``count`` responses through ``score_doc``; seconds, responses per second, and the mix scored."""
    import rd_eval
    from rd_eval.scoring.item import score_doc

    responses = sample_responses(count)
    per_type: Counter[str] = Counter()
    seconds_per_type: Counter[str] = Counter()
    start = time.perf_counter()
    for r in responses:
        t0 = time.perf_counter()
        score_doc(r.item.item_id, "txt", r.text, r.item.gold)
        kind = r.item.gold.answer_type
        seconds_per_type[kind] += time.perf_counter() - t0
        per_type[kind] += 1
    seconds = time.perf_counter() - start
    return {
        "scorer": str(Path(rd_eval.__file__).parent),
        "responses": count,
        "seconds": round(seconds, 3),
        "responses_per_second": round(count / seconds, 1),
        "target_seconds": TARGET_SECONDS,
        "target_met": seconds < TARGET_SECONDS * count / COUNT,
        "by_answer_type": {k: {"responses": per_type[k], "seconds": round(seconds_per_type[k], 3)}
                           for k in sorted(per_type)},
    }


def table(result: dict[str, Any]) -> str:
    rows = [[k, v["responses"], v["seconds"], round(v["responses"] / v["seconds"], 1) if v["seconds"] else None]
            for k, v in result["by_answer_type"].items()]
    rows.append(["all", result["responses"], result["seconds"], result["responses_per_second"]])
    return (f"scorer: {result['scorer']}\n"
            + format_table(["answer type", "responses", "seconds", "responses/s"], rows)
            + f"\n{result['responses']} responses in {result['seconds']:.2f} s "
            f"(target < {TARGET_SECONDS:g} s per 10,000: {'met' if result['target_met'] else 'NOT met'})")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--count", type=int, default=COUNT, help=f"responses to score (default {COUNT})")
    parser.add_argument("--json", default=None, help="write the result here as JSON")
    args = parser.parse_args(argv)
    if args.count < 1:
        parser.error(f"--count must be at least 1, got {args.count}")
    publish(measure(args.count), table, args.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())
