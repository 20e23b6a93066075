"""A gap table (:func:`rd_eval.analysis.gaps.compare_runs`) as markdown: per benchmark and run the paired
accuracies and gap, and with an intervened run its gain, text cost, recovery and measured flip rate."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from rd_eval.rendering.mdtable import md_row

__all__ = ["gaps_markdown"]


def _pts(x: float) -> str:
    return f"{x:.1f}"


def _signed(x: float) -> str:
    return f"{x:+.1f}"


def _p(p: float) -> str:
    return f"{p:.2g}" if p < 0.001 else f"{p:.3f}"


def _diff_ci(d: Mapping[str, Any]) -> str:
    return f"{_signed(d['diff'])} [{_signed(d['ci_low'])}, {_signed(d['ci_high'])}]"


def _flip_cell(rate: float | None) -> str:
    if rate is None:
        return "– (not measured)"
    return f"{100 * rate:.1f}%" + (" (no-op)" if rate == 0 else "")


def gaps_markdown(table: Mapping[str, Any], *, title: str) -> str:
    """Render a :func:`compare_runs` dict (or its JSON round trip) as markdown."""
    for key in ("rows", "level", "n_boot"):
        if key not in table:
            raise ValueError(f"table lacks key {key!r}; pass the dict returned by compare_runs")
    level = int(round(100 * float(table["level"])))
    lines = [f"# {title}", ""]
    for label, key in (("Base", "base_run"), ("Intervened", "intervened_run")):
        info = table.get(key)
        if info:
            lines.append(
                f"- {label}: model {', '.join(info['model']) or '?'}; "
                f"model_args `{'; '.join(info['model_args']) or '-'}`"
            )
    lines += [
        f"- Accuracies in percent over pair_ids present in both forms; gap = acc_txt - acc_img in points, "
        f"paired bootstrap {level}% CI ({table['n_boot']} resamples), exact McNemar p.",
        "- errors (img / txt): documents the model could not run, per form. They are not scored; a pair_id "
        "with an error in either form is left out of both forms (not counted as unpaired).",
        "",
        f"| benchmark | run | n pairs | unpaired (img-only / txt-only) | acc_img | acc_txt "
        f"| gap [{level}% CI] | McNemar p | errors (img / txt) |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for row in table["rows"]:
        for run in ("base", "intervened"):
            r = row.get(run)
            if not r:
                continue
            lines.append(md_row([
                row["benchmark"], run, r["n_pairs"], f"{r['img_only']} / {r['txt_only']}", _pts(r["acc_img"]),
                _pts(r["acc_txt"]), _diff_ci(r["gap"]), _p(r["gap"]["p_mcnemar"]),
                f"{r.get('img_errors', 0)} / {r.get('txt_errors', 0)}",
            ]))
    unpaired = table.get("unpaired_benchmarks") or []
    if unpaired:
        lines += ["", "**Not paired, not averaged:** no pair_id has both an img and a txt sample in:"]
        lines += [f"- {u['benchmark']} ({u['run']} run): img-only {u['img_only']}, txt-only {u['txt_only']}; "
                  f"error rows img {u['img_errors']}, txt {u['txt_errors']}" for u in unpaired]
    effects = [row for row in table["rows"] if row.get("effect")]
    # Per benchmark, the intervention's measured flip rate (`rd_eval.analysis.flips`), set by the report and the demo
    # from the intervened run's routing records; absent: not measured (no records), and no column.
    flip_rates = table.get("flip_rates")
    if effects:
        lines += [
            "",
            "## Intervention effect",
            "",
            "On pair_ids complete in both runs (pairs with an error in either run are dropped). "
            "gain = acc_img(intervened) - acc_img(base); "
            "text cost = acc_txt(intervened) - acc_txt(base); recovery = gain / base gap."
            + (" flip rate: share of steered tokens x layers whose selected expert set the intervention changed "
               "(mean over the steered layers; comparable across families, unlike λ)." if flip_rates is not None
               else ""),
            "",
            f"| benchmark | n pairs | dropped (base / intervened) | acc_img base → int. | gain [{level}% CI] "
            f"| gain p | acc_txt base → int. | text cost [{level}% CI] | text cost p | base gap | recovery |"
            + (" flip rate |" if flip_rates is not None else ""),
            "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|" + ("---:|" if flip_rates is not None else ""),
        ]
        for row in effects:
            e = row["effect"]
            rec = "n/a (gap 0)" if e["recovery"] is None else f"{e['recovery']:.2f}"
            cells = [
                row["benchmark"], e["n_pairs"], f"{e['dropped_base']} / {e['dropped_intervened']}",
                f"{_pts(e['acc_img_base'])} → {_pts(e['acc_img'])}", _diff_ci(e["gain"]), _p(e["gain"]["p_mcnemar"]),
                f"{_pts(e['acc_txt_base'])} → {_pts(e['acc_txt'])}", _diff_ci(e["text_cost"]),
                _p(e["text_cost"]["p_mcnemar"]), _signed(e["gap_base"]["diff"]), rec,
            ]
            if flip_rates is not None:
                cells.append(_flip_cell(flip_rates.get(row["benchmark"])))
            lines.append(md_row(cells))
    for key, label in (
        ("benchmarks_only_in_base", "Benchmarks only in the base run"),
        ("benchmarks_only_in_intervened", "Benchmarks only in the intervened run"),
    ):
        if table.get(key):
            lines += ["", f"{label} (no intervention effect computed): {', '.join(table[key])}"]
    return "\n".join(lines) + "\n"
