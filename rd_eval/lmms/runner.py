"""Running lmms-eval's own command line from rd-eval commands (demo, twins transcribe), logged to a file.

lmms-eval 0.7.3 catches an exception during evaluation, logs "Error during evaluation: ..." and exits 0, and a
killed run may leave older results in the same output folder. So a run counts only when it exited 0, logged no
such error and wrote a results file of its own; everything else is one `LmmsEvalRunError` line naming the log.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

from rd_eval.lmms.runs import RESULTS_SUFFIX, RunRecord, read_run

OFFLINE_ENV = {"HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}

# What lmms-eval's CLI logs when an evaluation failed and it still exits 0 (lmms_eval/__main__.py, cli_evaluate).
_LMMS_EVAL_ERROR = re.compile(r"Error during evaluation: (?P<message>.*?)(?:\. Please set `--verbosity=DEBUG`.*)?$")
_ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")
# The last line of a Python traceback: "package.module.SomeError: message".
_EXCEPTION_LINE = re.compile(r"^(?:[A-Za-z_][\w.]*\.)?[A-Z]\w*(?:Error|Exception|Interrupt|Exit)\b.*")


class LmmsEvalRunError(RuntimeError):
    """lmms-eval failed, or finished without writing results (it logs some failures and exits 0)."""


def installed_tasks_dir() -> Path | None:
    """Installed location of rd-eval's task YAMLs (lmms-eval's --include_path); None when rd_eval_tasks is not
    installed."""
    from importlib import util as importlib_util

    spec = importlib_util.find_spec("rd_eval_tasks")
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(list(spec.submodule_search_locations)[0])


def lmms_eval_command(model_id: str, model_args: str, tasks: Sequence[str], output_path: Path, *,
                      include_path: Path, batch_size: int = 1, seed: int | None = None,
                      limit: int | None = None, gen_kwargs: str | None = None) -> list[str]:
    """The command line a user would type: `python -m lmms_eval ... --log_samples`."""
    command = [sys.executable, "-m", "lmms_eval", "--model", model_id, "--model_args", model_args,
               "--tasks", ",".join(tasks), "--include_path", str(include_path), "--output_path", str(output_path),
               "--log_samples", "--batch_size", str(batch_size)]
    if seed is not None:
        command += ["--seed", str(seed)]
    if limit is not None:
        command += ["--limit", str(limit)]
    if gen_kwargs:
        command += ["--gen_kwargs", gen_kwargs]
    return command


def log_lines(log_path: Path) -> list[str]:
    """The log's lines without terminal colour codes."""
    text = log_path.read_text(encoding="utf-8", errors="replace")
    return [_ANSI.sub("", line).rstrip() for line in text.splitlines()]


def logged_error(log_path: Path) -> str | None:
    """lmms-eval's own "Error during evaluation" message in the log, if it logged one (the last, if several)."""
    found = None
    for line in log_lines(log_path):
        match = _LMMS_EVAL_ERROR.search(line)
        if match:
            found = match.group("message").strip()
    return found


def failure_line(log_path: Path) -> str:
    """The most telling single line of a failed run's log: lmms-eval's error, else the last exception line."""
    message = logged_error(log_path)
    if message:
        return message
    lines = [line.strip() for line in log_lines(log_path) if line.strip()]
    exceptions = [line for line in lines if _EXCEPTION_LINE.match(line)]
    if exceptions:
        return exceptions[-1]
    return lines[-1] if lines else "the log is empty"


def _results_files(output_path: Path) -> dict[Path, int]:
    if not output_path.is_dir():
        return {}
    return {p: p.stat().st_mtime_ns for p in output_path.rglob(f"*{RESULTS_SUFFIX}") if p.is_file()}


def run_lmms_eval(command: Sequence[str], output_path: Path, log_path: Path, *, offline: bool = True) -> RunRecord:
    """Run lmms-eval's CLI with its output in `log_path` and return the run it wrote under `output_path`.

    Only a results file this run wrote counts (a rerun into a folder holding an earlier run never reads the earlier
    one). Raises `LmmsEvalRunError`, one line with lmms-eval's error and the log's path, when the process failed,
    when lmms-eval logged an evaluation error and exited 0 anyway, or when it wrote no results.
    """
    output_path = Path(output_path)
    before = _results_files(output_path)
    env = {**os.environ, **(OFFLINE_ENV if offline else {})}
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "w", encoding="utf-8") as log:
        log.write("$ " + " ".join(command) + "\n")
        log.flush()
        completed = subprocess.run(list(command), stdout=log, stderr=subprocess.STDOUT, env=env, check=False)
    if completed.returncode != 0:
        raise LmmsEvalRunError(f"lmms-eval exited with {completed.returncode}: {failure_line(log_path)} "
                               f"(log: {log_path})")
    error = logged_error(log_path)
    if error is not None:
        raise LmmsEvalRunError(f"lmms-eval logged an error and exited 0: {error} (log: {log_path})")
    written = sorted(p for p, mtime in _results_files(output_path).items() if before.get(p) != mtime)
    if not written:
        raise LmmsEvalRunError(f"lmms-eval exited 0 but wrote no results under {output_path} (log: {log_path})")
    runs = sorted((read_run(p) for p in written), key=lambda r: (r.timestamp, str(r.results_path)))
    return runs[-1]
