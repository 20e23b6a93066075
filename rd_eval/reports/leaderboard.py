"""`rd-eval leaderboard`: one row per (model, checkpoint, intervention setting) over many lmms-eval runs.

Runs are grouped into settings by the run catalogue, as for ``rd-eval report`` (:mod:`rd_eval.reports.catalogue`:
lmms-eval model id, checkpoint, intervention hash; ``"none"`` for a plain run); the ``setting`` column names a
setting by what it is (the catalogue's name: "plain", "soft λ=1, domain experts, band 0.25–0.75"). Per benchmark
(task name without ``_img``/``_txt``, :func:`rd_eval.vocabulary.task_names.benchmark_of`) a row gives, in percent
over complete pairs (:func:`rd_eval.analysis.gaps.pair_forms`: both forms present, no error in either):

- ``img``, ``txt``: accuracy of the image form and of the text twin;
- ``gap`` = txt - img (docs/design.md §3.1);
- ``gain``: image-form accuracy of this setting minus that of the same model/checkpoint's plain setting, on the
  pairs complete in both; empty for plain rows and for settings with no plain setting to compare with.

The ``six`` columns are the mean over the six benchmarks of docs/design.md §5 when the row has all six, otherwise
``n/a (k of 6)``. Renderers: markdown and CSV (a row per setting, a column per benchmark and metric), and one
self-contained HTML page (:mod:`rd_eval.rendering.leaderboard_html`: a row per setting and benchmark, sorted and
filtered in the browser; bar chart as a base64 PNG; no external resources). ``--out DIR`` writes
``DIR/leaderboard.<fmt>`` and ``DIR/plots/leaderboard_gap_per_setting.png`` (:func:`write_leaderboard`), as
``rd-eval report --out DIR`` writes ``DIR/report.<ext>`` and ``DIR/plots/*.png``.
Bad input raises :class:`LeaderboardInputError` naming the file and what is valid.
"""

from __future__ import annotations

import base64
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
from rd_eval.fileio.jsonio import write_text_atomic
from rd_eval.rendering.leaderboard_html import Cell, Column, leaderboard_page
from rd_eval.rendering.mdtable import md_row
from rd_eval.rendering.plots import gap_bars, write_png
from rd_eval.reports.catalogue import CatalogueError, open_catalogue
from rd_eval.vocabulary.task_names import SIX_BENCHMARKS

__all__ = [
    "FORMATS",
    "HTML_COLUMNS",
    "Leaderboard",
    "LeaderboardInputError",
    "LeaderboardRow",
    "build_leaderboard",
    "html_rows",
    "output_paths",
    "to_csv",
    "to_frame",
    "to_html",
    "to_markdown",
    "write_leaderboard",
]

SIX_LABEL = "six"
FORMATS = ("md", "csv", "html")
FILE_STEM = "leaderboard"
PLOTS_FOLDER = "plots"  # as `rd-eval report --out DIR` writes DIR/plots/*.png
CHART_STEM = "leaderboard_gap_per_setting"


class LeaderboardInputError(ValueError):
    """Runs that cannot be put on a leaderboard; the message names the file and what is valid."""


@dataclass(frozen=True)
class LeaderboardRow:
    model_id: str
    checkpoint: str
    intervention: str  # the spec's content hash, "none" for plain
    setting: str  # what the setting is, in words (the catalogue's name: "plain", "soft λ=1, domain experts, ...")
    cells: Mapping[str, BenchmarkCell]


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
        rows.append(LeaderboardRow(s.model_id, s.checkpoint, s.intervention, s.name, MappingProxyType(cells)))
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


def _metric_cell(value: float | None) -> Cell:
    return Cell(_fmt(value), None if value is None or math.isnan(value) else value)


HTML_COLUMNS = (
    Column("model", filterable=True), Column("checkpoint", filterable=True), Column("setting", filterable=True),
    Column("benchmark", filterable=True), Column("pairs", numeric=True),
    *(Column(metric, numeric=True) for metric in METRICS),
)


def html_rows(board: Leaderboard) -> list[list[Cell]]:
    """The page's rows: one per setting and benchmark it has, then, where it has any of the six, its mean over
    them (``n/a (k of 6)`` cells where it lacks some), with the columns of :data:`HTML_COLUMNS`."""
    out = []
    for row in board.rows:
        names = [Cell(row.model_id), Cell(row.checkpoint), Cell(row.setting)]
        for b in board.benchmarks:
            if b in row.cells:
                cell = row.cells[b]
                metrics = [_metric_cell(v) for v in cell.values().values()]
                out.append([*names, Cell(b), Cell(str(cell.n_pairs), cell.n_pairs), *metrics])
        mean = mean_over(row.cells, SIX_BENCHMARKS)
        present = [row.cells[b] for b in SIX_BENCHMARKS if b in row.cells]
        if not present:
            continue  # none of the six (the demo's own benchmark): a row of n/a says nothing
        pairs = sum(c.n_pairs for c in present)
        if mean is None:
            missing = Cell(f"n/a ({len(present)} of 6)")
            metrics = [missing] * len(METRICS)
        else:
            metrics = [_metric_cell(mean[m]) for m in METRICS]
        out.append([*names, Cell(SIX_LABEL), Cell(str(pairs), pairs), *metrics])
    return out


def chart_labels(board: Leaderboard) -> list[str]:
    """A bar group's label: ``<model>: <setting>``, with the checkpoint where a model id has several."""
    checkpoints: dict[str, set[str]] = {}
    for row in board.rows:
        checkpoints.setdefault(row.model_id, set()).add(row.checkpoint)
    return [f"{row.model_id}{f' {row.checkpoint}' if len(checkpoints[row.model_id]) > 1 else ''}: {row.setting}"
            for row in board.rows]


def gap_chart(board: Leaderboard) -> str:
    """The bar chart of the gap per setting and benchmark, as base64 PNG."""
    gaps = {b: [row.cells[b].gap if b in row.cells else None for row in board.rows] for b in board.benchmarks}
    return gap_bars(chart_labels(board), gaps)


def to_html(board: Leaderboard, chart: str | None = None) -> str:
    """One self-contained page: the table (a row per setting and benchmark, sortable and filterable in the
    browser) and the bar chart of the gap per setting (`chart`, base64 PNG; drawn here when None)."""
    return leaderboard_page(title="rd-eval leaderboard", note=_note(), columns=HTML_COLUMNS, rows=html_rows(board),
                            figures=[("gap per setting", gap_chart(board) if chart is None else chart)])


RENDERERS = {"md": to_markdown, "csv": to_csv, "html": to_html}


def render(board: Leaderboard, fmt: str) -> str:
    if fmt not in RENDERERS:
        raise LeaderboardInputError(f"format {fmt!r} invalid; valid: {', '.join(FORMATS)}")
    return RENDERERS[fmt](board)


def output_paths(folder: Path, formats: Sequence[str] = FORMATS) -> list[Path]:
    """What ``--out DIR`` writes: ``DIR/leaderboard.<fmt>`` per format, then the chart as
    ``DIR/plots/leaderboard_gap_per_setting.png`` (beside the report's plots when both share DIR)."""
    bad = [fmt for fmt in formats if fmt not in RENDERERS]
    if bad or not formats:
        raise LeaderboardInputError(f"formats {list(formats)} invalid; valid: one or more of {', '.join(FORMATS)}")
    chart = Path(folder) / PLOTS_FOLDER / f"{CHART_STEM}.png"
    return [Path(folder) / f"{FILE_STEM}.{fmt}" for fmt in formats] + [chart]


def write_leaderboard(board: Leaderboard, folder: Path, formats: Sequence[str] = FORMATS) -> list[Path]:
    """Write :func:`output_paths` (each file atomically; folders made if absent); returns them."""
    *targets, png = output_paths(folder, formats)
    chart = gap_chart(board)
    written = [write_text_atomic(target, to_html(board, chart) if fmt == "html" else render(board, fmt))
               for target, fmt in zip(targets, formats, strict=True)]
    return [*written, write_png(png.parent, CHART_STEM, base64.b64decode(chart))]
