"""The demo's summary: one row per setting (plain, the soft intervention, the seeded random-expert control) with
text, seen and image accuracy, the gap, and beside each gain its text cost and measured flip rate.

Built from :func:`rd_eval.analysis.gaps.compare_runs` tables (one per intervened setting against the plain run)
and, where the plain run had a perception task (``rd_<benchmark>_see``), its perception entry
(:func:`rd_eval.analysis.perception_summary.perception`): *seen* is the share of images the model transcribed well
enough to count as seen, and image-form failures split into perception errors (not seen) and reasoning errors
(seen).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from rd_eval.rendering.mdtable import md_row


def _ci(d: Mapping[str, Any]) -> str:
    return f"{d['diff']:+.1f} [{d['ci_low']:+.1f}, {d['ci_high']:+.1f}]"


def _flip(rate: float | None) -> str:
    return "–" if rate is None else f"{100 * rate:.1f}%"


def summary_rows(effects: Mapping[str, Mapping[str, Any]], flip_rates: Mapping[str, float | None],
                 seen: float | None) -> list[dict[str, Any]]:
    """One row per setting: `effects` maps each intervened setting to its compare_runs table against the plain
    run (one benchmark); the plain row comes from the first table's base run."""
    if not effects:
        raise ValueError("no intervened setting to summarise")
    rows: list[dict[str, Any]] = []
    for name, table in effects.items():
        (row,) = table["rows"]
        if not rows:
            base = row["base"]
            rows.append({"setting": "plain", "n_pairs": base["n_pairs"], "acc_txt": base["acc_txt"], "seen": seen,
                         "acc_img": base["acc_img"], "gap": base["gap"], "gain": None, "text_cost": None,
                         "flip_rate": None})
        effect, inter = row["effect"], row["intervened"]
        rows.append({"setting": name, "n_pairs": effect["n_pairs"], "acc_txt": effect["acc_txt"], "seen": None,
                     "acc_img": effect["acc_img"], "gap": inter["gap"], "gain": effect["gain"],
                     "text_cost": effect["text_cost"], "flip_rate": flip_rates.get(name)})
    return rows


def summary_markdown(rows: list[dict[str, Any]], perception_entry: Mapping[str, Any] | None, *, level: float,
                     title: str) -> str:
    pct = int(round(100 * level))
    lines = [f"# {title}", "",
             f"Percent over the pairs complete in both forms; gap = text - image, gain = image(setting) - "
             f"image(plain), text cost = text(setting) - text(plain), in points with paired bootstrap {pct}% CIs. "
             "seen = images the model transcribed (rd-eval's perception check). flip rate = share of steered "
             "tokens x layers whose selected experts the intervention changed.", "",
             f"| setting | n pairs | text | seen | image | gap [{pct}% CI] | gain [{pct}% CI] "
             f"| text cost [{pct}% CI] | flip rate |",
             "|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for row in rows:
        lines.append(md_row([
            row["setting"], row["n_pairs"], f"{row['acc_txt']:.1f}",
            "–" if row["seen"] is None else f"{row['seen']:.1f}", f"{row['acc_img']:.1f}", _ci(row["gap"]),
            "–" if row["gain"] is None else _ci(row["gain"]),
            "–" if row["text_cost"] is None else _ci(row["text_cost"]), _flip(row["flip_rate"]),
        ]))
    if perception_entry is not None:
        a = perception_entry["attribution"]
        lines += ["", f"Perception (plain run, {perception_entry['n']} images): {a['img_failures']} image-form "
                      f"failures = {a['perception_errors']} not seen (perception errors) + {a['reasoning_errors']} "
                      f"seen (reasoning errors); {a['seeing_not_thinking']} pairs were seen, right as text and "
                      "wrong as image: seeing but not thinking."]
    return "\n".join(lines) + "\n"
