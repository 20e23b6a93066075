"""Plots as base64 PNG data (matplotlib, drawn off-screen) for the self-contained HTML pages."""

from __future__ import annotations

import base64
import io
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["figure_bytes", "figure_png", "gap_bars", "write_png"]

FIGSIZE = (7.5, 3.6)  # inches at 100 dpi: 750 x 360 pixels


def figure_bytes(draw: Callable[[Any], None], *, figsize: tuple[float, float] = FIGSIZE) -> bytes:
    """A matplotlib figure drawn by `draw(fig)` as PNG bytes (Agg backend: no display, no global pyplot state;
    no timestamp in the file, so equal figures give equal bytes)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=figsize, dpi=100)
    FigureCanvasAgg(fig)
    draw(fig)
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", metadata={"Software": None})
    return buffer.getvalue()


def figure_png(draw: Callable[[Any], None], *, figsize: tuple[float, float] = FIGSIZE) -> str:
    """:func:`figure_bytes` as base64 text, for an HTML page's data: URI."""
    return base64.b64encode(figure_bytes(draw, figsize=figsize)).decode("ascii")


def write_png(folder: Path, stem: str, png: bytes) -> Path:
    """`png` written to ``folder/<stem>.png`` (folder made if missing); `stem` must be a plain file name."""
    if not stem or Path(stem).name != stem or stem.startswith("."):
        raise ValueError(f"plot file name {stem!r} invalid; need a plain file name without folders")
    path = Path(folder) / f"{stem}.png"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(png)
    return path


def gap_bars(labels: Sequence[str], gaps: Mapping[str, Sequence[float | None]]) -> str:
    """A bar chart of the txt - img gap per row label, one bar per benchmark (`gaps`: benchmark -> a gap per label,
    None where the row lacks that benchmark), as base64 PNG."""

    def draw(fig: Any) -> None:
        ax = fig.subplots()
        x = np.arange(len(labels))
        width = 0.8 / max(1, len(gaps))
        for j, (name, values) in enumerate(gaps.items()):
            heights = [np.nan if v is None else v for v in values]
            ax.bar(x + (j - (len(gaps) - 1) / 2) * width, heights, width, label=name)
        ax.axhline(0, color="black", linewidth=0.8)
        ax.set_xticks(x)
        ax.set_xticklabels(labels, rotation=20, ha="right", fontsize=7)
        ax.set_ylabel("gap txt - img (points)")
        ax.set_title("Seeing-vs-thinking gap per setting", fontsize=10)
        ax.legend(fontsize=7)
        ax.grid(axis="y", alpha=0.3)

    return figure_png(draw)
