"""A report as tables: one tidy CSV (a row per setting x benchmark x MoE site) and JSON (the report dict)."""

from __future__ import annotations

import csv
import io
import json
import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["CSV_COLUMNS", "CSV_DOC", "SEEN_COLUMNS", "json_safe", "report_csv", "report_json"]


def json_safe(obj: Any) -> Any:
    """JSON-safe copy: NaN/inf -> None, tuples -> lists, numpy scalars -> Python, paths -> str."""
    if isinstance(obj, Mapping):
        return {str(k): json_safe(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [json_safe(v) for v in obj]
    if isinstance(obj, Path):
        return str(obj)
    if isinstance(obj, np.generic):
        obj = obj.item()
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    return obj


CSV_COLUMNS = (
    "model_id", "checkpoint", "intervention", "setting", "role", "benchmark",
    "n_pairs", "acc_img", "acc_txt", "gap", "gap_ci_low", "gap_ci_high", "gap_p_mcnemar",
    "gain", "gain_ci_low", "gain_ci_high", "text_cost", "recovery", "flip_rate",
    "routing_n_pairs", "corr_r", "corr_p",
    "site", "in_band", "jsd_mean", "jsd_ci_low", "jsd_ci_high", "separation",
)
# Appended only to a report where some setting ran a perception task (a report without one keeps CSV_COLUMNS).
SEEN_COLUMNS = ("seen", "seen_n", "seen_errors", "img_failures", "perception_errors", "reasoning_errors",
                "unattributed", "seeing_not_thinking")
CSV_DOC = """One row per setting x benchmark x MoE site (site columns empty when the setting has no routing records).
model_id, checkpoint, intervention: the setting (intervention 'none' = plain, else the spec's content hash);
setting: what it is ("plain", "soft λ=1, domain experts, band 0.25–0.75"); role: base / intervened / no_base.
n_pairs, acc_img, acc_txt, gap, gap_ci_low, gap_ci_high, gap_p_mcnemar: this setting's own gap (percent,
points; gap = acc_txt - acc_img) over pairs complete in both forms.
gain, gain_ci_low, gain_ci_high, text_cost, recovery: intervened vs the plain setting (points), intervened rows only.
flip_rate: the intervention's measured flip rate on the benchmark (share of steered tokens whose selected expert
set changed, mean over the steered sites, 0-1; empty when its routing records do not carry it).
routing_n_pairs, corr_r, corr_p: pairs with routing in both forms; point-biserial r / p of middle-band JSD vs
image correctness. site, in_band, jsd_mean, jsd_ci_low, jsd_ci_high: per-site pair JSD (bits) and bootstrap CI
(site: the row of the routing arrays; which MoE layer and group it is: the JSON/markdown report's site table);
separation: per-site JSD between pooled image-token and text-token routing of image-form documents.
Only where some setting ran a benchmark's perception task (rd_<benchmark>_see), the columns of SEEN_COLUMNS follow,
filled on that setting and benchmark's rows: seen (percent of judged images seen), seen_n (judged images),
seen_errors (documents the model could not run), and this setting's image-form failures: img_failures =
perception_errors (not seen) + reasoning_errors (seen) + unattributed (no seen flag); seeing_not_thinking: seen,
right as text, wrong as image."""


def _csv_rows(report: Mapping[str, Any]) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    for s in report["settings"]:
        routing = {b["benchmark"]: b for b in (s.get("routing") or {}).get("benchmarks", [])}
        perception = {e["benchmark"]: e for e in s.get("perception") or []}
        for row in s["gaps"]["rows"]:
            run = row["intervened"] if s["role"] == "intervened" else row["base"]
            if run is None:
                continue
            effect = row.get("effect") if s["role"] == "intervened" else None
            base = {
                "model_id": s["model_id"], "checkpoint": s["checkpoint"], "intervention": s["intervention"],
                "setting": s["name"], "role": s["role"], "benchmark": row["benchmark"], "n_pairs": run["n_pairs"],
                "acc_img": run["acc_img"], "acc_txt": run["acc_txt"], "gap": run["gap"]["diff"],
                "gap_ci_low": run["gap"]["ci_low"], "gap_ci_high": run["gap"]["ci_high"],
                "gap_p_mcnemar": run["gap"]["p_mcnemar"],
                "gain": effect["gain"]["diff"] if effect else None,
                "gain_ci_low": effect["gain"]["ci_low"] if effect else None,
                "gain_ci_high": effect["gain"]["ci_high"] if effect else None,
                "text_cost": effect["text_cost"]["diff"] if effect else None,
                "recovery": effect["recovery"] if effect else None,
                "flip_rate": (s["gaps"].get("flip_rates") or {}).get(row["benchmark"]) if effect else None,
            }
            seen = perception.get(row["benchmark"])
            if seen is not None:
                a = seen["attribution"]
                base |= {"seen": seen["seen"], "seen_n": seen["n"], "seen_errors": seen["errors"]}
                base |= {k: a[k] for k in ("img_failures", "perception_errors", "reasoning_errors", "unattributed",
                                           "seeing_not_thinking")}
            bench = routing.get(row["benchmark"])
            if bench is None:
                rows.append(base)
                continue
            corr = bench.get("correlation") or {}
            base |= {"routing_n_pairs": bench["n_pairs"], "corr_r": corr.get("r"), "corr_p": corr.get("p")}
            for layer in bench["layers"]:
                rows.append(base | {
                    "site": layer["site"], "in_band": layer["in_band"], "jsd_mean": layer["jsd_mean"],
                    "jsd_ci_low": layer["ci_low"], "jsd_ci_high": layer["ci_high"], "separation": layer["separation"],
                })
    return rows


def report_csv(report: Mapping[str, Any]) -> str:
    """One tidy table: a row per setting x benchmark x MoE site; columns in :data:`CSV_COLUMNS`, then
    :data:`SEEN_COLUMNS` where some setting ran a perception task (see CSV_DOC)."""
    columns = CSV_COLUMNS + (SEEN_COLUMNS if any(s.get("perception") for s in report["settings"]) else ())
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(columns), lineterminator="\n")
    writer.writeheader()
    for row in _csv_rows(report):
        writer.writerow({k: ("" if row.get(k) is None else row[k]) for k in columns})
    return buffer.getvalue()


def report_json(report: Mapping[str, Any]) -> str:
    """The report dict as indented JSON (no NaN: undefined statistics are null)."""
    return json.dumps(json_safe(report), indent=2, allow_nan=False) + "\n"
