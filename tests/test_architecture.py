"""The library's layout holds: rooms by responsibility, dependencies pointing inward, no package cycles.

Read from the source (every import statement, including those inside functions), so a lazy import that breaks
the layering fails here as much as a top-level one.
"""

from __future__ import annotations

import ast
from collections import defaultdict
from pathlib import Path

import pytest

LIBRARY = Path(__file__).resolve().parents[1] / "rd_eval"
# Modules allowed directly under rd_eval/: the package itself and `python -m rd_eval`.
TOP_LEVEL_MODULES = {"__init__.py", "__main__.py"}
# Scoring's expression parser is one grammar; every other module stays under this many lines.
MAX_LINES = 500
LONG_MODULES_ALLOWED = {"scoring/math_parse.py"}
# Packages that may use each other only in the listed direction (consumers -> what they may not import).
FORBIDDEN = {
    "vocabulary": "every other rd_eval package (it is the shared words the rest is written in)",
    "analysis": {"reports", "rendering", "commands"},
    "rendering": {"reports", "commands"},
    "routing": {"reports", "rendering", "analysis", "commands", "benchmarks", "experts"},
    "scoring": {"reports", "rendering", "analysis", "commands", "benchmarks", "routing"},
}


def _imports(path: Path) -> list[str]:
    out: list[str] = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            out.append(node.module)
        elif isinstance(node, ast.Import):
            out.extend(alias.name for alias in node.names)
    return out


def _package_of(path: Path) -> str:
    parts = path.relative_to(LIBRARY).parts
    return parts[0] if len(parts) > 1 else ""


def package_graph() -> dict[str, set[str]]:
    graph: dict[str, set[str]] = defaultdict(set)
    for path in LIBRARY.rglob("*.py"):
        source = _package_of(path)
        for module in _imports(path):
            if module.startswith("rd_eval."):
                target = module.split(".")[1]
                if source and target != source:
                    graph[source].add(target)
    return graph


def test_no_flat_modules_under_rd_eval() -> None:
    flat = sorted(p.name for p in LIBRARY.glob("*.py") if p.name not in TOP_LEVEL_MODULES)
    assert flat == [], f"modules directly under rd_eval/ (put each in the package that says what it is): {flat}"


def test_every_package_says_what_it_holds() -> None:
    for init in LIBRARY.rglob("__init__.py"):
        doc = ast.get_docstring(ast.parse(init.read_text(encoding="utf-8")))
        assert doc, f"{init.relative_to(LIBRARY.parent)} has no docstring saying what the package holds"


def test_the_library_never_imports_adapters_or_tasks() -> None:
    for path in LIBRARY.rglob("*.py"):
        bad = [m for m in _imports(path) if m.split(".")[0] in ("rd_eval_adapters", "rd_eval_tasks",
                                                                  "model_adapters", "tasks")]
        assert bad == [], f"{path.relative_to(LIBRARY.parent)} imports {bad}: dependencies point inward"


@pytest.mark.parametrize("package", sorted(FORBIDDEN))
def test_layering(package: str) -> None:
    uses = package_graph().get(package, set())
    forbidden = FORBIDDEN[package]
    bad = sorted(uses) if isinstance(forbidden, str) else sorted(uses & forbidden)
    assert bad == [], f"rd_eval.{package} imports rd_eval.{bad}"


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle of the graph as a path that returns to its start, or None."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done

    def visit(node: str, path: list[str]) -> list[str] | None:
        state[node] = 1
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return path[path.index(nxt):] + [nxt]
            if nxt not in state and (found := visit(nxt, [*path, nxt])):
                return found
        state[node] = 2
        return None

    for start in sorted(graph):
        if start not in state and (found := visit(start, [start])):
            return found
    return None


def test_packages_form_no_cycle() -> None:
    cycle = find_cycle(package_graph())
    assert cycle is None, f"package import cycle: {' -> '.join(cycle or [])}"


def test_modules_stay_small() -> None:
    long = {}
    for path in LIBRARY.rglob("*.py"):
        rel = path.relative_to(LIBRARY).as_posix()
        lines = len(path.read_text(encoding="utf-8").splitlines())
        if lines > MAX_LINES and rel not in LONG_MODULES_ALLOWED:
            long[rel] = lines
    assert long == {}, f"modules over {MAX_LINES} lines (split by responsibility): {long}"


def test_the_checks_can_fail(tmp_path: Path) -> None:
    # The cycle finder and the import reader see what they must: a lazy import inside a function counts.
    module = tmp_path / "m.py"
    module.write_text("def f():\n    from rd_eval.reports import report\n    import rd_eval_adapters.x\n")
    assert _imports(module) == ["rd_eval.reports", "rd_eval_adapters.x"]
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": {"c"}, "d": {"a", "c"}}) is None
