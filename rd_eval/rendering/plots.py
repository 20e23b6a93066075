"""Plots as base64 PNG data (matplotlib, drawn off-screen) for the self-contained HTML pages."""

from __future__ import annotations

import base64
import io
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np

__all__ = ["figure_png", "gap_bars", "routing_plots"]


def figure_png(draw: Callable[[Any], None]) -> str:
    """A matplotlib figure drawn by `draw(fig)` as base64 PNG (Agg backend: no display, no global pyplot state)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(7.5, 3.6), dpi=100)
    FigureCanvasAgg(fig)
    draw(fig)
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    return base64.b64encode(buffer.getvalue()).decode("ascii")


def routing_plots(report: Mapping[str, Any]) -> list[tuple[str, str]]:
    """(caption, base64 PNG) per benchmark: pair JSD per layer with CI band, and the separation curve."""
    by_bench: dict[str, list[tuple[str, Mapping[str, Any]]]] = {}
    for s in report["settings"]:
        for b in (s.get("routing") or {}).get("benchmarks", []):
            by_bench.setdefault(b["benchmark"], []).append((s["label"], b))
    plots = []
    for name, entries in sorted(by_bench.items()):
        def draw(fig: Any, entries: list[tuple[str, Mapping[str, Any]]] = entries) -> None:
            ax_jsd, ax_sep = fig.subplots(1, 2)
            for label, b in entries:
                sites = [layer["site"] for layer in b["layers"]]
                mean = [np.nan if v is None else v for v in (layer["jsd_mean"] for layer in b["layers"])]
                low = [np.nan if v is None else v for v in (layer["ci_low"] for layer in b["layers"])]
                high = [np.nan if v is None else v for v in (layer["ci_high"] for layer in b["layers"])]
                (line,) = ax_jsd.plot(sites, mean, marker="o", label=label)
                ax_jsd.fill_between(sites, low, high, color=line.get_color(), alpha=0.2)
                sep = [np.nan if layer["separation"] is None else layer["separation"] for layer in b["layers"]]
                ax_sep.plot(sites, sep, marker="s", label=label)
            band = entries[0][1]["band_sites"]
            for ax in (ax_jsd, ax_sep):
                if band:
                    ax.axvspan(min(band) - 0.5, max(band) + 0.5, color="grey", alpha=0.12, label="middle band")
                ax.set_xlabel("MoE layer (site)")
                ax.set_ylim(bottom=0)
                ax.grid(alpha=0.3)
            ax_jsd.set_ylabel("JSD img vs txt (bits)")
            ax_jsd.set_title("Pair routing divergence", fontsize=10)
            ax_sep.set_ylabel("JSD image vs text tokens (bits)")
            ax_sep.set_title("Visual vs text routing separation", fontsize=10)
            ax_jsd.legend(fontsize=7)

        plots.append((f"{name}: routing divergence by layer", figure_png(draw)))
    return plots


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
