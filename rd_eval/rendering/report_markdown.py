"""A report (:func:`rd_eval.reports.report.build_report`) as markdown: the settings, a gap table per setting (with
its perception check where a benchmark's `_see` task ran in it), the data sources, routing divergence per setting
and benchmark, and the intervention's effect on routing."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from rd_eval.analysis.flips import NO_OP
from rd_eval.rendering.flips_markdown import flip_section
from rd_eval.rendering.gaps_markdown import gaps_markdown
from rd_eval.rendering.mdtable import md_row, site_label
from rd_eval.rendering.provenance_markdown import provenance_markdown

__all__ = ["report_markdown"]


def _f(x: Any, digits: int = 3) -> str:
    return "–" if x is None else f"{x:.{digits}f}"


def _p(x: Any) -> str:
    return "–" if x is None else (f"{x:.2g}" if x < 0.001 else f"{x:.3f}")


def _shift_headings(text: str) -> str:
    return "\n".join("#" + line if line.startswith("#") else line for line in text.splitlines())


def _sites_text(bench: Mapping[str, Any]) -> str:
    """How many sites a benchmark's routing has: MoE layers, or sites over layers and groups."""
    if "n_moe_layers" not in bench:
        return f"{bench['n_sites']} MoE layers"
    groups = [g for g in bench["groups"] if g]
    return (f"{bench['n_sites']} routing sites ({bench['n_moe_layers']} MoE layers"
            + (f", groups {', '.join(groups)}" if groups else "") + f"; pair JSD over sites {bench['pair_sites']})")


def _perception_lines(entries: list[Mapping[str, Any]]) -> list[str]:
    """The perception check of one setting, per benchmark with a perception task; nothing without one."""
    if not entries:
        return []
    lines = ["", "### Perception check", "",
             "seen = images the model transcribed well enough to count as seen (the benchmark's `_see` task, run in "
             "this setting), percent of the judged images; errors = documents the model could not run (not judged). "
             "This setting's image-form failures: not seen = perception errors, seen = reasoning errors; "
             "unattributed = no seen flag; seen, right as text = seeing but not thinking.", "",
             "| benchmark | seen | judged | errors | image failures | not seen | seen (reasoning) | unattributed "
             "| seen, right as text |",
             "|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for e in entries:
        a = e["attribution"]
        lines.append(md_row([e["benchmark"], "–" if e["seen"] is None else f"{e['seen']:.1f}%", e["n"], e["errors"],
                             a["img_failures"], a["perception_errors"], a["reasoning_errors"], a["unattributed"],
                             "–" if a["seeing_not_thinking"] is None else a["seeing_not_thinking"]]))
    return lines


def report_markdown(report: Mapping[str, Any]) -> str:
    """The report as markdown: gap tables per setting, then routing divergence per setting and benchmark."""
    level = int(round(100 * float(report["level"])))
    lo, hi = report["band"]["fractions"]
    lines = [
        "# rd-eval report",
        "",
        f"- Inputs: {', '.join(f'`{p}`' for p in report['inputs'])}",
        f"- Token scope for pair divergence: `{report['scope']}`; middle band = MoE-layer fractions {lo}-{hi}; "
        f"{level}% percentile bootstrap CIs over pairs ({report['n_boot']} resamples, seed {report['seed']}).",
        "- Settings (what each is; then model id, checkpoint and intervention hash, `none` = plain):",
    ]
    names = {s["key"]: s["name"] for s in report["settings"]}
    for s in report["settings"]:
        extra = f", compared with {names[s['base']]}" if s.get("base") else (
            ", no plain run of this model to compare with" if s["role"] == "no_base" else "")
        lines.append(f"  - {s['name']} (`{s['key']}`): {len(s['runs'])} run(s), {s['n_samples']} samples{extra}")
        lines += [f"    - {note}" for note in s.get("routing_notes", ())]
        if (s.get("flips") or {}).get("overall", {}).get("no_op"):
            lines.append(f"    - **{NO_OP}**")
    lines += [f"- Not reported: {note}" for note in report.get("notes", ())]
    lines += [f"- No ΔΦ heatmap of the {e['kind']} expert set from {e['source']}: it records only the chosen "
              "experts' scores (identified before rd-eval recorded the full ΔΦ; run `rd-eval experts` again)"
              for e in report.get("expert_sets", ()) if not e.get("delta_phi")]
    lines += provenance_markdown(report.get("data_sources"))
    for s in report["settings"]:
        title = f"Gaps: {s['label']}" + (" vs plain" if s["role"] == "intervened" else "")
        lines += ["", _shift_headings(gaps_markdown(s["gaps"], title=title)).rstrip()]
        lines += _perception_lines(s.get("perception") or [])
    lines += ["", "## Routing divergence", ""]
    lines.append(
        "Per MoE layer (site): JSD (bits, 0-1) between the image form's and the text twin's expert-selection "
        "distributions, mean over pairs with CI. Separation: JSD between the pooled image-token and pooled "
        "text-token selection distributions of the image-form documents (how differently the two modalities "
        "are routed at that layer). r: point-biserial correlation of a pair's middle-band JSD with "
        "image-form correctness."
    )
    any_routing = False
    for s in report["settings"]:
        routing = s.get("routing")
        if not routing:
            continue
        for b in routing["benchmarks"]:
            any_routing = True
            c = b.get("correlation")
            lines += [
                "",
                f"### {b['benchmark']}: {s['label']}",
                "",
                f"- {b['n_pairs']} pairs ({b['n_pairs_without_record']} without routing records, "
                f"{b['n_pairs_without_scope_tokens']} without tokens in scope); {_sites_text(b)} x "
                f"{b['n_experts']} experts; band sites {b['band_sites']}; separation over "
                f"{b['n_separation_docs']} image-form documents.",
            ]
            if c:
                stat = (
                    "r undefined (needs 3+ pairs, both outcomes and varying JSD)" if c["r"] is None
                    else f"r = {_f(c['r'])}, p = {_p(c['p'])}"
                )
                lines.append(
                    f"- Middle-band JSD vs image correctness: {stat} (n = {c['n']}, {c['n_img_correct']} image "
                    f"forms correct; mean band JSD {_f(c['mid_band_jsd_mean'])})"
                )
            lines += [
                "",
                f"| site | band | JSD mean [{level}% CI] | separation |",
                "|---:|:---:|---:|---:|",
            ]
            for layer in b["layers"]:
                jsd = (
                    "–" if layer["jsd_mean"] is None
                    else f"{_f(layer['jsd_mean'])} [{_f(layer['ci_low'])}, {_f(layer['ci_high'])}]"
                )
                lines.append(md_row([site_label(layer), "●" if layer["in_band"] else "", jsd,
                                     _f(layer["separation"])]))
    if not any_routing:
        lines += ["", "No routing records found beside these runs (run with an rd_* model and record_routing on)."]
    lines += flip_section(report["settings"])
    return "\n".join(lines) + "\n"
