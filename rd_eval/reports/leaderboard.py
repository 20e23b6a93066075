"""`rd-eval leaderboard`: one row per (model, checkpoint, intervention setting) over many lmms-eval runs.

Runs are grouped into settings by the run catalogue, as for ``rd-eval report`` (:mod:`rd_eval.reports.catalogue`:
lmms-eval model id, checkpoint, intervention hash; ``"none"`` for a plain run). Per benchmark (task name without
``_img``/``_txt``, :func:`rd_eval.vocabulary.task_names.benchmark_of`) a row gives, in percent over complete pairs
(:func:`rd_eval.analysis.gaps.pair_forms`: both forms present, no error in either):

- ``img``, ``txt``: accuracy of the image form and of the text twin;
- ``gap`` = txt - img (docs/design.md §3.1);
- ``gain``: image-form accuracy of this setting minus that of the same model/checkpoint's plain setting, on the
  pairs complete in both; empty for plain rows and for settings with no plain setting to compare with.

The ``six`` columns are the mean over the six benchmarks of docs/design.md §5 when the row has all six, otherwise
``n/a (k of 6)``. Renderers: markdown, CSV and one self-contained HTML page (inline CSS, bar chart as a base64
PNG, no external resources). Bad input raises :class:`LeaderboardInputError` naming the file and what is valid.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType

import pandas as pd

from rd_eval.analysis.accuracy_cells import (
    METRICS,
    BenchmarkCell,
    benchmark_cells,
    benchmark_order,
    mean_over,
    paired_by_benchmark,
)
from rd_eval.rendering.html import html_page
from rd_eval.rendering.mdtable import md_row
from rd_eval.rendering.plots import gap_bars
from rd_eval.reports.catalogue import NO_INTERVENTION, CatalogueError, open_catalogue
from rd_eval.vocabulary.task_names import SIX_BENCHMARKS

__all__ = [
    "FORMATS",
    "Leaderboard",
    "LeaderboardInputError",
    "LeaderboardRow",
    "build_leaderboard",
    "to_csv",
    "to_frame",
    "to_html",
    "to_markdown",
]

SIX_LABEL = "six"
FORMATS = ("md", "csv", "html")


class LeaderboardInputError(ValueError):
    """Runs that cannot be put on a leaderboard; the message names the file and what is valid."""


@dataclass(frozen=True)
class LeaderboardRow:
    model_id: str
    checkpoint: str
    intervention: str
    cells: Mapping[str, BenchmarkCell]

    @property
    def setting(self) -> str:
        return "plain" if self.intervention == NO_INTERVENTION else self.intervention

    @property
    def label(self) -> str:
        return f"{self.checkpoint} [{self.setting}]"


@dataclass(frozen=True)
class Leaderboard:
    rows: tuple[LeaderboardRow, ...]
    benchmarks: tuple[str, ...]
    inputs: tuple[str, ...]


# ---------------------------------------------------------------------------------------------------------
# Building


def build_leaderboard(run_dirs: Sequence[Path]) -> Leaderboard:
    """The leaderboard of every lmms-eval run (with ``--log_samples``) under ``run_dirs``."""
    if isinstance(run_dirs, (str, Path)) or not run_dirs:
        raise LeaderboardInputError("run_dirs must be a non-empty list of lmms-eval output folders")
    try:
        catalogue = open_catalogue([Path(p) for p in run_dirs])
        settings = catalogue.settings
        paired: dict[str, dict[str, pd.DataFrame]] = {}
        for s in settings:
            try:
                paired[s.key] = paired_by_benchmark(catalogue.samples(s).frame)
            except CatalogueError:
                raise
            except ValueError as exc:
                raise LeaderboardInputError(f"setting {s.key} ({s.results_files}): {exc}") from None
    except CatalogueError as exc:
        raise LeaderboardInputError(str(exc)) from None
    rows = []
    names: set[str] = set()
    for s in settings:
        base = catalogue.base_of(s) if not s.plain else None
        cells = benchmark_cells(paired[s.key], paired[base.key] if base is not None else None)
        names |= set(cells)
        rows.append(LeaderboardRow(s.model_id, s.checkpoint, s.intervention, MappingProxyType(cells)))
    if not names:
        raise LeaderboardInputError(
            f"no complete pairs (an _img and a _txt sample sharing a pair_id) in any run under "
            f"{[str(p) for p in run_dirs]}; run both forms of each benchmark"
        )
    return Leaderboard(tuple(rows), benchmark_order(names, SIX_BENCHMARKS), tuple(str(p) for p in run_dirs))


# ---------------------------------------------------------------------------------------------------------
# Rendering


def _fmt(x: float | None) -> str:
    return "" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:.1f}"




def to_frame(board: Leaderboard) -> pd.DataFrame:
    """The leaderboard as strings: model, checkpoint, setting, then '<benchmark> <metric>' and 'six <metric>'."""
    records = []
    for row in board.rows:
        rec: dict[str, str] = {"model": row.model_id, "checkpoint": row.checkpoint, "setting": row.setting}
        for b in board.benchmarks:
            values = row.cells[b].values() if b in row.cells else dict.fromkeys(METRICS)
            for metric in METRICS:
                rec[f"{b} {metric}"] = _fmt(values[metric])
        mean = mean_over(row.cells, SIX_BENCHMARKS)  # gain None for plain rows
        k = sum(b in row.cells for b in SIX_BENCHMARKS)
        for metric in METRICS:
            if mean is None:
                rec[f"{SIX_LABEL} {metric}"] = f"n/a ({k} of 6)"
            else:
                rec[f"{SIX_LABEL} {metric}"] = _fmt(mean[metric])
        records.append(rec)
    columns = ["model", "checkpoint", "setting"]
    columns += [f"{b} {m}" for b in board.benchmarks for m in METRICS] + [f"{SIX_LABEL} {m}" for m in METRICS]
    return pd.DataFrame.from_records(records, columns=columns)


def _note() -> str:
    return (
        "Percent over complete pairs; gap = txt - img; gain = img accuracy minus the same checkpoint's plain "
        f"setting on shared pairs (empty for plain rows). '{SIX_LABEL}' = mean over "
        f"{', '.join(SIX_BENCHMARKS)} when all six are present."
    )


def to_markdown(board: Leaderboard) -> str:
    frame = to_frame(board)
    cols = list(frame.columns)

    out = ["# rd-eval leaderboard", "", _note(), "", md_row(cols), "|" + "|".join("---" for _ in cols) + "|"]
    out += [md_row(list(r)) for r in frame.itertuples(index=False)]
    return "\n".join(out) + "\n"


def to_csv(board: Leaderboard) -> str:
    return str(to_frame(board).to_csv(index=False, lineterminator="\n"))


_STYLE = """body{font-family:system-ui,sans-serif;margin:2em;color:#222}
table{border-collapse:collapse;font-size:.8em}th,td{border:1px solid #ccc;padding:3px 6px}
th{background:#f2f2f2}td{text-align:right}img{max-width:100%}p.note{color:#555;font-size:.9em}"""


def to_html(board: Leaderboard) -> str:
    """One self-contained page: the table and a bar chart of the gap per row (base64 PNG)."""
    gaps = {b: [row.cells[b].gap if b in row.cells else None for row in board.rows] for b in board.benchmarks}
    chart = gap_bars([row.label for row in board.rows], gaps)
    return html_page("rd-eval leaderboard", to_markdown(board), style=_STYLE, figures=[("gap per setting", chart)],
                     captions=False)


RENDERERS = {"md": to_markdown, "csv": to_csv, "html": to_html}


def render(board: Leaderboard, fmt: str) -> str:
    if fmt not in RENDERERS:
        raise LeaderboardInputError(f"format {fmt!r} invalid; valid: {', '.join(FORMATS)}")
    return RENDERERS[fmt](board)
