"""`rd-eval report` on realistic run folders: lmms-eval results + samples, routing shards beside them."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from test_runs import write_run

from rd_eval.commands.main import main
from rd_eval.reports.report import ReportInputError, build_report, to_csv, to_html, to_json, to_markdown
from rd_eval.routing.recording import BatchRouting
from rd_eval.routing.records import CheckpointRef, DocIdentity, document_record, error_record
from rd_eval.routing.shards import ShardWriter, read_routing_records
from rd_eval.routing.spec import ExpertSet, InterventionSpec, LayerExperts
from rd_eval.vocabulary.scopes import BASE_SCOPES, SCOPE_INDICES
from rd_eval.vocabulary.scopes import SCOPE_MEMBERS as SCOPES

CKPT = "/ckpts/acme/rd-tiny-A1B"
CKPT_DIR = "acme__rd-tiny-A1B"  # how lmms-eval and the adapter name it
CKPT_REF = CheckpointRef.of(CKPT)  # what the adapter's records name
MODEL_ID = "rd_qwen3_vl_moe"
SITES, EXPERTS, TOP_K = 8, 8, 2
MID = (2, 3, 4, 5)  # the 0.25-0.75 band of 8 MoE layers
N_PAIRS = 12
N_BOOT = 200


def _site_dists(avoid: tuple[int, ...], mid_sites: tuple[int, ...]) -> np.ndarray:
    """[S, E] routing distributions: experts 0 and 1 favoured in the middle sites; `avoid` zeroed in `mid_sites`."""
    base = np.ones((SITES, EXPERTS))
    base[list(MID), :2] = 4.0
    for site in mid_sites:
        base[site, list(avoid)] = 0.0
    return base / base.sum(axis=1, keepdims=True)


TEXT = _site_dists((), ())
IMAGE = _site_dists((0, 1), MID)  # image tokens never pick experts 0, 1 in the middle sites


def _routing(rng: np.random.Generator, tokens: dict[str, tuple[int, np.ndarray]]) -> BatchRouting:
    """One document's statistics: per base scope, `tokens[scope] = (n_tokens, [S, E] distribution)`."""
    counts = np.zeros((1, SITES, len(BASE_SCOPES), EXPERTS), dtype=np.float32)
    n_tok = np.zeros((1, len(BASE_SCOPES)), dtype=np.float32)
    for s, scope in enumerate(BASE_SCOPES):
        n, dist = tokens.get(scope, (0, TEXT))
        n_tok[0, s] = n
        for site in range(SITES):
            counts[0, site, s] = rng.multinomial(n * TOP_K, dist[site])
    return BatchRouting(counts=counts, prob_sums=counts / TOP_K, tokens=n_tok)


def _img_correct(i: int) -> int:
    return int(i % 3 == 0)


def _write_records(folder: Path, hash_: str, rng: np.random.Generator, *, image_dist: np.ndarray, drop: bool,
                   model: str = MODEL_ID, checkpoint: CheckpointRef | None = CKPT_REF) -> None:
    """Records of the N_PAIRS synthetic pairs as two ranks write them (`checkpoint` None: an older record)."""
    shards = [ShardWriter(folder, 0), ShardWriter(folder, 1)]  # two ranks
    for i in range(N_PAIRS):
        img = DocIdentity("rd_syn_img", i, "img")
        txt = DocIdentity("rd_syn_txt", i, "txt")
        img_routing = _routing(rng, {"prompt_text": (12, TEXT), "prompt_image": (64, image_dist),
                                     "generated": (8, TEXT)})
        txt_routing = _routing(rng, {"prompt_text": (70, TEXT), "generated": (8, TEXT)})
        owner = {"model": model, "intervention_hash": hash_, "checkpoint": checkpoint}
        records = []
        if drop and i == 10:
            records.append(error_record(img, error="image unreadable", **owner))
        else:
            records.append(document_record(img, img_routing, 0, **owner))
        if not (drop and i == 11):  # pair 11's text twin has no record at all
            records.append(document_record(txt, txt_routing, 0, **owner))
        shards[i % 2].append(records)


def _write_setting(out: Path, date_id: str, hash_: str, model_args: str, rng: np.random.Generator,
                   *, image_dist: np.ndarray, drop: bool, model_dir: str = CKPT_DIR,
                   routing: Path | None = None, checkpoint: CheckpointRef | None = CKPT_REF) -> Path:
    samples = {
        "rd_syn_img": [(f"p{i:02d}", _img_correct(i), "1", "1") for i in range(N_PAIRS)],
        "rd_syn_txt": [(f"p{i:02d}", int(i != 5), "1", "1") for i in range(N_PAIRS)],
    }
    results = write_run(out, date_id, samples, model_dir=model_dir, model_args=model_args, model=MODEL_ID)
    folder = routing or out / "rd_routing" / f"{model_dir}__{hash_}"
    _write_records(folder, hash_, rng, image_dist=image_dist, drop=drop, checkpoint=checkpoint)
    return results


def _spec(path: Path) -> InterventionSpec:
    experts = ExpertSet(model=CKPT, kind="domain", layers=tuple(LayerExperts(s, (0, 1)) for s in MID))
    spec = InterventionSpec(experts=experts, strength=1.5)
    spec.save(path)
    return spec


def build_runs(root: Path, *, spec_readable: bool = True) -> tuple[Path, str]:
    """root/runs/{plain,soft}: a plain and a soft-intervened run of the same checkpoint, like `rd-eval demo`."""
    rng = np.random.default_rng(0)
    spec_path = root / "experts" / "soft.json"
    hash_ = _spec(spec_path).content_hash()
    _write_setting(root / "runs" / "plain", "20250101_120000", "none", f"pretrained={CKPT}", rng,
                   image_dist=IMAGE, drop=True)
    # The intervention pulls image routing halfway back to the text routing in the middle sites.
    _write_setting(root / "runs" / "soft", "20250101_130000", hash_, f"pretrained={CKPT},intervention={spec_path}",
                   rng, image_dist=(IMAGE + TEXT) / 2, drop=False)
    if not spec_readable:
        spec_path.unlink()
    return root / "runs", hash_


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    return build_runs(tmp_path_factory.mktemp("report"))


@pytest.fixture(scope="module")
def report(runs: tuple[Path, str]) -> dict[str, Any]:
    return build_report([runs[0]], n_boot=N_BOOT)


def _setting(report: dict[str, Any], intervention: str) -> dict[str, Any]:
    (found,) = [s for s in report["settings"] if s["intervention"] == intervention]
    return found


def test_settings_are_grouped_by_model_and_intervention(report: dict[str, Any], runs: tuple[Path, str]) -> None:
    _, hash_ = runs
    assert [s["intervention"] for s in report["settings"]] == ["none", hash_]
    plain, soft = _setting(report, "none"), _setting(report, hash_)
    assert plain["role"] == "base" and plain["base"] is None
    assert soft["role"] == "intervened" and soft["base"] == plain["key"]
    assert plain["checkpoint"] == soft["checkpoint"] == CKPT_DIR
    assert plain["model_id"] == MODEL_ID  # lmms-eval's --model of the results file
    assert soft["routing"]["routing_dirs"] == [str(runs[0] / "soft" / "rd_routing" / f"{CKPT_DIR}__{hash_}")]
    (row,) = soft["gaps"]["rows"]
    assert row["benchmark"] == "rd_syn" and row["effect"]["n_pairs"] == N_PAIRS
    # acc_img = 4/12 pairs right in image form, acc_txt 11/12.
    assert row["base"]["acc_img"] == pytest.approx(100 * 4 / 12)
    assert row["base"]["acc_txt"] == pytest.approx(100 * 11 / 12)


def test_per_layer_jsd_is_highest_in_the_middle_band(report: dict[str, Any]) -> None:
    (bench,) = _setting(report, "none")["routing"]["benchmarks"]
    assert bench["benchmark"] == "rd_syn"
    assert (bench["n_sites"], bench["n_experts"], bench["band_sites"]) == (SITES, EXPERTS, list(MID))
    assert bench["n_pairs"] == N_PAIRS - 2 and bench["n_pairs_without_record"] == 2
    assert bench["n_pairs_without_scope_tokens"] == 0
    layers = bench["layers"]
    jsd = np.array([layer["jsd_mean"] for layer in layers])
    inside, outside = jsd[list(MID)], np.delete(jsd, list(MID))
    assert inside.min() > outside.max()
    assert int(np.argmax(jsd)) in MID
    for layer in layers:
        assert layer["in_band"] == (layer["site"] in MID)
        assert 0.0 <= layer["ci_low"] <= layer["jsd_mean"] <= layer["ci_high"] <= 1.0
    sep = np.array([layer["separation"] for layer in layers])
    assert sep[list(MID)].min() > np.delete(sep, list(MID)).max()
    assert bench["n_separation_docs"] == N_PAIRS - 1  # the error record has no statistics
    corr = bench["correlation"]
    assert corr["n"] == N_PAIRS - 2 and corr["n_img_correct"] == 4  # pairs 0, 3, 6, 9
    assert -1.0 <= corr["r"] <= 1.0 and 0.0 <= corr["p"] <= 1.0


def test_intervened_setting_diverges_less_in_the_band(report: dict[str, Any], runs: tuple[Path, str]) -> None:
    plain = _setting(report, "none")["routing"]["benchmarks"][0]["layers"]
    soft = _setting(report, runs[1])["routing"]["benchmarks"][0]["layers"]
    for site in MID:
        assert soft[site]["jsd_mean"] < plain[site]["jsd_mean"]


def test_image_scope_has_no_text_twin_tokens(runs: tuple[Path, str]) -> None:
    rep = build_report([runs[0]], scope="image", n_boot=N_BOOT)
    bench = _setting(rep, "none")["routing"]["benchmarks"][0]
    assert bench["n_pairs"] == 0 and bench["n_pairs_without_scope_tokens"] == N_PAIRS - 2
    assert all(layer["jsd_mean"] is None for layer in bench["layers"])
    assert bench["correlation"] is None
    json.loads(to_json(rep))  # undefined statistics are null, not NaN


def test_unreadable_spec_is_matched_to_its_routing_folder(tmp_path: Path) -> None:
    root, hash_ = build_runs(tmp_path, spec_readable=False)
    # A second intervention's folder for the same checkpoint, holding other documents: not this run's.
    decoy = root / "soft" / "rd_routing" / f"{CKPT_DIR}__ffffffffffff"
    routing = _routing(np.random.default_rng(1), {"prompt_text": (5, TEXT)})
    ShardWriter(decoy, 0).append([document_record(DocIdentity("rd_other_txt", 0, "txt"), routing, 0,
                                                  model=MODEL_ID, intervention_hash="ffffffffffff")])
    rep = build_report([root], n_boot=N_BOOT)
    assert [s["intervention"] for s in rep["settings"]] == ["none", hash_]
    assert _setting(rep, hash_)["routing"]["benchmarks"][0]["n_pairs"] == N_PAIRS


def test_renderers(report: dict[str, Any]) -> None:
    md = to_markdown(report)
    assert "## Routing divergence" in md and "rd_syn" in md and "Intervention effect" in md
    assert md.count("| site | band |") == 2

    rows = list(csv.DictReader(io.StringIO(to_csv(report))))
    assert len(rows) == 2 * SITES
    assert {r["intervention"] for r in rows} == {"none", report["settings"][1]["intervention"]}
    plain_rows = [r for r in rows if r["role"] == "base"]
    assert [int(r["site"]) for r in plain_rows] == list(range(SITES))
    assert all(r["gain"] == "" for r in plain_rows) and all(r["gain"] != "" for r in rows if r["role"] != "base")

    assert json.loads(to_json(report)) == report

    page = to_html(report)
    assert page.startswith("<!DOCTYPE html>")
    assert page.count('<img alt="rd_syn: routing divergence by layer" src="data:image/png;base64,') == 1
    assert "http://" not in page and "https://" not in page and 'src="file' not in page
    assert "<table>" in page and "Routing divergence" in page
    with pytest.raises(ReportInputError, match="not an rd-eval report"):
        to_markdown({"rows": []})


def test_report_scopes_match_the_recorder() -> None:
    assert {name: tuple(BASE_SCOPES[i] for i in idx) for name, idx in SCOPE_INDICES.items()} == SCOPES


def test_bad_options() -> None:
    with pytest.raises(ReportInputError, match="scope 'tokens' invalid; valid: prompt"):
        build_report([Path(".")], scope="tokens")
    with pytest.raises(ReportInputError, match="n_boot"):
        build_report([Path(".")], n_boot=0)


# --- CLI ------------------------------------------------------------------------------------------------


def test_cli_markdown_to_stdout_and_files(runs: tuple[Path, str], tmp_path: Path,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    root = str(runs[0])
    assert main(["report", root, "--n-boot", str(N_BOOT)]) == 0
    assert "## Routing divergence" in capsys.readouterr().out

    out = tmp_path / "out"
    assert main(["report", root, "--n-boot", str(N_BOOT), "--format", "html", "--out", str(out)]) == 0
    page = (out / "report.html").read_text(encoding="utf-8")
    assert 'src="data:image/png;base64,' in page and "http://" not in page
    plots = out / "plots"
    assert capsys.readouterr().out.strip().splitlines() == [
        f"Written: {out / 'report.html'}",
        f"Written: {plots / 'gain_vs_lambda.png'}", f"Written: {plots / 'routing_jsd_rd_syn.png'}"]
    assert main(["report", root, "--n-boot", str(N_BOOT), "--format", "json"]) == 0
    assert json.loads(capsys.readouterr().out)["format"] == "rd-eval.report"
    assert main(["report", root, "--n-boot", str(N_BOOT), "--format", "csv", "--out", str(out)]) == 0
    assert (out / "report.csv").read_text(encoding="utf-8").startswith("model_id,checkpoint,")


def _exit_2(args: list[str], capsys: pytest.CaptureFixture[str], match: str) -> None:
    assert main(["report", *args, "--n-boot", str(N_BOOT)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("rd-eval report: error:") and len(err.splitlines()) == 1 and match in err, err


def test_cli_folder_without_runs(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    _exit_2([str(tmp_path)], capsys, "no lmms-eval results")


def test_cli_run_without_samples(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    root, _ = build_runs(tmp_path)
    for path in (root / "plain" / CKPT_DIR).glob("*_samples_*.jsonl"):
        path.unlink()
    _exit_2([str(root)], capsys, "--log_samples")


def test_cli_unreadable_routing_records(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    root, _ = build_runs(tmp_path)
    shard = root / "plain" / "rd_routing" / f"{CKPT_DIR}__none" / "routing_rank000.jsonl"
    lines = shard.read_text(encoding="utf-8").splitlines()
    shard.write_text("\n".join(["{not json", *lines]) + "\n", encoding="utf-8")
    _exit_2([str(root)], capsys, "routing records in")


def test_cli_records_of_bad_shape(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    root, _ = build_runs(tmp_path)
    shard = root / "plain" / "rd_routing" / f"{CKPT_DIR}__none" / "routing_rank000.jsonl"
    lines = shard.read_text(encoding="utf-8").splitlines()
    # A version 2 record keeps its scopes in one array block, so scopes cannot disagree in shape there; a
    # version 1 record (arrays inline as lists, still read) can.
    first = next(read_routing_records(shard.parent))
    first |= {"version": 1, "counts": {k: np.asarray(v).tolist() for k, v in first["counts"].items()},
              "prob_sums": {k: np.asarray(v).tolist() for k, v in first["prob_sums"].items()}}
    first["counts"]["prompt_text"] = [[1, 2]] * SITES  # 2 experts here, 8 in the other scopes
    shard.write_text("\n".join([json.dumps(first), *lines[1:]]) + "\n", encoding="utf-8")
    _exit_2([str(root)], capsys, "record task 'rd_syn_img' doc_id 0: 'counts.prompt_image' has shape")


def test_a_pinned_intervention_hash_is_taken_as_declared() -> None:
    from rd_eval.reports.catalogue import declared_hash as _declared_hash

    # The spec file may be gone or edited since the run: the hash pinned in model_args names the setting.
    assert _declared_hash({"expert_set": "/nonexistent/experts.json", "intervention_hash": "abc123"}) == "abc123"
    assert _declared_hash({"expert_set": "/nonexistent/experts.json"}) is None


def test_a_pinned_hash_lmms_eval_read_as_a_number_names_its_routing_folder() -> None:
    from rd_eval.reports.catalogue import declared_hash
    from rd_eval.vocabulary.model_args import parse_model_args

    # lmms-eval's parser makes '012345678901' the int 12345678901 and '1234e5678901' a float.
    for digest in ("012345678901", "1234e5678901"):
        args = parse_model_args(f"pretrained=x,expert_set=/nonexistent/experts.json,intervention_hash={digest}")
        assert not isinstance(args["intervention_hash"], str)
        assert declared_hash(args, ["none", "abcdef012345", digest]) == digest


# --- whose routing records a run reads ------------------------------------------------------------------


def _mid_band_jsd(setting: dict[str, Any]) -> float:
    (bench,) = setting["routing"]["benchmarks"]
    return bench["correlation"]["mid_band_jsd_mean"]


def test_a_routing_dir_shared_by_two_checkpoints_and_models_is_not_mixed(tmp_path: Path) -> None:
    shared = tmp_path / "shared_routing"
    rng = np.random.default_rng(3)
    # Checkpoint step_1000 routes image tokens away in the middle band; step_2000 routes them like text.
    first, second = "/ckpts/acme/step_1000", "/ckpts/acme/step_2000"
    for name, pretrained, image_dist in (("a", first, IMAGE), ("b", second, TEXT)):
        _write_setting(tmp_path / "runs" / name, "20250101_120000", "none",
                       f"pretrained={pretrained},routing_dir={shared}", rng, image_dist=image_dist, drop=False,
                       model_dir=sanitize(pretrained), routing=shared, checkpoint=CheckpointRef.of(pretrained))
    # Last into the folder: another model's records of the first checkpoint, routing like text.
    _write_records(shared, "none", rng, image_dist=TEXT, drop=False, model="rd_glm4v_moe",
                   checkpoint=CheckpointRef.of(first))
    rep = build_report([tmp_path / "runs"], n_boot=N_BOOT)
    by_checkpoint = {s["checkpoint"]: s for s in rep["settings"]}
    step_1000, step_2000 = by_checkpoint["acme__step_1000"], by_checkpoint["acme__step_2000"]
    for setting in (step_1000, step_2000):
        assert setting["routing"]["routing_dirs"] == [str(shared)]
        assert setting["routing"]["benchmarks"][0]["n_pairs"] == N_PAIRS
    # Each run reads its own records: the diverging checkpoint diverges, the other does not.
    assert _mid_band_jsd(step_1000) > 5 * _mid_band_jsd(step_2000)


def sanitize(pretrained: str) -> str:
    return "__".join(pretrained.strip("/").split("/")[-2:])


def test_records_naming_no_checkpoint_are_read_as_the_runs_own(tmp_path: Path) -> None:
    # Shards written before records named their checkpoint: read as before.
    out = tmp_path / "runs" / "plain"
    _write_setting(out, "20250101_120000", "none", f"pretrained={CKPT}", np.random.default_rng(0),
                   image_dist=IMAGE, drop=False, checkpoint=None)
    shard = out / "rd_routing" / f"{CKPT_DIR}__none" / "routing_rank000.jsonl"
    assert "checkpoint" not in shard.read_text().splitlines()[0]
    (setting,) = build_report([tmp_path / "runs"], n_boot=N_BOOT)["settings"]
    assert setting["routing"]["benchmarks"][0]["n_pairs"] == N_PAIRS


def _as_lmms_eval_cli_wrote_it(results: Path, output_path: str) -> None:
    """Add what lmms-eval's CLI records of the run: the --output_path it was given."""
    data = json.loads(results.read_text())
    data["config"]["resolved_cli_args"] = {"output_path": output_path, "model": MODEL_ID}
    results.write_text(json.dumps(data))


def test_a_copied_run_reads_its_own_routing_never_the_original(tmp_path: Path) -> None:
    import shutil

    original, _ = build_runs(tmp_path / "original")
    for name in ("plain", "soft"):
        (results,) = (original / name).rglob("*_results.json")
        _as_lmms_eval_cli_wrote_it(results, str(original / name))  # absolute, as the run was given it
    copy = tmp_path / "copy" / "runs"
    shutil.copytree(original, copy)
    # The copy's plain routing lost one rank's shard: a report that read the original's would not see it.
    for path in (copy / "plain" / "rd_routing" / f"{CKPT_DIR}__none").glob("routing_rank001.*"):
        path.unlink()
    rep = build_report([copy], n_boot=N_BOOT)
    plain = _setting(rep, "none")
    assert plain["routing"]["routing_dirs"] == [str(copy / "plain" / "rd_routing" / f"{CKPT_DIR}__none")]
    assert plain["routing"]["benchmarks"][0]["n_pairs"] < N_PAIRS - 2
    assert plain["routing_notes"] == []

    # Copied without its routing: no routing for that run, and the report says where it was left.
    shutil.rmtree(copy / "plain" / "rd_routing")
    rep = build_report([copy], n_boot=N_BOOT)
    plain = _setting(rep, "none")
    assert plain["routing"] is None
    (note,) = plain["routing_notes"]
    assert str(original / "plain") in note and "not read" in note and "copied or moved" in note
    assert note in to_markdown(rep)


def test_a_relative_routing_dir_is_found_beside_a_moved_run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Run from tmp_path/work as `--output_path out ... routing_dir=out/routing`, then moved to tmp_path/moved.
    work, moved = tmp_path / "work", tmp_path / "moved"
    results = _write_setting(work / "out", "20250101_120000", "none", f"pretrained={CKPT},routing_dir=out/routing",
                             np.random.default_rng(0), image_dist=IMAGE, drop=False, routing=work / "out" / "routing")
    _as_lmms_eval_cli_wrote_it(results, "out")
    (work / "out").rename(moved)
    monkeypatch.chdir(tmp_path)
    (setting,) = build_report([moved], n_boot=N_BOOT)["settings"]
    assert setting["routing"]["routing_dirs"] == [str(moved / "routing")]


def test_routing_of_a_run_that_did_not_finish_is_named(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    root, hash_ = build_runs(tmp_path)
    # The soft run was killed: its routing shards are there, lmms-eval's results and samples are not.
    for path in (root / "soft" / CKPT_DIR).iterdir():
        path.unlink()
    rep = build_report([root], n_boot=N_BOOT)
    assert [s["intervention"] for s in rep["settings"]] == ["none"]
    (note,) = rep["notes"]
    assert str(root / "soft" / "rd_routing" / f"{CKPT_DIR}__{hash_}") in note and "did not finish" in note
    assert note in to_markdown(rep)
    # Nothing finished at all: the command says so, in one line.
    _exit_2([str(root / "soft")], capsys, "did not finish")
