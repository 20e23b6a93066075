"""Flip rate: how much an intervention changed routing, read from the routing records (no torch).

Per site, the records of a run under an intervention carry the tokens counted in the intervention's token
scope, the tokens whose selected expert set the intervention changed (flipped) and the intervention's experts
newly selected (`rd_eval.routing.records.EFFECT_KEY`). The flip rate of a site is flipped / tokens; the rate
of a setting or benchmark is the mean of its steered sites' rates (sites where tokens were counted). λ is not
comparable across families (a sigmoid + bias router moves far less per unit λ); the flip rate is.

A run whose intervention changed no selection anywhere is a no-op, and is said to be one.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np

from rd_eval.routing.records import EFFECT_FIELDS, EFFECT_KEY

__all__ = ["NO_OP", "effect_summary", "flip_markdown", "flip_rates_by_benchmark", "noop_message", "record_effect",
           "summary_line"]

NO_OP = "intervention changed no expert selection: a no-op"


def record_effect(record: Mapping[str, Any], where: str) -> np.ndarray | None:
    """A record's effect sums [sites, EFFECT_FIELDS], or None when it carries none (no intervention data).
    A malformed field raises ValueError naming `where`."""
    field = record.get(EFFECT_KEY)
    if field is None:
        return None
    try:
        columns = [np.asarray(field[name], dtype=np.float64) for name in EFFECT_FIELDS]
        values = np.stack(columns, axis=1)
    except (KeyError, TypeError, ValueError):
        raise ValueError(f"{where}: '{EFFECT_KEY}' must hold equal-length lists {list(EFFECT_FIELDS)}") from None
    if values.ndim != 2 or not np.isfinite(values).all() or (values < 0).any():
        raise ValueError(f"{where}: '{EFFECT_KEY}' must hold non-negative counts per site")
    return values


def _rate(num: float, den: float) -> float | None:
    return float(num) / float(den) if den > 0 else None


def effect_summary(effects: Iterable[np.ndarray | None]) -> dict[str, Any] | None:
    """Flip rates of a set of documents' effects (None entries: documents without intervention data).
    None when no document has any."""
    total: np.ndarray | None = None
    n_docs = n_without = 0
    for effect in effects:
        if effect is None:
            n_without += 1
            continue
        if total is not None and effect.shape != total.shape:
            raise ValueError(f"intervention effects of {effect.shape[0]} and {total.shape[0]} sites mixed")
        total = effect.copy() if total is None else total + effect
        n_docs += 1
    if total is None:
        return None
    tokens, flipped, newly = total[:, 0], total[:, 1], total[:, 2]
    sites = [
        {"site": site, "tokens": int(tokens[site]), "flipped": int(flipped[site]),
         "flip_rate": _rate(flipped[site], tokens[site]), "newly_selected": int(newly[site]),
         "newly_selected_per_token": _rate(newly[site], tokens[site])}
        for site in range(total.shape[0]) if tokens[site] > 0
    ]
    rates = [s["flip_rate"] for s in sites]
    return {
        "n_documents": n_docs,
        "n_documents_without_effect": n_without,
        "sites": sites,
        "flip_rate": float(np.mean(rates)) if rates else None,  # mean over the steered sites (the band)
        "newly_selected_per_token": (float(np.mean([s["newly_selected_per_token"] for s in sites]))
                                     if sites else None),
        "tokens": int(tokens.sum()),
        "flipped": int(flipped.sum()),
        "no_op": bool(flipped.sum() == 0),
    }


def flip_rates_by_benchmark(records: Iterable[Mapping[str, Any]], where: str) -> dict[str, float | None] | None:
    """Per benchmark (`rd_eval.analysis.gaps.benchmark_of` of the task), the flip rate of the documents' records (error
    records skipped); None when no record carries intervention data."""
    from rd_eval.analysis.gaps import benchmark_of

    parts: dict[str, list[np.ndarray | None]] = {}
    for record in records:
        if record.get("error") is not None or record.get("counts") is None:
            continue
        task = str(record.get("task"))
        effect = record_effect(record, f"{where}: record task {task!r} doc_id {record.get('doc_id')}")
        parts.setdefault(benchmark_of(task), []).append(effect)
    summaries = {name: effect_summary(part) for name, part in sorted(parts.items())}
    rates = {name: summary["flip_rate"] for name, summary in summaries.items() if summary is not None}
    return rates or None


def noop_message(totals: np.ndarray) -> str | None:
    """The call-out for a run whose effect totals [sites, EFFECT_FIELDS] show no changed selection, else None."""
    tokens, flipped = float(totals[:, 0].sum()), float(totals[:, 1].sum())
    if flipped > 0:
        return None
    if tokens == 0:
        return f"{NO_OP} (it steered no token: no steered layer, or no token in its token scope)"
    steered = int((totals[:, 0] > 0).sum())
    return f"{NO_OP} ({int(tokens)} tokens counted over {steered} steered layer(s), none changed its selection)"


def summary_line(summary: Mapping[str, Any]) -> str:
    """One line: the setting's flip rate, or the no-op call-out."""
    if summary["no_op"]:
        if summary["tokens"] == 0:
            return f"**{NO_OP}** (no token was steered in {summary['n_documents']} documents)"
        return f"**{NO_OP}** ({summary['tokens']} token-layers steered, none changed its selection)"
    return (f"flip rate {_pct(summary['flip_rate'])} (mean over {len(summary['sites'])} steered layers), "
            f"{_num(summary['newly_selected_per_token'])} set experts newly selected per token")


def _site_label(site: Mapping[str, Any]) -> str:
    """A site row, and where sites are not one per MoE layer (a site table says so), its MoE layer, group and
    decoder layer."""
    if "moe_layer" not in site:
        return str(site["site"])
    group = f" {site['group']}" if site["group"] else ""
    return f"{site['site']} (MoE {site['moe_layer']}{group}, layer {site['decoder_layer']})"


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
        lines.append(f"| {_site_label(s)} | {s['tokens']} | {s['flipped']} | {_pct(s['flip_rate'])} | "
                     f"{s['newly_selected']} | {_num(s['newly_selected_per_token'])} |")
    lines.append(f"| band mean | | | {_pct(summary['flip_rate'])} | | {_num(summary['newly_selected_per_token'])} |")
    return lines
