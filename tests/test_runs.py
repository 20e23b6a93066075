from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from rd_eval.lmms.runs import SAMPLE_COLUMNS, RunRecord, find_runs, load_paired_samples, read_run

MODEL_ARGS = "pretrained=Qwen/Qwen3-VL-30B-A3B-Instruct,dtype=bfloat16"


def results_json(
    tasks: list[str], *, model: str = "qwen3_vl", model_args: str = MODEL_ARGS
) -> dict[str, Any]:
    """Shape of lmms-eval 0.7.3's <date_id>_results.json (evaluator.simple_evaluate + tracker)."""
    return {
        "results": {t: {"alias": t, "rd_acc,none": 0.5, "rd_acc_stderr,none": "N/A"} for t in tasks},
        "group_subtasks": {t: [] for t in tasks},
        "configs": {t: {"task": t, "output_type": "generate_until"} for t in tasks},
        "versions": {t: 0.0 for t in tasks},
        "n-shot": {t: 0 for t in tasks},
        "higher_is_better": {t: {"rd_acc": True} for t in tasks},
        "n-samples": {t: {"original": 3, "effective": 3} for t in tasks},
        "config": {
            "model": model,
            "model_args": model_args,
            "model_backend": "lmms_eval.models.simple.qwen3_vl.Qwen3_VL (simple)",
            "batch_size": "1",
            "batch_sizes": [],
            "device": "cuda:0",
            "limit": None,
            "random_seed": 0,
        },
        "git_hash": "abc1234",
        "lmms_eval_version": "0.7.3",
        "date": "20250101_120000",
        "task_hashes": {t: "deadbeef" for t in tasks},
        "model_source": model,
        "model_name": "Qwen/Qwen3-VL-30B-A3B-Instruct",
        "model_name_sanitized": "Qwen__Qwen3-VL-30B-A3B-Instruct",
        "total_evaluation_time_seconds": "12.5",
    }


def sample_line(doc_id: int, pair_id: str, form: str, correct: int, pred: str | None, answer: str) -> str:
    """One line of <date_id>_samples_<task>.jsonl as EvaluationTracker.save_results_samples writes it."""
    sample = {
        "doc_id": doc_id,
        "target": answer,
        "filtered_resps": pred if pred is not None else "",
        "token_counts": [],
        "doc_hash": f"hash{doc_id}",
        "rd_acc": {"pair_id": pair_id, "form": form, "correct": correct, "pred": pred, "answer": answer},
        "input": "Answer the question.",
    }
    return json.dumps(sample, ensure_ascii=False) + "\n"


def write_run(
    out: Path,
    date_id: str,
    samples: dict[str, list[tuple[str, int, str | None, str]]],
    *,
    model_dir: str = "Qwen__Qwen3-VL-30B-A3B-Instruct",
    model_args: str = MODEL_ARGS,
    model: str = "qwen3_vl",
) -> Path:
    folder = out / model_dir if model_dir else out
    folder.mkdir(parents=True, exist_ok=True)
    results = folder / f"{date_id}_results.json"
    results.write_text(json.dumps(results_json(list(samples), model=model, model_args=model_args), indent=2))
    for task, rows in samples.items():
        form = "img" if task.endswith("_img") else "txt"
        lines = [sample_line(i, pid, form, ok, pred, ans) for i, (pid, ok, pred, ans) in enumerate(rows)]
        (folder / f"{date_id}_samples_{task}.jsonl").write_text("".join(lines), encoding="utf-8")
    return results


DEMO = {
    "rd_demo_img": [("p1", 1, "A", "A"), ("p2", 0, None, "B"), ("p3", 1, "C", "C")],
    "rd_demo_txt": [("p1", 1, "A", "A"), ("p2", 1, "B", "B"), ("p4", 0, "D", "E")],
}


def test_find_runs_in_output_path(tmp_path: Path) -> None:
    results = write_run(tmp_path, "20250101_120000", DEMO)
    runs = find_runs(tmp_path)
    assert len(runs) == 1
    run = runs[0]
    assert isinstance(run, RunRecord)
    assert run.results_path == results
    assert run.timestamp == "20250101_120000"
    assert run.model == "qwen3_vl"
    assert run.model_args == MODEL_ARGS
    assert run.tasks == ("rd_demo_img", "rd_demo_txt")
    assert dict(run.samples) == {
        "rd_demo_img": results.parent / "20250101_120000_samples_rd_demo_img.jsonl",
        "rd_demo_txt": results.parent / "20250101_120000_samples_rd_demo_txt.jsonl",
    }
    # The model subfolder and the results file itself are accepted too.
    assert find_runs(results.parent) == runs
    assert find_runs(results) == runs


def test_find_runs_separates_runs_by_timestamp_and_folder(tmp_path: Path) -> None:
    write_run(tmp_path / "base", "20250101_120000", DEMO)
    write_run(tmp_path / "base", "20250102_090000", {"rd_demo_img": DEMO["rd_demo_img"]})
    write_run(tmp_path / "steer", "20250101_130000", DEMO, model_dir="", model_args="model=x,steer=on")
    runs = find_runs(tmp_path)
    assert [r.timestamp for r in runs] == ["20250101_120000", "20250101_130000", "20250102_090000"]
    assert runs[1].results_path.parent == tmp_path / "steer"
    assert runs[1].model_args == "model=x,steer=on"
    # Samples from another timestamp in the same folder are not mixed in.
    assert list(runs[2].samples) == ["rd_demo_img"]
    assert all(p.name.startswith("20250101_120000") for p in runs[0].samples.values())


def test_load_paired_samples(tmp_path: Path) -> None:
    write_run(tmp_path, "20250101_120000", DEMO)
    df = load_paired_samples(find_runs(tmp_path)[0])
    assert list(df.columns) == list(SAMPLE_COLUMNS)
    assert len(df) == 6
    assert df["correct"].dtype.kind == "i"
    assert str(df["correct"].dtype) == "Int64"
    assert df["error"].isna().all() and not df["correct"].isna().any()
    img = df[df["task"] == "rd_demo_img"].set_index("pair_id")
    assert (img["form"] == "img").all()
    assert img.loc["p2", "correct"] == 0
    assert img.loc["p2", "pred"] is None
    assert img.loc["p3", "answer"] == "C"
    assert img.loc["p3", "doc_id"] == 2
    assert df["doc_id"].dtype == "int64"
    assert set(df["model"]) == {"qwen3_vl"}
    assert set(df["model_args"]) == {MODEL_ARGS}


def test_model_args_dict_is_flattened(tmp_path: Path) -> None:
    results = write_run(tmp_path, "20250101_120000", DEMO)
    data = json.loads(results.read_text())
    data["config"]["model_args"] = {"pretrained": "m", "dtype": "bf16"}
    results.write_text(json.dumps(data))
    assert read_run(results).model_args == "pretrained=m,dtype=bf16"


def test_correct_accepts_bool_and_float(tmp_path: Path) -> None:
    results = write_run(tmp_path, "20250101_120000", DEMO)
    path = results.parent / "20250101_120000_samples_rd_demo_img.jsonl"
    lines = path.read_text().splitlines()
    first = json.loads(lines[0])
    first["rd_acc"]["correct"] = True
    second = json.loads(lines[1])
    second["rd_acc"]["correct"] = 0.0
    path.write_text("\n".join([json.dumps(first), json.dumps(second), lines[2], ""]))
    df = load_paired_samples(read_run(results))
    assert df[df["task"] == "rd_demo_img"]["correct"].tolist() == [1, 0, 1]


def test_find_runs_errors(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="run folder not found"):
        find_runs(tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match=r"no lmms-eval results \(\*_results.json\) found under .*empty"):
        find_runs(tmp_path / "empty")


def test_a_killed_run_is_named_as_one(tmp_path: Path) -> None:
    # lmms-eval killed mid-run: the adapter streamed routing shards, lmms-eval wrote no results.
    folder = tmp_path / "out" / "rd_routing" / "acme__rd-tiny-A1B__none"
    folder.mkdir(parents=True)
    (folder / "routing_rank000.jsonl").write_text("")
    with pytest.raises(ValueError) as caught:
        find_runs(tmp_path / "out")
    message = str(caught.value)
    assert str(folder) in message and "did not finish" in message and "--use_cache" in message
    assert "LMMS_CACHE_RUN_ID" in message and "\n" not in message
    assert "pass the folder given to" not in message


@pytest.mark.parametrize(
    "content, match",
    [
        ("{not json", "corrupt lmms-eval results json"),
        ("[1, 2]", "expected a JSON object"),
        (json.dumps({"config": {"model": "m"}}), "missing or invalid 'results'"),
        (json.dumps({"results": {}}), "missing or invalid 'config'"),
        (b"\xff\xfe\x00", "corrupt lmms-eval results json"),
    ],
)
def test_corrupt_results_json(tmp_path: Path, content: str | bytes, match: str) -> None:
    path = tmp_path / "m" / "20250101_120000_results.json"
    path.parent.mkdir()
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content)
    with pytest.raises(ValueError, match=match) as info:
        find_runs(tmp_path)
    assert str(path) in str(info.value)


def test_read_run_errors(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="results file not found"):
        read_run(tmp_path / "20250101_120000_results.json")
    other = tmp_path / "notes.json"
    other.write_text("{}")
    with pytest.raises(ValueError, match="not an lmms-eval results file"):
        read_run(other)


def test_run_without_log_samples(tmp_path: Path) -> None:
    results = write_run(tmp_path, "20250101_120000", DEMO)
    for p in results.parent.glob("*.jsonl"):
        p.unlink()
    run = read_run(results)
    assert run.tasks == ("rd_demo_img", "rd_demo_txt")
    with pytest.raises(ValueError, match="--log_samples"):
        load_paired_samples(run)


def _corrupt_line(tmp_path: Path, line2: str) -> tuple[RunRecord, Path]:
    results = write_run(tmp_path, "20250101_120000", DEMO)
    path = results.parent / "20250101_120000_samples_rd_demo_txt.jsonl"
    lines = path.read_text().splitlines()
    lines[1] = line2
    path.write_text("\n".join(lines) + "\n")
    return read_run(results), path


def _line_with(**rd_acc: Any) -> str:
    base = {"pair_id": "p2", "form": "txt", "correct": 1, "pred": "B", "answer": "B"}
    base.update(rd_acc)
    return json.dumps({"doc_id": 1, "target": "B", "filtered_resps": "B", "rd_acc": base})


@pytest.mark.parametrize(
    "line, match",
    [
        ('{"doc_id": 1, "target": "B"', "corrupt JSON line"),
        ("[1, 2]", "expected a JSON object"),
        (json.dumps({"doc_id": 1, "target": "B", "exact_match": 1}), "no 'rd_acc' key"),
        (json.dumps({"doc_id": 1, "rd_acc": 1.0}), "'rd_acc' must be a dict"),
        (json.dumps({"doc_id": 1, "rd_acc": {"pair_id": "p2", "form": "txt"}}), r"lacks \['correct'\]"),
        (
            json.dumps({"target": "B", "rd_acc": {"pair_id": "p2", "form": "txt", "correct": 1}}),
            "no 'doc_id'",
        ),
        (_line_with(form="image"), r"form' must be one of \['img', 'txt'\]"),
        (_line_with(correct=0.5), "'rd_acc.correct' must be 0 or 1"),
        (_line_with(correct="1"), "'rd_acc.correct' must be 0 or 1"),
        (_line_with(pair_id=""), "pair_id' must be a non-empty string"),
        (_line_with(pair_id=None), "pair_id' must be a non-empty string"),
        (_line_with(correct=None), r"'rd_acc.correct' is null but 'rd_acc.error' gives no reason"),
        (_line_with(correct=None, error=None), r"'rd_acc.correct' is null but 'rd_acc.error' gives no reason"),
        (_line_with(correct=None, error=""), r"'rd_acc.error' must be null or a non-empty string"),
        (_line_with(correct=None, error=3), r"'rd_acc.error' must be null or a non-empty string"),
        (_line_with(correct=0, error="image unreadable"), r"marked as an error .* must have 'correct' null"),
    ],
)
def test_bad_samples_line_names_file_and_line(tmp_path: Path, line: str, match: str) -> None:
    run, path = _corrupt_line(tmp_path, line)
    with pytest.raises(ValueError, match=match) as info:
        load_paired_samples(run)
    assert f"{path}:2" in str(info.value)


def test_missing_samples_file(tmp_path: Path) -> None:
    results = write_run(tmp_path, "20250101_120000", DEMO)
    run = read_run(results)
    gone = run.samples["rd_demo_img"]
    gone.unlink()
    with pytest.raises(ValueError, match="samples file not found"):
        load_paired_samples(run)


def test_other_metric_name_and_blank_lines(tmp_path: Path) -> None:
    results = write_run(tmp_path, "20250101_120000", {"rd_demo_img": DEMO["rd_demo_img"]})
    path = results.parent / "20250101_120000_samples_rd_demo_img.jsonl"
    text = path.read_text().replace('"rd_acc"', '"rd_acc_strict"')
    path.write_text(text + "\n\n")
    df = load_paired_samples(read_run(results), metric="rd_acc_strict")
    assert isinstance(df, pd.DataFrame)
    assert df["pair_id"].tolist() == ["p1", "p2", "p3"]
    with pytest.raises(ValueError, match="no 'rd_acc' key"):
        load_paired_samples(read_run(results))


def error_line(doc_id: int, pair_id: str, form: str, reason: str, answer: str) -> str:
    """A samples line for a doc the model could not run (what score_response logs for an error response)."""
    sample = {
        "doc_id": doc_id,
        "target": answer,
        "filtered_resps": f"[rd-eval:error] {reason}",
        "rd_acc": {"pair_id": pair_id, "form": form, "correct": None, "pred": None, "answer": answer, "error": reason},
    }
    return json.dumps(sample) + "\n"


def add_error_lines(results: Path, task: str, errors: list[tuple[str, str]]) -> None:
    """Append error rows (pair_id, reason) to ``task``'s samples file of the run at ``results``."""
    date_id = results.name[: -len("_results.json")]
    path = results.parent / f"{date_id}_samples_{task}.jsonl"
    form = "img" if task.endswith("_img") else "txt"
    start = len(path.read_text().splitlines())
    lines = [error_line(start + i, pid, form, reason, "A") for i, (pid, reason) in enumerate(errors)]
    path.write_text(path.read_text() + "".join(lines))


def test_error_rows_are_kept_with_na_correct_and_the_reason(tmp_path: Path) -> None:
    results = write_run(tmp_path, "20250101_120000", DEMO)
    add_error_lines(results, "rd_demo_img", [("p4", "image unreadable")])
    add_error_lines(results, "rd_demo_txt", [("p3", "no image tokens in prompt")])
    df = load_paired_samples(read_run(results))
    assert list(df.columns) == list(SAMPLE_COLUMNS)
    assert len(df) == 8
    assert str(df["correct"].dtype) == "Int64"
    errors = df[df["error"].notna()].set_index(["form", "pair_id"])
    assert sorted(errors.index) == [("img", "p4"), ("txt", "p3")]
    assert errors.loc[("img", "p4"), "error"] == "image unreadable"
    assert errors.loc[("txt", "p3"), "error"] == "no image tokens in prompt"
    assert errors.loc[("img", "p4"), "pred"] is None
    assert errors.loc[("img", "p4"), "doc_id"] == 3
    # <NA> exactly on the error rows; every other row keeps its 0/1 and error None.
    assert (df["correct"].isna() == df["error"].notna()).all()
    scored = df[df["error"].isna()]
    assert scored["correct"].tolist() == [1, 0, 1, 1, 1, 0]
    assert all(e is None for e in scored["error"])


def test_perception_and_transcription_samples_are_not_pairs(tmp_path: Path) -> None:
    results = write_run(tmp_path, "20250101_120000", DEMO)
    for task, metric in (("rd_gsm8k_see", "rd_seen"), ("rd_mathvista_transcribe", "rd_transcript")):
        (results.parent / f"20250101_120000_samples_{task}.jsonl").write_text(
            json.dumps({"doc_id": 0, metric: {"pair_id": "p1"}}) + "\n", encoding="utf-8")
    run = find_runs(tmp_path)[0]
    assert {"rd_gsm8k_see", "rd_mathvista_transcribe"} <= set(run.samples)
    assert set(load_paired_samples(run)["task"]) == {"rd_demo_img", "rd_demo_txt"}
