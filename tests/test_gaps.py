from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
from scipy.stats import binomtest

from rd_eval.analysis.gaps import PairingReport, compare_runs, pair_forms
from rd_eval.lmms.runs import find_runs, load_paired_samples
from rd_eval.rendering.gaps_markdown import gaps_markdown as to_markdown
from rd_eval.vocabulary.task_names import benchmark_of

ERR = None  # an outcome of None in the dicts below marks a doc the model could not run (an error row)


def frame(
    task_prefix: str, img: dict[str, int | None], txt: dict[str, int | None], model: str = "m"
) -> pd.DataFrame:
    """A load_paired_samples-like frame; outcome None gives an error row (correct <NA>, error reason)."""
    rows = [
        {"task": f"{task_prefix}_{form}", "form": form, "pair_id": pid, "doc_id": i,
         "correct": pd.NA if ok is None else ok, "pred": None, "answer": "A",
         "error": "image unreadable" if ok is None else None, "model": model, "model_args": "pretrained=m"}
        for form, outcomes in (("img", img), ("txt", txt))
        for i, (pid, ok) in enumerate(outcomes.items())
    ]  # fmt: skip
    df = pd.DataFrame(rows)
    df["correct"] = df["correct"].astype("Int64")
    return df


# Hand-computed example (see test_compare_runs_hand_example for the arithmetic).
BASE_IMG = {"p1": 1, "p2": 0, "p3": 0, "p4": 1, "p5": 0, "p6": 0, "p7": 1}
BASE_TXT = {"p1": 1, "p2": 1, "p3": 1, "p4": 1, "p5": 0, "p6": 1, "p8": 1}
INT_IMG = {"p1": 1, "p2": 1, "p3": 1, "p4": 0, "p5": 0, "p6": 1, "p9": 1}
INT_TXT = {"p1": 1, "p2": 1, "p3": 0, "p4": 1, "p5": 0, "p9": 0}
FLAT = {"q1": 1, "q2": 0, "q3": 1}


def base_frame() -> pd.DataFrame:
    return pd.concat(
        [
            frame("rd_demo", BASE_IMG, BASE_TXT, model="base"),
            frame("rd_flat", FLAT, FLAT, model="base"),
            frame("rd_only_base", {"r1": 0}, {"r1": 1}, model="base"),
        ],
        ignore_index=True,
    )


def int_frame() -> pd.DataFrame:
    return pd.concat(
        [frame("rd_demo", INT_IMG, INT_TXT, model="steered"), frame("rd_flat", FLAT, FLAT, model="steered")],
        ignore_index=True,
    )


def test_benchmark_of() -> None:
    assert benchmark_of("rd_demo_img") == "rd_demo"
    assert benchmark_of("rd_demo_txt") == "rd_demo"
    assert benchmark_of("mathvista_rd") == "mathvista_rd"
    assert benchmark_of("_img") == "_img"


def test_pair_forms_excludes_and_counts_unpaired() -> None:
    paired, report = pair_forms(frame("rd_demo", BASE_IMG, BASE_TXT))
    assert report == PairingReport(n_pairs=6, img_only=1, txt_only=1)
    assert list(paired.index) == ["p1", "p2", "p3", "p4", "p5", "p6"]
    assert paired.index.name == "pair_id"
    assert list(paired.columns) == ["img", "txt"]
    assert paired["img"].tolist() == [1, 0, 0, 1, 0, 0]
    assert paired["txt"].tolist() == [1, 1, 1, 1, 0, 1]


def test_pair_forms_rejects_duplicate_pair_ids() -> None:
    df = pd.concat(
        [frame("rd_demo", {"p1": 1}, {"p1": 1}), frame("rd_demo", {"p1": 0}, {})], ignore_index=True
    )
    with pytest.raises(ValueError, match=r"duplicate pair_id within a form in task\(s\) \['rd_demo_img'\]"):
        pair_forms(df)


def test_compare_runs_base_only() -> None:
    table = compare_runs(frame("rd_demo", BASE_IMG, BASE_TXT), None, n_boot=500)
    assert table["intervened_run"] is None
    assert table["benchmarks_only_in_base"] == []
    (row,) = table["rows"]
    assert row["benchmark"] == "rd_demo"
    assert row["tasks"] == ["rd_demo_img", "rd_demo_txt"]
    assert row["intervened"] is None and row["effect"] is None
    base = row["base"]
    assert (base["n_pairs"], base["img_only"], base["txt_only"]) == (6, 1, 1)
    # p7 (img-only, correct) and p8 (txt-only, correct) must not enter the accuracies.
    assert base["acc_img"] == pytest.approx(100 * 2 / 6)
    assert base["acc_txt"] == pytest.approx(100 * 5 / 6)
    gap = base["gap"]
    assert gap["diff"] == pytest.approx(50.0)
    assert (gap["both"], gap["a_only"], gap["b_only"], gap["neither"]) == (2, 3, 0, 1)
    assert gap["p_mcnemar"] == pytest.approx(binomtest(0, 3, 0.5).pvalue)
    assert gap["ci_low"] <= 50.0 <= gap["ci_high"]


def test_compare_runs_hand_example() -> None:
    table = compare_runs(base_frame(), int_frame(), n_boot=500, seed=1)
    json.dumps(table)  # JSON-serialisable as promised
    assert table["base_run"] == {"model": ["base"], "model_args": ["pretrained=m"]}
    assert table["intervened_run"]["model"] == ["steered"]
    assert table["benchmarks_only_in_base"] == ["rd_only_base"]
    assert table["benchmarks_only_in_intervened"] == []
    rows = {r["benchmark"]: r for r in table["rows"]}
    assert list(rows) == ["rd_demo", "rd_flat", "rd_only_base"]
    assert rows["rd_only_base"]["effect"] is None

    demo = rows["rd_demo"]
    inter = demo["intervened"]
    # Intervened: p1..p5 and p9 complete, p6 image only.
    assert (inter["n_pairs"], inter["img_only"], inter["txt_only"]) == (6, 1, 0)
    assert inter["acc_img"] == pytest.approx(100 * 4 / 6)
    assert inter["acc_txt"] == pytest.approx(100 * 3 / 6)

    e = demo["effect"]
    # Common pairs p1..p5: p6 dropped from base, p9 from the intervened run.
    assert (e["n_pairs"], e["dropped_base"], e["dropped_intervened"]) == (5, 1, 1)
    assert e["acc_img_base"] == pytest.approx(40.0)  # 1 0 0 1 0
    assert e["acc_txt_base"] == pytest.approx(80.0)  # 1 1 1 1 0
    assert e["acc_img"] == pytest.approx(60.0)  # 1 1 1 0 0
    assert e["acc_txt"] == pytest.approx(60.0)  # 1 1 0 1 0
    assert e["gap_base"]["diff"] == pytest.approx(40.0)
    assert e["gap"]["diff"] == pytest.approx(0.0)
    gain = e["gain"]
    assert gain["diff"] == pytest.approx(20.0)
    assert (gain["both"], gain["a_only"], gain["b_only"], gain["neither"]) == (1, 2, 1, 1)
    assert gain["p_mcnemar"] == pytest.approx(binomtest(1, 3, 0.5).pvalue)
    cost = e["text_cost"]
    assert cost["diff"] == pytest.approx(-20.0)
    assert (cost["both"], cost["a_only"], cost["b_only"], cost["neither"]) == (3, 0, 1, 1)
    assert cost["p_mcnemar"] == pytest.approx(1.0)
    assert e["recovery"] == pytest.approx(0.5)

    flat = rows["rd_flat"]["effect"]
    assert flat["gap_base"]["diff"] == 0.0
    assert flat["recovery"] is None


def test_compare_runs_is_deterministic() -> None:
    assert compare_runs(base_frame(), int_frame(), n_boot=300, seed=7) == compare_runs(
        base_frame(), int_frame(), n_boot=300, seed=7
    )


def test_markdown_contains_the_numbers() -> None:
    table = json.loads(json.dumps(compare_runs(base_frame(), int_frame(), n_boot=500)))
    md = to_markdown(table, title="Seeing but not thinking: demo")
    assert md.startswith("# Seeing but not thinking: demo\n")
    e = table["rows"][0]["effect"]
    base_gap = table["rows"][0]["base"]["gap"]
    for text in (
        "| rd_demo | base | 6 | 1 / 1 | 33.3 | 83.3 |",
        f"+50.0 [{base_gap['ci_low']:+.1f}, {base_gap['ci_high']:+.1f}]",
        "| rd_demo | intervened | 6 | 1 / 0 | 66.7 | 50.0 |",
        "| rd_demo | 5 | 1 / 1 | 40.0 → 60.0 |",
        f"+20.0 [{e['gain']['ci_low']:+.1f}, {e['gain']['ci_high']:+.1f}]",
        "80.0 → 60.0",
        "-20.0 [",
        "| +40.0 | 0.50 |",
        "n/a (gap 0)",
        "Benchmarks only in the base run (no intervention effect computed): rd_only_base",
        "model base; model_args `pretrained=m`",
        "0.250",
    ):
        assert text in md, text


def test_markdown_base_only_has_no_effect_section() -> None:
    md = to_markdown(compare_runs(frame("rd_demo", BASE_IMG, BASE_TXT), None, n_boot=100), title="t")
    assert "| rd_demo | base |" in md
    assert "Intervention effect" not in md


def test_to_markdown_rejects_other_dicts() -> None:
    with pytest.raises(ValueError, match="table lacks key 'rows'"):
        to_markdown({"n_boot": 1, "level": 0.95}, title="t")


@pytest.mark.parametrize(
    "mutate, match",
    [
        (lambda df: "not a frame", "must be a pandas DataFrame"),
        (lambda df: df.drop(columns=["form"]), r"base lacks columns \['form'\]"),
        (lambda df: df.iloc[0:0], "base has no samples"),
        (lambda df: df.assign(form="image"), r"column 'form' must be 'img' or 'txt', got \['image'\]"),
        (lambda df: df.assign(correct=2), "column 'correct' must be 0 or 1"),
    ],
)
def test_compare_runs_input_errors(mutate: object, match: str) -> None:
    df = frame("rd_demo", BASE_IMG, BASE_TXT)
    with pytest.raises(ValueError, match=match):
        compare_runs(mutate(df), None)  # type: ignore[operator]


def test_compare_runs_needs_complete_pairs() -> None:
    with pytest.raises(ValueError, match=r"base run, benchmark 'rd_demo': no pair_id has both.*img-only 1"):
        compare_runs(frame("rd_demo", {"p1": 1}, {"p2": 1}), None)
    with pytest.raises(ValueError, match="intervened run, benchmark 'rd_demo'"):
        compare_runs(frame("rd_demo", {"p1": 1}, {"p1": 1}), frame("rd_demo", {"p1": 1}, {"p2": 1}))
    with pytest.raises(ValueError, match="no pair_id is complete .* in both the base and the intervened run"):
        compare_runs(frame("rd_demo", {"p1": 1}, {"p1": 1}), frame("rd_demo", {"p2": 1}, {"p2": 1}))


def test_end_to_end_from_lmms_eval_output(tmp_path: Path) -> None:
    from test_runs import DEMO, write_run

    write_run(tmp_path / "base", "20250101_120000", DEMO)
    steered = {
        "rd_demo_img": [("p1", 1, "A", "A"), ("p2", 1, "B", "B"), ("p3", 1, "C", "C")],
        "rd_demo_txt": [("p1", 1, "A", "A"), ("p2", 1, "B", "B"), ("p3", 1, "C", "C")],
    }
    write_run(tmp_path / "steer", "20250101_130000", steered, model_args="pretrained=m,steer=1")
    (base_run,) = find_runs(tmp_path / "base")
    (int_run,) = find_runs(tmp_path / "steer")
    table = compare_runs(load_paired_samples(base_run), load_paired_samples(int_run), n_boot=200)
    (row,) = table["rows"]
    # Base: p1, p2 complete (p3 img-only, p4 txt-only); img 1 0 -> 50, txt 1 1 -> 100.
    assert (row["base"]["n_pairs"], row["base"]["img_only"], row["base"]["txt_only"]) == (2, 1, 1)
    assert row["base"]["gap"]["diff"] == pytest.approx(50.0)
    e = row["effect"]
    assert (e["n_pairs"], e["dropped_base"], e["dropped_intervened"]) == (2, 0, 1)
    assert e["gain"]["diff"] == pytest.approx(50.0)
    assert e["text_cost"]["diff"] == pytest.approx(0.0)
    assert e["recovery"] == pytest.approx(1.0)
    assert "| rd_demo | base | 2 | 1 / 1 | 50.0 | 100.0 |" in to_markdown(table, title="e2e")


# Hand-computed example with errors. p3's image and p5's text could not be run; p6 is txt-only.
ERR_IMG = {"p1": 1, "p2": 0, "p3": ERR, "p4": 1, "p5": 0}
ERR_TXT = {"p1": 1, "p2": 1, "p3": 1, "p4": 1, "p5": ERR, "p6": 1}


def test_pair_forms_drops_error_pairs_from_both_forms_and_counts_them() -> None:
    paired, report = pair_forms(frame("rd_demo", ERR_IMG, ERR_TXT))
    # p3 and p5 are in neither form (their other form is not counted as unpaired); p6 is txt-only.
    assert report == PairingReport(n_pairs=3, img_only=0, txt_only=1, img_errors=1, txt_errors=1)
    assert list(paired.index) == ["p1", "p2", "p4"]
    assert paired["img"].tolist() == [1, 0, 1]
    assert paired["txt"].tolist() == [1, 1, 1]
    assert paired["img"].dtype.kind == "i"


def test_errors_are_excluded_from_accuracy_and_gap_not_counted_wrong() -> None:
    table = compare_runs(frame("rd_demo", ERR_IMG, ERR_TXT), None, n_boot=500)
    json.dumps(table)
    base = table["rows"][0]["base"]
    assert (base["n_pairs"], base["img_only"], base["txt_only"]) == (3, 0, 1)
    assert (base["img_errors"], base["txt_errors"]) == (1, 1)
    # Over p1, p2, p4: img 1 0 1 -> 66.7, txt 1 1 1 -> 100, gap +33.3.
    assert base["acc_img"] == pytest.approx(100 * 2 / 3)
    assert base["acc_txt"] == pytest.approx(100.0)
    gap = base["gap"]
    assert gap["diff"] == pytest.approx(100 / 3)
    assert (gap["both"], gap["a_only"], gap["b_only"], gap["neither"]) == (2, 1, 0, 0)
    # Had the errors been scored as wrong, p1..p5 would give img 40, txt 80 and a gap of +40.
    as_wrong = compare_runs(
        frame("rd_demo", {**ERR_IMG, "p3": 0}, {**ERR_TXT, "p5": 0}), None, n_boot=500
    )["rows"][0]["base"]
    assert (as_wrong["acc_img"], as_wrong["acc_txt"]) == (pytest.approx(40.0), pytest.approx(80.0))
    assert as_wrong["gap"]["diff"] == pytest.approx(40.0)
    assert as_wrong["gap"]["diff"] != pytest.approx(gap["diff"])


def test_error_in_the_intervened_run_drops_the_pair_from_gain_and_text_cost() -> None:
    base = frame("rd_demo", {"p1": 0, "p2": 0, "p3": 1, "p4": 0}, {"p1": 1, "p2": 1, "p3": 1, "p4": 1})
    inter = frame("rd_demo", {"p1": 1, "p2": ERR, "p3": 1, "p4": 0}, {"p1": 1, "p2": 1, "p3": 1, "p4": 1})
    (row,) = compare_runs(base, inter, n_boot=500)["rows"]
    i = row["intervened"]
    assert (i["n_pairs"], i["img_only"], i["txt_only"], i["img_errors"], i["txt_errors"]) == (3, 0, 0, 1, 0)
    assert (row["base"]["img_errors"], row["base"]["txt_errors"]) == (0, 0)
    e = row["effect"]
    # p2 errored in the intervened run: complete only in base, so it is dropped from base.
    assert (e["n_pairs"], e["dropped_base"], e["dropped_intervened"]) == (3, 1, 0)
    # Over p1, p3, p4: img base 0 1 0 -> 33.3, intervened 1 1 0 -> 66.7, gain +33.3
    # (scoring the error as wrong would give 25 -> 50, a gain of +25).
    assert e["acc_img_base"] == pytest.approx(100 / 3)
    assert e["acc_img"] == pytest.approx(200 / 3)
    assert e["gain"]["diff"] == pytest.approx(100 / 3)
    assert e["text_cost"]["diff"] == pytest.approx(0.0)
    assert e["gap_base"]["diff"] == pytest.approx(200 / 3)
    assert e["recovery"] == pytest.approx(0.5)


def test_markdown_shows_error_counts() -> None:
    inter = frame("rd_demo", {"p1": 1, "p2": 1, "p3": ERR, "p4": 1}, {"p1": 1, "p2": ERR, "p3": ERR, "p4": 1})
    table = json.loads(json.dumps(compare_runs(frame("rd_demo", ERR_IMG, ERR_TXT), inter, n_boot=200)))
    md = to_markdown(table, title="errors")
    assert "| McNemar p | errors (img / txt) |" in md
    lines = md.splitlines()
    (base_line,) = [ln for ln in lines if ln.startswith("| rd_demo | base |")]
    (int_line,) = [ln for ln in lines if ln.startswith("| rd_demo | intervened |")]
    assert base_line.startswith("| rd_demo | base | 3 | 0 / 1 | 66.7 | 100.0 |")
    assert base_line.endswith("| 1 / 1 |")
    assert int_line.startswith("| rd_demo | intervened | 2 | 0 / 0 | 100.0 | 100.0 |")
    assert int_line.endswith("| 1 / 2 |")
    # Runs without errors show 0 / 0.
    clean = to_markdown(compare_runs(frame("rd_demo", BASE_IMG, BASE_TXT), None, n_boot=100), title="t")
    assert "| 0 / 0 |" in clean


def test_frame_without_error_column_is_accepted() -> None:
    df = frame("rd_demo", BASE_IMG, BASE_TXT).drop(columns=["error"])
    df["correct"] = df["correct"].astype(int)
    _, report = pair_forms(df)
    assert report == PairingReport(n_pairs=6, img_only=1, txt_only=1, img_errors=0, txt_errors=0)


@pytest.mark.parametrize(
    "mutate, match",
    [
        (lambda df: df.assign(error=None), r"'correct' is missing for 1 row\(s\) that are not marked as errors"),
        (lambda df: df.drop(columns=["error"]), r"'correct' is missing for 1 row\(s\) that are not marked"),
        (
            lambda df: df.assign(correct=df["correct"].fillna(0)),
            r"1 error row\(s\) also carry a 'correct' value",
        ),
        (lambda df: df.assign(error=df["error"].replace({"image unreadable": ""})), "non-empty reason string"),
    ],
)
def test_inconsistent_error_rows_are_rejected(mutate: object, match: str) -> None:
    df = frame("rd_demo", {"p1": 1, "p2": ERR}, {"p1": 1, "p2": 1})
    with pytest.raises(ValueError, match=match):
        compare_runs(mutate(df), None, n_boot=10)  # type: ignore[operator]


def test_end_to_end_with_error_rows(tmp_path: Path) -> None:
    from test_runs import DEMO, add_error_lines, write_run

    # p1's image could not be run: logged as an error row instead of a scored one.
    samples = {"rd_demo_img": DEMO["rd_demo_img"][1:], "rd_demo_txt": DEMO["rd_demo_txt"]}
    results = write_run(tmp_path, "20250101_120000", samples)
    add_error_lines(results, "rd_demo_img", [("p1", "image unreadable")])
    (run,) = find_runs(tmp_path)
    df = load_paired_samples(run)
    table = compare_runs(df, None, n_boot=200)
    base = table["rows"][0]["base"]
    # Left: p2 complete (img 0, txt 1); p3 img-only, p4 txt-only; one img error.
    assert (base["n_pairs"], base["img_only"], base["txt_only"]) == (1, 1, 1)
    assert (base["img_errors"], base["txt_errors"]) == (1, 0)
    assert (base["acc_img"], base["acc_txt"]) == (pytest.approx(0.0), pytest.approx(100.0))
    assert to_markdown(table, title="e2e").count("| 1 / 0 |") == 1


def test_a_benchmark_without_pairs_is_listed_with_its_counts_not_averaged() -> None:
    paired = frame("rd_demo", BASE_IMG, BASE_TXT)
    one_sided = frame("rd_mathvista", {"p1": 1, "p2": 0}, {})
    table = compare_runs(pd.concat([paired, one_sided], ignore_index=True), None, n_boot=200)
    assert [row["benchmark"] for row in table["rows"]] == ["rd_demo"]
    assert table["unpaired_benchmarks"] == [{"benchmark": "rd_mathvista", "run": "base", "img_only": 2,
                                             "txt_only": 0, "img_errors": 0, "txt_errors": 0}]
    text = to_markdown(table, title="t")
    assert "**Not paired, not averaged:**" in text and "- rd_mathvista (base run): img-only 2, txt-only 0" in text
