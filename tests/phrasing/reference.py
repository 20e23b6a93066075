"""math-verify (HuggingFace) as an independent reference on the corpus's free-form math items: where it applies,
which of rd-eval and math-verify agrees with the label (right/wrong by construction) when they disagree.

math-verify cannot share rd-eval's environment (see docs/scoring_corpus.md), so it runs in its own interpreter,
named by ``RD_EVAL_MATH_VERIFY_PYTHON`` or found at ``<repo>/.venv-mathverify/bin/python`` (installed from
tests/phrasing/reference-requirements.txt), in a subprocess (:mod:`.mv_worker`) with a time limit per comparison.

    RD_EVAL_MATH_VERIFY_PYTHON=/path/to/python PYTHONPATH=tests python -m phrasing.reference [--sample N]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from .report import Verdict, judge

REPO = Path(__file__).resolve().parents[2]
PYTHON_ENV = "RD_EVAL_MATH_VERIFY_PYTHON"
DEFAULT_PYTHON = REPO / ".venv-mathverify" / "bin" / "python"
WORKER = Path(__file__).with_name("mv_worker.py")
REQUIREMENTS = Path(__file__).with_name("reference-requirements.txt")
SECONDS_PER_COMPARISON = 5


def reference_python(environ: dict[str, str] | None = None) -> Path | None:
    """The interpreter that has math-verify: ``$RD_EVAL_MATH_VERIFY_PYTHON``, else the repo's .venv-mathverify;
    None when neither exists. A variable naming a missing file is an error, not a silent skip."""
    named = (os.environ if environ is None else environ).get(PYTHON_ENV, "").strip()
    if named:
        path = Path(named).expanduser()
        if not path.is_file():
            raise FileNotFoundError(f"{PYTHON_ENV}={named!r} is not a file; point it at the python of a venv made "
                                    f"with `pip install -r {REQUIREMENTS.relative_to(REPO)}`")
        return path
    return DEFAULT_PYTHON if DEFAULT_PYTHON.is_file() else None


def applies(v: Verdict) -> bool:
    """math-verify judges free-form math against an exact gold: number and expression golds without a benchmark's
    own rounding or tolerance rule (MathVista's precision, DynaMath's 0.001), which it does not know, and not
    clock times (DynaMath's ``4:45``), which it reads as ratios or not at all."""
    gold = v.response.item.gold
    return (gold.answer_type in ("number", "expression") and gold.precision is None
            and not getattr(gold, "abs_tolerance", None) and re.fullmatch(r"\d{1,2}:\d{1,2}", gold.answer) is None)


def _as_latex(gold: str) -> str:
    return gold if "$" in gold else f"${gold}$"


def math_verify_verdicts(python: Path, pairs: Sequence[tuple[str, str]],
                         seconds: int = SECONDS_PER_COMPARISON) -> list[bool | None]:
    """math-verify's verdict on each (gold, response): True, False, or None (it failed or ran out of time)."""
    lines = "".join(json.dumps({"gold": _as_latex(g), "response": r}) + "\n" for g, r in pairs)
    done = subprocess.run([str(python), str(WORKER), str(seconds)], input=lines, capture_output=True, text=True,
                          timeout=60 + 3 * seconds * len(pairs), check=False)
    if done.returncode != 0:
        raise RuntimeError(f"{python} {WORKER.name} failed ({done.returncode}): {done.stderr[-800:]}")
    out = [json.loads(line)["verdict"] for line in done.stdout.splitlines() if line.strip()]
    if len(out) != len(pairs):
        raise RuntimeError(f"{WORKER.name} answered {len(out)} of {len(pairs)} comparisons: {done.stderr[-800:]}")
    return out


@dataclass(frozen=True)
class Comparison:
    verdict: Verdict  # rd-eval's
    reference: bool | None  # math-verify's

    @property
    def rd_right(self) -> bool:
        return self.verdict.agrees

    @property
    def reference_right(self) -> bool:
        return self.reference is not None and self.reference == self.verdict.response.right


def compare(python: Path, verdicts: Sequence[Verdict]) -> list[Comparison]:
    chosen = [v for v in verdicts if applies(v)]
    pairs = [(v.response.item.gold.answer, v.response.text) for v in chosen]
    return [Comparison(v, ref) for v, ref in zip(chosen, math_verify_verdicts(python, pairs), strict=True)]


def summary(comparisons: Sequence[Comparison]) -> dict[str, int]:
    """Counts: compared, agreeing, each side right, math-verify without a verdict, and the disagreements by who
    is right (by the label)."""
    disagree = [c for c in comparisons if c.reference != c.verdict.correct]
    return {
        "compared": len(comparisons),
        "agree": len(comparisons) - len(disagree),
        "rd_eval_right": sum(c.rd_right for c in comparisons),
        "math_verify_right": sum(c.reference_right for c in comparisons),
        "math_verify_no_verdict": sum(c.reference is None for c in comparisons),
        "disagree_rd_eval_right": sum(c.rd_right for c in disagree),
        "disagree_math_verify_right": sum(c.reference_right for c in disagree),
    }


def sample(verdicts: Sequence[Verdict], size: int | None, seed: int = 0) -> list[Verdict]:
    """A seeded sample of the applicable verdicts (all of them when ``size`` is None or larger)."""
    chosen = [v for v in verdicts if applies(v)]
    if size is None or size >= len(chosen):
        return chosen
    return random.Random(seed).sample(chosen, size)


def main(argv: Sequence[str] | None = None) -> int:
    from .corpus import build_corpus
    from .items import load_items

    parser = argparse.ArgumentParser(prog="python -m phrasing.reference", description=__doc__.split("\n")[0])
    parser.add_argument("--sample", type=int, default=None, help="compare a seeded sample of N responses")
    parser.add_argument("--show", type=int, default=15, help="print up to N disagreements")
    args = parser.parse_args(argv)
    python = reference_python()
    if python is None:
        parser.error(f"no math-verify interpreter: set {PYTHON_ENV} or create {DEFAULT_PYTHON}")
    comparisons = compare(python, sample(judge(build_corpus(load_items())), args.sample))
    for title, key in (("benchmark × type", lambda r: f"{r.item.benchmark} × {r.item.gold.answer_type}"),
                       ("phrasing class", lambda r: f"{r.phrasing} ({'right' if r.right else 'wrong'})")):
        groups: dict[str, list[Comparison]] = {}
        for c in comparisons:
            groups.setdefault(key(c.verdict.response), []).append(c)
        print(f"\n| {title} | compared | agree | rd-eval right | math-verify right | no verdict |")
        print("|---|---:|---:|---:|---:|---:|")
        for name, group in [*sorted(groups.items()), ("**all**", comparisons)]:
            s = summary(group)
            print(f"| {name} | {s['compared']} | {s['agree']} | {s['rd_eval_right']} | {s['math_verify_right']} | "
                  f"{s['math_verify_no_verdict']} |")
    s = summary(comparisons)
    print(f"\ndisagreements: {s['compared'] - s['agree']} (rd-eval right in {s['disagree_rd_eval_right']}, "
          f"math-verify right in {s['disagree_math_verify_right']}); math-verify right first:")
    disagree = [c for c in comparisons if c.reference != c.verdict.correct]
    for c in sorted(disagree, key=lambda c: not c.reference_right)[: args.show]:
        r = c.verdict.response
        print(f"  {r.item.benchmark} {r.item.item_id} [{r.phrasing}, {'right' if r.right else 'wrong'}] gold "
              f"{r.item.gold.answer!r}: {r.text[-120:]!r} -> rd-eval {c.verdict.correct}, math-verify {c.reference}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
