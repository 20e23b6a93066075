"""`rd-eval leaderboard` on small synthetic lmms-eval run folders (no model loading)."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import pytest
from test_runs import results_json, sample_line

from rd_eval.commands.main import main
from rd_eval.reports.leaderboard import (
    LeaderboardInputError,
    build_leaderboard,
    to_csv,
    to_frame,
    to_html,
    to_markdown,
)
from rd_eval.vocabulary.task_names import SIX_BENCHMARKS

N = 10


def write_run(out: Path, date_id: str, samples: dict[str, list[int]], *, model: str, model_args: str) -> Path:
    """One lmms-eval run: per task a list of 0/1 outcomes for pair_ids p00, p01, ... (doc_id = index)."""
    folder = out / "model"
    folder.mkdir(parents=True, exist_ok=True)
    results = folder / f"{date_id}_results.json"
    results.write_text(json.dumps(results_json(list(samples), model=model, model_args=model_args)), encoding="utf-8")
    for task, outcomes in samples.items():
        form = "img" if task.endswith("_img") else "txt"
        lines = [sample_line(i, f"p{i:02d}", form, ok, "1", "1") for i, ok in enumerate(outcomes)]
        (folder / f"{date_id}_samples_{task}.jsonl").write_text("".join(lines), encoding="utf-8")
    return results


def outcomes(k: int, n: int = N) -> list[int]:
    """k right answers out of n."""
    return [1] * k + [0] * (n - k)


def paired(benchmarks: tuple[str, ...], img: int, txt: int) -> dict[str, list[int]]:
    out: dict[str, list[int]] = {}
    for b in benchmarks:
        out[f"{b}_img"] = outcomes(img)
        out[f"{b}_txt"] = outcomes(txt)
    return out


PARTIAL = ("rd_mathvista", "rd_wemath")


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """model A on all six benchmarks (plain 40/70, intervened 60/70); model B on two (plain 20/50, intervened 30/40)."""
    root = tmp_path_factory.mktemp("lb")
    write_run(root / "a_plain", "20250101_120000", paired(SIX_BENCHMARKS, 4, 7), model="rd_a",
              model_args="pretrained=org/ckpt-a")
    write_run(root / "a_soft", "20250101_130000", paired(SIX_BENCHMARKS, 6, 7), model="rd_a",
              model_args="pretrained=org/ckpt-a,intervention=/nonexistent/spec.json")
    write_run(root / "b_plain", "20250101_140000", paired(PARTIAL, 2, 5), model="rd_b",
              model_args="pretrained=org/ckpt-b")
    write_run(root / "b_soft", "20250101_150000", paired(PARTIAL, 3, 4), model="rd_b",
              model_args="pretrained=org/ckpt-b,intervention=/nonexistent/spec.json")
    return root


def test_rows_and_columns(runs: Path) -> None:
    board = build_leaderboard([runs])
    frame = to_frame(board)
    assert list(frame["model"]) == ["rd_a", "rd_a", "rd_b", "rd_b"]
    assert list(frame["setting"])[0::2] == ["plain", "plain"]
    assert all(s != "plain" for s in list(frame["setting"])[1::2])
    assert board.benchmarks == SIX_BENCHMARKS
    for b in SIX_BENCHMARKS:
        expected = [f"{b} {m}" for m in ("img", "txt", "gap", "gain")]
        assert expected == [c for c in frame.columns if c.startswith(b + " ")]
    a_plain, a_soft, b_plain, b_soft = (frame.iloc[i] for i in range(4))
    assert (a_plain["rd_dynamath img"], a_plain["rd_dynamath txt"], a_plain["rd_dynamath gap"]) == ("40.0", "70.0",
                                                                                                      "30.0")
    assert a_plain["rd_dynamath gain"] == ""
    assert a_soft["rd_dynamath gain"] == "20.0"
    assert (a_plain["six gap"], a_soft["six gap"], a_soft["six gain"]) == ("30.0", "10.0", "20.0")
    assert a_plain["six gain"] == ""
    # Partial model: only two of the six; the missing benchmarks are empty.
    assert b_plain["six gap"] == "n/a (2 of 6)"
    assert b_soft["rd_wemath gain"] == "10.0" and b_soft["rd_wemath gap"] == "10.0"
    assert b_plain["rd_dynamath img"] == ""


def test_renderers(runs: Path) -> None:
    board = build_leaderboard([runs])
    md = to_markdown(board)
    assert "| model | checkpoint | setting | rd_mathvista img |" in md
    assert "n/a (2 of 6)" in md
    rows = list(csv.DictReader(io.StringIO(to_csv(board))))
    assert len(rows) == 4 and rows[1]["six gain"] == "20.0"
    page = to_html(board)
    assert "data:image/png;base64," in page and "<table" in page
    assert "http" not in page.lower() and "src=\"//" not in page


def test_cli_formats_and_exit_codes(runs: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["leaderboard", str(runs)]) == 0
    assert "n/a (2 of 6)" in capsys.readouterr().out
    assert main(["leaderboard", str(runs), "--format", "csv", "--out", str(tmp_path / "lb.csv")]) == 0
    assert (tmp_path / "lb.csv").read_text(encoding="utf-8").startswith("model,checkpoint,setting,")
    assert main(["leaderboard", str(runs), "--format", "html", "--out", str(tmp_path / "lb.html")]) == 0
    assert "data:image/png;base64" in (tmp_path / "lb.html").read_text(encoding="utf-8")
    capsys.readouterr()
    assert main(["leaderboard", str(tmp_path / "nowhere")]) == 2
    err = capsys.readouterr().err
    assert "nowhere" in err and "Traceback" not in err


def test_no_complete_pairs(tmp_path: Path) -> None:
    write_run(tmp_path, "20250101_120000", {"rd_x_img": outcomes(3)}, model="rd_a", model_args="pretrained=o/c")
    with pytest.raises(LeaderboardInputError, match="no complete pairs"):
        build_leaderboard([tmp_path])
