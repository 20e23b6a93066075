"""rd-eval commands that run lmms-eval: a failed run is a failure even when lmms-eval exits 0, and only what this
run wrote is read."""

from __future__ import annotations

import json
import sys
import textwrap
from pathlib import Path

import pytest

from rd_eval.commands import main as cli
from rd_eval.lmms.runner import LmmsEvalRunError, failure_line, logged_error, run_lmms_eval

# What lmms-eval 0.7.3's CLI prints (with loguru's colours) when an evaluation fails; it then exits 0.
LOGGED_ERROR = (
    "\x1b[32m2026-12-06 18:00:33\x1b[0m | \x1b[31m\x1b[1mERROR   \x1b[0m | \x1b[36mlmms_eval.__main__\x1b[0m:"
    "\x1b[36mcli_evaluate\x1b[0m:\x1b[36m614\x1b[0m - \x1b[31m\x1b[1mError during evaluation: Tasks not found: "
    "rd_nope. Please set `--verbosity=DEBUG` to get more information.\x1b[0m"
)


def fake_lmms_eval(body: str) -> list[str]:
    """A stand-in process for lmms-eval's CLI: `body` is Python run with `out` bound to the output folder."""
    return [sys.executable, "-c", "import sys, pathlib; out = pathlib.Path(sys.argv[1])\n" + textwrap.dedent(body)]


def write_results(folder: Path, stamp: str) -> Path:
    model_dir = folder / "model"
    model_dir.mkdir(parents=True, exist_ok=True)
    path = model_dir / f"{stamp}_results.json"
    path.write_text(json.dumps({"results": {"rd_demo_img": {}}, "config": {"model": "m", "model_args": "a=1"}}))
    return path


def test_logged_error_exit_zero_is_a_failure_naming_the_log(tmp_path: Path) -> None:
    log = tmp_path / "logs" / "run.log"
    command = fake_lmms_eval(f"print({LOGGED_ERROR!r}); sys.exit(0)") + [str(tmp_path / "out")]
    with pytest.raises(LmmsEvalRunError) as info:
        run_lmms_eval(command, tmp_path / "out", log)
    message = str(info.value)
    assert "\n" not in message and "\x1b" not in message
    assert "lmms-eval logged an error and exited 0: Tasks not found: rd_nope" in message
    assert f"(log: {log})" in message and "--verbosity" not in message
    assert logged_error(log) == "Tasks not found: rd_nope"


def test_non_zero_exit_gives_the_exception_line(tmp_path: Path) -> None:
    log = tmp_path / "run.log"
    command = fake_lmms_eval("raise KeyError('no such model id')") + [str(tmp_path / "out")]
    with pytest.raises(LmmsEvalRunError, match=r"exited with 1: KeyError: 'no such model id' \(log: .*run\.log\)"):
        run_lmms_eval(command, tmp_path / "out", log)
    assert failure_line(log) == "KeyError: 'no such model id'"


def test_an_earlier_run_in_the_same_folder_is_never_read(tmp_path: Path) -> None:
    out = tmp_path / "out"
    old = write_results(out, "20260101_000000")
    # Exits 0, logs nothing wrong, writes nothing: a killed or silently failed rerun into an old --out.
    command = fake_lmms_eval("print('done')") + [str(out)]
    with pytest.raises(LmmsEvalRunError, match=r"exited 0 but wrote no results under .*out \(log: "):
        run_lmms_eval(command, out, tmp_path / "run.log")
    assert old.is_file()  # the user's earlier results are left alone


def test_the_run_written_now_is_returned_not_the_older_one(tmp_path: Path) -> None:
    out = tmp_path / "out"
    write_results(out, "20990101_000000")  # an older run whose name would sort last
    body = """
        d = out / 'model'; d.mkdir(parents=True, exist_ok=True)
        (d / '20260606_120000_results.json').write_text('{"results": {}, "config": {"model": "new", "model_args": ""}}')
    """
    run = run_lmms_eval(fake_lmms_eval(body) + [str(out)], out, tmp_path / "run.log")
    assert run.results_path.name == "20260606_120000_results.json" and run.model == "new"


def test_demo_with_a_failing_lmms_eval_run_exits_non_zero_with_one_line(tmp_path: Path, tiny_dir: Path,
                                                                          monkeypatch: pytest.MonkeyPatch,
                                                                          capsys: pytest.CaptureFixture[str]) -> None:
    """A real lmms-eval run with a failure injected (a task it cannot find): it logs the error and exits 0."""
    import rd_eval.commands.demo as demo

    real_command = demo.lmms_eval_command

    def failing_command(*args, **kwargs):
        command = real_command(*args, **kwargs)
        command[command.index("--tasks") + 1] = "rd_no_such_task"
        return command

    monkeypatch.setattr(demo, "lmms_eval_command", failing_command)
    monkeypatch.setenv("LMMS_EVAL_DATASETS_CACHE", str(tmp_path / "datasets_cache"))
    out = tmp_path / "demo"
    code = cli.main(["demo", "--pretrained", str(tiny_dir), "--out", str(out), "--limit", "2"])
    captured = capsys.readouterr()
    assert code == 1
    # transformers' weight-loading progress bar shares stderr; the failure itself is one line.
    err_lines = [line for line in captured.err.splitlines() if line.startswith("rd-eval")]
    assert len(err_lines) == 1, captured.err
    log = out / "logs" / "lmms_eval_plain.log"
    assert err_lines[0].startswith("rd-eval demo: failed: lmms-eval logged an error and exited 0: Tasks not found: "
                                   "rd_no_such_task")
    assert err_lines[0].endswith(f"(log: {log.resolve()})") or err_lines[0].endswith(f"(log: {log})")
    assert "Traceback" not in captured.err
    assert not (out / "rd_demo_table.md").exists()


def test_transcribe_passes_gen_kwargs_to_lmms_eval(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    import rd_eval.commands.transcribe as transcribe_cli

    seen: list[list[str]] = []

    def capture(command, output_path, log_path, **kwargs):
        seen.append(list(command))
        raise LmmsEvalRunError(f"stopped by the test (log: {log_path})")

    monkeypatch.setattr(transcribe_cli, "run_lmms_eval", capture)
    code = cli.main(["twins", "transcribe", "--model", "rd_qwen3_vl_moe", "--model_args", "pretrained=x",
                     "--tasks", "rd_mathvista_img", "--out", str(tmp_path / "T"),
                     "--gen_kwargs", "max_new_tokens=7,temperature=0"])
    assert code == 1 and "stopped by the test" in capsys.readouterr().err
    (command,) = seen
    assert command[command.index("--gen_kwargs") + 1] == "max_new_tokens=7,temperature=0"
    assert command[command.index("--tasks") + 1] == "rd_mathvista_transcribe"


def test_failure_line_falls_back_to_the_last_line(tmp_path: Path) -> None:
    log = tmp_path / "run.log"
    log.write_text("$ python -m lmms_eval\nsomething odd happened\n")
    assert failure_line(log) == "something odd happened"


@pytest.mark.parametrize("command", [
    ["demo", "--out", ""],
    ["demo", "--out", "{file}"],
    ["demo", "--pretrained", "", "--out", "{tmp}/d"],
    ["twins", "transcribe", "--model", "rd_qwen3_vl_moe", "--model_args", "pretrained=x", "--tasks",
     "rd_mathvista_img", "--out", ""],
    ["twins", "transcribe", "--model", "rd_qwen3_vl_moe", "--model_args", "pretrained=x", "--tasks",
     "rd_mathvista_img", "--out", "{file}"],
])
def test_output_folders_are_checked_before_any_work(command: list[str], tmp_path: Path,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    a_file = tmp_path / "a_file"
    a_file.write_text("x")
    argv = [part.format(file=a_file, tmp=tmp_path) for part in command]
    assert cli.main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and ("--out" in err or "--pretrained" in err), err
    assert a_file.read_text() == "x" and not (tmp_path / "d").exists()
