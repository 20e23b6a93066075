"""The README's two set-up commands stay true: CI runs command 2 verbatim, command 1 runs the demo."""

from __future__ import annotations

import re
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def readme_commands() -> list[str]:
    text = (REPO / "README.md").read_text(encoding="utf-8")
    setup = text.split("## Set-up: two commands", 1)[1].split("\n## ", 1)[0]
    return [block.strip() for block in re.findall(r"```bash\n(.*?)```", setup, flags=re.S)]


def test_readme_has_exactly_two_setup_commands() -> None:
    commands = readme_commands()
    assert len(commands) == 2, commands
    assert all("\n" not in c for c in commands), "each set-up step must be a single command line"


def test_command_one_installs_and_runs_the_demo() -> None:
    first = readme_commands()[0]
    assert "pip install" in first and first.endswith("rd-eval demo")


def test_ci_runs_the_readme_test_command_verbatim() -> None:
    second = readme_commands()[1]
    assert second.endswith("python -m pytest")
    ci_lines = [line.strip() for line in (REPO / ".ci" / "run").read_text().splitlines()]
    assert second in ci_lines, "the README's test command and .ci/run have drifted apart"
    assert "set -euo pipefail" in ci_lines
