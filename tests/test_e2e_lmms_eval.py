"""End to end through lmms-eval's own command lines and through `rd-eval demo`, offline on a CPU."""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import pytest
from lmms_cli import run, tasks_path

from rd_eval.lmms.runs import find_runs, load_paired_samples
from rd_eval.routing.shards import merge_routing_records


def lmms_eval_args(checkpoint: Path, out: Path, limit: int) -> list[str]:
    return ["--model", "rd_qwen3_vl_moe", "--model_args", f"pretrained={checkpoint}", "--tasks", "rd_demo",
            "--include_path", tasks_path(), "--output_path", str(out), "--log_samples", "--limit", str(limit),
            "--batch_size", "4"]


def check_run(out: Path, limit: int) -> None:
    runs = find_runs(out)
    assert len(runs) == 1
    results = json.loads(runs[0].results_path.read_text())
    assert results["config"]["model"] == "rd_qwen3_vl_moe"
    assert set(runs[0].samples) == {"rd_demo_img", "rd_demo_txt"}
    for task in ("rd_demo_img", "rd_demo_txt"):
        assert 0.0 <= results["results"][task]["rd_acc,none"] <= 1.0
    samples = load_paired_samples(runs[0])
    assert len(samples) == 2 * limit
    assert sorted(samples[samples.form == "img"].pair_id) == sorted(samples[samples.form == "txt"].pair_id)
    routing_dirs = list((out / "rd_routing").iterdir())
    assert len(routing_dirs) == 1 and routing_dirs[0].name.endswith("__none")
    records = merge_routing_records(routing_dirs[0])
    assert len(records) == 2 * limit
    img = [r for r in records if r["form"] == "img"]
    txt = [r for r in records if r["form"] == "txt"]
    # The image check's other half: image forms carry image tokens, text twins none.
    assert all(r["tokens"]["prompt_image"] > 0 for r in img)
    assert all(r["tokens"]["prompt_image"] == 0 for r in txt)


def test_python_m_lmms_eval_runs_rd_demo(tiny_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    result = run([sys.executable, "-m", "lmms_eval", *lmms_eval_args(tiny_dir, out, 8)], tmp_path)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    check_run(out, 8)


def test_lmms_eval_eval_subcommand_runs_rd_demo(tiny_dir: Path, tmp_path: Path) -> None:
    script = Path(sys.executable).parent / "lmms-eval"
    if not script.is_file():
        pytest.skip("lmms-eval console script not installed beside this Python")
    out = tmp_path / "out"
    result = run([str(script), "eval", *lmms_eval_args(tiny_dir, out, 4)], tmp_path)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    check_run(out, 4)


def test_rd_eval_demo_end_to_end(tiny_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "demo"
    # Reuse the session's tiny checkpoint (same family and seed): the demo must recognise and not rebuild it.
    shutil.copytree(tiny_dir, out / "models" / "rd-tiny-qwen3_vl_moe-A1B")
    result = run([sys.executable, "-m", "rd_eval", "demo", "--random", "--out", str(out), "--limit", "6"], tmp_path)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "reusing tiny random qwen3_vl_moe checkpoint" in result.stdout
    assert "random weights" in result.stdout and "| rd_demo | base | 6 |" in result.stdout
    table = json.loads((out / "rd_demo_table.json").read_text())
    row = table["rows"][0]
    assert row["benchmark"] == "rd_demo" and row["base"]["n_pairs"] == 6 and row["effect"]["n_pairs"] == 6
    gap = row["base"]["gap"]
    assert gap["diff"] == pytest.approx(row["base"]["acc_txt"] - row["base"]["acc_img"], abs=0.01)
    gain = row["effect"]["gain"]
    assert gain["diff"] == pytest.approx(row["effect"]["acc_img"] - row["effect"]["acc_img_base"], abs=0.01)
    for name in ("rd_demo_table.md", "experts/domain_experts.json", "experts/intervention_soft.json",
                 "logs/lmms_eval_plain.log", "logs/lmms_eval_soft.log"):
        assert (out / name).is_file(), name
        assert str(out / name) in result.stdout
    spec = json.loads((out / "experts" / "intervention_soft.json").read_text())
    assert spec["mode"] == "soft" and spec["band"] == {"fractions": [0.25, 0.75]}
    # The intervened run's routing records carry the spec's hash, the plain run's "none".
    hashes = {p.name.rsplit("__", 1)[1] for p in (out / "runs").glob("*/rd_routing/*")}
    assert hashes == {"none", table["demo"]["intervention_hash"]}
    # The soft run is pinned to the spec's content, so a later demo into this --out cannot relabel it.
    (soft_results,) = (out / "runs" / "soft").rglob("*_results.json")
    model_args = json.loads(soft_results.read_text())["config"]["model_args"]
    assert model_args.endswith(f",intervention_hash={table['demo']['intervention_hash']}")


def test_report_and_leaderboard_of_the_demo_run(tiny_dir: Path, tmp_path: Path) -> None:
    """Issue 6's end-to-end check: report (md, csv, json, html) and leaderboard (md, csv, html) of a demo run."""
    out = tmp_path / "demo"
    shutil.copytree(tiny_dir, out / "models" / "rd-tiny-qwen3_vl_moe-A1B")
    result = run([sys.executable, "-m", "rd_eval", "demo", "--random", "--out", str(out), "--limit", "5"], tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    runs_dir, reports = out / "runs", tmp_path / "reports"
    for fmt in ("md", "csv", "json", "html"):
        made = run([sys.executable, "-m", "rd_eval", "report", str(runs_dir), "--format", fmt, "--out",
                    str(reports), "--n-boot", "200"], tmp_path)
        assert made.returncode == 0, made.stderr[-3000:]
        assert (reports / f"report.{fmt}").is_file(), fmt
    report = json.loads((reports / "report.json").read_text())
    roles = sorted(setting["role"] for setting in report["settings"])
    assert roles == ["base", "intervened"]
    routing = next(s["routing"] for s in report["settings"] if s["role"] == "base")["benchmarks"][0]
    assert routing["n_pairs"] == 5 and len(routing["layers"]) == 8
    assert all(0.0 <= layer["jsd_mean"] <= 1.0 for layer in routing["layers"])
    html = (reports / "report.html").read_text()
    assert "data:image/png;base64," in html and "http://" not in html and "https://" not in html
    assert "rd_demo" in (reports / "report.md").read_text() and "rd_demo" in (reports / "report.csv").read_text()
    made = run([sys.executable, "-m", "rd_eval", "leaderboard", str(runs_dir), "--out", str(reports)], tmp_path)
    assert made.returncode == 0, made.stderr[-3000:]
    for fmt in ("md", "csv", "html"):  # --out DIR without --format: all three, beside the report
        text = (reports / f"leaderboard.{fmt}").read_text()
        assert "rd_qwen3_vl_moe" in text and "rd_demo" in text, fmt
    assert (reports / "plots" / "leaderboard_gap_per_setting.png").is_file()
