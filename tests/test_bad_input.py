"""Every bad input of the command line is one clear line (`rd-eval <cmd>: error: ...`), exit code 2, no traceback,
and is refused before any work. model_args settings go through lmms-eval's own parser, as lmms-eval hands them
to an `rd_*` model (tests/test_readme.py shows one through `python -m lmms_eval` itself)."""

from __future__ import annotations

import contextlib
import json
import os
import re
import shlex
import stat
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from lmms_eval.utils import simple_parse_args_string
from test_leaderboard import outcomes, write_run

import rd_eval.commands.demo
import rd_eval.commands.experts
import rd_eval.models.tiny
import rd_eval.reports.check
import rd_eval.reports.leaderboard
import rd_eval.reports.report
from rd_eval.commands.main import main
from rd_eval.fileio.jsonio import write_text_atomic
from rd_eval.routing.settings import pop_routing_settings
from rd_eval.routing.spec import ExpertSet, InterventionSpec, LayerExperts, SpecError

NOT_UTF8 = b'{"format": "caf\xe9"}'
HEAVY = {  # the work each command does once its inputs are accepted
    rd_eval.reports.report: "build_report",
    rd_eval.reports.leaderboard: "build_leaderboard",
    rd_eval.reports.check: "write_baseline",
    rd_eval.commands.experts: "load_model",
    rd_eval.commands.demo: "run_demo",
}


def one_clear_line(argv: list[str], capsys: pytest.CaptureFixture[str], *fragments: str) -> str:
    """Run the CLI; assert exit 2, one stderr line `rd-eval <cmd>: error: ...` holding every fragment."""
    try:
        code = main(argv)
    except SystemExit as exc:  # argparse's own errors
        code = exc.code
    captured = capsys.readouterr()
    lines = [line for line in captured.err.splitlines() if line.strip()]
    assert code == 2, captured
    assert "Traceback" not in captured.err + captured.out
    assert len(lines) == 1, lines
    assert lines[0].startswith(f"rd-eval {argv[0]}"), lines[0]
    assert ": error: " in lines[0], lines[0]
    for fragment in fragments:
        assert fragment in lines[0], (fragment, lines[0])
    return lines[0]


@pytest.fixture
def no_work(monkeypatch: pytest.MonkeyPatch) -> None:
    """Any command that gets past its input checks fails the test: bad input must be refused first."""
    def refuse(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("the command started its work before refusing its bad input")

    for module, name in HEAVY.items():
        monkeypatch.setattr(module, name, refuse)
    tiny = rd_eval.models.tiny
    monkeypatch.setattr(tiny, "_builder", lambda family: refuse if family in tiny.TINY_BUILDERS else None)


@pytest.fixture
def run_dir(tmp_path: Path) -> Path:
    """A small synthetic lmms-eval run (one setting, both forms of one benchmark)."""
    root = tmp_path / "run"
    write_run(root, "20250101_120000", {"rd_x_img": outcomes(6, 8), "rd_x_txt": outcomes(7, 8)}, model="rd_a",
              model_args="pretrained=org/ckpt-a")
    return root


@pytest.fixture
def blocker(tmp_path: Path) -> Path:
    """A plain file where a folder would have to be."""
    path = tmp_path / "a-file"
    path.write_text("not a folder")
    return path


# -- every output path is checked before any work; '' is never the current folder ---------------------------

# (name, argv, fragments of the one line); {r}: a run folder, {b}: a plain file, {t}: a folder of the user's
OUTPUT_CASES: list[tuple[str, str, tuple[str, ...]]] = [
    ("report --out ''", "report {r} --out ''", ("--out ''", "empty")),
    ("report --out FILE", "report {r} --out {b}", ("{b}", "not a folder")),
    ("report --out FILE/sub", "report {r} --out {b}/sub", ("{b}", "not a folder")),
    ("report --out DIR whose report.html is a folder", "report {r} --format html --out {t}/rep",
     ("report.html", "is a folder")),
    ("report RUN_DIR ''", "report ''", ("RUN_DIR ''", "empty")),
    ("leaderboard --out ''", "leaderboard {r} --out ''", ("--out ''", "empty")),
    ("leaderboard --out FILE", "leaderboard {r} --out {b}", ("{b}", "not a folder")),
    ("leaderboard --out FILE/sub", "leaderboard {r} --out {b}/sub", ("{b}", "not a folder")),
    ("leaderboard --out x.md (a file, as before)", "leaderboard {r} --out {t}/x.md", ("x.md", "--out is a folder")),
    ("leaderboard --out DIR whose leaderboard.html is a folder", "leaderboard {r} --format html --out {t}/rep",
     ("leaderboard.html", "is a folder")),
    ("leaderboard --out DIR whose plots is a file", "leaderboard {r} --out {t}/blocked", ("plots", "not a folder")),
    ("leaderboard RESULTS_DIR ''", "leaderboard ''", ("RESULTS_DIR ''", "empty")),
    ("check --write-baseline ''", "check {r} --write-baseline ''", ("--write-baseline ''", "empty")),
    ("check --write-baseline DIR", "check {r} --write-baseline {t}", ("{t}", "is a folder")),
    ("check --write-baseline FILE/b.json", "check {r} --write-baseline {b}/b.json", ("{b}", "not a folder")),
    ("check RUN_DIR ''", "check '' --write-baseline {t}/b.json", ("RUN_DIR ''",)),
    ("check --baseline ''", "check {r} --baseline ''", ("--baseline ''", "empty")),
    ("make-tiny OUT_DIR ''", "make-tiny qwen3_vl_moe ''", ("OUT_DIR ''", "empty")),
    ("make-tiny '' --overwrite", "make-tiny qwen3_vl_moe '' --overwrite", ("OUT_DIR ''",)),
    ("make-tiny OUT_DIR FILE --overwrite", "make-tiny qwen3_vl_moe {b} --overwrite", ("{b}", "not a folder")),
    ("make-tiny OUT_DIR FILE/sub", "make-tiny qwen3_vl_moe {b}/sub", ("{b}", "not a folder")),
    ("make-tiny --overwrite a user's folder", "make-tiny qwen3_vl_moe {t} --overwrite",
     ("{t}", "holds no tiny checkpoint")),
    ("experts --out ''", "experts --pretrained {t} --out ''", ("--out ''", "empty")),
    ("experts --out FILE/x.json", "experts --pretrained {t} --out {b}/x.json", ("{b}", "not a folder")),
    ("experts --out DIR", "experts --pretrained {t} --out {t}", ("{t}", "is a folder")),
    ("experts --domain-file ''", "experts --pretrained {t} --domain-file '' --out {t}/e.json",
     ("--domain-file ''", "empty")),
]


def argv_of(template: str, **paths: Path) -> list[str]:
    return [word.format(**paths) for word in shlex.split(template)]


@pytest.mark.parametrize(("argv", "fragments"), [c[1:] for c in OUTPUT_CASES], ids=[c[0] for c in OUTPUT_CASES])
def test_output_paths_are_checked_before_any_work(argv: str, fragments: tuple[str, ...], run_dir: Path,
                                                  blocker: Path, tmp_path: Path, no_work: None,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "rep" / "report.html").mkdir(parents=True)
    (tmp_path / "rep" / "leaderboard.html").mkdir()
    (tmp_path / "blocked").mkdir()
    (tmp_path / "blocked" / "plots").write_text("a file where the plots folder would be")
    (tmp_path / "keep.txt").write_text("user data")
    paths = {"r": run_dir, "b": blocker, "t": tmp_path}
    one_clear_line(argv_of(argv, **paths), capsys, *(f.format(**paths) for f in fragments))
    assert (tmp_path / "keep.txt").read_text() == "user data"
    assert blocker.read_text() == "not a folder"


def test_make_tiny_overwrite_never_replaces_the_current_folder(tmp_path: Path) -> None:
    """`rd-eval make-tiny "" --overwrite` used to replace the current folder's contents."""
    from test_cli import assert_bad_input, run_cli

    (tmp_path / "keep.txt").write_text("user data")
    for out_dir in ("", "."):
        assert_bad_input(run_cli("make-tiny", "qwen3_vl_moe", out_dir, "--overwrite", cwd=tmp_path), "current folder")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["keep.txt"]


def test_make_tiny_overwrite_replaces_only_a_tiny_checkpoint(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                           capsys: pytest.CaptureFixture[str]) -> None:
    def fake_build(out: Path, seed: int) -> None:
        (out / "config.json").write_text(json.dumps({"model_type": "qwen3_vl_moe", "seed": seed}))

    monkeypatch.setattr(rd_eval.models.tiny, "_builder", lambda family: fake_build)
    target = tmp_path / "tiny"
    assert main(["make-tiny", "qwen3_vl_moe", str(target)]) == 0
    one_clear_line(["make-tiny", "qwen3_vl_moe", str(target)], capsys, "already holds a tiny checkpoint",
                   "--overwrite")
    assert main(["make-tiny", "qwen3_vl_moe", str(target), "--seed", "3", "--overwrite"]) == 0
    assert json.loads((target / "config.json").read_text())["seed"] == 3
    (target / rd_eval.models.tiny.PROVENANCE_FILE).unlink()  # no longer recognisably ours
    one_clear_line(["make-tiny", "qwen3_vl_moe", str(target), "--overwrite"], capsys, "holds no tiny checkpoint")
    assert (target / "config.json").is_file()
    empty = tmp_path / "empty"
    empty.mkdir()
    assert main(["make-tiny", "qwen3_vl_moe", str(empty)]) == 0  # an empty folder needs no --overwrite


# -- unreadable and non-UTF-8 JSON files name the file ------------------------------------------------------

def test_check_baseline_not_utf8_names_the_file(run_dir: Path, tmp_path: Path,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "latin1.json"
    path.write_bytes(NOT_UTF8)
    one_clear_line(["check", str(run_dir), "--baseline", str(path)], capsys, str(path), "not UTF-8")


def test_check_baseline_that_is_a_folder_names_it(run_dir: Path, tmp_path: Path,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    one_clear_line(["check", str(run_dir), "--baseline", str(tmp_path)], capsys, str(tmp_path), "is a folder")


def test_experts_domain_file_not_utf8_names_the_file(tmp_path: Path, no_work: None,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    checkpoint = tmp_path / "ckpt"
    checkpoint.mkdir()
    (checkpoint / "config.json").write_text("{}")
    probes = tmp_path / "gsm8k.jsonl"
    probes.write_bytes(b'{"question": "caf\xe9"}\n')
    one_clear_line(["experts", "--pretrained", str(checkpoint), "--domain-file", str(probes),
                    "--out", str(tmp_path / "e.json")], capsys, str(probes), "not UTF-8")


def settings_of(model_args: str) -> Any:
    """model_args as lmms-eval hands them to an rd_* model: its own parser, then our settings."""
    return pop_routing_settings(simple_parse_args_string(model_args))


def expert_set(tmp_path: Path, layers: list[dict[str, Any]] | None = None) -> Path:
    data = ExpertSet(model="m", kind="domain", layers=(LayerExperts(0, (1, 2)), LayerExperts(1, (3,)))).to_json()
    if layers is not None:
        data["layers"] = layers
    path = tmp_path / "experts.json"
    path.write_text(json.dumps(data), encoding="utf-8")
    return path


def spec_file(tmp_path: Path, **changes: Any) -> Path:
    data = InterventionSpec(experts=ExpertSet.load(expert_set(tmp_path))).to_json() | changes
    path = tmp_path / "spec.json"
    path.write_text(json.dumps(data), encoding="utf-8")
    return path


@pytest.mark.parametrize("key", ["expert_set", "intervention"])
def test_model_args_file_not_utf8_or_a_folder_names_key_and_file(key: str, tmp_path: Path) -> None:
    path = tmp_path / "latin1.json"
    path.write_bytes(NOT_UTF8)
    with pytest.raises(SpecError) as info:
        settings_of(f"pretrained=x,{key}={path}")
    assert f"model_args {key}" in str(info.value) and str(path) in str(info.value) and "UTF-8" in str(info.value)
    with pytest.raises(SpecError, match=f"model_args {key}: {re.escape(str(tmp_path))}: is a folder"):
        settings_of(f"pretrained=x,{key}={tmp_path}")
    with pytest.raises(SpecError, match=f"model_args {key}= is empty"):
        settings_of(f"pretrained=x,{key}=")


# -- floats and bools are refused as expert ids, layers and seeds, never truncated ------------------------------

FILE_NUMBER_CASES = [
    ("expert id 1.7", lambda t: expert_set(t, [{"moe_index": 0, "experts": [1.7]}]), "experts [1.7] invalid"),
    ("expert id true", lambda t: expert_set(t, [{"moe_index": 0, "experts": [True]}]), "experts [True] invalid"),
    ("expert id '3'", lambda t: expert_set(t, [{"moe_index": 0, "experts": ["3"]}]), "experts ['3'] invalid"),
    ("layer 1.0", lambda t: expert_set(t, [{"moe_index": 1.0, "experts": [1]}]), "layer 1.0 invalid"),
    ("layer false", lambda t: expert_set(t, [{"moe_index": False, "experts": [1]}]), "layer False invalid"),
    ("spec seed 1.5", lambda t: spec_file(t, seed=1.5), "seed 1.5 invalid"),
    ("spec seed true", lambda t: spec_file(t, seed=True), "seed True invalid"),
    ("spec seed -1", lambda t: spec_file(t, seed=-1), "seed -1 invalid"),
    ("spec band layers [1.5]", lambda t: spec_file(t, band={"layers": [1.5]}), "band layers [1.5] invalid"),
    ("spec band layers [true]", lambda t: spec_file(t, band={"layers": [True]}), "band layers [True] invalid"),
    ("spec lambda true", lambda t: spec_file(t, **{"lambda": True}), "lambda True invalid"),
    ("spec lambda '2'", lambda t: spec_file(t, **{"lambda": "2"}), "lambda '2' invalid"),
]


@pytest.mark.parametrize(("make", "fragment"), [(c[1], c[2]) for c in FILE_NUMBER_CASES],
                         ids=[c[0] for c in FILE_NUMBER_CASES])
def test_spec_and_expert_set_files_refuse_floats_and_bools(make: Callable[[Path], Path], fragment: str,
                                                          tmp_path: Path) -> None:
    path = make(tmp_path)
    key = "intervention" if path.name == "spec.json" else "expert_set"
    with pytest.raises(SpecError) as info:
        settings_of(f"pretrained=x,{key}={path}")
    message = str(info.value)
    assert str(path) in message and fragment in message and "\n" not in message, message


MODEL_ARGS_CASES = [
    ("intervention_seed=abc", "model_args intervention_seed='abc' invalid"),
    ("intervention_seed=1.7", "model_args intervention_seed=1.7 invalid"),
    ("intervention_seed=true", "model_args intervention_seed=True invalid"),
    ("intervention_seed=-3", "model_args intervention_seed=-3.0 invalid"),  # lmms-eval makes -3 a float
    ("intervention_band=1.7", "model_args intervention_band: band '1.7' invalid"),
    ("intervention_band=1.5:2", "model_args intervention_band: band '1.5:2' invalid"),
    ("intervention_band=true", "model_args intervention_band: band 'True' invalid"),
    ("intervention_band=1:2,3", None),  # lmms-eval itself splits at the comma: '3' is no key=value
    ("intervention_lambda=true", "model_args intervention_lambda=True is not a number"),
    ("intervention_lambda=nan", "strength (lambda) nan invalid"),
    ("intervention_lambda=inf", "strength (lambda) inf invalid"),
    ("intervention_mode=boost", "model_args: intervention mode 'boost' invalid"),
    ("routing_dir=", "model_args routing_dir= is empty"),
]


@pytest.mark.parametrize(("setting", "fragment"), MODEL_ARGS_CASES, ids=[c[0] for c in MODEL_ARGS_CASES])
def test_model_args_numbers_are_refused_naming_the_key(setting: str, fragment: str | None, tmp_path: Path) -> None:
    args = f"pretrained=x,expert_set={expert_set(tmp_path)},{setting}"
    if fragment is None:
        with pytest.raises(ValueError):
            simple_parse_args_string(args)
        return
    with pytest.raises(SpecError) as info:
        settings_of(args)
    assert fragment in str(info.value) and "\n" not in str(info.value), str(info.value)


def test_model_args_band_indices_pass_lmms_eval_parser(tmp_path: Path) -> None:
    spec = settings_of(f"pretrained=x,expert_set={expert_set(tmp_path)},intervention_band=1:3,intervention_seed=7")
    assert spec.intervention.band.layers == (1, 3) and spec.intervention.seed == 7
    assert settings_of(f"pretrained=x,expert_set={expert_set(tmp_path)},intervention_band=2").intervention.band.layers \
        == (2,)


def test_a_hash_lmms_eval_turns_into_a_number_still_matches(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """lmms-eval's parser makes '012345678901' the int 12345678901 and '1234e5678901' a float."""
    path = expert_set(tmp_path)
    for digest in ("012345678901", "1234e5678901"):
        monkeypatch.setattr(InterventionSpec, "content_hash", lambda self, d=digest: d)
        assert settings_of(f"pretrained=x,expert_set={path},intervention_hash={digest}").intervention_hash == digest
        with pytest.raises(SpecError, match="does not match"):
            settings_of(f"pretrained=x,expert_set={path},intervention_hash=987654321098")


# -- numbers on the command line ------------------------------------------------------------------------------

CLI_NUMBER_CASES = [
    ("check --max-drop inf", "check {r} --baseline {t} --max-drop inf", ("--max-drop inf invalid",)),
    ("check --max-drop nan", "check {r} --baseline {t} --max-drop nan", ("--max-drop nan invalid",)),
    ("check --max-drop -1", "check {r} --baseline {t} --max-drop -1", ("--max-drop -1.0 invalid",)),
    ("check --alpha nan", "check {r} --baseline {t} --alpha nan", ("--alpha nan invalid",)),
    ("demo --lambda nan", "demo --out {t}/d --lambda nan", ("--lambda nan invalid",)),
    ("demo --band 1.5:2", "demo --out {t}/d --band 1.5:2", ("band '1.5:2' invalid",)),
    ("demo --band 1:2,3", "demo --out {t}/d --band 1:2,3", ("mixes ':' and ','",)),
    ("experts --band 0.5", "experts --pretrained {t} --band 0.5", ("band '0.5' invalid",)),
    ("make-tiny --seed 1.5", "make-tiny qwen3_vl_moe {t}/x --seed 1.5", ("--seed", "'1.5'")),
    ("experts --n 2.5", "experts --pretrained {t} --n 2.5", ("--n", "'2.5'")),
    ("report --n-boot x", "report {r} --n-boot x", ("--n-boot", "'x'")),
]


@pytest.mark.parametrize(("argv", "fragments"), [c[1:] for c in CLI_NUMBER_CASES],
                         ids=[c[0] for c in CLI_NUMBER_CASES])
def test_command_line_numbers(argv: str, fragments: tuple[str, ...], run_dir: Path, tmp_path: Path, no_work: None,
                              capsys: pytest.CaptureFixture[str]) -> None:
    one_clear_line(argv_of(argv, r=run_dir, t=tmp_path), capsys, *fragments)


# -- check: a baseline of another model is refused unless the comparison is intended ---------------------------

@pytest.fixture
def baseline(run_dir: Path, tmp_path: Path) -> Path:
    path = tmp_path / "baseline.json"
    assert main(["check", str(run_dir), "--write-baseline", str(path)]) == 0
    return path


@pytest.mark.parametrize(("key", "value", "fragment"), [
    ("model", "rd_other", "model differs: baseline 'rd_other', run 'rd_a'"),
    ("checkpoint", "org__ckpt-b", "checkpoint differs: baseline 'org__ckpt-b'"),
    ("intervention", "0123456789ab", "intervention differs: baseline '0123456789ab', run 'none'"),
])
def test_check_refuses_another_models_baseline(key: str, value: str, fragment: str, baseline: Path, run_dir: Path,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    data = json.loads(baseline.read_text(encoding="utf-8"))
    data[key] = value
    baseline.write_text(json.dumps(data), encoding="utf-8")
    capsys.readouterr()
    one_clear_line(["check", str(run_dir), "--baseline", str(baseline)], capsys, fragment, "--allow-other-model")
    assert main(["check", str(run_dir), "--baseline", str(baseline), "--allow-other-model"]) == 0
    out = capsys.readouterr().out
    assert "PASS" in out and f"note: {fragment}" in out


def test_check_hand_written_baseline_names_its_checkpoint_in_model_args(baseline: Path, run_dir: Path,
                                                                        capsys: pytest.CaptureFixture[str]) -> None:
    data = json.loads(baseline.read_text(encoding="utf-8"))
    del data["checkpoint"]
    data["model_args"] = "pretrained=org/ckpt-b"
    baseline.write_text(json.dumps(data), encoding="utf-8")
    capsys.readouterr()
    one_clear_line(["check", str(run_dir), "--baseline", str(baseline)], capsys, "checkpoint differs")
    data["model_args"] = "pretrained=org/ckpt-a"
    baseline.write_text(json.dumps(data), encoding="utf-8")
    assert main(["check", str(run_dir), "--baseline", str(baseline)]) == 0


# -- a '|' in any value keeps markdown table columns -----------------------------------------------------------

def columns(line: str) -> int:
    """Cells of a GitHub-flavoured markdown table row: pipes not escaped by a backslash."""
    body = re.sub(r"\\.", "x", line.strip())
    return body.strip("|").count("|") + 1


def assert_tables_aligned(markdown: str) -> int:
    tables, width = 0, None
    for line in markdown.splitlines() + [""]:
        if line.startswith("|"):
            tables += width is None
            width = width or columns(line)
            assert columns(line) == width, (line, width)
        else:
            width = None
    return tables


@pytest.fixture
def piped_runs(tmp_path: Path) -> Path:
    root = tmp_path / "piped"
    args = "pretrained=org/ck|pt"
    write_run(root / "plain", "20250101_120000", {"rd_p|q_img": outcomes(6, 8), "rd_p|q_txt": outcomes(8, 8)},
              model="rd|a", model_args=args)
    write_run(root / "worse", "20250101_130000", {"rd_p|q_img": outcomes(0, 8), "rd_p|q_txt": outcomes(8, 8)},
              model="rd|a", model_args=args)
    return root


def test_pipes_in_names_keep_table_columns(piped_runs: Path, tmp_path: Path,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["leaderboard", str(piped_runs / "plain")]) == 0
    board = capsys.readouterr().out
    assert assert_tables_aligned(board) == 1 and "rd\\|a" in board and "rd_p\\|q img" in board
    assert main(["report", str(piped_runs / "plain"), "--n-boot", "50"]) == 0
    report = capsys.readouterr().out
    assert assert_tables_aligned(report) >= 1 and "| rd_p\\|q |" in report
    assert main(["report", str(piped_runs / "plain"), "--n-boot", "50", "--format", "html",
                 "--out", str(tmp_path / "html")]) == 0
    assert "<td>rd_p|q</td>" in (tmp_path / "html" / "report.html").read_text(encoding="utf-8")
    baseline = tmp_path / "b.json"
    assert main(["check", str(piped_runs / "plain"), "--write-baseline", str(baseline)]) == 0
    assert main(["check", str(piped_runs / "worse"), "--baseline", str(baseline), "--max-drop", "0"]) == 1
    verdict = capsys.readouterr().out
    assert assert_tables_aligned(verdict) == 1 and "| task | rd_p\\|q_img |" in verdict


# -- written files are readable by others (the umask decides, as for any new file) ----------------------------

@contextlib.contextmanager
def umask(mask: int) -> Iterator[None]:
    old = os.umask(mask)
    try:
        yield
    finally:
        os.umask(old)


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_written_files_follow_the_umask(run_dir: Path, tmp_path: Path) -> None:
    with umask(0o022):
        assert main(["check", str(run_dir), "--write-baseline", str(tmp_path / "b.json")]) == 0
        assert main(["leaderboard", str(run_dir), "--format", "md", "--out", str(tmp_path / "lb")]) == 0
        assert main(["report", str(run_dir), "--n-boot", "50", "--out", str(tmp_path / "rep")]) == 0
        write_text_atomic(tmp_path / "b.json", "replaced\n")  # a replaced file too
    for written in (tmp_path / "b.json", tmp_path / "lb" / "leaderboard.md", tmp_path / "rep" / "report.md"):
        assert mode(written) == 0o644, (written, oct(mode(written)))
    with umask(0o077):
        assert mode(write_text_atomic(tmp_path / "private.json", "{}\n")) == 0o600
    assert not [p for p in tmp_path.rglob(".*.tmp")], "a temporary file was left behind"


def test_make_tiny_folder_follows_the_umask(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def build(out: Path, seed: int) -> None:
        (out / "config.json").write_text("{}")

    monkeypatch.setattr(rd_eval.models.tiny, "_builder", lambda family: build)
    with umask(0o022):
        assert mode(rd_eval.models.tiny.make_tiny("qwen3_vl_moe", tmp_path / "t")) == 0o755


# -- argparse's own errors are one line too -------------------------------------------------------------------

def test_usage_errors_are_one_line() -> None:
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    for argv in (["check", "run"], ["make-tiny"], ["report", "x", "--format", "pdf"]):
        result = subprocess.run([sys.executable, "-m", "rd_eval", *argv], capture_output=True, text=True,
                                env=env, timeout=300, check=False)
        lines = [line for line in result.stderr.splitlines() if line.strip()]
        assert result.returncode == 2 and len(lines) == 1, result.stderr
        assert lines[0].startswith(f"rd-eval {argv[0]}: error: ") and "Traceback" not in result.stderr

