"""Flip rate: the measured effect of an intervention on routing (issue 13 item 5).

Counts on the tiny Qwen3-VL-MoE against a by-hand recomputation of the router's own selection; λ = 0 measured
as 0 flips; records round-trip; the report's per-layer table and the flip rate beside every gain; the no-op
call-out in the report and in the adapter's log.
"""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from routing_contract import drawn_image, encode, expert_set, routers, tiny_checkpoint_fixtures
from test_runs import write_run
from torch import nn

from rd_eval.analysis.flips import NO_OP, effect_summary, flip_rates_by_benchmark, noop_message, record_effect
from rd_eval.analysis.gaps import compare_runs
from rd_eval.rendering.gaps_markdown import gaps_markdown
from rd_eval.reports.report import build_report, to_csv, to_markdown
from rd_eval.routing.recording import BatchRouting
from rd_eval.routing.records import EFFECT_KEY, DocIdentity, document_record
from rd_eval.routing.session import routing_session
from rd_eval.routing.shards import ShardWriter, merge_routing_records
from rd_eval.routing.site_table import SiteRow, SiteTable
from rd_eval.routing.sites import find_router_sites, image_token_ids
from rd_eval.routing.spec import ExpertSet, InterventionSpec, LayerExperts

TOP_K, NUM_EXPERTS, NUM_LAYERS = 4, 16, 8
BAND = (2, 3, 4, 5)  # LayerBand() on 8 MoE layers
SET = (1, 5)


@pytest.fixture(scope="module")
def batch(tiny_processor: Any) -> Any:
    """A left-padded batch: an image-form prompt and a (shorter) text prompt."""
    return encode(tiny_processor, [("What is the total cost?", drawn_image(0)), ("How many apples?", None)])


def _soft(strength: float, scope: str = "all") -> InterventionSpec:
    return InterventionSpec(experts=expert_set({i: SET for i in BAND}), mode="soft", strength=strength,
                            token_scope=scope)


def _forward_with_captures(model: nn.Module, inputs: Any, spec: InterventionSpec | None) -> tuple[Any, dict]:
    """One forward under a session; each router's input and final selection (captured after the session's hook)."""
    captured: dict[int, dict[str, torch.Tensor]] = {}

    def make(layer: int):
        def hook(module: nn.Module, args: tuple, output: Any) -> None:
            captured[layer] = {"hidden": args[0].reshape(-1, args[0].shape[-1]).clone(), "after": output[2].clone()}
        return hook

    with routing_session(model, record=True, intervention=spec) as session, torch.inference_mode():
        handles = [router.register_forward_hook(make(i)) for i, router in enumerate(routers(model))]
        try:
            session.begin(int(inputs["input_ids"].shape[0]))
            model(**inputs)
            finished = session.finish_batch()
        finally:
            for handle in handles:
                handle.remove()
    return finished, captured


def _by_hand(model: nn.Module, inputs: Any, captured: dict, scope: str) -> np.ndarray:
    """Expected effect [B, L, 3] from the router's own math (softmax top-k of W·h), recomputed here."""
    ids = inputs["input_ids"]
    batch, length = ids.shape
    weight = inputs["attention_mask"].reshape(-1).float()
    if scope == "image":
        is_image = torch.isin(ids, torch.tensor(image_token_ids(model))).reshape(-1)
        weight = weight * is_image.float()
    rows = torch.arange(batch).repeat_interleave(length)
    expected = np.zeros((batch, NUM_LAYERS, 3))
    for layer, router in enumerate(routers(model)):
        if layer not in BAND:
            continue
        with torch.no_grad():
            own = F.softmax(F.linear(captured[layer]["hidden"], router.weight).float(), dim=-1).topk(TOP_K).indices
        after = captured[layer]["after"]
        for token in range(batch * length):
            w = float(weight[token])
            before_set, after_set = set(own[token].tolist()), set(after[token].tolist())
            row = int(rows[token])
            expected[row, layer] += w * np.array([1.0, float(before_set != after_set),
                                                  len((after_set - before_set) & set(SET))])
    return expected


@pytest.mark.parametrize("scope", ["all", "image"])
def test_flip_counts_match_a_by_hand_recomputation(tiny_model: nn.Module, batch: Any, scope: str) -> None:
    finished, captured = _forward_with_captures(tiny_model, batch, _soft(3.0, scope))
    expected = _by_hand(tiny_model, batch, captured, scope)
    assert finished.routing is not None and finished.effect is not None
    np.testing.assert_array_equal(finished.effect, expected)
    np.testing.assert_array_equal(finished.routing.effect, expected)  # the same transfer as the records
    assert expected[:, list(BAND), 1].sum() > 0  # λ = 3 flips selections: the comparison is not vacuous
    # Padding is never counted: the text row (left-padded) counts only its real tokens.
    if scope == "all":
        real = batch["attention_mask"].sum(dim=1).numpy()
        np.testing.assert_array_equal(finished.effect[:, BAND[0], 0], real)
        assert real[1] < batch["input_ids"].shape[1]
    else:  # the text row has no image token: nothing counted, nothing flipped
        assert finished.effect[1].sum() == 0 and finished.effect[0, BAND[0], 0] > 0
    outside = [layer for layer in range(NUM_LAYERS) if layer not in BAND]
    assert finished.effect[:, outside].sum() == 0


def test_lambda_zero_is_measured_as_no_flip_and_stays_bit_identical(tiny_model: nn.Module, batch: Any) -> None:
    with torch.inference_mode():
        plain = tiny_model.generate(**batch, max_new_tokens=4, do_sample=False)
    with routing_session(tiny_model, record=False, intervention=_soft(0.0)) as session, torch.inference_mode():
        session.begin(2)
        ids = tiny_model.generate(**batch, max_new_tokens=4, do_sample=False)
        finished = session.finish_batch()
    assert torch.equal(ids, plain)
    assert finished.routing is None and finished.effect is not None
    assert finished.effect[:, list(BAND), 0].min() > 0  # tokens were counted at every steered layer
    assert finished.effect[..., 1:].sum() == 0  # ... and none flipped
    assert noop_message(session.effect_totals) is not None


def test_no_intervention_carries_no_effect(tiny_model: nn.Module, batch: Any) -> None:
    finished, _ = _forward_with_captures(tiny_model, batch, None)
    assert finished.effect is None and finished.routing is not None and finished.routing.effect is None
    record = document_record(DocIdentity("t_img", 0, "img"), finished.routing, 0, model="m", intervention_hash="none")
    assert EFFECT_KEY not in record


def test_totals_accumulate_over_batches(tiny_model: nn.Module, batch: Any) -> None:
    with routing_session(tiny_model, record=True, intervention=_soft(3.0)) as session, torch.inference_mode():
        effects = []
        for _ in range(2):
            session.begin(2)
            tiny_model(**batch)
            effects.append(session.finish_batch().effect)
    np.testing.assert_array_equal(session.effect_totals, effects[0].sum(axis=0) + effects[1].sum(axis=0))
    assert noop_message(session.effect_totals) is None


# -- records, summaries, report ----------------------------------------------------------------------------
def _batch_routing(effect: np.ndarray | None, sites: int = NUM_LAYERS) -> BatchRouting:
    rows = 1 if effect is None else effect.shape[0]
    counts = np.ones((rows, sites, 3, NUM_EXPERTS)) * TOP_K
    return BatchRouting(counts=counts, prob_sums=counts / TOP_K, tokens=np.full((rows, 3), 1.0), effect=effect)


def _effect(flipped: int, tokens: int = 10, newly: int | None = None) -> np.ndarray:
    """One document's effect [1, L, 3]: `tokens` counted at each band site, `flipped` of them flipped."""
    effect = np.zeros((1, NUM_LAYERS, 3))
    for i, site in enumerate(BAND):
        effect[0, site] = (tokens, min(tokens, flipped + i), 2 * (flipped + i) if newly is None else newly)
    if flipped == 0:
        effect[0, :, 1:] = 0
    return effect


def test_records_round_trip_and_older_records_read_as_no_data(tmp_path: Path) -> None:
    shard = ShardWriter(tmp_path, 0)
    effect = _effect(3)
    shard.append([
        document_record(DocIdentity("b_img", 0, "img"), _batch_routing(effect), 0, model="m", intervention_hash="h"),
        document_record(DocIdentity("b_txt", 0, "txt"), _batch_routing(None), 0, model="m", intervention_hash="h"),
    ])
    with_effect, without = merge_routing_records(tmp_path)
    assert with_effect[EFFECT_KEY] == {"tokens": [int(v) for v in effect[0, :, 0]],
                                       "flipped": [int(v) for v in effect[0, :, 1]],
                                       "newly_selected": [int(v) for v in effect[0, :, 2]]}
    np.testing.assert_array_equal(record_effect(with_effect, "here"), effect[0])
    assert record_effect(without, "here") is None
    summary = effect_summary([record_effect(with_effect, "a"), record_effect(without, "b")])
    assert summary is not None
    assert [s["site"] for s in summary["sites"]] == list(BAND)
    assert summary["sites"][0]["flip_rate"] == pytest.approx(0.3)
    assert summary["flip_rate"] == pytest.approx(np.mean([0.3, 0.4, 0.5, 0.6]))
    assert summary["n_documents_without_effect"] == 1 and not summary["no_op"]
    with pytest.raises(ValueError, match=f"here: '{EFFECT_KEY}'"):
        record_effect({EFFECT_KEY: {"tokens": [1], "flipped": [1, 2]}}, "here")


def test_noop_message() -> None:
    totals = np.zeros((NUM_LAYERS, 3))
    assert "steered no token" in noop_message(totals)
    totals[2] = (40, 0, 0)
    assert noop_message(totals).startswith(NO_OP) and "40 tokens" in noop_message(totals)
    totals[3] = (40, 1, 1)
    assert noop_message(totals) is None


N_PAIRS = 12
CKPT = "rd-tiny-flip"


def _write_setting(root: Path, name: str, hash_: str, model_args: str, effect: np.ndarray | None,
                   sites: SiteTable | None = None) -> None:
    samples = {"fb_img": [(f"p{i:02d}", int(i % 2 == 0 or name != "plain"), "1", "1") for i in range(N_PAIRS)],
               "fb_txt": [(f"p{i:02d}", 1, "1", "1") for i in range(N_PAIRS)]}
    out = root / name
    write_run(out, "20250101_120000", samples, model_dir=CKPT, model_args=model_args, model="rd_qwen3_vl_moe")
    shard = ShardWriter(out / "rd_routing" / f"{CKPT}__{hash_}", 0, sites=sites)
    shard.append([document_record(DocIdentity(task, i, task[-3:]), _batch_routing(effect), 0,
                                  model="rd_qwen3_vl_moe", intervention_hash=hash_)
                  for task in ("fb_img", "fb_txt") for i in range(N_PAIRS)])


def _runs(root: Path, flipped: int, sites: SiteTable | None = None) -> Path:
    experts = ExpertSet(model=CKPT, kind="domain", layers=tuple(LayerExperts(s, SET) for s in BAND))
    spec = InterventionSpec(experts=experts, strength=3.0 if flipped else 0.0)
    spec_path = spec.save(root / "soft.json")
    _write_setting(root / "runs", "plain", "none", f"pretrained={CKPT}", None, sites)
    _write_setting(root / "runs", "soft", spec.content_hash(), f"pretrained={CKPT},intervention={spec_path}",
                   _effect(flipped), sites)
    return root / "runs"


def test_report_shows_the_per_layer_flip_table_and_the_rate_beside_the_gain(tmp_path: Path) -> None:
    report = build_report([_runs(tmp_path, 3)], n_boot=200)
    soft = next(s for s in report["settings"] if s["role"] == "intervened")
    plain = next(s for s in report["settings"] if s["role"] == "base")
    assert plain["flips"] is None
    overall = soft["flips"]["overall"]
    assert overall["n_documents"] == 2 * N_PAIRS and not overall["no_op"]
    assert [s["flip_rate"] for s in overall["sites"]] == pytest.approx([0.3, 0.4, 0.5, 0.6])
    assert soft["gaps"]["flip_rates"] == {"fb": pytest.approx(0.45)}
    assert json.loads(json.dumps(report)) == report
    text = to_markdown(report)
    assert "## Intervention effect on routing" in text
    assert "| site | tokens | flipped | flip rate | newly selected | per token |" in text
    assert f"| {BAND[0]} | {2 * N_PAIRS * 10} | {2 * N_PAIRS * 3} | 30.0% | {2 * N_PAIRS * 6} | 0.600 |" in text
    assert "| band mean | | | 45.0% |" in text
    gain_header = next(line for line in text.splitlines() if line.startswith("| benchmark | n pairs | dropped"))
    assert gain_header.endswith("| flip rate |")
    gain_row = next(line for line in text.splitlines() if line.startswith("| fb | ") and "→" in line)
    assert gain_row.endswith("| 45.0% |")
    assert NO_OP not in text
    csv_rows = list(csv.DictReader(io.StringIO(to_csv(report))))
    intervened = [float(r["flip_rate"]) for r in csv_rows if r["role"] == "intervened"]
    assert intervened and intervened == pytest.approx([0.45] * len(intervened))  # on each of its site rows
    assert {r["flip_rate"] for r in csv_rows if r["role"] == "base"} == {""}


def test_report_calls_out_a_noop_intervention(tmp_path: Path) -> None:
    report = build_report([_runs(tmp_path, 0)], n_boot=200)
    soft = next(s for s in report["settings"] if s["role"] == "intervened")
    assert soft["flips"]["overall"]["no_op"]
    text = to_markdown(report)
    assert f"**{NO_OP}**" in text
    assert text.count(NO_OP) >= 2  # under the setting and in its flip section
    gain_row = next(line for line in text.splitlines() if line.startswith("| fb | ") and "→" in line)
    assert gain_row.endswith("| 0.0% (no-op) |")


def test_flip_table_names_moe_layer_and_group_where_sites_are_not_layers(tmp_path: Path) -> None:
    # ERNIE-like: a text and a vision router per MoE layer, decoder layer 0 dense (site 2m: text, 2m + 1: vision)
    rows = tuple(SiteRow(site=2 * m + v, layer=m + 1, moe_index=m, group=("text", "vision")[v])
                 for m in range(NUM_LAYERS // 2) for v in (0, 1))
    report = build_report([_runs(tmp_path, 3, SiteTable(rows))], n_boot=200)
    soft = next(s for s in report["settings"] if s["role"] == "intervened")
    first = soft["flips"]["overall"]["sites"][0]
    assert (first["site"], first["moe_layer"], first["group"], first["decoder_layer"]) == (2, 1, "text", 2)
    assert f"| 2 (MoE 1 text, layer 2) | {2 * N_PAIRS * 10} |" in to_markdown(report)


def test_gap_table_without_flip_rates_has_no_flip_column() -> None:
    import pandas as pd

    rows = [{"task": f"fb_{form}", "form": form, "pair_id": f"p{i}", "correct": int(i % 2 == 0 or form == "txt")}
            for i in range(8) for form in ("img", "txt")]
    table = compare_runs(pd.DataFrame(rows), pd.DataFrame(rows), n_boot=50)
    assert "flip rate" not in gaps_markdown(table, title="t")
    table["flip_rates"] = {"fb": 0.25}
    assert "| 25.0% |" in gaps_markdown(table, title="t")


def test_flip_rates_by_benchmark_skips_errors_and_needs_data(tmp_path: Path) -> None:
    records = [{"task": "fb_img", "doc_id": 0, "counts": {}, EFFECT_KEY: {
        "tokens": [0, 10], "flipped": [0, 5], "newly_selected": [0, 7]}},
        {"task": "fb_txt", "doc_id": 0, "counts": None, "error": "failed"}]
    assert flip_rates_by_benchmark(records, "x") == {"fb": 0.5}
    assert flip_rates_by_benchmark(records[1:], "x") is None


# -- the adapter's log -----------------------------------------------------------------------------------
def test_adapter_logs_the_flip_rate_or_warns_of_a_noop(tiny_dir: Path, tmp_path: Path) -> None:
    from loguru import logger
    from rd_eval_adapters.qwen3_vl_moe import RDQwen3VLMoe
    from test_adapter import make_requests, with_image

    messages: list[tuple[str, str]] = []
    sink = logger.add(lambda m: messages.append((m.record["level"].name, m.record["message"])), level="INFO")
    try:
        for strength in (0.0, 3.0):
            spec_path = _soft(strength).save(tmp_path / f"soft_{strength}.json")
            adapter = RDQwen3VLMoe(pretrained=str(tiny_dir), batch_size=2, intervention=str(spec_path),
                                   record_routing="false")
            requests, task_dict = make_requests("fl_img", with_image, n=2)
            adapter.task_dict.update(task_dict)
            adapter.generate_until(requests)
    finally:
        logger.remove(sink)
    noop = [m for level, m in messages if level == "WARNING" and NO_OP in m]
    assert len(noop) == 1 and "lambda=0.0" in noop[0]
    rates = [m for level, m in messages if level == "INFO" and "flip rate" in m]
    assert len(rates) == 1 and "lambda=3.0" in rates[0]


def test_demo_reads_the_soft_runs_flip_rates(tmp_path: Path) -> None:
    from rd_eval.commands.demo import _flip_rates
    from rd_eval.routing.records import routing_folder

    spec, checkpoint, output = _soft(3.0), tmp_path / "ckpt", tmp_path / "runs" / "soft"
    checkpoint.mkdir()
    ShardWriter(routing_folder(output, str(checkpoint), spec.content_hash()), 0).append([
        document_record(DocIdentity("rd_demo_img", 0, "img"), _batch_routing(_effect(3)), 0, model="m",
                        intervention_hash=spec.content_hash())])
    assert _flip_rates(output, checkpoint, spec) == {"rd_demo": pytest.approx(0.45)}
    assert _flip_rates(tmp_path / "elsewhere", checkpoint, spec) is None


# -- ERNIE-4.5-VL: a text and a vision router per MoE layer, each on its own tokens ----------------------------
ernie_dir_fixture, ernie_model_fixture, ernie_processor_fixture = tiny_checkpoint_fixtures(
    "ernie4_5_vl_moe", "rd-tiny-ernie4_5_vl_moe", dir_fixture="ernie_dir")
ERNIE_BAND = (1, 2, 3)  # LayerBand() on its 5 MoE layers


def test_ernie_each_modality_router_counts_its_own_tokens(model: nn.Module, processor: Any) -> None:
    inputs = encode(processor, [("What is the total cost?", drawn_image(1)), ("How many apples?", None)])
    layers = tuple(LayerExperts(m, SET, group=g) for m in ERNIE_BAND for g in ("text", "vision"))
    spec = InterventionSpec(experts=ExpertSet(model="tiny", kind="domain", layers=layers), strength=3.0)
    own: dict[int, torch.Tensor] = {}
    final: dict[int, torch.Tensor] = {}

    def keep(store: dict[int, torch.Tensor], index: int):
        def hook(module: nn.Module, args: tuple, output: Any) -> None:
            store[index] = output[2].clone()
        return hook

    with routing_session(model, record=False, intervention=spec) as session, torch.inference_mode():
        handles = [h for i, router in enumerate(routers(model))
                   for h in (router.register_forward_hook(keep(own, i), prepend=True),  # before the session's
                             router.register_forward_hook(keep(final, i)))]  # after it: what the experts get
        try:
            session.begin(2)
            model(**inputs)
            effect = session.finish_batch().effect
        finally:
            for handle in handles:
                handle.remove()
    vision = inputs["moe_mm_token_type_ids"].bool().reshape(-1)
    weight = inputs["attention_mask"].reshape(-1).float()
    rows = torch.arange(2).repeat_interleave(inputs["input_ids"].shape[1])
    order = torch.argsort(vision.to(torch.int8), stable=True)  # text tokens first, then vision, in order
    n_text = int((~vision).sum())
    assert effect is not None and 0 < n_text < len(order)
    for site in find_router_sites(model):
        picked = order[:n_text] if site.group == "text" else order[n_text:]
        expected = np.zeros((2, 3))
        if site.moe_index in ERNIE_BAND:
            assert own[site.site_index].shape[0] == len(picked)
            for j, token in enumerate(picked.tolist()):
                before = set(own[site.site_index][j].tolist())
                after = set(final[site.site_index][j].tolist())
                expected[int(rows[token])] += float(weight[token]) * np.array(
                    [1.0, float(before != after), len((after - before) & set(SET))])
        np.testing.assert_array_equal(effect[:, site.site_index], expected, err_msg=f"site {site}")
    band_vision = [s.site_index for s in find_router_sites(model) if s.group == "vision" and s.moe_index in ERNIE_BAND]
    assert effect[0, band_vision, 0].sum() > 0 and effect[1, band_vision].sum() == 0  # no image in row 1
    assert effect[:, :, 1].sum() > 0
