"""`rd-eval check` (CI gate) and its baseline JSON on small synthetic runs."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from test_leaderboard import outcomes, write_run

from rd_eval.commands.main import main
from rd_eval.reports.check import BASELINE_FORMAT, CheckInputError, baseline_from_run, check_run, load_baseline

ARGS = "pretrained=org/ckpt-a"


def run(root: Path, img: int, txt: int, n: int = 40, tasks: tuple[str, ...] = ("rd_x_img", "rd_x_txt")) -> Path:
    samples = {t: outcomes(img if t.endswith("_img") else txt, n) for t in tasks}
    write_run(root, "20250101_120000", samples, model="rd_a", model_args=ARGS)
    return root


@pytest.fixture
def baseline(tmp_path: Path) -> Path:
    path = tmp_path / "baselines" / "rd_a.json"
    assert main(["check", str(run(tmp_path / "base", 30, 35)), "--write-baseline", str(path)]) == 0
    return path


def test_write_baseline_round_trip(baseline: Path, tmp_path: Path) -> None:
    data = load_baseline(baseline)
    assert data["format"] == BASELINE_FORMAT and data["version"] == 1
    assert data["model"] == "rd_a" and data["model_args"] == ARGS
    assert data["tasks"]["rd_x_img"]["accuracy"] == 75.0 and data["tasks"]["rd_x_img"]["n"] == 40
    assert data["tasks"]["rd_x_txt"]["docs"]["p00"] == {"doc_id": 0, "correct": 1}
    assert data == json.loads(json.dumps(baseline_from_run(tmp_path / "base")))


def test_equal_run_passes(baseline: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["check", str(run(tmp_path / "same", 30, 35)), "--baseline", str(baseline)]) == 0
    assert "PASS" in capsys.readouterr().out


def test_large_significant_drop_fails(baseline: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["check", str(run(tmp_path / "worse", 10, 35)), "--baseline", str(baseline)]) == 1
    out = capsys.readouterr().out
    assert "FAIL" in out and "| kind | name | baseline | run |" in out
    assert "| task | rd_x_img | 75.0 | 25.0 | -50.0 | 40 |" in out
    assert "| gap | rd_x | 12.5 | 62.5 | +50.0 | 40 |" in out


def test_drop_within_tolerance_passes(baseline: Path, tmp_path: Path) -> None:
    # 30 -> 29 of 40 is 2.5 points: within --max-drop 3.
    result = check_run(run(tmp_path / "bit", 29, 35), baseline, max_drop=3.0)
    assert result.ok and not any(c.beyond_tolerance for c in result.comparisons if c.kind == "task")


def test_drop_beyond_tolerance_but_not_significant_passes(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "small.json"
    assert main(["check", str(run(tmp_path / "base", 3, 4, n=5)), "--write-baseline", str(path)]) == 0
    # 3 -> 2 of 5 right is a 20-point drop, but one discordant item: McNemar p = 1.
    assert main(["check", str(run(tmp_path / "new", 2, 4, n=5)), "--baseline", str(path)]) == 0
    out = capsys.readouterr().out
    assert "PASS" in out and "not significant" in out


def test_baseline_without_docs_uses_tolerance_only(baseline: Path, tmp_path: Path) -> None:
    data = json.loads(baseline.read_text(encoding="utf-8"))
    for entry in data["tasks"].values():
        del entry["docs"]
    bare = tmp_path / "bare.json"
    bare.write_text(json.dumps(data), encoding="utf-8")
    result = check_run(run(tmp_path / "new", 29, 35), bare)
    assert [c.name for c in result.regressions] == ["rd_x_img", "rd_x"]  # the gap widened too
    assert any("no per-doc data" in n for n in result.notes)


def test_mismatched_tasks_exit_2(baseline: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    other = run(tmp_path / "other", 30, 35, tasks=("rd_x_img", "rd_x_txt", "rd_y_img"))
    assert main(["check", str(other), "--baseline", str(baseline)]) == 2
    err = capsys.readouterr().err
    assert "rd_y_img" in err and len(err.strip().splitlines()) == 1


@pytest.mark.parametrize(
    ("content", "match"),
    [
        (None, "file not found"),
        ("{not json", "not valid JSON"),
        (json.dumps({"format": "other", "version": 1}), "'format'"),
        (json.dumps({"format": BASELINE_FORMAT, "version": 2, "model": "m", "model_args": "", "tasks": {}}),
         "'version'"),
        (json.dumps({"format": BASELINE_FORMAT, "version": 1, "model": "m", "model_args": "",
                     "tasks": {"rd_x_img": {"accuracy": 120, "n": 3}}}), "accuracy"),
    ],
)
def test_bad_baseline_exit_2(content: str | None, match: str, tmp_path: Path,
                             capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "b.json"
    if content is not None:
        path.write_text(content, encoding="utf-8")
    assert main(["check", str(run(tmp_path / "r", 3, 4, n=5)), "--baseline", str(path)]) == 2
    err = capsys.readouterr().err
    assert match in err and str(path) in err and "Traceback" not in err


def test_missing_run_exit_2(baseline: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["check", str(tmp_path / "none"), "--baseline", str(baseline)]) == 2
    assert "none" in capsys.readouterr().err
    with pytest.raises(CheckInputError, match="--max-drop -1 invalid"):
        check_run(tmp_path / "none", baseline, max_drop=-1)
