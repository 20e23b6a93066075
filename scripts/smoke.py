"""A fast smoke subset of rd-eval, run inside whatever environment runs this file (scripts/check_newest.py runs it in
the scratch environment of the newest allowed versions):

1. `rd-eval demo` (the shipped model organism) on a slice of its held-out benchmark `rd_organism`;
2. one `python -m lmms_eval` run per model family (its tiny checkpoint, in a folder named like a training step, a few
   documents, a few tokens), each checked through rd-eval's lmms-eval runner: exit 0, no logged error, results written;
3. the routing contract tests (tests/test_family_contract.py, tests/test_routing.py).

Prints one line per step and exits non-zero if any failed.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
CONTRACT_TESTS = ("tests/test_family_contract.py", "tests/test_routing.py")


def smoke_demo(work: Path) -> str:
    from rd_eval.commands.demo import DemoConfig, run_demo

    result = run_demo(DemoConfig(out_dir=work / "demo", limit=6), say=lambda line: None)
    rows = result.table["rows"]
    return f"{len(rows)} benchmark row(s), {rows[0]['base']['n_pairs']} pairs"


def smoke_family(family: str, work: Path) -> str:
    from rd_eval.commands.demo import tasks_dir
    from rd_eval.lmms.runner import lmms_eval_command, run_lmms_eval
    from rd_eval.models.tiny import make_tiny

    checkpoint = make_tiny(family, work / family / "step_1000", seed=0)
    command = lmms_eval_command(f"rd_{family}", f"pretrained={checkpoint}", ["rd_demo"], work / family / "out",
                                include_path=tasks_dir(), limit=2, gen_kwargs="max_new_tokens=4")
    run = run_lmms_eval(command, work / family / "out", work / family / "lmms_eval.log")
    return f"{len(run.samples)} task(s) logged"


def smoke_contract() -> str:
    completed = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *CONTRACT_TESTS],
                               cwd=REPO, capture_output=True, text=True, check=False)
    last = (completed.stdout.strip().splitlines() or ["no output"])[-1]
    if completed.returncode != 0:
        raise RuntimeError(f"pytest exited {completed.returncode}: {last}\n{completed.stdout[-4000:]}")
    return last


def main(argv: list[str] | None = None) -> int:
    from rd_eval.models.tiny import supported_tiny_families

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--work", default=None, help="folder for the smoke runs (default: a temporary folder)")
    args = parser.parse_args(argv)
    work = Path(args.work) if args.work else Path(tempfile.mkdtemp(prefix="rd-eval-smoke-"))
    # deepseek_v3 is a text-only stand-in for Kimi-VL's router, with no lmms-eval model id of its own.
    families = [f for f in supported_tiny_families() if f != "deepseek_v3"]
    steps: list[tuple[str, Callable[[], str]]] = [("demo (slice)", lambda: smoke_demo(work))]
    steps += [(f"lmms-eval rd_{f} (step_1000)", lambda f=f: smoke_family(f, work)) for f in families]
    steps.append(("routing contract tests", smoke_contract))
    failed = 0
    for name, step in steps:
        started = time.perf_counter()
        try:
            detail, status = step(), "ok  "
        except Exception as exc:  # every step is reported, the next still runs
            detail, status = f"{type(exc).__name__}: {exc}", "FAIL"
            failed += 1
        print(f"{status} {name:<36} {time.perf_counter() - started:6.1f} s  {detail}", flush=True)
    print(f"smoke: {len(steps) - failed} of {len(steps)} steps passed (work folder: {work})")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
