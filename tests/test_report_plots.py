"""The report's plots: gain vs λ, per-layer JSD, flip rate per site, the ΔΦ heatmap; as PNG files and in the HTML."""

from __future__ import annotations

import base64
import dataclasses
import io
import json
import re
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle
from PIL import Image
from test_report import CKPT, CKPT_DIR, MODEL_ID, N_PAIRS, build_runs
from test_runs import write_run

from rd_eval.analysis.flips import effect_summary
from rd_eval.commands.main import main
from rd_eval.experts.identify import domain_expert_set
from rd_eval.rendering.plots import write_png
from rd_eval.rendering.report_plots import (
    draw_delta_phi,
    draw_flip_rates,
    draw_gain,
    draw_routing,
    gain_curves,
    report_plots,
    setting_colors,
    setting_legend,
)
from rd_eval.reports.report import ReportInputError, build_report, to_html, to_markdown
from rd_eval.routing.spec import ExpertSet, InterventionSpec

N_BOOT = 200
HEX = re.compile(r"\b[0-9a-f]{12}\b")
# Image-form outcomes per pair of the two extra λ settings (the plain run gets pairs 0, 3, 6, 9 right: 4 of 12).
IMG_RIGHT = {0.5: lambda i: i % 2 == 0, 3.0: lambda i: True}
EXPECTED_GAIN = {0.5: 100 * (6 - 4) / N_PAIRS, 1.5: 0.0, 3.0: 100 * (12 - 4) / N_PAIRS}


def _figure() -> Any:
    fig = Figure()
    FigureCanvasAgg(fig)
    return fig


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """Plain and soft λ=1.5 (with routing, test_report's runs) plus soft λ=0.5 and λ=3 of the same experts, and an
    expert set identified by rd-eval's own ΔΦ step (the full matrix in its method)."""
    root = tmp_path_factory.mktemp("plots")
    run_root, _ = build_runs(root)
    soft = InterventionSpec.load(root / "experts" / "soft.json")
    for strength, right in IMG_RIGHT.items():
        path = dataclasses.replace(soft, strength=strength).save(root / "experts" / f"soft_{strength}.json")
        samples = {"rd_syn_img": [(f"p{i:02d}", int(right(i)), "1", "1") for i in range(N_PAIRS)],
                   "rd_syn_txt": [(f"p{i:02d}", int(i != 5), "1", "1") for i in range(N_PAIRS)]}
        write_run(run_root / f"soft_{strength}", "20250101_140000", samples, model_dir=CKPT_DIR, model=MODEL_ID,
                  model_args=f"pretrained={CKPT},intervention={path}")
    rng = np.random.default_rng(1)
    phi_general = rng.uniform(0, 0.3, size=(8, 8))
    phi_domain = phi_general + rng.normal(0, 0.1, size=(8, 8))
    experts = domain_expert_set(phi_domain, phi_general, band=[2, 3, 4, 5], top_n=2, model=CKPT, method={})
    return run_root, experts.save(root / "experts" / "domain_experts.json")


@pytest.fixture(scope="module")
def report(runs: tuple[Path, Path]) -> dict[str, Any]:
    return build_report([runs[0]], n_boot=N_BOOT, experts=runs[1])


def _by_lambda(report: dict[str, Any]) -> dict[float, dict[str, Any]]:
    return {s["setting"]["lambda"]: s for s in report["settings"] if s["setting"]}


def test_gain_vs_lambda_plots_the_reports_gains(report: dict[str, Any]) -> None:
    (sweep,) = gain_curves(report)
    assert sweep.title == "soft λ=…, domain experts, band 0.25–0.75"
    points = sweep.curves["rd_syn"]
    assert [p.strength for p in points] == [0.5, 1.5, 3.0]
    settings = _by_lambda(report)
    for p in points:
        (row,) = settings[p.strength]["gaps"]["rows"]
        gain = row["effect"]["gain"]
        assert (p.gain, p.ci_low, p.ci_high) == (gain["diff"], gain["ci_low"], gain["ci_high"])
        assert p.gain == pytest.approx(EXPECTED_GAIN[p.strength])
        assert p.setting == settings[p.strength]["name"] == f"soft λ={p.strength:g}, domain experts, band 0.25–0.75"
    fig = _figure()
    draw_gain(fig, sweep, level=0.95)
    (ax,) = fig.axes
    (bars,) = ax.containers
    np.testing.assert_allclose(bars.lines[0].get_xydata(), [[0.5, EXPECTED_GAIN[0.5]], [1.5, 0.0],
                                                             [3.0, EXPECTED_GAIN[3.0]]])
    assert ax.get_legend_handles_labels()[1] == ["plain (gain 0)", "rd_syn"]
    assert "λ" in ax.get_xlabel() and "points" in ax.get_ylabel()


def test_a_lone_random_setting_is_no_lambda_sweep(report: dict[str, Any]) -> None:
    settings = [dict(s, setting=dict(s["setting"], mode="random", family="random control, seed 0, λ=…"))
                if s["setting"] and s["setting"]["lambda"] == 3.0 else s for s in report["settings"]]
    (sweep,) = gain_curves(dict(report, settings=settings))
    assert [p.strength for p in sweep.curves["rd_syn"]] == [0.5, 1.5]


def test_heatmap_outlines_exactly_the_chosen_experts(report: dict[str, Any], runs: tuple[Path, Path]) -> None:
    experts = ExpertSet.load(runs[1])
    (entry,) = report["expert_sets"]
    assert entry["source"] == str(runs[1]) and entry["kind"] == "domain"
    chosen = {(layer.moe_index, e) for layer in experts.layers for e in layer.experts}  # legacy set: row = layer
    assert {tuple(c) for c in entry["chosen"]} == chosen and len(chosen) == 8
    np.testing.assert_allclose(entry["delta_phi"], experts.method["delta_phi"])
    fig = _figure()
    draw_delta_phi(fig, entry)
    ax = fig.axes[0]
    outlined = {(round(p.get_y() + 0.5), round(p.get_x() + 0.5)) for p in ax.patches if isinstance(p, Rectangle)}
    assert outlined == chosen
    # The outlined cells are the top-2 ΔΦ > 0 of each band layer.
    delta = np.asarray(entry["delta_phi"])
    for layer in (2, 3, 4, 5):
        top = set(np.argsort(-delta[layer], kind="stable")[:2].tolist())
        assert {e for r, e in chosen if r == layer} == {e for e in top if delta[layer, e] > 0}


def test_flip_rate_per_site_is_drawn_per_setting(report: dict[str, Any]) -> None:
    # Effects as the adapter records them [sites, (tokens, flipped, newly selected)]: two documents.
    effects = [np.array([[0, 0, 0], [0, 0, 0], [10, 2, 1], [10, 5, 3]]), np.array([[0, 0, 0], [0, 0, 0],
                                                                                   [10, 0, 0], [30, 5, 2]])]
    overall = effect_summary(effects)
    settings = [dict(s, flips={"overall": overall, "benchmarks": {}}) if s["setting"] and s["setting"]["lambda"]
                == 1.5 else s for s in report["settings"]]
    flipped = dict(report, settings=settings)
    stems = [p.stem for p in report_plots(flipped)]
    assert "flip_rate_by_layer" in stems and "flip_rate_by_layer" not in [p.stem for p in report_plots(report)]
    fig = _figure()
    name = _by_lambda(report)[1.5]["name"]
    draw_flip_rates(fig, [(name, overall)])
    (line,) = fig.axes[0].lines
    np.testing.assert_allclose(line.get_xydata(), [[2, 100 * 2 / 20], [3, 100 * 10 / 40]])
    assert line.get_label() == name


def test_routing_jsd_curves_plain_and_intervened_named(report: dict[str, Any]) -> None:
    legend = setting_legend(report)
    assert sorted(legend.values()) == ["plain"] + sorted(
        f"soft λ={x:g}, domain experts, band 0.25–0.75" for x in (0.5, 1.5, 3.0))
    entries = [(legend[s["key"]], s["routing"]["benchmarks"][0]) for s in report["settings"] if s["routing"]]
    assert [name for name, _ in entries] == ["plain", "soft λ=1.5, domain experts, band 0.25–0.75"]
    fig = _figure()
    draw_routing(fig, entries, setting_colors(report))
    ax_jsd = fig.axes[0]
    for (name, bench), line in zip(entries, ax_jsd.lines, strict=True):
        assert line.get_label() == name and line.get_color() == setting_colors(report)[name]
        np.testing.assert_allclose(line.get_ydata(), [layer["jsd_mean"] for layer in bench["layers"]])
    plots = {p.stem: p for p in report_plots(report)}
    assert list(plots) == ["gain_vs_lambda", "routing_jsd_rd_syn", "delta_phi_domain_experts"]
    for plot in plots.values():
        assert not HEX.search(plot.caption)


def test_png_files_and_html_are_the_same_deterministic_plots(runs: tuple[Path, Path], tmp_path: Path,
                                                              capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "out"
    assert main(["report", str(runs[0]), "--n-boot", str(N_BOOT), "--format", "html", "--out", str(out),
                 "--experts", str(runs[1])]) == 0
    files = sorted((out / "plots").iterdir())
    assert [f.name for f in files] == ["delta_phi_domain_experts.png", "gain_vs_lambda.png", "routing_jsd_rd_syn.png"]
    page = (out / "report.html").read_text(encoding="utf-8")
    for f in files:
        with Image.open(f) as image:
            image.verify()
            assert image.format == "PNG" and image.size[0] >= 600
        assert base64.b64encode(f.read_bytes()).decode("ascii") in page  # the page embeds the very same PNG
    assert "http://" not in page and "https://" not in page
    again = tmp_path / "again"
    assert main(["report", str(runs[0]), "--n-boot", str(N_BOOT), "--format", "json", "--out", str(again),
                 "--experts", str(runs[1])]) == 0
    assert [(again / "plots" / f.name).read_bytes() == f.read_bytes() for f in files] == [True] * 3
    assert json.loads((again / "report.json").read_text(encoding="utf-8"))["expert_sets"][0]["kind"] == "domain"
    capsys.readouterr()


def test_tables_never_name_a_setting_by_its_hash_alone(report: dict[str, Any]) -> None:
    names = [s["name"] for s in report["settings"]]
    for line in to_markdown(report).splitlines():
        if HEX.search(line):  # a hash only ever stands beside the setting's name
            assert any(name in line for name in names if name != "plain"), line
    html = to_html(report, [])
    assert "soft λ=1.5, domain experts, band 0.25–0.75" in html


def test_runs_specs_give_the_expert_set_and_a_set_without_delta_phi_is_said(runs: tuple[Path, Path]) -> None:
    found = build_report([runs[0]], n_boot=N_BOOT)
    (entry,) = found["expert_sets"]
    assert entry["delta_phi"] is None and len(entry["used_by"]) == 3
    assert entry["source"] == "the runs' intervention specs"
    assert "No ΔΦ heatmap of the domain expert set" in to_markdown(found)
    assert not any(p.stem.startswith("delta_phi") for p in report_plots(found))


def test_bad_expert_sets_are_named(runs: tuple[Path, Path], tmp_path: Path,
                                   capsys: pytest.CaptureFixture[str]) -> None:
    data = json.loads(runs[1].read_text(encoding="utf-8"))
    data["method"]["delta_phi"] = [[0.1, 0.2], [0.3]]
    ragged = tmp_path / "ragged.json"
    ragged.write_text(json.dumps(data), encoding="utf-8")
    with pytest.raises(ReportInputError, match=r"ragged\.json: method\.delta_phi must be a \[site rows\]\[experts\]"):
        build_report([runs[0]], n_boot=N_BOOT, experts=ragged)
    data["method"]["delta_phi"] = [[0.1, 0.2]] * 8
    narrow = tmp_path / "narrow.json"
    narrow.write_text(json.dumps(data), encoding="utf-8")
    with pytest.raises(ReportInputError, match=r"chosen experts of MoE layer 2 are outside its method\.delta_phi"):
        build_report([runs[0]], n_boot=N_BOOT, experts=narrow)
    (tmp_path / "not_a_set.json").write_text("{}", encoding="utf-8")
    assert main(["report", str(runs[0]), "--n-boot", str(N_BOOT), "--experts", str(tmp_path / "not_a_set.json")]) == 2
    assert "--experts:" in capsys.readouterr().err
    assert main(["report", str(runs[0]), "--n-boot", str(N_BOOT), "--experts", str(tmp_path / "missing.json")]) == 2
    assert "--experts" in capsys.readouterr().err
    with pytest.raises(ValueError, match="plot file name '../x' invalid"):
        write_png(tmp_path, "../x", b"")


def test_png_bytes_are_valid_images_of_each_plot(report: dict[str, Any]) -> None:
    for plot in report_plots(report):
        with Image.open(io.BytesIO(plot.png)) as image:
            assert image.format == "PNG"
