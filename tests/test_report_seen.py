"""`rd-eval report`'s perception check: a setting's `_see` runs give per benchmark the seen share (percent of judged
images, n, errors) and the attribution of that setting's image-form failures, in markdown, csv, json and html."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from test_runs import write_run

from rd_eval.analysis.perception_summary import benchmark_perception, read_seen
from rd_eval.commands.main import main
from rd_eval.rendering.report_tables import CSV_COLUMNS, SEEN_COLUMNS
from rd_eval.reports.catalogue import open_catalogue
from rd_eval.reports.report import ReportInputError, build_report, to_csv, to_html, to_json, to_markdown
from rd_eval.routing.spec import ExpertSet, InterventionSpec, LayerExperts

CKPT = "/ckpts/acme/rd-tiny-A1B"
CKPT_DIR = "acme__rd-tiny-A1B"
MODEL_ID = "rd_qwen3_vl_moe"
N_BOOT = 200
Seen = dict[str, int | None]

# Hand count, plain setting (rd_syn, pairs p0-p5; the perception task also judged p6, a document with no pair):
#   image right  p0 . . . . p5        failures p1 p2 p3 p4
#   text right   p0 p1 . p3 p4 p5
#   seen         p0 p1 . ? p4 . p6    (p2, p5 not seen; p3 an error document)
# seen = 4 of 6 judged (66.7%), 1 error; failures 4 = not seen 1 (p2) + seen 2 (p1, p4) + unattributed 1 (p3);
# seen, right as text, wrong as image: p1, p4.
PLAIN_IMG = [1, 0, 0, 0, 0, 1]
PLAIN_TXT = [1, 1, 0, 1, 1, 1]
PLAIN_SEEN: Seen = {"p0": 1, "p1": 1, "p2": 0, "p3": None, "p4": 1, "p5": 0, "p6": 1}
# The soft setting's own perception run: 5 of 6 seen; failures p2 (not seen) and p4 (seen, right as text).
SOFT_IMG = [1, 1, 0, 1, 0, 1]
SOFT_TXT = [1, 1, 0, 1, 1, 1]
SOFT_SEEN: Seen = {"p0": 1, "p1": 1, "p2": 0, "p3": 1, "p4": 1, "p5": 1}


def seen_lines(seen: Seen) -> str:
    """A perception task's samples file: one rd_seen item per document, as the _see tasks log them."""
    return "".join(json.dumps({"doc_id": i, "target": "x", "rd_seen": {
        "pair_id": pair_id, "seen": flag, "similarity": None if flag is None else 0.5 + 0.5 * flag,
        "missing_numbers": None if flag is None else [], "threshold": 0.9,
        "error": "no image" if flag is None else None}}) + "\n" for i, (pair_id, flag) in enumerate(seen.items()))


def write_setting(out: Path, date_id: str, model_args: str, pairs: dict[str, tuple[list[int], list[int]]],
                  see: dict[str, str]) -> Path:
    """One lmms-eval run: the paired tasks of each benchmark in `pairs` (image, text outcomes of p0, p1, ...) and
    a perception task per benchmark in `see` (its samples file's text); the results json names every task."""
    samples = {}
    for bench, (img, txt) in pairs.items():
        samples[f"{bench}_img"] = [(f"p{i}", c, "1", "1") for i, c in enumerate(img)]
        samples[f"{bench}_txt"] = [(f"p{i}", c, "1", "1") for i, c in enumerate(txt)]
    results = write_run(out, date_id, samples, model_dir=CKPT_DIR, model_args=model_args, model=MODEL_ID)
    data = json.loads(results.read_text())
    for bench, text in see.items():
        task = f"{bench}_see"
        (results.parent / f"{date_id}_samples_{task}.jsonl").write_text(text)
        data["results"][task] = {"alias": task, "rd_seen,none": 0.5}
        data["configs"][task] = {"task": task, "output_type": "generate_until"}
    results.write_text(json.dumps(data))
    return results


def soft_args(root: Path) -> str:
    spec_path = root / "experts" / "soft.json"
    experts = ExpertSet(model=CKPT, kind="domain", layers=(LayerExperts(1, (0, 1)),))
    InterventionSpec(experts=experts, strength=1.0).save(spec_path)
    return f"pretrained={CKPT},intervention={spec_path}"


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A plain run (rd_syn with its perception task, rd_other without one) and a soft run with its own."""
    root = tmp_path_factory.mktemp("seen")
    write_setting(root / "runs" / "plain", "20250101_120000", f"pretrained={CKPT}",
                  {"rd_syn": (PLAIN_IMG, PLAIN_TXT), "rd_other": ([1, 0, 1], [1, 1, 1])},
                  {"rd_syn": seen_lines(PLAIN_SEEN)})
    write_setting(root / "runs" / "soft", "20250101_130000", soft_args(root),
                  {"rd_syn": (SOFT_IMG, SOFT_TXT), "rd_other": ([1, 1, 1], [1, 1, 1])},
                  {"rd_syn": seen_lines(SOFT_SEEN)})
    return root / "runs"


@pytest.fixture(scope="module")
def report(runs: Path) -> dict[str, Any]:
    return build_report([runs], n_boot=N_BOOT)


def test_seen_and_attribution_match_the_hand_count(report: dict[str, Any], runs: Path) -> None:
    plain, soft = report["settings"]
    assert (plain["role"], soft["role"]) == ("base", "intervened")
    (entry,) = plain["perception"]  # rd_other ran no perception task: no entry for it
    assert entry["benchmark"] == "rd_syn" and (entry["n"], entry["errors"]) == (6, 1)
    assert entry["seen"] == pytest.approx(400 / 6)
    assert entry["files"] == [str(runs / "plain" / CKPT_DIR / "20250101_120000_samples_rd_syn_see.jsonl")]
    assert entry["attribution"] == {
        "n_pairs": 6, "img_correct": 2, "img_failures": 4, "perception_errors": 1, "reasoning_errors": 2,
        "unattributed": 1, "reasoning_share": pytest.approx(2 / 3), "perception_share": pytest.approx(1 / 3),
        "seeing_not_thinking": 2}
    # The intervened setting shows its own perception run, never the plain run's.
    (own,) = soft["perception"]
    assert (own["n"], own["errors"], own["seen"]) == (6, 0, pytest.approx(500 / 6))
    a = own["attribution"]
    assert (a["img_failures"], a["perception_errors"], a["reasoning_errors"], a["seeing_not_thinking"]) == (2, 1, 1, 1)


def test_markdown_and_html_show_a_perception_table_per_setting(report: dict[str, Any]) -> None:
    md = to_markdown(report)
    assert md.count("### Perception check") == 2
    assert "| rd_syn | 66.7% | 6 | 1 | 4 | 1 | 2 | 1 | 2 |" in md
    assert "| rd_syn | 83.3% | 6 | 0 | 2 | 1 | 1 | 0 | 1 |" in md
    assert "| rd_other | 66.7%" not in md and not any(line.startswith("| rd_other |") and "%" in line
                                                        for line in md.splitlines())
    # The gap table keeps its columns; the perception table follows it, before the next setting's gaps.
    plain_part = md[md.index("## Gaps: acme__rd-tiny-A1B [plain]"):md.index("## Gaps: acme__rd-tiny-A1B [soft")]
    assert "| benchmark | run | n pairs | unpaired (img-only / txt-only) | acc_img | acc_txt " in plain_part
    assert plain_part.index("| benchmark | run |") < plain_part.index("### Perception check")
    page = to_html(report, figures=[])
    assert page.count("<h3>Perception check</h3>") == 2
    assert '<td style="text-align:right">66.7%</td>' in page and '<td style="text-align:right">83.3%</td>' in page


def test_csv_and_json_carry_the_figures(report: dict[str, Any]) -> None:
    text = to_csv(report)
    assert text.splitlines()[0].split(",") == list(CSV_COLUMNS + SEEN_COLUMNS)
    rows = {(r["role"], r["benchmark"]): r for r in csv.DictReader(io.StringIO(text))}
    plain = rows[("base", "rd_syn")]
    assert float(plain["seen"]) == pytest.approx(400 / 6)
    assert [plain[k] for k in SEEN_COLUMNS[1:]] == ["6", "1", "4", "1", "2", "1", "2"]
    assert rows[("intervened", "rd_syn")]["seen_n"] == "6" and rows[("intervened", "rd_syn")]["img_failures"] == "2"
    assert all(rows[(role, "rd_other")][k] == "" for role in ("base", "intervened") for k in SEEN_COLUMNS)
    again = json.loads(to_json(report))
    assert again == report and again["settings"][0]["perception"][0]["attribution"]["perception_errors"] == 1


def test_a_report_without_perception_tasks_adds_nothing(tmp_path: Path) -> None:
    write_setting(tmp_path, "20250101_120000", f"pretrained={CKPT}", {"rd_syn": (PLAIN_IMG, PLAIN_TXT)}, {})
    report = build_report([tmp_path], n_boot=N_BOOT)
    assert report["settings"][0]["perception"] == []
    assert "Perception check" not in to_markdown(report)
    assert to_csv(report).splitlines()[0].split(",") == list(CSV_COLUMNS)


def test_several_perception_runs_of_a_setting_are_read_like_its_paired_runs(tmp_path: Path) -> None:
    """A later run of the setting that ran only the perception task: its flags win where it judged again."""
    first = write_setting(tmp_path, "20250101_120000", f"pretrained={CKPT}", {"rd_syn": (PLAIN_IMG, PLAIN_TXT)},
                          {"rd_syn": seen_lines(PLAIN_SEEN)})
    second = write_setting(tmp_path, "20250102_120000", f"pretrained={CKPT}", {}, {"rd_syn": seen_lines({"p2": 1})})
    catalogue = open_catalogue([tmp_path])
    (setting,) = catalogue.settings
    files = catalogue.perception_files(setting)
    assert files == {"rd_syn": (first.parent / "20250101_120000_samples_rd_syn_see.jsonl",
                                second.parent / "20250102_120000_samples_rd_syn_see.jsonl")}
    (entry,) = build_report([tmp_path], n_boot=N_BOOT)["settings"][0]["perception"]
    # p2 is now seen: 5 of 6 judged; its image failure moves from perception to reasoning (text wrong: not SNT).
    assert (entry["n"], entry["seen"]) == (6, pytest.approx(500 / 6)) and len(entry["files"]) == 2
    a = entry["attribution"]
    assert (a["perception_errors"], a["reasoning_errors"], a["seeing_not_thinking"]) == (0, 3, 2)


@pytest.mark.parametrize(("text", "match"), [
    (json.dumps({"doc_id": 0, "rd_acc": {"pair_id": "p0"}}) + "\n", r":1: no 'rd_seen' item with pair_id and seen"),
    (seen_lines({"p0": 1}) + json.dumps({"doc_id": 1, "rd_seen": {"pair_id": "p1"}}) + "\n",
     r":2: no 'rd_seen' item with pair_id and seen"),
    (seen_lines({"p0": 1}) + "{not json\n", r":2: corrupt JSON line"),
    (seen_lines({"p0": 2}), r":1: 'rd_seen.seen' must be 1, 0 or null \(an error document\), got 2"),
    ("\n", r": no 'rd_seen' items \(an empty perception samples file\)"),
    (seen_lines({"q0": 1, "q1": 0}), r": none of its 2 'rd_seen' pair_ids is among the 6 image-form samples of rd_syn"),
])
def test_a_bad_perception_file_is_an_error_naming_it(tmp_path: Path, text: str, match: str) -> None:
    results = write_setting(tmp_path, "20250101_120000", f"pretrained={CKPT}", {"rd_syn": (PLAIN_IMG, PLAIN_TXT)},
                            {"rd_syn": text})
    path = results.parent / "20250101_120000_samples_rd_syn_see.jsonl"
    with pytest.raises(ReportInputError, match=rf"perception task rd_syn_see: {path}{match}"):
        build_report([tmp_path], n_boot=N_BOOT)


def test_a_perception_task_without_its_benchmark_s_pairs_is_an_error(tmp_path: Path,
                                                                    capsys: pytest.CaptureFixture[str]) -> None:
    results = write_setting(tmp_path, "20250101_120000", f"pretrained={CKPT}", {"rd_syn": (PLAIN_IMG, PLAIN_TXT)},
                            {"rd_other": seen_lines(PLAIN_SEEN)})
    path = results.parent / "20250101_120000_samples_rd_other_see.jsonl"
    assert main(["report", str(tmp_path), "--n-boot", str(N_BOOT)]) == 2
    err = capsys.readouterr().err
    assert f"{path}: none of its 7 'rd_seen' pair_ids is among the 0 image-form samples of rd_other" in err


def test_the_library_functions_refuse_what_they_cannot_read(tmp_path: Path) -> None:
    frame = pd.DataFrame({"task": ["rd_syn_img"], "form": ["img"], "pair_id": ["p0"], "doc_id": [0],
                          "correct": pd.array([1], dtype="Int64")})
    with pytest.raises(ValueError, match="rd_syn: no perception samples files given"):
        benchmark_perception(frame, "rd_syn", [])
    path = tmp_path / "s.jsonl"
    path.write_text(json.dumps(["a list"]) + "\n")
    with pytest.raises(ValueError, match=rf"{path}:1: expected a JSON object, got list"):
        read_seen(path)
    path.write_text(json.dumps({"doc_id": 0}) + "\n")
    with pytest.raises(ValueError, match=rf"{path}:1: no 'rd_seen' item"):
        read_seen(path)
    with pytest.raises(ValueError, match=r"samples file not found: .*missing\.jsonl \(perception task\)"):
        read_seen(tmp_path / "missing.jsonl")
    path.write_text(seen_lines({"p0": True, "p1": 0.0, "p2": None}))
    assert read_seen(path) == {"p0": 1, "p1": 0, "p2": None}
