"""One site table: shards and expert sets say what each site row is; identification, band and report use it.

ERNIE-4.5-VL has a text and a vision router per MoE layer (and a dense first layer), so its site rows are not
MoE layers. The end-to-end tests plant experts in ERNIE's vision group and recover them there, and report on
routing recorded from the tiny checkpoint; the single-router checks show nothing changed for Qwen3-VL-MoE.
"""

from __future__ import annotations

import functools
import json
import re
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import test_report
import torch
from conftest import load_tiny_model, load_tiny_processor
from test_runs import write_run

from rd_eval.analysis.divergence import band_sites
from rd_eval.commands.experts import ExpertsConfig, identify, load_model, run_experts, summary
from rd_eval.experts.identify import domain_expert_set, selection_frequency, top_positive_experts
from rd_eval.experts.pipeline import image_probe_routing, probe_routing
from rd_eval.experts.probes import load_image_probes
from rd_eval.reports.report import build_report, to_csv, to_json, to_markdown
from rd_eval.routing.recording import BatchRouting
from rd_eval.routing.records import (
    CheckpointRef,
    DocIdentity,
    checkpoint_label,
    document_record,
    error_record,
    record_site_table,
)
from rd_eval.routing.session import plan_intervention
from rd_eval.routing.shards import ShardWriter, read_routing_records, sites_path
from rd_eval.routing.site_table import SiteRow, SiteTable, SiteTableError
from rd_eval.routing.sites import find_router_sites
from rd_eval.routing.spec import ExpertSet, InterventionSpec, LayerBand, LayerExperts, SpecError
from rd_eval.twins.demo_bench import generate_problems, question_block, render_problem

ERNIE_LAYERS = 5  # MoE layers of the tiny ERNIE (decoder layers 1..5; layer 0 is dense)
ERNIE_BAND = (1, 2, 3)  # the default band 0.25-0.75 of 5 MoE layers
ERNIE_BAND_ROWS = (2, 3, 4, 5, 6, 7)  # their text and vision sites
N_DOCS = 6


pytestmark = pytest.mark.usefixtures("one_thread")


def ernie_table() -> SiteTable:
    rows = []
    for moe in range(ERNIE_LAYERS):
        for group in ("text", "vision"):
            rows.append(SiteRow(site=len(rows), layer=moe + 1, moe_index=moe, group=group, num_experts=16, top_k=4,
                                module_path=f"model.language_model.layers.{moe + 1}.mlp.{group}_moe.gate"))
    return SiteTable(tuple(rows))


# -- the table itself --------------------------------------------------------------------------------------
def test_site_table_round_trip_and_selection() -> None:
    table = ernie_table()
    assert SiteTable.from_json(json.loads(json.dumps(table.to_json()))) == table
    assert table.num_moe_layers == 5 and table.groups == ("text", "vision") and table.grouped
    assert not table.is_plain and SiteTable.legacy_of(4).is_plain
    assert [r.site for r in table.rows_in(ERNIE_BAND)] == list(ERNIE_BAND_ROWS)
    assert table.row_of(2, "vision").site == 5 and table.row_of(2, "") is None
    assert table.digest() == SiteTable.from_json(table.to_json()).digest()
    # A legacy table (old records) matches a plain table of its length, never a grouped one.
    assert SiteTable.legacy_of(10).same_layout(SiteTable.legacy_of(10))
    assert not SiteTable.legacy_of(10).same_layout(table)


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"columns": ["site"], "rows": []}, r"columns lack \['layer'"),
        ({"rows": []}, "malformed site table"),
        ("x", "need an object"),
    ],
)
def test_site_table_errors(data: Any, message: str) -> None:
    with pytest.raises(SiteTableError, match=message):
        SiteTable.from_json(data)


def test_site_table_refuses_gaps_and_duplicates() -> None:
    with pytest.raises(SiteTableError, match="must be 0..1 in order"):
        SiteTable((SiteRow(site=1, layer=0, moe_index=0), SiteRow(site=0, layer=1, moe_index=1)))
    with pytest.raises(SiteTableError, match="listed twice"):
        SiteTable((SiteRow(site=0, layer=0, moe_index=0), SiteRow(site=1, layer=0, moe_index=0)))
    with pytest.raises(SiteTableError, match="without gaps"):
        SiteTable((SiteRow(site=0, layer=0, moe_index=0), SiteRow(site=1, layer=3, moe_index=2)))


# -- shards --------------------------------------------------------------------------------------------
def routing_of(rng: np.random.Generator, n_sites: int, n: int = 2) -> BatchRouting:
    counts = rng.integers(0, 5, (n, n_sites, 3, 16)).astype(np.float32)
    return BatchRouting(counts=counts, prob_sums=counts / 4, tokens=np.full((n, 3), 5, dtype=np.float32))


def records_of(routing: BatchRouting, task: str = "t_img") -> list[dict[str, Any]]:
    return [document_record(DocIdentity(task, row, "img"), routing, row, model="m", intervention_hash="none")
            for row in range(routing.batch_size)]


def test_shards_record_the_site_table_once(tmp_path: Path) -> None:
    table = ernie_table()
    writer = ShardWriter(tmp_path, 0, sites=table)
    rng = np.random.default_rng(0)
    writer.append(records_of(routing_of(rng, 10)))
    writer.append(records_of(routing_of(rng, 10), "u_img")
                  + [error_record(DocIdentity("u_img", 9, "img"), model="m", intervention_hash="none", error="x")])
    lines = [json.loads(line) for line in (tmp_path / "routing_rank000.jsonl").read_text().splitlines()]
    assert {line["site_table"] for line in lines} == {table.digest()} and {line["version"] for line in lines} == {3}
    stored = json.loads(sites_path(tmp_path / "routing_rank000.jsonl").read_text())
    assert list(stored["tables"]) == [table.digest()]  # once per shard, not per line
    records = list(read_routing_records(tmp_path))
    assert len(records) == 5 and all(r["site_table"] == table for r in records)
    assert record_site_table(records[0], 10, "x") == table
    # A second model's writer in the same folder adds its table beside the first.
    other = SiteTable.legacy_of(3)
    other = SiteTable(tuple(SiteRow(site=r.site, layer=r.layer + 1, moe_index=r.moe_index) for r in other.rows))
    ShardWriter(tmp_path, 0, sites=other).append(records_of(routing_of(rng, 3), "v_img"))
    tables = {r["task"]: r["site_table"] for r in read_routing_records(tmp_path)}
    assert tables == {"t_img": table, "u_img": table, "v_img": other}


def test_old_shards_read_with_row_equals_moe_layer(tmp_path: Path) -> None:
    ShardWriter(tmp_path, 0).append(records_of(routing_of(np.random.default_rng(1), 4)))
    (record, _) = list(read_routing_records(tmp_path))
    assert record["site_table"] is None
    legacy = record_site_table(record, 4, "x")
    assert legacy.legacy and [(r.site, r.moe_index, r.group) for r in legacy.rows] == [(i, i, "") for i in range(4)]


def test_shard_site_table_errors(tmp_path: Path) -> None:
    with pytest.raises(SiteTableError, match="arrays have 4 site rows but the site table lists 10"):
        ShardWriter(tmp_path, 0, sites=ernie_table()).append(records_of(routing_of(np.random.default_rng(2), 4)))
    ShardWriter(tmp_path, 1, sites=ernie_table()).append(records_of(routing_of(np.random.default_rng(2), 10)))
    sites_path(tmp_path / "routing_rank001.jsonl").unlink()
    with pytest.raises(ValueError, match=r"routing_rank001.jsonl:1: names site table '\w+', which "
                                         r"routing_rank001.sites.json lacks"):
        list(read_routing_records(tmp_path))


# -- expert sets --------------------------------------------------------------------------------------------
def test_expert_sets_carry_the_table_and_old_files_load(tmp_path: Path) -> None:
    table = ernie_table()
    layers = (LayerExperts(1, (3, 7), (0.5, 0.25), group="vision"), LayerExperts(1, (2,), (0.1,), group="text"))
    new = ExpertSet(model="m", kind="visual", layers=layers, sites=table)
    data = new.to_json()
    assert data["version"] == 2 and SiteTable.from_json(data["sites"]) == table
    assert ExpertSet.load(new.save(tmp_path / "v2.json")) == new
    # A set without a table is written, and hashed, exactly as version 1 was; version 1 files load as before.
    old = ExpertSet(model="m", kind="visual", layers=layers)
    assert old.to_json()["version"] == 1 and "sites" not in old.to_json()
    loaded = ExpertSet.load(old.save(tmp_path / "v1.json"))
    assert loaded == old and loaded.sites is None
    with pytest.raises(SpecError, match=r"layer 7 group 'vision' is not a site of its site table; sites \(MoE "
                                        r"layer\[/group\]\): 0/text, 0/vision, 1/text"):
        ExpertSet(model="m", kind="visual", layers=(LayerExperts(7, (1,), group="vision"),), sites=table)
    with pytest.raises(SpecError, match=r"layer 1/vision: experts \[16\] out of range; that site has experts 0..15"):
        ExpertSet(model="m", kind="visual", layers=(LayerExperts(1, (16,), group="vision"),), sites=table)
    bad = data | {"sites": {"columns": ["site"], "rows": []}}
    with pytest.raises(SpecError, match=r"v2: sites: columns lack"):
        ExpertSet.from_json(bad, source="v2")


def test_identification_names_sites_by_layer_and_group() -> None:
    table = ernie_table()
    delta = np.zeros((10, 16))
    delta[5, [9, 4]] = [0.5, 0.25]  # MoE layer 2, vision
    delta[4, 1] = 0.125  # MoE layer 2, text
    layers = top_positive_experts(delta, (2,), None, table)
    assert layers == (LayerExperts(2, (1,), (0.125,), group="text"), LayerExperts(2, (9, 4), (0.5, 0.25), "vision"))
    assert band_sites(10, (0.25, 0.75), table) == ERNIE_BAND_ROWS
    assert band_sites(10) == (3, 4, 5, 6, 7)  # what the band read before: rows as if they were MoE layers
    with pytest.raises(ValueError, match=r"band MoE layer 5 is not in the site table \(MoE layers 0..4\)"):
        top_positive_experts(delta, (5,), 2, table)


# -- ERNIE end to end: planted vision experts ------------------------------------------------------------
PLANTED = {1: (2, 9, 11, 14), 2: (0, 5, 6, 13), 3: (1, 3, 8, 12)}  # vision experts per band MoE layer


@pytest.fixture(scope="module")
def ernie(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """The tiny ERNIE with PLANTED vision experts: their selection bias (`e_score_correction_bias`, used by
    ERNIE's selection only) raised so far that every image token picks them at the band layers."""
    from rd_eval.models.tiny import make_tiny

    folder = make_tiny("ernie4_5_vl_moe", tmp_path_factory.mktemp("tiny") / "rd-tiny-ernie4_5_vl_moe", seed=0)
    model, processor = load_model(folder)
    modules = dict(model.named_modules())
    with torch.no_grad():
        for site in find_router_sites(model):
            if site.group == "vision" and site.moe_index in PLANTED:
                bias = modules[site.module_path].moe_statics.e_score_correction_bias
                bias[:, list(PLANTED[site.moe_index])] += 2.0
    planted = tmp_path_factory.mktemp("planted") / "rd-tiny-ernie-planted"
    shutil.copytree(folder, planted, ignore=shutil.ignore_patterns("*.safetensors*"))
    model.save_pretrained(planted)
    return {"model": model, "processor": processor, "dir": planted}


def precision_recall(found: ExpertSet, truth: dict[tuple[int, str], tuple[int, ...]]) -> tuple[float, float]:
    got = {(m, g, e) for (m, g), experts in found.experts_by_site_key().items() for e in experts}
    want = {(m, g, e) for (m, g), experts in truth.items() for e in experts}
    hits = len(got & want)
    return hits / max(len(got), 1), hits / len(want)


def test_planted_vision_experts_are_recovered_in_the_vision_group(ernie: dict[str, Any], tmp_path: Path) -> None:
    cfg = ExpertsConfig(pretrained=ernie["dir"], out=tmp_path / "visual.json", visual=True, n=4)
    found, path = run_experts(cfg)  # `rd-eval experts --visual` on the planted checkpoint
    truth = {(moe, "vision"): experts for moe, experts in PLANTED.items()}
    assert precision_recall(found, truth) == (1.0, 1.0)
    assert {(le.moe_index, le.group) for le in found.layers} == {(m, g) for m in ERNIE_BAND for g in ("text", "vision")}
    assert all(not le.experts for le in found.layers if le.group == "text")  # image tokens never reach them
    saved = ExpertSet.load(path)
    assert saved == found and saved.sites == SiteTable.of_sites(find_router_sites(ernie["model"]))
    assert json.loads(path.read_text())["version"] == 2
    assert "MoE layer 2 (vision), decoder layer 3: 0:+1.000, 5:+1.000, 6:+1.000, 13:+1.000" in summary(found)
    # The set steers the vision routers of the band layers, nothing else.
    plans = plan_intervention(InterventionSpec(experts=found), find_router_sites(ernie["model"]))
    assert {(p.site_index, p.group, p.experts) for p in plans} == {
        (2 * moe + 1, "vision", experts) for moe, experts in PLANTED.items()}
    # What reading site rows as MoE layers made of the same statistics: rows 3..7 named MoE layers 3..7.
    batches = image_probe_routing(ernie["model"], ernie["processor"], load_image_probes("rd_demo", 4, 0))
    delta = selection_frequency(batches, "image") - selection_frequency(batches, "text")
    old = ExpertSet(model="m", kind="visual", layers=top_positive_experts(delta, band_sites(10), 4))
    assert [le.moe_index for le in old.layers] == [3, 4, 5, 6, 7]
    assert precision_recall(old, truth) == (0.0, 0.0)


def test_domain_identification_on_ernie_uses_the_text_group(ernie: dict[str, Any]) -> None:
    cfg = ExpertsConfig(pretrained=ernie["dir"], out=Path("unused.json"), domain="rd_demo", general="general", n=4)
    found = identify(ernie["model"], ernie["processor"], cfg, "tiny-ernie")
    assert found.sites is not None and found.sites.grouped
    assert {(le.moe_index, le.group) for le in found.layers} == {(m, g) for m in ERNIE_BAND for g in ("text", "vision")}
    assert any(le.experts for le in found.layers if le.group == "text")
    assert all(not le.experts for le in found.layers if le.group == "vision")  # text probes never reach them


def _ernie_runs(ernie: dict[str, Any], root: Path) -> Path:
    """An lmms-eval run folder of rd_demo pairs with routing recorded from the planted tiny ERNIE."""
    model, processor = ernie["model"], ernie["processor"]
    problems = generate_problems(N_DOCS, seed=31)
    img = image_probe_routing(model, processor, [(render_problem(p), question_block(p.question, p.choices))
                                                 for p in problems], batch_size=1)
    txt = probe_routing(model, processor, [p.text_twin for p in problems], batch_size=1, system_prompt=None)
    out = root / "runs"
    ckpt = str(ernie["dir"])
    write_run(out, "20250101_120000", {
        "rd_demo_img": [(f"p{i}", int(i % 2 == 0), "A", "A") for i in range(N_DOCS)],
        "rd_demo_txt": [(f"p{i}", 1, "A", "A") for i in range(N_DOCS)],
    }, model_dir=checkpoint_label(ckpt), model_args=f"pretrained={ckpt}", model="rd_ernie4_5_vl_moe")
    writer = ShardWriter(out / "rd_routing" / f"{checkpoint_label(ckpt)}__none", 0,
                         sites=SiteTable.of_sites(find_router_sites(model)))
    owner = {"model": "rd_ernie4_5_vl_moe", "intervention_hash": "none", "checkpoint": CheckpointRef.of(ckpt)}
    for i in range(N_DOCS):
        writer.append([document_record(DocIdentity("rd_demo_img", i, "img"), img[i], 0, **owner),
                       document_record(DocIdentity("rd_demo_txt", i, "txt"), txt[i], 0, **owner)])
    return out


def test_report_on_ernie_bands_moe_layers_and_keeps_pairs(ernie: dict[str, Any], tmp_path: Path) -> None:
    report = build_report([_ernie_runs(ernie, tmp_path)], n_boot=200)
    (bench,) = report["settings"][0]["routing"]["benchmarks"]
    assert bench["band_sites"] == list(ERNIE_BAND_ROWS)  # MoE layers 1-3, both groups (before: rows 3-7)
    assert bench["n_moe_layers"] == 5 and bench["groups"] == ["text", "vision"]
    assert bench["pair_sites"] == [0, 2, 4, 6, 8]  # text twins never reach the vision routers
    assert bench["n_pairs"] == N_DOCS and bench["n_pairs_without_scope_tokens"] == 0  # before: every pair dropped
    layers = bench["layers"]
    assert [(la["moe_layer"], la["group"], la["decoder_layer"]) for la in layers[:2]] == [(0, "text", 1),
                                                                                        (0, "vision", 1)]
    assert all(la["jsd_mean"] is None for la in layers if la["group"] == "vision")
    assert all(0 <= la["jsd_mean"] <= 1 for la in layers if la["group"] == "text")
    # Band JSD: the mean over the band's text sites of each pair.
    assert bench["correlation"]["n"] == N_DOCS
    band_text = [la["jsd_mean"] for la in layers if la["in_band"] and la["group"] == "text"]
    assert bench["correlation"]["mid_band_jsd_mean"] == pytest.approx(np.mean(band_text))
    markdown = to_markdown(report)
    assert "10 routing sites (5 MoE layers, groups text, vision; pair JSD over sites [0, 2, 4, 6, 8])" in markdown
    assert re.search(r"\| 5 \(MoE 2 vision, layer 3\) \| ● \| – \|", markdown)
    assert to_csv(report) and to_json(report)


# -- single-router families: nothing changed -----------------------------------------------------------------
def test_qwen_expert_sets_are_the_same_with_the_table(tiny_dir: Path) -> None:
    model, processor = load_tiny_model(tiny_dir), load_tiny_processor(tiny_dir)
    table = SiteTable.of_sites(find_router_sites(model))
    assert table.is_plain and len(table) == 8
    cfg = ExpertsConfig(pretrained=tiny_dir, out=Path("unused.json"), domain="rd_demo", general="general", n=4)
    found = identify(model, processor, cfg, "tiny")
    # The computation identification did before tables: rows as MoE layers, the first site's top-k.
    domain = selection_frequency(probe_routing(model, processor, list(load_probe_texts("rd_demo", 4))))
    general = selection_frequency(probe_routing(model, processor, list(load_probe_texts("general", 4))))
    before = domain_expert_set(domain, general, band=LayerBand().resolve(8), top_n=table.rows[0].top_k,
                               model="tiny", method={})
    assert found.layers == before.layers and found.sites == table
    assert {k: found.method[k] for k in before.method} == before.method  # statistic, top_n, band_layers
    # The file: version 2 with the table; everything else as before.
    assert found.to_json() | {"version": 1, "method": before.method} == before.to_json() | {"sites": table.to_json()}


def load_probe_texts(name: str, n: int) -> tuple[str, ...]:
    from rd_eval.experts.probes import load_probe_set

    return load_probe_set(name, n, 0).texts


def _qwen_report(root: Path, monkeypatch: pytest.MonkeyPatch, sites: SiteTable | None) -> list[str]:
    with monkeypatch.context() as patch:
        if sites is not None:
            patch.setattr(test_report, "ShardWriter", functools.partial(ShardWriter, sites=sites))
        runs, _ = test_report.build_runs(root)
    report = build_report([runs], n_boot=test_report.N_BOOT)
    return [text.replace(str(root), "ROOT") for text in (to_json(report), to_markdown(report), to_csv(report))]


def test_qwen_report_is_byte_identical_with_the_table(tiny_dir: Path, tmp_path: Path,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    """test_report's fixtures written as old records and as records naming Qwen3-VL-MoE's (plain) site table."""
    table = SiteTable.of_sites(find_router_sites(load_tiny_model(tiny_dir)))
    old = _qwen_report(tmp_path / "old", monkeypatch, None)
    new = _qwen_report(tmp_path / "new", monkeypatch, table)
    assert all(r["site_table"] == table for r in read_routing_records(
        next((tmp_path / "new" / "runs" / "plain").glob("**/rd_routing/*"))))
    assert new == old
