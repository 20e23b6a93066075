"""The intervention's effect on routing as markdown: a setting's flip rate line and its per-layer flip table
(the data: :func:`rd_eval.analysis.flips.effect_summary`)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from rd_eval.analysis.flips import NO_OP
from rd_eval.rendering.mdtable import site_label

__all__ = ["flip_markdown", "flip_section", "summary_line"]


def summary_line(summary: Mapping[str, Any]) -> str:
    """One line: the setting's flip rate, or the no-op call-out."""
    if summary["no_op"]:
        if summary["tokens"] == 0:
            return f"**{NO_OP}** (no token was steered in {summary['n_documents']} documents)"
        return f"**{NO_OP}** ({summary['tokens']} token-layers steered, none changed its selection)"
    return (f"flip rate {_pct(summary['flip_rate'])} (mean over {len(summary['sites'])} steered layers), "
            f"{_num(summary['newly_selected_per_token'])} set experts newly selected per token")


def _pct(x: Any) -> str:
    return "–" if x is None else f"{100 * x:.1f}%"


def _num(x: Any) -> str:
    return "–" if x is None else f"{x:.3f}"


def flip_markdown(summary: Mapping[str, Any], *, title: str) -> list[str]:
    """A setting's per-layer flip table (markdown lines), with the mean over the band and the no-op call-out."""
    lines = ["", f"### {title}", "", f"- {summary_line(summary)}"]
    if summary["n_documents_without_effect"]:
        lines.append(f"- {summary['n_documents_without_effect']} documents carry no intervention data "
                     "(records written before it was measured)")
    if not summary["sites"]:
        return lines
    lines += ["", "| site | tokens | flipped | flip rate | newly selected | per token |",
              "|---:|---:|---:|---:|---:|---:|"]
    for s in summary["sites"]:
        lines.append(f"| {site_label(s)} | {s['tokens']} | {s['flipped']} | {_pct(s['flip_rate'])} | "
                     f"{s['newly_selected']} | {_num(s['newly_selected_per_token'])} |")
    lines.append(f"| band mean | | | {_pct(summary['flip_rate'])} | | {_num(summary['newly_selected_per_token'])} |")
    return lines


def flip_section(settings: list[Mapping[str, Any]]) -> list[str]:
    """Markdown: per intervened setting of a report, the per-layer flip table."""
    measured = [s for s in settings if s.get("flips")]
    if not measured:
        return []
    lines = ["", "## Intervention effect on routing", "",
             "Per steered MoE layer (site), against the model's own unsteered selection, over the tokens in the "
             "intervention's token scope (padding never counted): flipped = tokens whose selected expert set "
             "changed; flip rate = flipped / tokens; newly selected = experts of the intervention's set selected "
             "after but not before (token x expert). The band mean is the mean over the steered layers. λ is "
             "not comparable across families; the flip rate is."]
    for s in measured:
        lines += flip_markdown(s["flips"]["overall"], title=f"Flip rate: {s['label']}")
    return lines
