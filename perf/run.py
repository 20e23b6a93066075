"""Run every rd-eval benchmark and write one JSON: `python perf/run.py [--quick] --json OUT.json`.

1. hook_overhead.py  - routing hooks on a real-width Qwen3-VL-30B-A3B layer stack: record_overhead, intervene_overhead
2. e2e_lmms_eval.py  - rd_demo through lmms-eval, stock class vs our adapter: e2e_throughput_ratio
3. analysis_scale.py - report + expert identification at 1k/3k/10k pairs: analysis_seconds_10k, analysis_peak_gib_10k

Each benchmark runs in its own process (the layer stack alone holds ~11 GiB); their JSON goes under
`details`, the headline figures at the top level with the targets and whether each is met. Nothing here
asserts: these are measurements (docs/performance.md shows them).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from perf.common import PERF, format_table, machine_info, write_json  # noqa: E402

SCRIPTS = {"hook": "hook_overhead.py", "e2e": "e2e_lmms_eval.py", "analysis": "analysis_scale.py"}
# key: (benchmark, limit, "max" or "min")
TARGETS: dict[str, tuple[str, float, str]] = {
    "record_overhead": ("hook", 0.03, "max"),
    "intervene_overhead": ("hook", 0.03, "max"),
    "e2e_throughput_ratio": ("e2e", 0.95, "min"),
    "analysis_seconds_10k": ("analysis", 10.0, "max"),
    "analysis_peak_gib_10k": ("analysis", 4.0, "max"),
}


def run_script(name: str, quick: bool, out: Path) -> dict[str, Any]:
    command = [sys.executable, str(PERF / SCRIPTS[name]), "--json", str(out)] + (["--quick"] if quick else [])
    print(f"== {' '.join(command[1:])}", file=sys.stderr, flush=True)
    start = time.perf_counter()
    subprocess.run(command, check=True)
    result = json.loads(out.read_text(encoding="utf-8"))
    result["wall_seconds"] = round(time.perf_counter() - start, 1)
    result["command"] = f"python perf/{SCRIPTS[name]}" + (" --quick" if quick else "")
    return result


def summarise(details: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """The headline figures, their targets and whether each is met (None where its benchmark did not run)."""
    summary: dict[str, Any] = {}
    verdicts: dict[str, Any] = {}
    for key, (bench, limit, kind) in TARGETS.items():
        value = details.get(bench, {}).get(key)
        summary[key] = value
        verdicts[key] = None if value is None else (value <= limit if kind == "max" else value >= limit)
    hook_device = details.get("hook", {}).get("settings", {}).get("device", "cpu")
    if str(hook_device).startswith("cuda"):  # the GPU target for the hook overhead is tighter
        for key in ("record_overhead", "intervene_overhead"):
            if summary[key] is not None:
                verdicts[key] = summary[key] <= 0.02
    summary["targets"] = {key: {"limit": (0.02 if key in ("record_overhead", "intervene_overhead")
                                          and str(hook_device).startswith("cuda") else limit), "kind": kind}
                          for key, (_, limit, kind) in TARGETS.items()}
    summary["met"] = verdicts
    return summary


def table(summary: dict[str, Any]) -> str:
    rows = []
    for key in TARGETS:
        target = summary["targets"][key]
        sign = "<=" if target["kind"] == "max" else ">="
        met = summary["met"][key]
        rows.append((key, summary[key], f"{sign} {target['limit']}", "–" if met is None else ("yes" if met else "NO")))
    return format_table(["figure", "value", "target", "met"], rows)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smaller hook and e2e runs (same widths and sizes)")
    parser.add_argument("--json", default=None, help="write all figures here")
    parser.add_argument("--only", default=",".join(SCRIPTS), help=f"comma-separated subset of {','.join(SCRIPTS)}")
    args = parser.parse_args(argv)
    chosen = [name.strip() for name in args.only.split(",") if name.strip()]
    unknown = sorted(set(chosen) - set(SCRIPTS))
    if unknown:
        parser.error(f"unknown benchmarks {unknown}; valid: {', '.join(SCRIPTS)}")
    details: dict[str, dict[str, Any]] = {}
    with tempfile.TemporaryDirectory(prefix="rd_bench_") as tmp:
        for name in chosen:
            details[name] = run_script(name, args.quick, Path(tmp) / f"{name}.json")
    result = summarise(details) | {"quick": args.quick, "machine": machine_info(), "details": details}
    print(table(result))
    write_json(args.json, result)
    return result


if __name__ == "__main__":
    main()
