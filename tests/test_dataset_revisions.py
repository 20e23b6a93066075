"""Reproducible data (issue 12 item 10): each benchmark's Hub revision is pinned (or declared unpinned),
overridable with RD_EVAL_DATASET_REVISIONS, checked against what datasets actually read, and recorded in the
task config lmms-eval dumps, in every rd_acc item and in the report.

Nothing real is mocked where it can be run: local mirrors are real files, the offline cache fallback is a real
datasets cache read by the real ``datasets.load_dataset``; only the Hub download itself (no network here) is
replaced by a function that records the arguments it was given.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import datasets
import pytest
import rd_eval_tasks
import rd_eval_tasks.rd_demo.utils as demo_utils
import rd_eval_tasks.rd_gsm8k.utils as gsm_utils
from PIL import Image

from rd_eval.benchmarks import BENCHMARKS, gsm8k, math500, mathvision
from rd_eval.benchmarks.exact_twin import PLACEHOLDER_KEY
from rd_eval.data import provenance as data_provenance
from rd_eval.data.provenance import COLUMN, ITEM_KEY, DataRecord
from rd_eval.data.revisions import (
    COMMIT,
    ENV_VAR,
    PINNED,
    PINS,
    UNPINNED,
    Requested,
    RevisionError,
    requested,
)
from rd_eval.data.sources import ENV_VAR as DATA_ENV
from rd_eval.data.sources import HubSplit, declaration, load_hub, load_split
from rd_eval.lmms.runs import find_runs
from rd_eval.rendering.provenance_markdown import provenance_markdown
from rd_eval.reports.report import build_report, to_markdown

TASKS_DIR = Path(rd_eval_tasks.__file__).parent
SHA_A, SHA_B = "a" * 40, "b" * 40


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(DATA_ENV, raising=False)
    monkeypatch.delenv(ENV_VAR, raising=False)


def _gsm8k_mirror(root: Path, answer: str = "3") -> Path:
    (root / "gsm8k").mkdir(parents=True, exist_ok=True)
    rows = [{"question": "Ann has 1 apple and buys 2. How many?", "answer": f"1 + 2 = 3\n#### {answer}"},
            {"question": "Bob has 5 pens and loses 1. How many?", "answer": "5 - 1 = 4\n#### 4"}]
    (root / "gsm8k" / "test.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return root


class FakeHub:
    """Stands in for the Hub download (no network): records each load_dataset call, returns in-memory rows;
    the packaged builders (lmms-eval's placeholder ``json``) still run for real."""

    def __init__(self, rows: list[dict[str, Any]]) -> None:
        self.rows, self.calls, self.real = rows, [], datasets.load_dataset

    def __call__(self, path: str, name: str | None = None, **kwargs: Any) -> Any:
        if path == "json":
            return self.real(path, name, **kwargs)
        self.calls.append({"path": path, "name": name, **kwargs})
        return datasets.Dataset.from_list(self.rows)


# ---------------------------------------------------------------------------------------------------------
# Pins and overrides


def test_every_hub_benchmark_declares_a_revision() -> None:
    sources = set(BENCHMARKS) | {gsm8k.SOURCE.benchmark, math500.SOURCE.benchmark}
    assert set(PINS) == sources
    assert all(p.revision == UNPINNED or COMMIT.fullmatch(p.revision) for p in PINS.values())
    assert {"mathverse", "mathvista", "math500"} <= {b for b, p in PINS.items() if p.revision != UNPINNED}
    with pytest.raises(RevisionError, match="no dataset revision is declared"):
        requested("not_a_benchmark", {})


def test_requested_revision_is_the_pin_unless_overridden() -> None:
    assert requested("mathvista", {}) == Requested("mathvista", PINS["mathvista"].revision, PINNED)
    assert requested("mathvision", {}) == Requested("mathvision", None, UNPINNED)
    env = {ENV_VAR: f" mathvision={SHA_A.upper()}, mathvista=unpinned  gsm8k=refs/convert/parquet,"}
    assert requested("mathvision", env) == Requested("mathvision", SHA_A, ENV_VAR)
    assert requested("mathvista", env) == Requested("mathvista", None, ENV_VAR)
    assert requested("gsm8k", env).revision == "refs/convert/parquet"
    assert requested("gsm8k", {ENV_VAR: "gsm8k=20240101"}).revision == "20240101"  # a date tag, not a commit


@pytest.mark.parametrize(("value", "message"), [
    (f"mathvison={SHA_A}", r"unknown benchmark 'mathvison'; known: dynamath, gsm8k, "),
    ("mathvista", r"entry 'mathvista' is not <benchmark>=<revision>"),
    ("mathvista=", r"is not <benchmark>=<revision>"),
    ("=abc", r"is not <benchmark>=<revision>"),
    ("mathvista=2b6ad69", r"abbreviated commit; give the full 40-hex commit sha"),
    ("mathvista=..", r"'\.\.' is not a revision; valid: a full 40-hex commit sha, a branch or tag name"),
    ("mathvista=x;rm", r"is not a revision"),
    (f"mathvista={SHA_A},mathvista={SHA_B}", r"benchmark 'mathvista' is given twice"),
])
def test_bad_overrides_are_one_clear_line(value: str, message: str) -> None:
    with pytest.raises(RevisionError, match=message) as err:
        requested("mathvista", {ENV_VAR: value})
    assert str(err.value).startswith(ENV_VAR) and "\n" not in str(err.value)


# ---------------------------------------------------------------------------------------------------------
# The revision reaches datasets.load_dataset; what was read is checked and recorded


def test_hub_loads_pass_the_revision_and_record_it(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    hub = FakeHub([{"question": "q", "answer": "x #### 1"}])
    monkeypatch.setattr(datasets, "load_dataset", hub)
    monkeypatch.setenv("LMMS_EVAL_DATASETS_CACHE", str(tmp_path / "cache"))
    loaded = load_split(gsm8k.SOURCE, environ={ENV_VAR: f"gsm8k={SHA_A}"})
    assert (hub.calls[-1]["path"], hub.calls[-1]["name"], hub.calls[-1]["revision"]) == ("openai/gsm8k", "main",
                                                                                          SHA_A)
    assert (loaded.record.revision, loaded.record.origin, loaded.record.read) == (SHA_A, ENV_VAR, None)
    loaded = load_split(math500.SOURCE, environ={})
    assert hub.calls[-1]["revision"] == PINS["math500"].revision and loaded.record.origin == PINNED
    loaded = load_split(gsm8k.SOURCE, environ={})
    assert hub.calls[-1]["revision"] is None and (loaded.record.revision, loaded.record.origin) == (UNPINNED,
                                                                                                  UNPINNED)


def _cached_commits(cache: Path, commits: dict[str, str]) -> None:
    """A real datasets cache of Hub dataset ``org/toy`` at each commit (question text = its value), laid out as
    datasets lays out a Hub download (``org___toy/default/0.0.0/<commit>``); the last one is the newest."""
    from datasets.packaged_modules.json.json import Json

    for commit, question in commits.items():
        src = cache.parent / f"{commit}.jsonl"
        src.write_text(json.dumps({"question": question, "answer": "x #### 1"}) + "\n", encoding="utf-8")
        builder = Json(cache_dir=str(cache.parent / "build"), dataset_name="toy", hash=commit, config_name="default",
                       data_files={"test": str(src)})
        builder.download_and_prepare()
        dest = cache / "org___toy" / "default" / "0.0.0" / commit
        shutil.copytree(builder.cache_dir, dest)
        info = json.loads((dest / "dataset_info.json").read_text(encoding="utf-8"))
        (dest / "dataset_info.json").write_text(json.dumps({**info, "config_name": "default"}), encoding="utf-8")
        stamp = time.time() + len(os.listdir(dest.parent))
        os.utime(dest, (stamp, stamp))


def test_an_offline_cache_of_another_commit_is_refused(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Offline, datasets reads the newest cached copy whatever revision was asked for: a pinned commit must
    not silently become another one."""
    from lmms_eval.api.task import _resolve_hf_datasets_cache_dir

    cache = tmp_path / "hf"
    _cached_commits(cache, {SHA_A: "old wording", SHA_B: "corrected wording"})
    monkeypatch.setenv("LMMS_EVAL_DATASETS_CACHE", str(cache))
    _resolve_hf_datasets_cache_dir.cache_clear()  # lmms-eval resolves its cache folder once per process
    monkeypatch.setattr(datasets.config, "HF_HUB_OFFLINE", True)
    toy = HubSplit("org/toy", None, "test")
    with pytest.raises(RevisionError, match=rf"org/toy is pinned at {SHA_A} .* but datasets read commit {SHA_B}.*"
                                            rf"{ENV_VAR}=gsm8k={SHA_B}"):
        load_hub("gsm8k", toy, environ={ENV_VAR: f"gsm8k={SHA_A}"})
    loaded = load_hub("gsm8k", toy, environ={ENV_VAR: f"gsm8k={SHA_B}"})
    assert loaded.dataset[0]["question"] == "corrected wording" and loaded.record.read == SHA_B
    unpinned = load_hub("gsm8k", toy, environ={})
    assert (unpinned.record.revision, unpinned.record.read) == (UNPINNED, SHA_B)
    assert unpinned.record.describe()[1] == f"`{UNPINNED}` ({UNPINNED}, read `{SHA_B[:12]}`)"
    _resolve_hf_datasets_cache_dir.cache_clear()


# ---------------------------------------------------------------------------------------------------------
# Local mirrors: the folder and a content hash of the files read


def test_mirror_record_is_the_content_of_the_files_read(tmp_path: Path) -> None:
    one = load_split(gsm8k.SOURCE, environ={DATA_ENV: str(_gsm8k_mirror(tmp_path / "one"))}).record
    assert (one.source, one.dataset, one.files, one.origin) == ("local", str(tmp_path / "one" / "gsm8k"), 1,
                                                                "RD_EVAL_DATA_DIR")
    assert one.revision is not None and one.revision.startswith("sha256:")
    moved = load_split(gsm8k.SOURCE, environ={DATA_ENV: str(_gsm8k_mirror(tmp_path / "two"))}).record
    assert moved.revision == one.revision  # same files elsewhere: same content hash
    edited = load_split(gsm8k.SOURCE, environ={DATA_ENV: str(_gsm8k_mirror(tmp_path / "three", "5"))}).record
    assert edited.revision != one.revision


def test_image_forms_hash_their_images_too(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    folder = tmp_path / "math_vision"
    (folder / "images").mkdir(parents=True)
    record = {"id": "1", "question": "<image1> How many sides?", "options": [], "image": "images/1.jpg",
              "answer": "3"}
    (folder / "testmini.jsonl").write_text(json.dumps(record) + "\n", encoding="utf-8")
    Image.new("RGB", (8, 8), (0, 0, 0)).save(folder / "images" / "1.jpg")
    monkeypatch.setenv(DATA_ENV, str(tmp_path))

    def source(form: str) -> DataRecord:
        docs = mathvision.load(form)
        (raw,) = set(docs[COLUMN])
        return DataRecord.from_dict(json.loads(raw), form)

    img, txt = source("img"), source("txt")
    assert (img.files, txt.files) == (2, 1) and img.revision != txt.revision
    Image.new("RGB", (8, 8), (255, 0, 0)).save(folder / "images" / "1.jpg")
    assert source("img").revision != img.revision and source("txt").revision == txt.revision


def test_a_revision_for_a_mirrored_benchmark_is_refused(tmp_path: Path) -> None:
    env = {DATA_ENV: str(_gsm8k_mirror(tmp_path)), ENV_VAR: f"gsm8k={SHA_A}"}
    with pytest.raises(RevisionError, match=f"{ENV_VAR} sets a Hub revision for gsm8k, but {DATA_ENV}=.* would do "
                                            "nothing; unset one of the two"):
        load_split(gsm8k.SOURCE, environ=env)


# ---------------------------------------------------------------------------------------------------------
# Through lmms-eval: the task config it dumps, the documents, the rd_acc items


@pytest.fixture
def gsm8k_manager() -> Iterator[Any]:
    from lmms_eval.tasks import TaskManager

    yield TaskManager(include_path=[str(TASKS_DIR / "rd_gsm8k")], include_defaults=False)


def test_lmms_eval_task_config_and_items_carry_the_source(gsm8k_manager: Any, monkeypatch: pytest.MonkeyPatch,
                                                          tmp_path: Path) -> None:
    from lmms_eval.tasks import get_task_dict

    hub = FakeHub([{"question": "Ann has 2 apples. How many?", "answer": "#### 2"}])
    monkeypatch.setattr(datasets, "load_dataset", hub)
    monkeypatch.setenv("LMMS_EVAL_DATASETS_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv(ENV_VAR, f"gsm8k={SHA_A}")
    task = get_task_dict(["rd_gsm8k_txt"], gsm8k_manager)["rd_gsm8k_txt"]
    declared = task.dump_config()["metadata"][COLUMN]
    assert declared == DataRecord("gsm8k", "hub", "openai/gsm8k", SHA_A, ENV_VAR).to_dict()
    assert [c["revision"] for c in hub.calls] == [SHA_A]
    doc = next(iter(task.test_docs()))
    item = task.process_results(doc, ["\\boxed{2}"])["rd_acc"]
    assert item["correct"] == 1 and item[ITEM_KEY] == {**declared, "split": "test", "config": "main"}

    monkeypatch.setenv(ENV_VAR, "gsm8k=2b6ad69")
    with pytest.raises(RevisionError, match="abbreviated commit"):
        get_task_dict(["rd_gsm8k_txt"], gsm8k_manager)


# ---------------------------------------------------------------------------------------------------------
# The report


def _fake_run(out: Path, stamp: str, mirror: Path) -> None:
    """One run of rd_gsm8k's two forms on the mirror, written as lmms-eval writes it (answers all right)."""
    docs = gsm_utils.process_docs(datasets.Dataset.from_list([{PLACEHOLDER_KEY: "x"}]))
    folder = out / "fake"
    folder.mkdir(parents=True, exist_ok=True)
    declared = {"metadata": {COLUMN: declaration("gsm8k", "openai/gsm8k", "gsm8k")}}
    results = {"results": {}, "configs": {}, "config": {"model": "fake", "model_args": "pretrained=fake"}}
    for form, score in (("img", gsm_utils.process_results_img), ("txt", gsm_utils.process_results_txt)):
        task = f"rd_gsm8k_{form}"
        rows = [{"doc_id": i, **score(d, [f"\\boxed{{{d['final_answer']}}}"])} for i, d in enumerate(docs)]
        assert rows[0]["rd_acc"][ITEM_KEY]["dataset"] == str(mirror / "gsm8k")
        results["results"][task] = {"rd_acc,none": 1.0}
        results["configs"][task] = declared
        (folder / f"{stamp}_samples_{task}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows),
                                                             encoding="utf-8")
    (folder / f"{stamp}_results.json").write_text(json.dumps(results), encoding="utf-8")


def test_report_shows_each_benchmarks_data_and_warns_when_it_differs(tmp_path: Path,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    runs = tmp_path / "runs"
    for stamp, answer in (("20260101_000000", "3"), ("20260102_000000", "5")):
        mirror = _gsm8k_mirror(tmp_path / stamp, answer)
        monkeypatch.setenv(DATA_ENV, str(mirror))
        _fake_run(runs, stamp, mirror)
    report = build_report([runs], n_boot=50)
    rows = report["data_sources"]
    assert [(r["benchmark"], r["tasks"], len(r["runs"])) for r in rows] == [
        ("gsm8k", ["rd_gsm8k_img", "rd_gsm8k_txt"], 1)] * 2
    hashes = [r["record"]["revision"] for r in rows]
    markdown = to_markdown(report)
    assert "## Data" in markdown
    for stamp, digest in zip(("20260101_000000", "20260102_000000"), hashes, strict=True):
        assert f"| gsm8k | local mirror `{tmp_path / stamp / 'gsm8k'}` | {digest[:19]}… over 1 file |" in markdown
    assert "Warning: `rd_gsm8k_img`, `rd_gsm8k_txt` read different data in different runs" in markdown
    sources = data_provenance.run_sources(find_runs(runs)[0])
    assert sources["rd_gsm8k_txt"] is not None and sources["rd_gsm8k_txt"].source == "local"


def test_report_names_tasks_without_a_record(tmp_path: Path) -> None:
    folder = tmp_path / "old" / "fake"
    folder.mkdir(parents=True)
    results = {"results": {}, "configs": {"rd_demo_txt": {"metadata": {"version": 1.0}}},
               "config": {"model": "fake", "model_args": "pretrained=fake"}}
    (folder / "20250101_000000_results.json").write_text(json.dumps(results), encoding="utf-8")
    sample = {"doc_id": 0, "rd_acc": {"pair_id": "p", "form": "txt", "correct": 1, "pred": "1", "answer": "1",
                                      "error": None}}
    (folder / "20250101_000000_samples_rd_demo_txt.jsonl").write_text(json.dumps(sample) + "\n", encoding="utf-8")
    setting = type("S", (), {"key": "fake", "runs": find_runs(tmp_path / "old")})()
    lines = provenance_markdown(data_provenance.report_rows([setting]))
    assert "| – | not recorded | – | `rd_demo_txt` | – |" in lines
    # A run whose task config declares its source (the demo's bundled file) is reported from the declaration.
    results["configs"]["rd_demo_txt"]["metadata"][COLUMN] = demo_utils.DATA_SOURCE
    (folder / "20250101_000000_results.json").write_text(json.dumps(results), encoding="utf-8")
    setting.runs = find_runs(tmp_path / "old")
    (row,) = data_provenance.report_rows([setting])
    assert row["record"] == demo_utils.DATA_SOURCE and row["tasks"] == ["rd_demo_txt"]
    line = provenance_markdown([row])[-1]
    assert line.startswith(f"| demo | bundled with rd-eval `{demo_utils.DATA_FILE.parent}` | sha256:")
