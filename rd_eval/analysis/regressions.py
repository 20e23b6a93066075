"""Is a run worse than its baseline? Per task accuracy and per benchmark gap, as plain data (`rd-eval check`).

Outcomes are 0/1 per pair_id (scored documents only). With per-document outcomes on both sides a worsening
beyond ``max_drop`` points is a regression only when the exact McNemar test on the shared items gives
p < ``alpha`` (for a gap: the sign test on the pairs whose gap moved up vs down); without them the worsening
alone decides.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

import numpy as np

from rd_eval.analysis.stats import mcnemar_exact
from rd_eval.vocabulary.task_names import task_of

__all__ = ["Comparison", "comparison_notes", "gap_comparison", "pair_gaps", "summary_comparison", "task_comparison"]


@dataclass(frozen=True)
class Comparison:
    """One task (kind "task": higher is better) or one benchmark gap (kind "gap": lower is better)."""

    kind: str
    name: str
    baseline: float
    run: float
    n: int
    paired: bool
    p_value: float | None
    regressed: bool
    beyond_tolerance: bool

    @property
    def worsening(self) -> float:
        """Points lost: accuracy drop for a task, gap widening for a benchmark."""
        return _worsening(self.kind, self.baseline, self.run)


def _worsening(kind: str, baseline: float, run: float) -> float:
    return baseline - run if kind == "task" else run - baseline


def _paired_comparison(kind: str, name: str, baseline: Mapping[str, int], run: Mapping[str, int], *,
                       max_drop: float, alpha: float) -> Comparison | None:
    """Outcomes per item on both sides (0/1 for a task, txt - img for a gap), compared on the shared items."""
    shared = sorted(baseline.keys() & run.keys())
    if not shared:
        return None
    b = np.array([baseline[k] for k in shared])
    r = np.array([run[k] for k in shared])
    b_pts, r_pts = float(b.mean() * 100), float(r.mean() * 100)
    moved = r - b
    up, down = int((moved > 0).sum()), int((moved < 0).sum())
    # McNemar's discordant counts, the worsening first: a task's lost items, a gap's widened pairs.
    p = mcnemar_exact(down, up) if kind == "task" else mcnemar_exact(up, down)
    beyond = _worsening(kind, b_pts, r_pts) > max_drop
    return Comparison(kind, name, b_pts, r_pts, len(shared), True, p, beyond and p < alpha, beyond)


def task_comparison(task: str, baseline: Mapping[str, int], run: Mapping[str, int], *, max_drop: float,
                    alpha: float) -> Comparison | None:
    """A task's accuracy on the pair_ids scored on both sides; None when they share none."""
    return _paired_comparison("task", task, baseline, run, max_drop=max_drop, alpha=alpha)


def pair_gaps(outcomes: Mapping[str, Mapping[str, int]], benchmark: str) -> dict[str, int]:
    """Per pair_id scored in both forms of `benchmark`, txt - img (-1, 0 or 1)."""
    img = outcomes.get(task_of(benchmark, "img"), {})
    txt = outcomes.get(task_of(benchmark, "txt"), {})
    return {pid: txt[pid] - img[pid] for pid in img.keys() & txt.keys()}


def gap_comparison(benchmark: str, baseline: Mapping[str, int], run: Mapping[str, int], *, max_drop: float,
                   alpha: float) -> Comparison | None:
    """A benchmark's gap (:func:`pair_gaps` of each side) on the pairs complete on both sides; None without any."""
    return _paired_comparison("gap", benchmark, baseline, run, max_drop=max_drop, alpha=alpha)


def summary_comparison(kind: str, name: str, baseline: float, run: float, n: int, *, max_drop: float) -> Comparison:
    """A task accuracy or benchmark gap (percent) where the baseline has no per-document outcomes: the worsening
    alone decides."""
    beyond = _worsening(kind, baseline, run) > max_drop
    return Comparison(kind, name, baseline, run, n, False, None, beyond, beyond)


def comparison_notes(comparisons: Iterable[Comparison], *, max_drop: float, alpha: float) -> list[str]:
    """Why a worsening beyond the tolerance is not a regression, or was judged without a test."""
    notes = []
    for c in comparisons:
        what = "drop" if c.kind == "task" else "gap widening"
        if c.beyond_tolerance and not c.regressed:
            notes.append(
                f"{c.name}: {what} of {c.worsening:.1f} points exceeds --max-drop {max_drop:g} but is not "
                f"significant (McNemar p = {c.p_value:.3g} >= alpha {alpha:g} on {c.n} shared items); not a regression"
            )
        if c.regressed and not c.paired:
            notes.append(f"{c.name}: no per-doc data in the baseline; {what} judged by --max-drop alone")
    return notes
