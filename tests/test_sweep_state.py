"""The sweep folder (rd_eval.sweep.state): sweep.json pins one config and one expert set, spec files are checked,
and a setting's run folder reads as complete, partial or missing from lmms-eval-shaped files written by hand (the
shape of lmms-eval 0.7.3's results json and samples lines, as tests/test_runs.py writes them, and real routing
shards written by rd-eval's ShardWriter)."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml

from rd_eval.routing.records import DocIdentity, document_record
from rd_eval.routing.shards import ShardWriter
from rd_eval.routing.spec import ExpertSet, InterventionSpec, LayerExperts
from rd_eval.sweep.config import SweepConfig, load_sweep_config
from rd_eval.sweep.grid import SweepSetting, expand_settings
from rd_eval.sweep.state import (
    SweepLayout,
    SweepStateError,
    check_or_start,
    clear_partial,
    inspect_setting,
    plan_settings,
    record_experts,
    recorded_experts,
    setting_status,
)
from rd_eval.vocabulary.model_args import parse_model_args
from rd_eval.vocabulary.scopes import BASE_SCOPES

DOMAIN = ExpertSet(model="m", kind="domain", layers=(LayerExperts(1, (3, 5)),))
# The config names a group task (both forms) and a plain task: lmms-eval's results name the group, its configs
# the subtasks whose samples it writes.
GROUP, SUBTASKS, SEE = "rd_organism", ("rd_organism_img", "rd_organism_txt"), "rd_organism_see"
DOCS = 3
LAYERS, EXPERTS = 4, 8
CONFIG = {
    "model": "rd_qwen3_vl_moe", "model_args": "pretrained=/models/ckpt", "tasks": [GROUP, SEE],
    "experts": {"file": "experts.json"}, "settings": {"plain": True, "soft": {"lambda": [1, 2]}},
}


@dataclass(frozen=True)
class Routing:
    """What document_record reads of a batch's routing: counts and sums [B, L, scope, E], tokens [B, scope]."""

    counts: np.ndarray
    prob_sums: np.ndarray
    tokens: np.ndarray


def load_config(folder: Path, **changes: Any) -> SweepConfig:
    DOMAIN.save(folder / "experts.json")
    path = folder / "sweep.yaml"
    path.write_text(yaml.safe_dump(CONFIG | changes), encoding="utf-8")
    return load_sweep_config(path)


@pytest.fixture
def planned(tmp_path: Path) -> tuple[SweepLayout, SweepConfig, tuple[SweepSetting, ...], dict[str, str]]:
    config = load_config(tmp_path)
    layout = check_or_start(tmp_path / "out", config)
    record_experts(layout, DOMAIN)
    settings = expand_settings(config.settings, DOMAIN)
    return layout, config, settings, plan_settings(layout, config, settings)


def results_json(model_args: str, tasks: dict[str, int]) -> dict[str, Any]:
    """lmms-eval 0.7.3's <date_id>_results.json for a run of the group and the see task (`tasks`: docs per
    subtask)."""
    return {
        "results": {t: {"alias": t, "rd_acc,none": 0.5} for t in [GROUP, *tasks]},
        "group_subtasks": {GROUP: list(SUBTASKS), SEE: []},
        "configs": {t: {"task": t, "output_type": "generate_until"} for t in tasks},
        "versions": {t: 0.0 for t in tasks},
        "n-samples": {t: {"original": 401, "effective": n} for t, n in tasks.items()},
        "config": {"model": "rd_qwen3_vl_moe", "model_args": model_args, "batch_size": "8", "limit": DOCS},
        "lmms_eval_version": "0.7.3",
        "date": "20260101_120000",
        "model_name": "ckpt",
        "model_name_sanitized": "ckpt",
    }


def sample_line(doc_id: int, task: str) -> str:
    form = task.rsplit("_", 1)[1]
    return json.dumps({"doc_id": doc_id, "target": "A", "filtered_resps": "A", "doc_hash": f"h{doc_id}",
                       "rd_acc": {"pair_id": f"p{doc_id}", "form": form, "correct": 1, "pred": "A", "answer": "A"},
                       "input": "Answer."}) + "\n"


def write_setting_run(layout: SweepLayout, setting: SweepSetting, model_args: str, *, date_id: str = "20260101_120000",
                      docs: int = DOCS) -> Path:
    """What lmms-eval and the adapter leave in a setting's --output_path after an uninterrupted run."""
    tasks = {task: docs for task in (*SUBTASKS, SEE)}
    folder = layout.run_dir(setting.key) / "ckpt"
    folder.mkdir(parents=True, exist_ok=True)
    results = folder / f"{date_id}_results.json"
    results.write_text(json.dumps(results_json(model_args, tasks), indent=2), encoding="utf-8")
    for task in tasks:
        (folder / f"{date_id}_samples_{task}.jsonl").write_text(
            "".join(sample_line(i, task) for i in range(docs)), encoding="utf-8")
    write_shard(layout, setting, tasks, setting.intervention_hash)
    return results


def write_shard(layout: SweepLayout, setting: SweepSetting, tasks: dict[str, int], intervention_hash: str) -> None:
    writer = ShardWriter(layout.routing_dir(setting.key), 0)
    rng = np.random.default_rng(0)
    for task, docs in tasks.items():
        shape = (docs, LAYERS, len(BASE_SCOPES), EXPERTS)
        routing = Routing(counts=rng.integers(0, 9, size=shape).astype(np.float64),
                          prob_sums=rng.random(shape, dtype=np.float32), tokens=np.full((docs, 3), 5.0))
        form = task.rsplit("_", 1)[1]
        writer.append([document_record(DocIdentity(task, row, form if form in ("img", "txt") else ""), routing, row,
                                       model="rd_qwen3_vl_moe", intervention_hash=intervention_hash)
                       for row in range(docs)])


def files_of(folder: Path) -> list[str]:
    """A folder's files, relative, with lmms-eval's timestamp taken out of their names."""
    return sorted(str(p.relative_to(folder)).replace("20260101_120000", "T").replace("20260202_090000", "T")
                  for p in folder.rglob("*") if p.is_file())


# -- sweep.json: one config, one expert set --------------------------------------------------------------


def test_start_writes_sweep_json_and_accepts_the_same_config_again(tmp_path: Path) -> None:
    config = load_config(tmp_path)
    layout = check_or_start(tmp_path / "out", config)
    data = json.loads(layout.sweep_file.read_text(encoding="utf-8"))
    assert data["format"] == "rd-eval.sweep" and data["config_hash"] == config.config_hash
    assert data["config"]["tasks"] == [GROUP, SEE] and data["config"]["source"] == str(config.source)
    assert check_or_start(tmp_path / "out", load_config(tmp_path)) == layout


def test_another_config_is_refused(tmp_path: Path) -> None:
    check_or_start(tmp_path / "out", load_config(tmp_path))
    other = load_config(tmp_path, settings={"plain": True, "soft": {"lambda": [1, 3]}})
    with pytest.raises(SweepStateError, match=r"sweep.json: the config changed \(hash [0-9a-f]{16} there, "
                                              r"[0-9a-f]{16} in .*sweep.yaml\) since this folder's sweep: use a new "
                                              r"--out, or delete .*out to start over"):
        check_or_start(tmp_path / "out", other)


def test_a_folder_that_is_no_sweep_is_refused(tmp_path: Path) -> None:
    config = load_config(tmp_path)
    (tmp_path / "busy").mkdir()
    (tmp_path / "busy" / "notes.txt").write_text("mine", encoding="utf-8")
    with pytest.raises(SweepStateError, match=r"busy holds files but no sweep.json: not a sweep folder"):
        check_or_start(tmp_path / "busy", config)
    with pytest.raises(SweepStateError, match=r"a,b contains a comma, which lmms-eval's model_args"):
        check_or_start(tmp_path / "a,b", config)
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "sweep.json").write_text("{", encoding="utf-8")
    with pytest.raises(SweepStateError, match=r"sweep.json: not valid JSON .*; delete .*bad or use a new --out"):
        check_or_start(tmp_path / "bad", config)
    (tmp_path / "bad" / "sweep.json").write_text('{"format": "other"}', encoding="utf-8")
    with pytest.raises(SweepStateError, match=r"not an rd-eval sweep file \(format 'rd-eval.sweep' version 1\)"):
        check_or_start(tmp_path / "bad", config)


def test_experts_are_recorded_and_other_experts_refused(tmp_path: Path) -> None:
    layout = check_or_start(tmp_path / "out", load_config(tmp_path))
    assert recorded_experts(layout) is None
    assert record_experts(layout, DOMAIN) == layout.root / "experts" / "domain_experts.json"
    assert recorded_experts(layout) == DOMAIN
    assert record_experts(layout, DOMAIN) == layout.experts_file()  # the same set again: fine
    other = ExpertSet(model="m", kind="domain", layers=(LayerExperts(1, (4,)),))
    with pytest.raises(SweepStateError, match=r"the domain experts changed \(hash [0-9a-f]{16}, recorded "
                                              r"[0-9a-f]{16}\) since this folder's sweep"):
        record_experts(layout, other)
    other.save(layout.experts_file())  # edited by hand
    with pytest.raises(SweepStateError, match=r"domain_experts.json changed"):
        recorded_experts(layout)
    layout.experts_file().write_text("[]", encoding="utf-8")
    with pytest.raises(SweepStateError, match=r"domain_experts.json is unreadable"):
        recorded_experts(layout)


def test_plan_writes_specs_and_records_model_args(planned) -> None:
    layout, config, settings, model_args = planned
    assert [s.key for s in settings] == ["plain", "soft_l1_b0.25-0.75", "soft_l2_b0.25-0.75"]
    assert sorted(p.name for p in layout.specs_dir.iterdir()) == ["soft_l1_b0.25-0.75.json",
                                                                  "soft_l2_b0.25-0.75.json"]
    soft = settings[1]
    assert InterventionSpec.load(layout.spec_path(soft.key)) == soft.spec
    parsed = parse_model_args(model_args[soft.key])
    assert parsed["intervention"] == str(layout.spec_path(soft.key))
    assert str(parsed["intervention_hash"]) == soft.spec.content_hash()
    assert parsed["routing_dir"] == str(layout.routing_dir(soft.key))
    assert "intervention" not in parse_model_args(model_args["plain"])
    recorded = json.loads(layout.sweep_file.read_text(encoding="utf-8"))["settings"]
    assert [(s["key"], s["label"], s["model_args"]) for s in recorded] == \
        [(s.key, s.label, model_args[s.key]) for s in settings]
    assert plan_settings(layout, config, settings) == model_args  # planning again changes nothing


def test_a_hand_edited_spec_file_is_refused(planned) -> None:
    layout, config, settings, _ = planned
    soft = settings[1]
    InterventionSpec(experts=DOMAIN, strength=5.0).save(layout.spec_path(soft.key))
    with pytest.raises(SweepStateError, match=r"soft_l1_b0.25-0.75.json changed \(hash [0-9a-f]{12}, the config "
                                              r"gives [0-9a-f]{12}\)"):
        plan_settings(layout, config, settings)
    layout.spec_path(soft.key).write_text("{}", encoding="utf-8")
    with pytest.raises(SweepStateError, match=r"soft_l1_b0.25-0.75.json is unreadable"):
        plan_settings(layout, config, settings)


# -- complete, partial, missing ---------------------------------------------------------------------------


def test_missing_then_complete(planned) -> None:
    layout, _, settings, model_args = planned
    for setting in settings:
        assert inspect_setting(layout.root, setting).state == "missing"
    write_setting_run(layout, settings[1], model_args[settings[1].key])
    assert inspect_setting(layout.root, settings[1]).state == "complete"
    assert setting_status(layout.root, settings[1]) == "complete"
    assert setting_status(layout.root, settings[0]) == "missing"
    assert clear_partial(layout.root, settings[1]) is False  # a complete setting stays
    assert (layout.run_dir(settings[1].key) / "ckpt").is_dir()


def _no_results(layout: SweepLayout, results: Path) -> None:
    results.unlink()


def _two_results(layout: SweepLayout, results: Path) -> None:
    (results.parent / "20260202_090000_results.json").write_text(results.read_text(encoding="utf-8"))


def _torn_results(layout: SweepLayout, results: Path) -> None:
    results.write_text(results.read_text(encoding="utf-8")[:100], encoding="utf-8")


def _short_samples(layout: SweepLayout, results: Path) -> None:
    path = results.parent / "20260101_120000_samples_rd_organism_txt.jsonl"
    path.write_text("".join(path.read_text(encoding="utf-8").splitlines(True)[:-1]), encoding="utf-8")


def _no_samples(layout: SweepLayout, results: Path) -> None:
    (results.parent / "20260101_120000_samples_rd_organism_see.jsonl").unlink()


def _task_absent(layout: SweepLayout, results: Path) -> None:
    data = json.loads(results.read_text(encoding="utf-8"))
    del data["group_subtasks"][GROUP], data["results"][GROUP]
    results.write_text(json.dumps(data), encoding="utf-8")


def _other_model_args(layout: SweepLayout, results: Path) -> None:
    data = json.loads(results.read_text(encoding="utf-8"))
    data["config"]["model_args"] = "pretrained=/models/ckpt"
    results.write_text(json.dumps(data), encoding="utf-8")


def _no_shards(layout: SweepLayout, results: Path) -> None:
    for path in layout.routing_dir("soft_l1_b0.25-0.75").iterdir():
        path.unlink()


def _shard_lacks_a_document(layout: SweepLayout, results: Path) -> None:
    shard = layout.routing_dir("soft_l1_b0.25-0.75") / "routing_rank000.jsonl"
    lines = shard.read_text(encoding="utf-8").splitlines(True)
    shard.write_text("".join(lines[:-1]) + lines[-1][:40], encoding="utf-8")  # killed mid-line


def _truncated_sidecar(layout: SweepLayout, results: Path) -> None:
    sidecar = layout.routing_dir("soft_l1_b0.25-0.75") / "routing_rank000.counts.bin"
    sidecar.write_bytes(sidecar.read_bytes()[:50])


PARTIAL = [
    (_no_results, r"no lmms-eval results json in .*runs/soft_l1_b0.25-0.75 \(the run stopped before"),
    (_two_results, r"2 lmms-eval results files in .*\(a stale run beside this one\); need exactly one"),
    (_torn_results, r"20260101_120000_results.json: corrupt lmms-eval results json"),
    (_short_samples, r"samples_rd_organism_txt.jsonl holds 2 samples of 3 \(the run stopped while writing them\)"),
    (_no_samples, r"no samples file of task rd_organism_see beside it"),
    (_task_absent, r"results.json lacks task\(s\) rd_organism"),
    (_other_model_args, r"was written with other model_args \('pretrained=/models/ckpt', planned 'pretrained="),
    (_no_shards, r"no routing shards in .*soft_l1_b0.25-0.75/rd_routing"),
    (_shard_lacks_a_document, r"rd_routing lack 1 logged document\(s\) \(rd_organism_see doc 2\)"),
    (_truncated_sidecar, r"routing_rank000.jsonl:\d+: its counts lie outside routing_rank000.counts.bin"),
]


@pytest.mark.parametrize(("damage", "reason"), PARTIAL, ids=[d.__name__.strip("_") for d, _ in PARTIAL])
def test_partial_runs_are_found_and_cleared(planned, damage, reason: str) -> None:
    layout, _, settings, model_args = planned
    soft = settings[1]
    write_setting_run(layout, settings[2], model_args[settings[2].key])  # a neighbour, complete
    results = write_setting_run(layout, soft, model_args[soft.key])
    damage(layout, results)
    status = inspect_setting(layout.root, soft)
    assert status.state == "partial", status
    assert re.search(reason, status.reason), status.reason
    assert clear_partial(layout.root, soft) is True
    assert not layout.run_dir(soft.key).exists()
    assert setting_status(layout.root, soft) == "missing"
    assert setting_status(layout.root, settings[2]) == "complete"  # the neighbour is untouched


def test_records_of_another_setting_do_not_count(planned) -> None:
    layout, _, settings, model_args = planned
    soft = settings[1]
    results = write_setting_run(layout, soft, model_args[soft.key])
    for path in layout.routing_dir(soft.key).iterdir():
        path.unlink()
    write_shard(layout, soft, {t: DOCS for t in (*SUBTASKS, SEE)}, settings[2].intervention_hash)
    status = inspect_setting(layout.root, soft)
    assert status.state == "partial" and "lack 9 logged document(s)" in status.reason, status
    assert results.is_file()


def test_a_cleared_and_rerun_setting_has_the_files_of_an_uninterrupted_one(planned, tmp_path: Path) -> None:
    layout, config, settings, model_args = planned
    soft = settings[1]
    # Uninterrupted, in a second sweep folder of the same config.
    other = check_or_start(tmp_path / "other", config)
    record_experts(other, DOMAIN)
    other_args = plan_settings(other, config, settings)
    write_setting_run(other, soft, other_args[soft.key])
    # Killed: lmms-eval's results and part of the shards of a first try, then the rerun's own files.
    write_setting_run(layout, soft, model_args[soft.key], date_id="20260202_090000", docs=2)
    (layout.run_dir(soft.key) / "ckpt" / "20260202_090000_results.json").unlink()
    assert clear_partial(layout.root, soft) is True
    write_setting_run(layout, soft, model_args[soft.key])
    assert setting_status(layout.root, soft) == "complete"
    assert files_of(layout.run_dir(soft.key)) == files_of(other.run_dir(soft.key))
    shard = "rd_routing/routing_rank000.jsonl"
    assert len((layout.run_dir(soft.key) / shard).read_text().splitlines()) == 3 * DOCS


def test_status_of_an_unplanned_setting_is_an_error(tmp_path: Path) -> None:
    config = load_config(tmp_path)
    layout = check_or_start(tmp_path / "out", config)
    setting = expand_settings(config.settings, DOMAIN)[1]
    with pytest.raises(SweepStateError, match=r"no planned setting 'soft_l1_b0.25-0.75'; plan the settings first"):
        inspect_setting(layout.root, setting)
