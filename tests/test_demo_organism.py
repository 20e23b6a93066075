"""`rd-eval demo` on the model organism (issue 16 item 4): the summary table's numbers (seen, gap, gain, text
cost, flip rate per setting), the organism folder checks, and the whole demo end to end on a toy organism
(plain + perception, soft, seeded random control through lmms-eval; tables; rd-eval's report in md and html)."""

from __future__ import annotations

import json
import sys
from dataclasses import replace
from pathlib import Path

import pandas as pd
import pytest
from lmms_cli import run
from test_organism_train import TOY, quiet

from rd_eval.analysis.gaps import LEVEL, compare_runs
from rd_eval.analysis.perception_summary import perception, read_seen
from rd_eval.commands.demo import DemoConfig, DemoError, check_organism
from rd_eval.commands.demo_table import summary_markdown, summary_rows
from rd_eval.organism.train import CARD_FILE, train


def frame(img: list[int], txt: list[int]) -> pd.DataFrame:
    rows = [{"task": f"rd_organism_{form}", "form": form, "pair_id": f"p{i}", "doc_id": i, "correct": c}
            for form, values in (("img", img), ("txt", txt)) for i, c in enumerate(values)]
    df = pd.DataFrame(rows)
    df["correct"] = df["correct"].astype("Int64")
    return df


def test_the_summary_has_a_row_per_setting_with_seen_and_the_flip_rate_beside_each_gain() -> None:
    plain = frame([1, 0, 0, 0], [1, 1, 1, 0])
    soft = frame([1, 1, 1, 0], [1, 1, 0, 0])
    control = frame([1, 0, 0, 0], [1, 1, 1, 0])
    effects = {"soft": compare_runs(plain, soft, n_boot=200), "random": compare_runs(plain, control, n_boot=200)}
    rows = summary_rows(effects, {"soft": 0.25, "random": None}, 75.0)
    assert [r["setting"] for r in rows] == ["plain", "soft", "random"]
    assert (rows[0]["acc_txt"], rows[0]["seen"], rows[0]["acc_img"], rows[0]["gap"]["diff"]) == (75.0, 75.0, 25.0, 50.0)
    assert rows[0]["gain"] is None and rows[0]["flip_rate"] is None
    assert (rows[1]["acc_img"], rows[1]["gain"]["diff"], rows[1]["text_cost"]["diff"]) == (75.0, 50.0, -25.0)
    assert rows[1]["flip_rate"] == 0.25 and rows[1]["seen"] is None
    assert rows[2]["gain"]["diff"] == 0.0 and rows[2]["flip_rate"] is None
    markdown = summary_markdown(rows, None, level=LEVEL, title="t")
    assert "| plain | 4 | 75.0 | 75.0 | 25.0 | +50.0 [" in markdown
    assert "| soft | 4 | 50.0 | – | 75.0 | -25.0 [" in markdown and "| 25.0% |" in markdown
    assert markdown.splitlines()[-1].startswith("| random | 4 | 75.0 | – | 25.0 |")
    with pytest.raises(ValueError, match="no intervened setting"):
        summary_rows({}, {}, None)


def test_perception_splits_image_failures_into_not_seen_and_seen(tmp_path: Path) -> None:
    samples = tmp_path / "samples_rd_organism_see.jsonl"
    items = [{"pair_id": "p0", "seen": 1}, {"pair_id": "p1", "seen": 0}, {"pair_id": "p2", "seen": 1},
             {"pair_id": "p3", "seen": None}]
    samples.write_text("".join(json.dumps({"doc_id": i, "rd_seen": item}) + "\n" for i, item in enumerate(items)))
    seen = read_seen(samples)
    assert seen == {"p0": 1, "p1": 0, "p2": 1, "p3": None}
    entry = perception(frame([1, 0, 0, 0], [1, 1, 1, 0]), seen)
    assert entry["n"] == 3 and entry["seen"] == pytest.approx(200 / 3) and entry["errors"] == 1
    attribution = entry["attribution"]
    assert (attribution["img_failures"], attribution["perception_errors"], attribution["reasoning_errors"],
            attribution["unattributed"], attribution["seeing_not_thinking"]) == (3, 1, 1, 1, 1)
    text = summary_markdown(summary_rows({"soft": compare_runs(frame([1, 0, 0, 0], [1, 1, 1, 0]),
                                                               frame([1, 1, 0, 0], [1, 1, 1, 0]), n_boot=50)},
                                         {}, entry["seen"]), entry, level=LEVEL, title="t")
    assert "3 image-form failures = 1 not seen (perception errors) + 1 seen (reasoning errors); 1 pairs" in text
    samples.write_text(json.dumps({"doc_id": 0, "rd_acc": {}}) + "\n")
    with pytest.raises(ValueError, match=rf"{samples}:1: no 'rd_seen' item"):
        read_seen(samples)


@pytest.fixture(scope="module")
def toy_organism(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("organism") / "toy"
    train(replace(TOY, steps=1), folder, progress=False, log=quiet)
    return folder


def test_an_organism_folder_is_checked(toy_organism: Path, tmp_path: Path) -> None:
    assert check_organism(toy_organism) == toy_organism.absolute()
    with pytest.raises(DemoError, match="no config.json"):
        check_organism(tmp_path)
    plain = tmp_path / "plain"
    plain.mkdir()
    (plain / "config.json").write_text((toy_organism / "config.json").read_text())
    with pytest.raises(DemoError, match=f"is not a trained organism \\(no {CARD_FILE} there\\)"):
        check_organism(plain)
    card = json.loads((toy_organism / CARD_FILE).read_text())
    (plain / CARD_FILE).write_text(json.dumps({"steps": 1}))
    with pytest.raises(DemoError, match="no 'spec' with 'seed' and 'kinds'"):
        check_organism(plain)
    (plain / CARD_FILE).write_text(json.dumps({**card, "spec": {**card["spec"], "seed": 3}}))
    with pytest.raises(DemoError, match="trained on the split of seed 3.*train with --seed 0"):
        check_organism(plain)


def test_demo_config_refuses_what_cannot_run(tmp_path: Path) -> None:
    with pytest.raises(DemoError, match="'big' unknown; valid: organism, random, pretrained"):
        DemoConfig(out_dir=tmp_path, model="big")
    with pytest.raises(DemoError, match="needs a checkpoint folder"):
        DemoConfig(out_dir=tmp_path, model="pretrained")
    with pytest.raises(DemoError, match="takes no checkpoint folder"):
        DemoConfig(out_dir=tmp_path, model="random", checkpoint=tmp_path)


def test_the_demo_s_model_flags_exclude_each_other(tmp_path: Path) -> None:
    result = run([sys.executable, "-m", "rd_eval", "demo", "--random", "--organism", str(tmp_path)], tmp_path)
    assert result.returncode == 2 and "not allowed with argument" in result.stderr, result.stderr
    missing = tmp_path / "nothing"
    result = run([sys.executable, "-m", "rd_eval", "demo", "--organism", str(missing), "--out", str(tmp_path / "o")],
                 tmp_path)
    assert result.returncode == 2 and str(missing) in result.stderr and "Traceback" not in result.stderr


def test_the_organism_demo_end_to_end(toy_organism: Path, tmp_path: Path) -> None:
    out = tmp_path / "demo"
    result = run([sys.executable, "-m", "rd_eval", "demo", "--organism", str(toy_organism), "--out", str(out),
                  "--limit", "4"], tmp_path)
    assert result.returncode == 0, (result.stdout + result.stderr)[-3000:]
    assert f"using the model organism {toy_organism}" in result.stdout
    table = json.loads((out / "rd_organism_table.json").read_text())
    assert [row["setting"] for row in table["summary"]] == ["plain", "soft", "random"]
    assert all(row["n_pairs"] == 4 for row in table["summary"])
    assert table["perception"]["n"] == 4 and 0.0 <= table["perception"]["seen"] <= 100.0
    assert table["random_control"]["rows"][0]["effect"]["n_pairs"] == 4
    hashes = table["demo"]["intervention_hashes"]
    assert set(hashes) == {"soft", "random"} and hashes["soft"] != hashes["random"]
    spec = json.loads((out / "experts" / "intervention_random.json").read_text())
    assert spec["mode"] == "random" and spec["seed"] == 0
    assert "| plain | 4 |" in result.stdout and "| random | 4 |" in result.stdout
    for name in ("rd_organism_table.md", "report.md", "report.html", "logs/lmms_eval_random.log"):
        assert (out / name).is_file() and str(out / name) in result.stdout, name
    # rd-eval's report of the three runs: the plain setting's per-layer image/text routing divergence.
    report = (out / "report.md").read_text()
    assert "rd_organism" in report and report.count("compared with") == 2
    # Its perception check (plain setting only: the intervened runs ran no _see task) has the demo table's figures.
    seen, attribution = table["perception"], table["perception"]["attribution"]
    assert report.count("### Perception check") == 1
    assert (f"| rd_organism | {seen['seen']:.1f}% | {seen['n']} | {seen['errors']} | {attribution['img_failures']} "
            f"| {attribution['perception_errors']} | {attribution['reasoning_errors']} |") in report
    assert "data:image/png;base64," in (out / "report.html").read_text()
    # The table and the report draw the same resamples: each setting's gap, gain and text cost read the same in both.
    rows = [line.split("|")[1:-1] for line in (out / "rd_organism_table.md").read_text().splitlines()
            if line.startswith(("| soft |", "| random |"))]
    assert len(rows) == 2
    for cells in rows:
        gap, gain, text_cost = (cell.strip() for cell in cells[5:8])
        assert f"| {gap} |" in report and f"| {gain} |" in report and f"| {text_cost} |" in report, cells
    (plain_results,) = (out / "runs" / "plain").rglob("*_results.json")
    assert set(json.loads(plain_results.read_text())["results"]) >= {"rd_organism_img", "rd_organism_txt",
                                                                      "rd_organism_see"}


def test_the_demo_runs_the_shipped_organism_by_default(tmp_path: Path) -> None:
    from rd_eval.commands.demo import demo_model, shipped_organism_dir
    from rd_eval.organism.benchmark import heldout_problems
    from rd_eval.organism.prompts import user_text

    said: list[str] = []
    model = demo_model(DemoConfig(out_dir=tmp_path), tmp_path, said.append)
    assert model.checkpoint == shipped_organism_dir() and said == [f"[1/5] using the shipped model organism "
                                                                     f"{shipped_organism_dir()}"]
    assert (model.model_id, model.benchmark, model.see_task, model.controls, model.batch_size) == (
        "rd_qwen3_vl_moe", "rd_organism", "rd_organism_see", True, 64)
    assert model.model_args.endswith(",min_pixels=4096,max_pixels=65536")
    # Domain probes: the organism's text form of validation problems, never an evaluated (held-out) one.
    assert len(model.domain_probe) == 20
    assert not set(model.domain_probe) & {user_text(p, "txt") for p in heldout_problems()}
