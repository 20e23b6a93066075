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
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from rd_eval.routing.records import EFFECT_FIELDS, EFFECT_KEY, record_site_table
from rd_eval.routing.site_table import SiteTable
from rd_eval.vocabulary.task_names import benchmark_of

__all__ = ["NO_OP", "effect_summary", "flip_rates", "flip_rates_by_benchmark", "noop_message", "record_effect",
           "setting_flips"]

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
    """Per benchmark (`rd_eval.vocabulary.task_names.benchmark_of` of the task), the flip rate of the documents'
    records (error records skipped); None when no record carries intervention data."""
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


def setting_flips(samples: pd.DataFrame, index: Mapping[tuple[str, int], tuple[Mapping[str, Any], Path]],
                  setting: str) -> dict[str, Any] | None:
    """An intervened setting's measured effect on routing: over all of its documents (``overall``) and per
    benchmark, from its records by (task, doc_id); None when no record of its documents carries the effect.
    Where sites are not one per MoE layer, each site names its MoE layer, group and decoder layer.
    A malformed effect raises ValueError naming the folder and record; effects of different site counts mixed,
    one naming `setting`."""
    by_benchmark: dict[str, list[Any]] = {}
    table: SiteTable | None = None  # what the site rows are (the first record with an effect says)
    for task, doc_id in zip(samples["task"].astype(str), samples["doc_id"], strict=True):
        hit = index.get((task, int(doc_id)))
        if hit is None or hit[0].get("error") is not None or hit[0].get("counts") is None:
            continue
        where = f"{hit[1]}: record task {task!r} doc_id {int(doc_id)}"
        effect = record_effect(hit[0], where)
        if effect is not None and table is None:
            table = record_site_table(hit[0], effect.shape[0], where)
        by_benchmark.setdefault(benchmark_of(task), []).append(effect)
    try:
        overall = effect_summary(e for part in by_benchmark.values() for e in part)
        benchmarks = {name: effect_summary(part) for name, part in sorted(by_benchmark.items())}
    except ValueError as exc:
        raise ValueError(f"setting {setting}: {exc}") from None
    if overall is None:
        return None
    if table is not None and not table.is_plain:  # name each site's MoE layer, group and decoder layer
        for summary in (overall, *benchmarks.values()):
            for site in (summary or {}).get("sites", ()):
                row = table.rows[site["site"]]
                site |= {"moe_layer": row.moe_index, "group": row.group, "decoder_layer": row.layer}
    return {"overall": overall, "benchmarks": {k: v for k, v in benchmarks.items() if v is not None}}


def flip_rates(flips: Mapping[str, Any] | None) -> dict[str, float | None] | None:
    """Per benchmark, the flip rate of a :func:`setting_flips` result (shown beside the gain); None: not measured."""
    if not flips:
        return None
    return {name: b["flip_rate"] for name, b in flips["benchmarks"].items()}
