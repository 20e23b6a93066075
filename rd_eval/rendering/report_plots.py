"""The report's plots (:func:`rd_eval.reports.report.build_report`'s dict in, PNG out), each named by what it shows:

- ``gain_vs_lambda[_N].png``: per λ sweep (settings of one checkpoint that differ only in λ: same ``family``), the
  gain (image-form accuracy minus the plain setting's, paired bootstrap CI from the report's gap tables) against λ,
  one line per benchmark;
- ``routing_jsd_<benchmark>.png``: per-layer pair JSD (image form vs text twin) of plain and each intervened
  setting on one axis, CI bands, the middle band shaded; beside it the visual-vs-text separation;
- ``flip_rate_by_layer.png``: per intervened setting, the share of steered tokens whose selected experts changed,
  per routing site;
- ``delta_phi_<kind>_experts[_<hash>].png``: an expert set's ΔΦ per site x expert with the chosen experts outlined.

Settings are named by what they are (the report's ``name``; ``label``, with the checkpoint, when the report holds
several checkpoints). Every number drawn is read from the report dict; nothing is recomputed here.
"""

from __future__ import annotations

import base64
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from rd_eval.rendering.plots import figure_bytes

__all__ = ["GainCurves", "GainPoint", "ReportPlot", "draw_delta_phi", "draw_flip_rates", "draw_gain",
           "gain_curves", "report_plots", "setting_colors", "setting_legend"]

LAMBDA_AXIS = "λ (router-logit boost, in std of the layer's logits)"
PLOT_HEIGHT = 3.6  # inches of the plotting area; a legend of long setting names goes in a row below it
LEGEND_COLUMNS = 2


def _legend_height(n_entries: int) -> float:
    return 0.25 + 0.2 * -(-n_entries // LEGEND_COLUMNS)


def _with_legend(n_entries: int) -> tuple[float, float]:
    return 7.5, PLOT_HEIGHT + _legend_height(n_entries)


def _legend_below(slot: Any, ax: Any) -> None:
    """`ax`'s legend in the axes `slot` (a row under the plot), so long setting names never cover data."""
    slot.axis("off")
    slot.legend(*ax.get_legend_handles_labels(), loc="center", ncol=LEGEND_COLUMNS, fontsize=8, frameon=False)


@dataclass(frozen=True)
class ReportPlot:
    stem: str  # file name without .png
    caption: str
    png: bytes

    def base64(self) -> str:
        return base64.b64encode(self.png).decode("ascii")


@dataclass(frozen=True)
class GainPoint:
    strength: float
    gain: float  # points
    ci_low: float | None
    ci_high: float | None
    setting: str


@dataclass(frozen=True)
class GainCurves:
    """One λ sweep: its settings' shared description and, per benchmark, a point per λ (ascending)."""

    title: str
    curves: Mapping[str, tuple[GainPoint, ...]]


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", text).strip("._") or "benchmark"


def _nan(value: Any) -> float:
    return np.nan if value is None else float(value)


def setting_legend(report: Mapping[str, Any]) -> dict[str, str]:
    """A legend entry per setting key: its name, with the checkpoint when the report holds several."""
    checkpoints = {(s["model_id"], s["checkpoint"]) for s in report["settings"]}
    return {s["key"]: s["name"] if len(checkpoints) == 1 else s["label"] for s in report["settings"]}


def setting_colors(report: Mapping[str, Any]) -> dict[str, str]:
    """One colour per setting (by its legend entry), the same in every plot of the report."""
    return {name: f"C{i % 10}" for i, name in enumerate(setting_legend(report).values())}


def gain_curves(report: Mapping[str, Any]) -> list[GainCurves]:
    """λ sweeps of the report: intervened settings grouped by checkpoint and ``family`` (everything but λ, expert
    set included); a group is drawn when its mode is soft or it holds two λ or more."""
    groups: dict[tuple[str, str, str, str], list[Mapping[str, Any]]] = {}
    for s in report["settings"]:
        fields = s.get("setting")
        if s["role"] != "intervened" or not fields:
            continue
        groups.setdefault((s["model_id"], s["checkpoint"], fields["family"], fields["experts"]), []).append(s)
    several = len({key[:2] for key in groups}) > 1
    out = []
    for key in sorted(groups):
        members = sorted(groups[key], key=lambda s: s["setting"]["lambda"])
        if members[0]["setting"]["mode"] != "soft" and len(members) < 2:
            continue
        curves: dict[str, list[GainPoint]] = {}
        for s in members:
            for row in s["gaps"]["rows"]:
                effect = row.get("effect")
                if effect is None:
                    continue
                gain = effect["gain"]
                curves.setdefault(row["benchmark"], []).append(
                    GainPoint(s["setting"]["lambda"], gain["diff"], gain["ci_low"], gain["ci_high"], s["name"]))
        if curves:
            title = key[2] if not several else f"{key[1]}: {key[2]}"
            out.append(GainCurves(title, {b: tuple(points) for b, points in sorted(curves.items())}))
    return out


def draw_gain(fig: Any, sweep: GainCurves, level: float) -> None:
    ax = fig.subplots()
    for benchmark, points in sweep.curves.items():
        x = [p.strength for p in points]
        y = [p.gain for p in points]
        low = [p.gain - p.ci_low if p.ci_low is not None else 0.0 for p in points]
        high = [p.ci_high - p.gain if p.ci_high is not None else 0.0 for p in points]
        ax.errorbar(x, y, yerr=[low, high], marker="o", capsize=4, label=benchmark)
    ax.axhline(0, color="black", linewidth=0.8, label="plain (gain 0)")
    strengths = [0.0, *(p.strength for points in sweep.curves.values() for p in points)]  # plain is λ=0
    pad = 0.08 * ((max(strengths) - min(strengths)) or 1.0)
    ax.set_xlim(min(strengths) - pad, max(strengths) + pad)
    ax.set_xlabel(LAMBDA_AXIS)
    ax.set_ylabel("gain: image acc. − plain (points)")
    ax.set_title(f"Gain vs λ, {int(round(100 * level))}% CI: {sweep.title}", fontsize=9)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)


def _routing_by_benchmark(report: Mapping[str, Any]) -> dict[str, list[tuple[str, Mapping[str, Any]]]]:
    legend = setting_legend(report)
    by_bench: dict[str, list[tuple[str, Mapping[str, Any]]]] = {}
    for s in report["settings"]:
        for b in (s.get("routing") or {}).get("benchmarks", []):
            by_bench.setdefault(b["benchmark"], []).append((legend[s["key"]], b))
    return by_bench


def draw_routing(fig: Any, entries: Sequence[tuple[str, Mapping[str, Any]]],
                 colors: Mapping[str, str] | None = None) -> None:
    from matplotlib.ticker import MaxNLocator

    grid = fig.add_gridspec(2, 2, height_ratios=[PLOT_HEIGHT, _legend_height(len(entries) + 1)])
    ax_jsd, ax_sep = fig.add_subplot(grid[0, 0]), fig.add_subplot(grid[0, 1])
    for name, b in entries:
        sites = [layer["site"] for layer in b["layers"]]
        (line,) = ax_jsd.plot(sites, [_nan(layer["jsd_mean"]) for layer in b["layers"]], marker="o", label=name,
                              color=(colors or {}).get(name))
        ax_jsd.fill_between(sites, [_nan(layer["ci_low"]) for layer in b["layers"]],
                            [_nan(layer["ci_high"]) for layer in b["layers"]], color=line.get_color(), alpha=0.2)
        ax_sep.plot(sites, [_nan(layer["separation"]) for layer in b["layers"]], marker="s", label=name,
                    color=line.get_color())
    band = entries[0][1]["band_sites"]
    for ax in (ax_jsd, ax_sep):
        if band:
            ax.axvspan(min(band) - 0.5, max(band) + 0.5, color="grey", alpha=0.12, label="middle band")
        ax.set_xlabel("routing site (MoE layer)")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_ylim(bottom=0)
        ax.grid(alpha=0.3)
    ax_jsd.set_ylabel("JSD img vs txt form (bits)")
    ax_jsd.set_title("Pair routing divergence (mean, CI)", fontsize=10)
    ax_sep.set_ylabel("JSD image vs text tokens (bits)")
    ax_sep.set_title("Visual vs text routing separation", fontsize=10)
    _legend_below(fig.add_subplot(grid[1, :]), ax_jsd)


def _flip_settings(report: Mapping[str, Any]) -> list[tuple[str, Mapping[str, Any]]]:
    legend = setting_legend(report)
    return [(legend[s["key"]], s["flips"]["overall"]) for s in report["settings"] if s.get("flips")]


def draw_flip_rates(fig: Any, entries: Sequence[tuple[str, Mapping[str, Any]]],
                    colors: Mapping[str, str] | None = None) -> None:
    from matplotlib.ticker import MaxNLocator

    grid = fig.add_gridspec(2, 1, height_ratios=[PLOT_HEIGHT, _legend_height(len(entries))])
    ax = fig.add_subplot(grid[0])
    for name, overall in entries:
        sites = [site["site"] for site in overall["sites"]]
        ax.plot(sites, [100 * _nan(site["flip_rate"]) for site in overall["sites"]], marker="o", label=name,
                color=(colors or {}).get(name))
    ax.set_xlabel("routing site (MoE layer; only steered sites have tokens)")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_ylabel("flip rate (% of steered tokens)")
    ax.set_title("Tokens whose selected experts the intervention changed, per site", fontsize=10)
    ax.set_ylim(bottom=0)
    ax.grid(alpha=0.3)
    _legend_below(fig.add_subplot(grid[1]), ax)


def _delta_figsize(entry: Mapping[str, Any]) -> tuple[float, float]:
    rows, experts = len(entry["delta_phi"]), len(entry["delta_phi"][0])
    return min(14.0, max(6.0, 3.0 + 0.12 * experts)), min(12.0, max(3.0, 1.6 + 0.28 * rows))


def draw_delta_phi(fig: Any, entry: Mapping[str, Any]) -> None:
    """ΔΦ as a heatmap (site rows x experts, diverging colours centred on 0), chosen (row, expert) cells
    outlined in black."""
    from matplotlib.patches import Rectangle

    delta = np.asarray(entry["delta_phi"], dtype=float)
    ax = fig.subplots()
    limit = float(np.abs(delta).max()) or 1.0
    image = ax.imshow(delta, cmap="RdBu_r", vmin=-limit, vmax=limit, aspect="auto", interpolation="nearest")
    for row, expert in entry["chosen"]:
        ax.add_patch(Rectangle((expert - 0.5, row - 0.5), 1, 1, fill=False, edgecolor="black", linewidth=1.6))
    ax.set_yticks(range(delta.shape[0]))
    ax.set_yticklabels(entry["site_labels"], fontsize=7)
    step = max(1, delta.shape[1] // 32)
    ax.set_xticks(range(0, delta.shape[1], step))
    ax.tick_params(axis="x", labelsize=7)
    ax.set_xlabel("expert")
    ax.set_ylabel("routing site (MoE layer)")
    ax.set_title(f"ΔΦ of the {entry['kind']} experts' identification; outlined: the chosen set "
                 f"({len(entry['chosen'])} experts)", fontsize=9)
    fig.colorbar(image, ax=ax, label="ΔΦ (selection frequency difference)")


def report_plots(report: Mapping[str, Any]) -> list[ReportPlot]:
    """Every plot of the report, in page order (stems and captions in the module doc)."""
    plots: list[ReportPlot] = []
    level = float(report.get("level", 0.95))
    sweeps = gain_curves(report)
    colors = setting_colors(report)
    for i, sweep in enumerate(sweeps):
        stem = "gain_vs_lambda" if len(sweeps) == 1 else f"gain_vs_lambda_{i + 1}"
        plots.append(ReportPlot(stem, f"Gain vs λ: {sweep.title}",
                                figure_bytes(lambda fig, sweep=sweep: draw_gain(fig, sweep, level))))
    for benchmark, entries in sorted(_routing_by_benchmark(report).items()):
        plots.append(ReportPlot(f"routing_jsd_{_slug(benchmark)}", f"{benchmark}: routing divergence by layer",
                                figure_bytes(lambda fig, entries=entries: draw_routing(fig, entries, colors),
                                             figsize=_with_legend(len(entries) + 1))))
    flipped = _flip_settings(report)
    if flipped:
        plots.append(ReportPlot("flip_rate_by_layer", "Flip rate per routing site",
                                figure_bytes(lambda fig: draw_flip_rates(fig, flipped, colors),
                                             figsize=_with_legend(len(flipped)))))
    drawable = [e for e in report.get("expert_sets", ()) if e.get("delta_phi")]
    for entry in drawable:
        stem = f"delta_phi_{entry['kind']}_experts" + (f"_{entry['hash'][:6]}" if len(drawable) > 1 else "")
        used = ", ".join(entry["used_by"]) or "no setting of these runs"
        plots.append(ReportPlot(stem, f"ΔΦ per site x expert of the {entry['kind']} expert set from "
                                      f"{entry['source']} (used by: {used}); outlined: the chosen experts",
                                figure_bytes(lambda fig, entry=entry: draw_delta_phi(fig, entry),
                                             figsize=_delta_figsize(entry))))
    return plots
