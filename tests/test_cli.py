"""The rd-eval command line: tasks-path, and every bad-input path (one line, exit 2, no traceback)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import rd_eval_tasks

REPO = Path(__file__).resolve().parents[1]


def run_cli(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"}
    return subprocess.run([sys.executable, "-m", "rd_eval", *args], capture_output=True, text=True,
                          env=env, cwd=cwd, timeout=600, check=False)


def assert_bad_input(result: subprocess.CompletedProcess[str], *fragments: str) -> None:
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr + result.stdout
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    for fragment in fragments:
        assert fragment in lines[0], lines[0]


def test_tasks_path_points_at_the_installed_task_yamls() -> None:
    result = run_cli("tasks-path")
    assert result.returncode == 0, result.stderr
    path = Path(result.stdout.strip())
    assert path == Path(rd_eval_tasks.__file__).parent
    assert (path / "rd_demo" / "rd_demo.yaml").is_file()
    assert (path / "rd_demo" / "rd_demo_img.yaml").is_file()


def test_make_tiny_unknown_family_names_the_value_and_the_valid_ones(tmp_path: Path) -> None:
    result = run_cli("make-tiny", "mixtral_vl", str(tmp_path / "x"))
    assert_bad_input(result, "'mixtral_vl'", "qwen3_vl_moe")
    assert not (tmp_path / "x").exists()


def test_make_tiny_refuses_a_non_empty_folder_without_overwrite(tmp_path: Path) -> None:
    (tmp_path / "keep.txt").write_text("user data")
    result = run_cli("make-tiny", "qwen3_vl_moe", str(tmp_path))
    assert_bad_input(result, str(tmp_path), "--overwrite")
    assert (tmp_path / "keep.txt").read_text() == "user data"


def test_demo_with_a_pretrained_path_that_does_not_exist(tmp_path: Path) -> None:
    missing = tmp_path / "no-such-model"
    result = run_cli("demo", "--out", str(tmp_path / "out"), "--pretrained", str(missing))
    assert_bad_input(result, str(missing), "config.json")


def test_demo_with_a_pretrained_folder_of_an_unsupported_family(tmp_path: Path) -> None:
    model = tmp_path / "bert"
    model.mkdir()
    (model / "config.json").write_text('{"model_type": "bert"}')
    result = run_cli("demo", "--out", str(tmp_path / "out"), "--pretrained", str(model))
    assert_bad_input(result, "'bert'", "qwen3_vl_moe")


def test_demo_with_an_unwritable_out(tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    result = run_cli("demo", "--out", str(blocker / "sub"))
    assert_bad_input(result, str(blocker / "sub"), "is a file, not a folder")


@pytest.mark.skipif(os.geteuid() == 0, reason="root can write into read-only folders")
def test_demo_with_a_read_only_out(tmp_path: Path) -> None:
    locked = tmp_path / "locked"
    locked.mkdir(mode=0o500)
    result = run_cli("demo", "--out", str(locked))
    assert_bad_input(result, str(locked))


def test_demo_with_a_bad_band(tmp_path: Path) -> None:
    result = run_cli("demo", "--out", str(tmp_path), "--band", "middle")
    assert_bad_input(result, "'middle'", "0.25-0.75")


def test_unknown_command_is_an_argparse_error() -> None:
    result = run_cli("frobnicate")
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert re.search(r"invalid choice: 'frobnicate'", result.stderr)


def test_console_script_is_installed() -> None:
    script = Path(sys.executable).parent / "rd-eval"
    assert script.is_file(), "the rd-eval console script is not installed beside this Python"
    result = subprocess.run([str(script), "--help"], capture_output=True, text=True, timeout=120, check=False)
    assert result.returncode == 0
    for command in ("demo", "make-tiny", "tasks-path"):
        assert command in result.stdout
