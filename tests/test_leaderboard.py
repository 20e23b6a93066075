"""`rd-eval leaderboard` on small synthetic lmms-eval run folders (no model loading)."""

from __future__ import annotations

import base64
import csv
import io
import json
import math
from pathlib import Path

import pytest
from test_runs import results_json, sample_line

from rd_eval.commands.main import main
from rd_eval.rendering.leaderboard_html import Cell, Column, leaderboard_page
from rd_eval.reports.leaderboard import (
    HTML_COLUMNS,
    LeaderboardInputError,
    build_leaderboard,
    html_rows,
    output_paths,
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
    assert "http://" not in page.lower() and "https://" not in page.lower() and "src=\"//" not in page


def test_cli_formats_and_exit_codes(runs: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["leaderboard", str(runs)]) == 0
    assert "n/a (2 of 6)" in capsys.readouterr().out
    assert main(["leaderboard", str(runs), "--format", "csv"]) == 0
    assert capsys.readouterr().out == to_csv(build_leaderboard([runs]))
    assert main(["leaderboard", str(runs), "--format", "csv", "--out", str(tmp_path / "csv")]) == 0
    assert sorted(p.name for p in (tmp_path / "csv").iterdir()) == ["leaderboard.csv", "plots"]
    assert (tmp_path / "csv" / "leaderboard.csv").read_text(encoding="utf-8").startswith("model,checkpoint,setting,")
    capsys.readouterr()
    # --out DIR without --format: all three, and the chart, as `report --out DIR` writes its own plots.
    assert main(["leaderboard", str(runs), "--out", str(tmp_path / "all")]) == 0
    board = build_leaderboard([runs])
    written = [Path(line.removeprefix("Written: ")) for line in capsys.readouterr().out.splitlines()]
    assert written == [tmp_path / "all" / f"leaderboard.{fmt}" for fmt in ("md", "csv", "html")] + [
        tmp_path / "all" / "plots" / "leaderboard_gap_per_setting.png"]
    assert written[0].read_text(encoding="utf-8") == to_markdown(board)
    assert written[1].read_text(encoding="utf-8") == to_csv(board)
    page = written[2].read_text(encoding="utf-8")
    assert page == to_html(board, page.split('src="data:image/png;base64,')[1].split('"')[0])
    assert written[3].read_bytes() == base64.b64decode(page.split('src="data:image/png;base64,')[1].split('"')[0])
    assert main(["leaderboard", str(tmp_path / "nowhere")]) == 2
    err = capsys.readouterr().err
    assert "nowhere" in err and "Traceback" not in err


def test_html_without_out_goes_to_the_current_folder(runs: Path, tmp_path: Path,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    assert main(["leaderboard", str(runs), "--format", "html"]) == 0
    assert sorted(str(p.relative_to(tmp_path)) for p in tmp_path.rglob("*") if p.is_file()) == [
        "leaderboard.html", "plots/leaderboard_gap_per_setting.png"]


@pytest.mark.parametrize("name", ["lb.html", "board.MD", "x.csv"])
def test_out_naming_a_file_as_before_is_refused(runs: Path, tmp_path: Path, name: str,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    """`--out lb.html` wrote that file before --out became a folder; now it says what to give instead."""
    assert main(["leaderboard", str(runs), "--out", str(tmp_path / name)]) == 2
    err = capsys.readouterr().err
    assert f"--out {str(tmp_path / name)!r} names a file, but --out is a folder" in err
    assert "DIR/leaderboard.<md|csv|html>" in err and "Traceback" not in err
    assert not list(tmp_path.iterdir())
    (tmp_path / name).mkdir()  # a folder that happens to be named so is a folder
    assert main(["leaderboard", str(runs), "--format", "md", "--out", str(tmp_path / name)]) == 0
    assert (tmp_path / name / "leaderboard.md").is_file()


def test_output_paths_rejects_unknown_formats(tmp_path: Path) -> None:
    with pytest.raises(LeaderboardInputError, match=r"formats \['pdf'\] invalid; valid: one or more of md, csv"):
        output_paths(tmp_path, ["pdf"])
    with pytest.raises(LeaderboardInputError, match="one or more"):
        output_paths(tmp_path, [])


def test_html_rows(runs: Path) -> None:
    """The page's table: a row per setting and benchmark it has, then its mean over the six (n/a where partial)."""
    board = build_leaderboard([runs])
    rows = [[c.text for c in row] for row in html_rows(board)]
    assert [c.name for c in HTML_COLUMNS] == ["model", "checkpoint", "setting", "benchmark", "pairs", "img", "txt",
                                              "gap", "gain"]
    assert len(rows) == 2 * (6 + 1) + 2 * (2 + 1)
    assert rows[0] == ["rd_a", "org__ckpt-a", "plain", "rd_mathvista", "10", "40.0", "70.0", "30.0", ""]
    assert rows[6] == ["rd_a", "org__ckpt-a", "plain", "six", "60", "40.0", "70.0", "30.0", ""]
    assert rows[7][3:] == ["rd_mathvista", "10", "60.0", "70.0", "10.0", "20.0"]
    assert rows[-1][3:] == ["six", "20"] + ["n/a (2 of 6)"] * 4
    assert [r[3] for r in rows[-3:]] == ["rd_mathvista", "rd_wemath", "six"]
    values = [[c.value for c in row] for row in html_rows(board)]
    assert values[0][4:] == [10, 40.0, 70.0, 30.0, None] and values[-1][4:] == [20, None, None, None, None]
    # The intervened setting's spec is not readable here: named so, its hash beside, never the hash alone.
    assert rows[7][2].startswith("intervention spec not readable here (") and rows[7][2] != board.rows[1].intervention


def test_html_rows_of_none_of_the_six(tmp_path: Path) -> None:
    """A setting on none of the six benchmarks (the demo's rd_demo) gets no 'six' row of n/a."""
    write_run(tmp_path, "20250101_120000", paired(("rd_demo",), 3, 8), model="rd_a", model_args="pretrained=o/c")
    rows = [[c.text for c in row] for row in html_rows(build_leaderboard([tmp_path]))]
    assert rows == [["rd_a", "o__c", "plain", "rd_demo", "10", "30.0", "80.0", "50.0", ""]]


def test_page_table_rejects_misshapen_rows() -> None:
    columns = [Column("model", filterable=True), Column("gap", numeric=True)]
    with pytest.raises(ValueError, match=r"row 1 has 1 cells for 2 columns \(model, gap\)"):
        leaderboard_page(title="t", note="n", columns=columns, rows=[[Cell("a"), Cell("1", 1.0)], [Cell("b")]])
    with pytest.raises(ValueError, match="at least one column"):
        leaderboard_page(title="t", note="n", columns=[], rows=[])
    page = leaderboard_page(title="t", note="n", columns=columns, rows=[[Cell("a"), Cell("nan", math.nan)]])
    assert '<td class="num" data-value="">nan</td>' in page  # a non-finite number sorts as missing


def test_no_complete_pairs(tmp_path: Path) -> None:
    write_run(tmp_path, "20250101_120000", {"rd_x_img": outcomes(3)}, model="rd_a", model_args="pretrained=o/c")
    with pytest.raises(LeaderboardInputError, match="no complete pairs"):
        build_leaderboard([tmp_path])
