"""Running lmms-eval's own command line from rd-eval commands (demo, twins transcribe), logged to a file."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

OFFLINE_ENV = {"HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}


class LmmsEvalRunError(RuntimeError):
    """lmms-eval failed, or finished without writing results (it logs some failures and exits 0)."""


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


def run_logged(command: Sequence[str], log_path: Path, *, offline: bool = True) -> None:
    """Run `command` with its output in `log_path`; a non-zero exit raises with the log's tail."""
    env = {**os.environ, **(OFFLINE_ENV if offline else {})}
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "w", encoding="utf-8") as log:
        log.write("$ " + " ".join(command) + "\n")
        log.flush()
        completed = subprocess.run(list(command), stdout=log, stderr=subprocess.STDOUT, env=env, check=False)
    if completed.returncode != 0:
        raise LmmsEvalRunError(f"lmms-eval exited with {completed.returncode}; log: {log_path}\n" + log_tail(log_path))


def log_tail(log_path: Path, lines: int = 15) -> str:
    return "\n".join(log_path.read_text(encoding="utf-8", errors="replace").strip().splitlines()[-lines:])
