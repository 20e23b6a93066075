"""Helpers shared by the benchmark scripts: the machine, medians, tables, JSON output.

The scripts print a table and write JSON; they are measurements, not tests, and assert nothing about time.
"""

from __future__ import annotations

import json
import os
import platform
import statistics
import subprocess
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
PERF = REPO / "perf"
# Qwen3-VL-30B-A3B-Instruct's config.json, copied from /work/shared/reference/configs (see configs/README.md).
QWEN3_VL_30B_CONFIG = PERF / "configs" / "Qwen__Qwen3-VL-30B-A3B-Instruct" / "config.json"


def ensure_repo_on_path() -> None:
    """Let `python perf/<script>.py` import `perf.*` and the in-tree packages."""
    if str(REPO) not in sys.path:
        sys.path.insert(0, str(REPO))


def median(values: Sequence[float]) -> float:
    return float(statistics.median(values))


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _memory_gib() -> float | None:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return round(int(line.split()[1]) / 2**20, 1)
    except OSError:
        pass
    return None


def load_average() -> list[float] | None:
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:
        return None


def source_revision() -> dict[str, Any] | None:
    """The rd-eval commit measured, and whether the working tree had uncommitted changes (None outside git)."""
    root = Path(__file__).resolve().parents[1]
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True, check=True)
        status = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=root,
                                capture_output=True, text=True, check=True)
    except (OSError, subprocess.CalledProcessError):
        return None
    return {"commit": commit.stdout.strip(), "uncommitted_changes": bool(status.stdout.strip())}


def machine_info() -> dict[str, Any]:
    """What the figures were measured on; the load average says how busy the machine was."""
    info: dict[str, Any] = {
        "cpu": _cpu_model(),
        "logical_cpus": os.cpu_count(),
        "memory_gib": _memory_gib(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "load_average": load_average(),
        "source": source_revision(),
    }
    try:
        import numpy
        import torch
        import transformers

        info |= {"torch": torch.__version__, "transformers": transformers.__version__, "numpy": numpy.__version__,
                 "torch_threads": torch.get_num_threads(),
                 "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None}
    except ImportError:
        pass
    return info


def format_table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """A GitHub-style markdown table (prints readably in a terminal too)."""
    def cell(value: Any) -> str:
        if isinstance(value, float):
            return f"{value:.4g}"
        return "–" if value is None else str(value)

    lines = ["| " + " | ".join(headers) + " |", "|" + "|".join("---" for _ in headers) + "|"]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in rows]
    return "\n".join(lines)


def publish(result: dict[str, Any], table: Callable[[dict[str, Any]], str],
            json_path: str | os.PathLike[str] | None) -> dict[str, Any]:
    """A script's last step: attach the machine, print the table, write the JSON (when a path is given)."""
    result["machine"] = machine_info()
    print(table(result))
    write_json(json_path, result)
    return result


def write_json(path: str | os.PathLike[str] | None, payload: dict[str, Any]) -> None:
    if path is None:
        return
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(payload, indent=2, allow_nan=False) + "\n", encoding="utf-8")


def drop_from_page_cache(root: Path, suffix: str = "") -> bool:
    """Evict the files under `root` (those ending in `suffix`) from the page cache, written back first, so that the
    next read comes from disk; other files are untouched. False where the OS cannot (no posix_fadvise)."""
    if not hasattr(os, "posix_fadvise"):
        return False
    for path in root.rglob("*"):
        if path.is_file() and path.name.endswith(suffix):
            fd = os.open(path, os.O_RDONLY)
            try:
                os.fsync(fd)
                os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
            finally:
                os.close(fd)
    return True
