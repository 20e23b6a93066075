"""The README's two set-up commands stay true: CI runs command 2 verbatim, command 1 runs the demo."""

from __future__ import annotations

import json
import os
import re
import shlex
import sys
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


# -- model_args examples: they must survive a shell and lmms-eval's own parser ---------------------------------
# lmms-eval splits model_args on commas (outside quotes and brackets) and turns numeric-looking values into
# numbers; a README example must pass through both as written, and work through `python -m lmms_eval` itself.

SHELL_INERT = re.compile(r"[A-Za-z0-9_./:=,+@%-]+")  # no quoting needed: no globs, braces, spaces or $
MODEL_ARGS_WORD = re.compile(r"--model_args\s+([^\s`|\\]+)")
PLACEHOLDER = "..."


def readme_model_args() -> list[str]:
    """Every `--model_args WORD` of the README (code blocks and tables), placeholders left out."""
    text = (REPO / "README.md").read_text(encoding="utf-8")
    words = [w for w in MODEL_ARGS_WORD.findall(text) if w != PLACEHOLDER]
    return list(dict.fromkeys(words))


def readme_setting_values() -> dict[str, list[str]]:
    """key -> the example values the README's model_args table gives for it (in backticks). A value an
    earlier row gives is a cross-reference (the seed row names the `random` mode), not an example."""
    from rd_eval.routing.settings import SETTING_KEYS

    text = (REPO / "README.md").read_text(encoding="utf-8")
    values: dict[str, list[str]] = {}
    seen: set[str] = set()
    for key_cell, meaning in re.findall(r"^\| `([a-z_]+)(?:=[A-Z]+)?` \| (.*) \|$", text, flags=re.M):
        if key_cell not in SETTING_KEYS:
            continue
        found = [v for v in re.findall(r"`([^`]+)`", meaning)
                 if v not in {*SETTING_KEYS, *seen} and not v.startswith("-") and "<" not in v
                 and re.search(r"[A-Za-z0-9]", v)]
        seen.update(found)
        if found:
            values[key_cell] = found
    return values


def test_readme_lists_model_args_examples() -> None:
    words = readme_model_args()
    assert any("expert_set=" in w for w in words), words
    values = readme_setting_values()
    assert {"intervention_mode", "intervention_band", "intervention_scope", "record_routing"} <= set(values), values
    assert any(":" in v for v in values["intervention_band"]), "the band example of MoE-layer indices is gone"


def test_readme_model_args_pass_a_shell_and_lmms_eval_parser_unchanged() -> None:
    from lmms_eval.utils import simple_parse_args_string

    from rd_eval.vocabulary.model_args import as_lmms_eval_parses

    for word in readme_model_args():
        assert SHELL_INERT.fullmatch(word), f"{word!r} needs shell quoting"
        assert shlex.split(f"--model_args {word}") == ["--model_args", word]
        parsed = simple_parse_args_string(word)  # raises on a comma inside a value
        assert {k: str(v) for k, v in parsed.items()} == dict(p.split("=", 1) for p in word.split(",")), word
    for key, examples in readme_setting_values().items():
        for value in examples:
            assert SHELL_INERT.fullmatch(value) and "," not in value, f"{key}={value!r} cannot pass as a model_arg"
            parsed = simple_parse_args_string(f"pretrained=x,{key}={value}")
            assert set(parsed) == {"pretrained", key} and parsed[key] == as_lmms_eval_parses(value)


def _lmms_entries(tiny: Path, workdir: Path) -> list[tuple[str, str]]:
    """(name, model_args) of every README example, on the tiny checkpoint, plus one bad setting."""
    from rd_eval.routing.spec import ExpertSet, InterventionSpec, LayerExperts

    # On MoE layers 3..5 only, inside every README band (0.25-0.75 = 2..5, 3:4:5): others would be refused.
    experts = ExpertSet(model=str(tiny), kind="domain", layers=tuple(LayerExperts(i, (0, 1)) for i in (3, 4, 5)))
    entries = []
    for n, word in enumerate(readme_model_args()):
        parts = []
        for part in word.split(","):
            key, _, value = part.partition("=")
            if key == "pretrained":
                value = str(tiny)
            elif key == "expert_set":
                experts.save(workdir / value)  # the README's relative path, in the run's folder
            elif key == "intervention":
                InterventionSpec(experts=experts).save(workdir / value)
            parts.append(f"{key}={value}")
        if ",".join(parts) not in [args for _, args in entries]:
            entries.append((f"code{n}", ",".join(parts)))
    experts.save(workdir / "experts.json")
    table = readme_setting_values()
    for i in range(max(len(v) for v in table.values())):
        chosen = ",".join(f"{key}={values[i % len(values)]}" for key, values in table.items())
        entries.append((f"table{i}", f"pretrained={tiny},expert_set=experts.json,{chosen}"))
    entries.append(("bad_seed", f"pretrained={tiny},expert_set=experts.json,intervention_seed=abc"))
    return entries


def test_readme_model_args_run_through_lmms_eval_cli(tiny_dir: Path, tmp_path: Path) -> None:
    """One `python -m lmms_eval --config` process runs every example (lmms-eval parses each entry's model_args
    string with the same parser as --model_args); one import of lmms-eval instead of one per example."""
    from lmms_cli import run, tasks_path
    from lmms_eval.utils import simple_parse_args_string

    from rd_eval.routing.settings import pop_routing_settings

    entries = _lmms_entries(tiny_dir, tmp_path)
    config = [{"model": "rd_qwen3_vl_moe", "model_args": args, "tasks": "rd_demo", "output_path": f"out/{name}",
               "log_samples": True, "batch_size": 1} for name, args in entries]
    (tmp_path / "config.yaml").write_text(json.dumps(config, indent=1), encoding="utf-8")  # JSON is YAML
    result = run([sys.executable, "-m", "lmms_eval", "--config", "config.yaml", "--include_path", tasks_path(),
                  "--limit", "1", "--gen_kwargs", "max_new_tokens=2"], tmp_path, cwd=tmp_path, timeout=1200)
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-3000:]
    for name, args in entries:
        results = sorted((tmp_path / "out" / name).rglob("*_results.json"))
        if name == "bad_seed":
            assert not results
            assert "model_args intervention_seed='abc' invalid" in output
            continue
        assert len(results) == 1, (name, args, output[-3000:])
        data = json.loads(results[0].read_text(encoding="utf-8"))
        assert data["config"]["model_args"] == args
        assert {"rd_demo_img", "rd_demo_txt"} <= set(data["results"]), name
        cwd_before = Path.cwd()
        try:
            os.chdir(tmp_path)  # relative expert-set paths, as lmms-eval saw them
            expected = pop_routing_settings(simple_parse_args_string(args)).intervention_hash
        finally:
            os.chdir(cwd_before)
        assert (f"hash={expected}" in output) if expected != "none" else ("intervention none" in output), name
