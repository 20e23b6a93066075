"""Running lmms-eval and rd-eval command lines from tests, offline."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

OFFLINE = {"HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}


def run(command: list[str], tmp_path: Path, timeout: int = 900, extra_env: dict[str, str] | None = None,
        cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, **OFFLINE, "LMMS_EVAL_DATASETS_CACHE": str(tmp_path / "datasets_cache"), **(extra_env or {})}
    return subprocess.run(command, capture_output=True, text=True, env=env, timeout=timeout, check=False,
                          cwd=cwd)


def tasks_path() -> str:
    result = subprocess.run([sys.executable, "-m", "rd_eval", "tasks-path"], capture_output=True, text=True,
                            check=True)
    return result.stdout.strip()
