"""`rd-eval sweep` on the tiny checkpoint: a setting run on the sweep's one loaded model writes what its own
`python -m lmms_eval` run writes; a sweep killed mid-setting resumes to the files of an uninterrupted one; failures
and bad input are one line with their exit codes; the loaded adapter refuses a switch to another model."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import yaml
from lmms_cli import OFFLINE
from test_multiprocess_cache import plain

from rd_eval.commands.main import main
from rd_eval.lmms.runner import lmms_eval_command, run_lmms_eval
from rd_eval.lmms.runs import find_runs
from rd_eval.reports.report import build_report, to_json
from rd_eval.routing.shards import merge_routing_records
from rd_eval.sweep.config import installed_tasks_dir, load_sweep_config
from rd_eval.sweep.execute import LmmsInvocation, load_model
from rd_eval.sweep.run import SweepResult, run_sweep
from rd_eval.sweep.state import SweepLayout, inspect_setting

pytestmark = pytest.mark.usefixtures("one_thread")

LIMIT = 2
SOFT = "soft_l1_b0.25-0.75"
KEYS = ["plain", SOFT]
# Results fields that differ between any two runs of the same setting, and why:
IGNORED_RESULTS_FIELDS = (
    "date",  # the run's start, also its file names' timestamp
    "start_time", "end_time", "total_evaluation_time_seconds",  # wall-clock timing
    "git_hash", "git_branch", "lmms_eval_version",  # HEAD of the repository holding lmms-eval's install folder
)
# Task configs hold functions, written as their repr: the address differs per process.
_ADDRESS = re.compile(r" at 0x[0-9a-f]+")
_TIMESTAMP = re.compile(r"\d{8}_\d{6}")
ENV = {**OFFLINE, "OMP_NUM_THREADS": "1"}


def sweep_yaml(folder: Path, checkpoint: Path, **changes: Any) -> Path:
    data = {"model": "rd_qwen3_vl_moe", "model_args": f"pretrained={checkpoint}", "tasks": ["rd_demo"],
            "experts": {"identify": {"domain": "rd_demo", "n": 4}},
            "settings": {"plain": True, "soft": {"lambda": [1]}},
            "lmms": {"batch_size": 1, "limit": LIMIT}} | changes
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "sweep.yaml"
    path.write_text(yaml.safe_dump(data), encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def config_path(tiny_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return sweep_yaml(tmp_path_factory.mktemp("sweep_config"), tiny_dir)


@pytest.fixture(scope="module")
def swept(config_path: Path, tmp_path_factory: pytest.TempPathFactory, one_thread: None) -> SweepResult:
    """The uninterrupted sweep every test compares with (in this process, as `rd-eval sweep` runs it)."""
    lines: list[str] = []
    result = run_sweep(load_sweep_config(config_path, out=tmp_path_factory.mktemp("swept") / "out"),
                       progress=False, say=lines.append, report_n_boot=200)
    assert [o.setting.key for o in result.outcomes] == KEYS, lines
    assert all(o.ran for o in result.outcomes)
    return result


def normalised_results(path: Path, run_dir: Path) -> dict[str, Any]:
    """A results json without the fields any two runs differ in, its own folder written as <RUN>."""
    text = _ADDRESS.sub("", path.read_text(encoding="utf-8")).replace(str(run_dir), "<RUN>")
    data = json.loads(text)
    for name in IGNORED_RESULTS_FIELDS:
        data.pop(name, None)
    return data


def samples_of(run_dir: Path) -> dict[str, list[dict[str, Any]]]:
    (run,) = find_runs(run_dir)
    return {task: [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]
            for task, path in run.samples.items()}


def test_the_model_loads_once_and_every_setting_is_written(swept: SweepResult) -> None:
    layout = SweepLayout(swept.out_dir)
    for outcome in swept.outcomes:
        assert outcome.run is not None and outcome.run.model == "rd_qwen3_vl_moe"
        assert outcome.run.results_path.is_relative_to(layout.run_dir(outcome.setting.key))
        assert inspect_setting(layout.root, outcome.setting).state == "complete"
        records = merge_routing_records(layout.routing_dir(outcome.setting.key))
        assert len(records) == 2 * LIMIT
        assert {r["intervention"] for r in records} == {outcome.setting.intervention_hash}
    soft = swept.outcomes[1]
    assert re.search(r"rd_demo \(n=2\): img \d+\.\d, txt \d+\.\d, gap [+-]\d+\.\d, gain [+-]\d+\.\d \[.*\], "
                     r"flip \d+\.\d%", soft.headline), soft.headline
    for name in ("report_md", "report_html", "leaderboard_html", "experts"):
        assert swept.paths[name].is_file(), name
    assert "soft λ=1" in swept.paths["report_md"].read_text(encoding="utf-8")


def test_a_setting_writes_what_its_own_lmms_eval_run_writes(swept: SweepResult, tmp_path: Path,
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    layout = SweepLayout(swept.out_dir)
    planned = {s["key"]: s["model_args"] for s in json.loads(layout.sweep_file.read_text())["settings"]}
    sweep_run = layout.run_dir(SOFT)
    cli_run = tmp_path / SOFT
    # The same model_args but for where the shards go: the CLI run's own folder, as in the sweep.
    model_args = planned[SOFT].replace(str(sweep_run), str(cli_run))
    assert model_args != planned[SOFT]
    for key, value in ENV.items():
        monkeypatch.setenv(key, value)
    command = lmms_eval_command("rd_qwen3_vl_moe", model_args, ["rd_demo"], cli_run, include_path=installed_tasks_dir(),
                                batch_size=1, seed=0, limit=LIMIT)
    cli = run_lmms_eval(command, cli_run, tmp_path / "cli.log")

    (sweep,) = find_runs(sweep_run)
    assert normalised_results(sweep.results_path, sweep_run) == normalised_results(cli.results_path, cli_run)
    assert json.loads(sweep.results_path.read_text())["config"]["model_args"] == planned[SOFT]
    assert sweep.results_path.relative_to(sweep_run).parent == cli.results_path.relative_to(cli_run).parent
    assert samples_of(sweep_run) == samples_of(cli_run)
    assert {t: len(s) for t, s in samples_of(sweep_run).items()} == {"rd_demo_img": LIMIT, "rd_demo_txt": LIMIT}
    assert plain(merge_routing_records(layout.routing_dir(SOFT))) == plain(merge_routing_records(cli_run /
                                                                                                   "rd_routing"))
    # rd-eval's report reads both alike.
    reports = [to_json(build_report([folder], n_boot=50)).replace(str(folder), "<RUN>")
               for folder in (sweep_run, cli_run)]
    assert _TIMESTAMP.sub("<TS>", reports[0]) == _TIMESTAMP.sub("<TS>", reports[1])


def files_of(root: Path) -> set[str]:
    """Every file under `root`, timestamps in names written as <TS>."""
    return {_TIMESTAMP.sub("<TS>", p.relative_to(root).as_posix()) for p in root.rglob("*") if p.is_file()}


def test_a_sweep_killed_mid_setting_resumes_to_the_uninterrupted_files(swept: SweepResult, config_path: Path,
                                                                       tmp_path: Path) -> None:
    out = tmp_path / "killed"
    shard = SweepLayout(out).routing_dir(SOFT) / "routing_rank000.jsonl"
    process = subprocess.Popen([sys.executable, "-m", "rd_eval", "sweep", str(config_path), "--out", str(out),
                                "--no-progress"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                               env={**os.environ, **ENV})
    try:
        deadline = time.monotonic() + 240
        while not (shard.is_file() and shard.stat().st_size > 0):  # the soft setting's first batch is recorded
            assert process.poll() is None, "the sweep ended before it could be killed mid-setting"
            assert time.monotonic() < deadline, "the soft setting never started"
            time.sleep(0.02)
    finally:
        process.send_signal(signal.SIGKILL)
        process.wait()
    layout = SweepLayout(out)
    states = {s.key: inspect_setting(out, s).state for s in (o.setting for o in swept.outcomes)}
    assert states == {"plain": "complete", SOFT: "partial"}

    lines: list[str] = []
    result = run_sweep(load_sweep_config(config_path, out=out), progress=False, say=lines.append, report_n_boot=200)
    assert [o.ran for o in result.outcomes] == [False, True]
    assert f"skip plain: complete in {layout.run_dir('plain')}" in lines
    assert any(line.startswith("rerun soft λ=1") and "cleared" in line for line in lines), lines
    assert any("recorded in" in line for line in lines)  # the experts of the killed run, not identified again

    assert files_of(out) == files_of(swept.out_dir)
    for key in KEYS:
        assert samples_of(layout.run_dir(key)) == samples_of(SweepLayout(swept.out_dir).run_dir(key))
        assert plain(merge_routing_records(layout.routing_dir(key))) == \
            plain(merge_routing_records(SweepLayout(swept.out_dir).routing_dir(key)))



def failing_tasks(folder: Path) -> Path:
    """An include path with one task whose prompt cannot be built: lmms-eval's evaluation itself fails."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "sweep_fail_utils.py").write_text(
        "def doc_to_text(doc):\n    raise RuntimeError('planted: this prompt cannot be built')\n", encoding="utf-8")
    data = installed_tasks_dir() / "rd_demo" / "rd_demo.jsonl"
    (folder / "rd_sweep_fail.yaml").write_text(
        f"task: rd_sweep_fail\ndataset_path: json\ndataset_kwargs:\n  data_files:\n    test: {data}\n"
        "test_split: test\noutput_type: generate_until\ndoc_to_text: !function sweep_fail_utils.doc_to_text\n"
        "doc_to_target: answer\nmetric_list:\n  - metric: exact_match\n", encoding="utf-8")
    return folder


def test_a_failed_setting_is_one_line_naming_its_log_and_exit_1(tiny_dir: Path, tmp_path: Path,
                                                               capsys: pytest.CaptureFixture[str]) -> None:
    include = failing_tasks(tmp_path / "tasks")
    config = sweep_yaml(tmp_path, tiny_dir, tasks=["rd_sweep_fail"], experts={}, settings={"plain": True},
                        lmms={"limit": 1, "include_path": str(include)})
    out = tmp_path / "out"
    assert main(["sweep", str(config), "--out", str(out), "--no-progress"]) == 1
    err = [line for line in capsys.readouterr().err.splitlines() if line.startswith("rd-eval sweep")]
    log = out / "logs" / "plain.log"
    assert len(err) == 1 and err[0].startswith("rd-eval sweep: failed: setting plain (plain) failed:"), err
    assert "planted: this prompt cannot be built" in err[0] and f"log: {log}" in err[0]
    assert f"folder: {out / 'runs' / 'plain'}" in err[0]
    assert "Traceback" in log.read_text(encoding="utf-8")  # the whole story is in the log
    assert inspect_setting(out, load_plain(config, out)).state in ("partial", "missing")
    assert not list(out.rglob("*_results.json"))


def load_plain(config: Path, out: Path) -> Any:
    from rd_eval.sweep.grid import expand_settings

    return expand_settings(load_sweep_config(config, out=out).settings, None)[0]


@pytest.mark.parametrize("case", ["missing file", "unknown task", "changed config"])
def test_bad_input_is_one_line_and_exit_2(case: str, tiny_dir: Path, tmp_path: Path, swept: SweepResult,
                                         config_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    if case == "missing file":
        argv, expected = ["sweep", str(tmp_path / "nope.yaml")], "nope.yaml"
    elif case == "unknown task":
        config = sweep_yaml(tmp_path, tiny_dir, tasks=["rd_no_such_task"], experts={}, settings={"plain": True})
        argv, expected = ["sweep", str(config), "--out", str(tmp_path / "out")], "rd_no_such_task"
    else:  # the swept folder with another config: refused before anything runs
        config = sweep_yaml(tmp_path, tiny_dir, lmms={"batch_size": 1, "limit": LIMIT + 1})
        argv, expected = ["sweep", str(config), "--out", str(swept.out_dir)], "config changed"
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()  # nothing else: refused before the model loads
    assert len(err) == 1 and err[0].startswith("rd-eval sweep: error:") and expected in err[0], err


def test_the_loaded_adapter_switches_routing_but_never_the_model(tiny_dir: Path, tmp_path: Path) -> None:
    base = f"pretrained={tiny_dir},max_pixels=65536"
    lm = load_model(LmmsInvocation("rd_qwen3_vl_moe", f"{base},record_routing=false", ("rd_demo",), tmp_path,
                                   installed_tasks_dir()))
    assert lm.rd_shard is None
    lm.rd_apply_routing(f"{base},routing_dir={tmp_path / 'records'}")
    assert lm.rd_shard is not None and lm.rd_routing_dir == tmp_path / "records"
    assert lm.rd_settings.intervention is None
    with pytest.raises(ValueError, match=r"pretrained='/elsewhere' \(built with '.*'\);.*only the routing keys"):
        lm.rd_apply_routing("pretrained=/elsewhere,max_pixels=65536")
    with pytest.raises(ValueError, match=r": max_pixels=4096 \(built with 65536\); only"):
        lm.rd_apply_routing(f"pretrained={tiny_dir},max_pixels=4096")
    with pytest.raises(ValueError, match=r": no max_pixels \(built with 65536\); only"):
        lm.rd_apply_routing(f"pretrained={tiny_dir}")
    with pytest.raises(ValueError, match=r": min_pixels=1024 \(built without it\); only"):
        lm.rd_apply_routing(f"{base},min_pixels=1024")
    assert lm.rd_routing_dir == tmp_path / "records"  # a refused switch changed nothing

DEMO = Path(__file__).resolve().parents[1] / "examples" / "demo_sweep.yaml"


@pytest.fixture(scope="module")
def demo_swept(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, subprocess.CompletedProcess[str]]:
    """`rd-eval sweep examples/demo_sweep.yaml --out DIR` from the command line, as the README gives it."""
    out = tmp_path_factory.mktemp("demo_sweep") / "out"
    result = subprocess.run([sys.executable, "-m", "rd_eval", "sweep", str(DEMO), "--out", str(out), "--no-progress"],
                            capture_output=True, text=True, env={**os.environ, **ENV}, timeout=600, check=False)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return out, result


def test_the_demo_sweep_runs_from_the_command_line(demo_swept: tuple[Path, subprocess.CompletedProcess[str]]) -> None:
    out, result = demo_swept
    settings = json.loads((out / "sweep.json").read_text())["settings"]
    assert len(settings) >= 4 and settings[0]["key"] == "plain"
    layout = SweepLayout(out)
    for setting in settings:
        assert len(find_runs(layout.run_dir(setting["key"]))) == 1
        assert f"{setting['label']} [{setting['key']}]" in result.stdout  # its headline line
    assert "rd_organism (n=" in result.stdout and "gain " in result.stdout
    for path in ("experts/domain_experts.json", "report/report.md", "report/report.html",
                 "report/plots/gain_vs_lambda.png", "leaderboard/leaderboard.html", "leaderboard/leaderboard.md"):
        assert (out / path).is_file(), path
    assert "Sweep done:" in result.stdout and f"({len(settings)} run, 0 complete before)" in result.stdout


def test_the_demo_sweep_rerun_skips_everything(demo_swept: tuple[Path, subprocess.CompletedProcess[str]],
                                               capsys: pytest.CaptureFixture[str]) -> None:
    out, _ = demo_swept
    results = sorted(out.rglob("*_results.json"))
    assert main(["sweep", str(DEMO), "--out", str(out), "--no-progress"]) == 0
    printed = capsys.readouterr().out
    settings = json.loads((out / "sweep.json").read_text())["settings"]
    for setting in settings:
        assert f"skip {setting['label']}: complete in {SweepLayout(out).run_dir(setting['key'])}" in printed
    assert f"(0 run, {len(settings)} complete before)" in printed
    assert sorted(out.rglob("*_results.json")) == results  # nothing evaluated again
