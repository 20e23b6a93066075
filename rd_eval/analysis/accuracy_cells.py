"""Per-benchmark accuracy cells of one setting (the leaderboard's numbers), as plain data.

A cell gives, in percent over complete pairs (:func:`rd_eval.analysis.gaps.pair_forms`: both forms present, no
error in either), the image-form and text-twin accuracy, the gap txt - img, and against the plain setting of the
same model and checkpoint the ``gain``: image-form accuracy minus the plain setting's on the pairs complete in
both (None where there is nothing to compare with).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from rd_eval.analysis.gaps import pair_forms
from rd_eval.vocabulary.task_names import benchmark_of

__all__ = ["METRICS", "BenchmarkCell", "benchmark_cells", "benchmark_order", "mean_over", "paired_by_benchmark"]

METRICS = ("img", "txt", "gap", "gain")


@dataclass(frozen=True)
class BenchmarkCell:
    """One setting on one benchmark, in percent over complete pairs; ``gain`` None when not applicable."""

    n_pairs: int
    acc_img: float
    acc_txt: float
    gap: float
    gain: float | None
    n_gain_pairs: int

    def values(self) -> dict[str, float | None]:
        """The cell's :data:`METRICS`."""
        return {"img": self.acc_img, "txt": self.acc_txt, "gap": self.gap, "gain": self.gain}


def paired_by_benchmark(samples: pd.DataFrame) -> dict[str, pd.DataFrame]:
    """Per benchmark with at least one complete pair, the img/txt outcomes by pair_id (:func:`pair_forms`).
    A benchmark that cannot be paired raises ValueError naming it."""
    out: dict[str, pd.DataFrame] = {}
    bench = samples["task"].astype(str).map(benchmark_of)
    for name, part in samples.groupby(bench, sort=True):
        try:
            paired, _ = pair_forms(part)
        except ValueError as exc:
            raise ValueError(f"benchmark {name!r}: {exc}") from None
        if len(paired):
            out[str(name)] = paired
    return out


def _pct(values: Any) -> float:
    return float(np.mean(np.asarray(values, dtype=float)) * 100.0)


def benchmark_cells(paired: Mapping[str, pd.DataFrame], base: Mapping[str, pd.DataFrame] | None,
                    ) -> dict[str, BenchmarkCell]:
    """A setting's cells from its :func:`paired_by_benchmark`; `base`: its plain setting's (None: no gain)."""
    cells = {}
    for name, p in paired.items():
        gain, n_gain = None, 0
        if base is not None and name in base:
            common = p.index.intersection(base[name].index)
            if len(common):
                n_gain = len(common)
                gain = _pct(p.loc[common, "img"]) - _pct(base[name].loc[common, "img"])
        acc_img, acc_txt = _pct(p["img"]), _pct(p["txt"])
        cells[name] = BenchmarkCell(len(p), acc_img, acc_txt, acc_txt - acc_img, gain, n_gain)
    return cells


def benchmark_order(names: Iterable[str], first: Sequence[str]) -> tuple[str, ...]:
    """`first` (those present, in its order), then the other names sorted."""
    present = set(names)
    return tuple([b for b in first if b in present] + sorted(present - set(first)))


def mean_over(cells: Mapping[str, BenchmarkCell], benchmarks: Sequence[str]) -> dict[str, float | None] | None:
    """Mean of each metric over `benchmarks` (None for a metric some cell lacks, e.g. gain of a plain setting),
    or None unless every one of them has a cell."""
    if not all(b in cells for b in benchmarks):
        return None
    out: dict[str, float | None] = {}
    for metric in METRICS:
        values = [cells[b].values()[metric] for b in benchmarks]
        out[metric] = None if any(v is None for v in values) else float(np.mean([float(v) for v in values]))
    return out
