"""`rd-eval report`: seeing-vs-thinking gaps, intervention effects and routing divergence of lmms-eval runs.

:func:`build_report` reads every lmms-eval run (``*_results.json`` + ``--log_samples`` files) under the
given folders through the run catalogue (:mod:`rd_eval.reports.catalogue`), which groups them into *settings*:
one per (lmms-eval model id, checkpoint, intervention hash). The intervention hash is ``"none"`` for a plain
run; otherwise it is the content hash of the intervention spec named in the run's ``model_args`` (the same hash
the adapter puts in routing records and in the routing folder's name). Per setting it gives:

- the gap table of :func:`rd_eval.analysis.gaps.compare_runs`: a plain setting on its own; an intervened setting
  against the plain setting of the same model id and checkpoint (gain, text cost, recovery);
- ``routing``, when the runs wrote routing records (found by the catalogue: a folder shared by several runs is
  never mixed): per benchmark the pair JSD per routing site with bootstrap CIs (``layers``), its correlation
  with image-form correctness (``correlation``) and the visual-vs-text routing separation per site, as
  :mod:`rd_eval.analysis.routing_divergence` defines them;
- ``flips`` (intervened settings): the intervention's measured effect on routing (:mod:`rd_eval.analysis.flips`);
- ``perception``: per benchmark whose perception task (``rd_<benchmark>_see``) ran in this setting, the seen share
  of the judged images (``seen``, percent; ``n`` judged, ``errors`` error documents) and the attribution of this
  setting's image-form failures to not seen (perception) and seen (reasoning), as
  :mod:`rd_eval.analysis.perception_summary` defines them (``[]`` without a perception task; never another
  setting's).

Each setting is named by what it is (``name``, :mod:`rd_eval.routing.describe`; its hash stays in
``intervention``) and, when its spec is readable, described field by field (``setting``: mode, λ, band, scope, seed,
the expert set's hash and the name with λ left open, ``family``, shared by the settings of a λ sweep).
``expert_sets``: the expert set given as ``experts=`` (``rd-eval report --experts FILE``), else every distinct set
the intervened settings' specs steer: its full ΔΦ matrix (site x expert, when identification recorded it) and the
chosen experts' cells, for the heatmap.

Renderers (:mod:`rd_eval.rendering`): :func:`to_markdown`, :func:`to_csv`, :func:`to_json`, :func:`to_html`
(self-contained, plots embedded as base64 PNG). Bad input raises :class:`ReportInputError` naming the file and
what is valid.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from rd_eval.analysis import flips
from rd_eval.analysis.gaps import compare_runs
from rd_eval.analysis.perception_summary import benchmark_perception
from rd_eval.analysis.routing_divergence import BAND_FRACTIONS, LEVEL, RoutingDataError, setting_routing
from rd_eval.data import provenance as data_provenance
from rd_eval.fileio.jsonio import JsonFileError
from rd_eval.lmms.runs import unfinished_run_message
from rd_eval.rendering.html import html_page
from rd_eval.rendering.report_markdown import report_markdown
from rd_eval.rendering.report_plots import ReportPlot, report_plots
from rd_eval.rendering.report_tables import json_safe, report_csv, report_json
from rd_eval.reports.catalogue import CatalogueError, RunCatalogue, RunSetting, SettingSamples, open_catalogue
from rd_eval.routing.describe import describe_family
from rd_eval.routing.spec import ExpertSet, InterventionSpec, SpecError
from rd_eval.vocabulary.scopes import DEFAULT_PAIR_SCOPE, SCOPE_MEMBERS, SCOPES_DEFAULT_FIRST

__all__ = [
    "REPORT_FORMAT",
    "ReportInputError",
    "build_report",
    "plots",
    "to_csv",
    "to_html",
    "to_json",
    "to_markdown",
]

REPORT_FORMAT = "rd-eval.report"
REPORT_VERSION = 1


class ReportInputError(ValueError):
    """Runs or routing records that cannot be reported on; the message names the file and what is valid."""


def _check_options(scope: str, n_boot: int, seed: int) -> None:
    if scope not in SCOPE_MEMBERS:
        raise ReportInputError(f"scope {scope!r} invalid; valid: {', '.join(SCOPES_DEFAULT_FIRST)}")
    if isinstance(n_boot, bool) or not isinstance(n_boot, int) or n_boot < 1:
        raise ReportInputError(f"n_boot must be a positive integer, got {n_boot!r}")
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise ReportInputError(f"seed must be a non-negative integer, got {seed!r}")


def _setting_entry(catalogue: RunCatalogue, setting: RunSetting, samples: Mapping[str, SettingSamples], *,
                   scope: str, n_boot: int, seed: int, boot_weights: dict[tuple[int, int, int], list[Any]],
                   ) -> dict[str, Any]:
    """One setting of the report: its runs, gap table (against its plain setting when intervened), routing
    divergence and the intervention's effect on routing."""
    own = samples[setting.key]
    df = own.frame
    base = catalogue.base_of(setting)
    if setting.plain:
        role, base_key = "base", None
    elif base is not None:
        role, base_key = "intervened", base.key
    else:
        role, base_key = "no_base", None
    try:
        if base is not None and role == "intervened":
            gaps = compare_runs(samples[base.key].frame, df, n_boot=n_boot, seed=seed)
        else:
            gaps = compare_runs(df, None, n_boot=n_boot, seed=seed)
    except ValueError as exc:
        raise ReportInputError(f"setting {setting.key} ({setting.results_files}): {exc}") from None
    records = catalogue.records(setting) if setting.routing_dirs else None
    setting_flips = None
    if records is not None and not setting.plain:
        try:
            setting_flips = flips.setting_flips(df, records, setting.key)
        except ValueError as exc:
            raise ReportInputError(str(exc)) from None
    if setting_flips is not None:
        gaps["flip_rates"] = flips.flip_rates(setting_flips)
    perception = []
    for benchmark, files in catalogue.perception_files(setting).items():
        try:  # the setting's own perception runs only: an intervened setting never shows its plain run's
            perception.append(benchmark_perception(df, benchmark, files))
        except (ValueError, OSError) as exc:
            raise ReportInputError(f"setting {setting.key}: perception task {benchmark}_see: {exc}") from None
    routing = None
    if records is not None:
        routing = {"routing_dirs": [str(p) for p in setting.routing_dirs],
                   "benchmarks": setting_routing(df, records, scope=scope, n_boot=n_boot, seed=seed,
                                                 boot_weights=boot_weights)}
    return {
        "key": setting.key,
        "model_id": setting.model_id,
        "checkpoint": setting.checkpoint,
        "intervention": setting.intervention,
        "label": setting.label,
        "name": setting.name,
        "setting": _setting_fields(setting.spec),
        "role": role,
        "base": base_key,
        "runs": [
            {"results": str(r.results_path), "timestamp": r.timestamp, "model_args": r.model_args,
             "tasks": list(r.tasks)}
            for r in setting.runs
        ],
        "n_samples": len(df),
        "n_samples_replaced_by_later_runs": own.n_replaced,
        "routing_notes": list(setting.routing_notes),
        "gaps": gaps,
        "perception": perception,
        "routing": routing,
        "flips": setting_flips,
    }


def _setting_fields(spec: InterventionSpec | None) -> dict[str, Any] | None:
    if spec is None:
        return None
    return {"mode": spec.mode, "lambda": spec.strength, "band": spec.band.to_json(), "token_scope": spec.token_scope,
            "seed": spec.seed, "std_correction": spec.std_correction, "experts_kind": spec.experts.kind,
            "experts": spec.experts.content_hash(), "family": describe_family(spec)}


def _delta_phi(experts: ExpertSet, n_rows: int, source: str) -> list[list[float]] | None:
    """The set's full ΔΦ [site rows][experts] from its method, checked; None when identification did not record it."""
    delta = experts.method.get("delta_phi")
    if delta is None:
        return None
    ok = isinstance(delta, list) and delta and all(isinstance(row, list) and row for row in delta)
    if ok:
        widths = {len(row) for row in delta}
        ok = len(widths) == 1 and all(isinstance(v, (int, float)) and not isinstance(v, bool)
                                      for row in delta for v in row)
    if not ok or (n_rows and len(delta) != n_rows):
        raise ReportInputError(f"{source}: method.delta_phi must be a [site rows][experts] list of numbers"
                               + (f" with {n_rows} rows (the set's site table)" if n_rows else ""))
    return [[float(v) for v in row] for row in delta]


def _expert_set_entry(experts: ExpertSet, source: str, used_by: Sequence[str]) -> dict[str, Any]:
    """What the heatmap draws: ΔΦ per site row x expert, the rows' labels and the chosen (row, expert) cells."""
    table = experts.sites
    delta = _delta_phi(experts, len(table.rows) if table is not None else 0, source)
    if table is not None:
        labels = [row.label() for row in table.rows]
        row_of = {(r.moe_index, r.group): r.site for r in table.rows}
    else:  # a version 1 set: row i is MoE layer i
        labels = [str(i) for i in range(len(delta))] if delta is not None else []
        row_of = {(i, ""): i for i in range(len(labels))}
    chosen = []
    for layer in experts.layers:
        row = row_of.get((layer.moe_index, layer.group))
        if delta is not None and (row is None or any(e >= len(delta[0]) for e in layer.experts)):
            raise ReportInputError(f"{source}: chosen experts of MoE layer {layer.moe_index} are outside its "
                                   f"method.delta_phi ({len(delta)} rows x {len(delta[0])} experts)")
        chosen += [[row, e] for e in layer.experts if row is not None]
    return {"hash": experts.content_hash(), "kind": experts.kind, "model": experts.model, "source": source,
            "used_by": list(used_by), "site_labels": labels, "delta_phi": delta, "chosen": chosen,
            "band_layers": experts.method.get("band_layers")}


def _expert_sets(catalogue: RunCatalogue, experts: Path | None) -> list[dict[str, Any]]:
    """The given expert set, else each distinct set the intervened settings steer (with the settings using it)."""
    if experts is not None:
        try:
            given = ExpertSet.load(experts)
        except (SpecError, JsonFileError) as exc:
            raise ReportInputError(f"--experts: {exc}") from None
        users = [s.name for s in catalogue.settings if s.spec is not None and s.spec.experts == given]
        return [_expert_set_entry(given, str(experts), users)]
    found: dict[str, tuple[ExpertSet, list[str]]] = {}
    for setting in catalogue.settings:
        if setting.spec is not None:
            entry = found.setdefault(setting.spec.experts.content_hash(), (setting.spec.experts, []))
            entry[1].append(setting.name)
    return [_expert_set_entry(s, f"the intervention spec of {users[0]}" if len(users) == 1
                              else "the runs' intervention specs", users) for s, users in found.values()]


def build_report(
    run_dirs: Sequence[Path], *, scope: str = DEFAULT_PAIR_SCOPE, n_boot: int = 10000, seed: int = 0,
    experts: Path | None = None,
) -> dict[str, Any]:
    """The report of every run under ``run_dirs`` as a JSON-serialisable dict (layout in the module doc);
    `experts`: the expert set file whose ΔΦ heatmap to show (default: the sets the runs' specs steer)."""
    _check_options(scope, n_boot, seed)
    if isinstance(run_dirs, (str, Path)) or not run_dirs:
        raise ReportInputError("run_dirs must be a non-empty list of run folders")
    # Bootstrap resampling weights by (pairs, n_boot, seed): a benchmark's settings share them (layer_summary).
    boot_weights: dict[tuple[int, int, int], list[Any]] = {}
    try:
        catalogue = open_catalogue([Path(p) for p in run_dirs])
        samples = {s.key: catalogue.samples(s) for s in catalogue.settings}
        settings = [_setting_entry(catalogue, s, samples, scope=scope, n_boot=n_boot, seed=seed,
                                   boot_weights=boot_weights) for s in catalogue.settings]
        notes = [unfinished_run_message([folder]) for folder in catalogue.unfinished_routing()]
        expert_sets = _expert_sets(catalogue, experts)
    except (CatalogueError, RoutingDataError) as exc:
        raise ReportInputError(str(exc)) from None
    return json_safe({
        "format": REPORT_FORMAT,
        "version": REPORT_VERSION,
        "inputs": [str(p) for p in run_dirs],
        "notes": notes,
        "scope": scope,
        "n_boot": n_boot,
        "seed": seed,
        "level": LEVEL,
        "band": {"fractions": list(BAND_FRACTIONS)},
        "settings": settings,
        "expert_sets": expert_sets,
        "data_sources": data_provenance.report_rows(catalogue.settings),
    })


# ---------------------------------------------------------------------------------------------------------
# Renderers: the report dict checked here, rendered by rd_eval.rendering


def _checked(report: Any) -> Mapping[str, Any]:
    if not isinstance(report, Mapping) or report.get("format") != REPORT_FORMAT or "settings" not in report:
        raise ReportInputError(f"not an rd-eval report; expected the dict of build_report (format {REPORT_FORMAT!r})")
    return report


def to_markdown(report: Mapping[str, Any]) -> str:
    """The report as markdown: gap tables per setting, then routing divergence per setting and benchmark."""
    return report_markdown(_checked(report))


def to_csv(report: Mapping[str, Any]) -> str:
    """One tidy table: a row per setting x benchmark x MoE site (:data:`rd_eval.rendering.report_tables.CSV_DOC`)."""
    return report_csv(_checked(report))


def to_json(report: Mapping[str, Any]) -> str:
    """The report dict as indented JSON (no NaN: undefined statistics are null)."""
    return report_json(_checked(report))


_STYLE = """body{font-family:system-ui,sans-serif;margin:2em;max-width:1100px;color:#222}
table{border-collapse:collapse;margin:.5em 0 1.5em;font-size:.85em}th,td{border:1px solid #ccc;padding:3px 7px}
th{background:#f2f2f2}td{text-align:right}code{background:#f4f4f4;padding:0 3px}figure{margin:1em 0}
img{max-width:100%}figcaption{font-size:.9em;color:#555}code{overflow-wrap:anywhere}"""


def plots(report: Mapping[str, Any]) -> list[ReportPlot]:
    """The report's plots (:func:`rd_eval.rendering.report_plots.report_plots`): PNG files and the HTML's figures."""
    return report_plots(_checked(report))


def to_html(report: Mapping[str, Any], figures: Sequence[ReportPlot] | None = None) -> str:
    """One self-contained HTML page (tables + base64 PNG plots; no external resources). `figures`: the report's
    plots when already drawn (for the PNG files), else drawn here."""
    report = _checked(report)
    drawn = plots(report) if figures is None else figures
    return html_page("rd-eval report", report_markdown(report), style=_STYLE,
                     figures=[(p.caption, p.base64()) for p in drawn], figures_heading="Plots")
