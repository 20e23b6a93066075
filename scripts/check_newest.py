"""Check rd-eval against the newest dependency versions, on purpose, before they reach a user.

Builds a scratch environment (default `.venv-newest/`, made anew each time) with the newest versions that
`pyproject.toml`'s ranges allow (what `pip install -e .` without the lock gives a user today), prints every package
whose version differs from `constraints.txt` (the tested lock), then runs `scripts/smoke.py` there: the demo on a
slice, one lmms-eval run per model family and the routing contract tests.

`--lowest-direct` instead pins every direct dependency at its lower bound (transitive ones newest), to show the lower
bounds are versions that work too. `--beyond-ranges` also lifts the upper bounds of the direct dependencies (exact
pins such as lmms-eval's stay), to see what the next series would break before raising a bound. torch and
torchvision stay at the builds the README installs (other builds are multi-GB downloads here). Exit code 0 when
the install and every smoke step passed.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import tomllib
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

REPO = Path(__file__).resolve().parents[1]
TORCH_BUILDS = ("torch==2.14.1", "torchvision==0.29.1")
HELD_AT_BUILD = {"torch", "torchvision"}


def locked_versions(lock: Path) -> dict[str, str]:
    """name -> version of every `name==version` line of a pip-compile lock."""
    pins = {}
    for line in lock.read_text(encoding="utf-8").splitlines():
        line = line.split("#", 1)[0].strip()
        if "==" in line:
            name, version = line.split("==", 1)
            pins[canonicalize_name(name)] = version.strip()
    return pins


def direct_requirements(*, beyond_ranges: bool = False, lowest: bool = False) -> list[str]:
    """pyproject's dependencies and test extra; with `beyond_ranges`, without their upper bounds; with `lowest`,
    pinned at their lower bounds."""
    project = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    requirements = [Requirement(r) for r in project["dependencies"] + project["optional-dependencies"]["test"]]
    out = []
    for req in requirements:
        if canonicalize_name(req.name) in HELD_AT_BUILD:
            continue
        specs = list(req.specifier)
        if lowest:
            lower = [s.version for s in specs if s.operator in (">=", "==", "~=")]
            if lower:
                out.append(f"{req.name}=={lower[0]}")
                continue
        if beyond_ranges and not any(s.operator == "==" for s in specs):
            specs = [s for s in specs if s.operator not in ("<", "<=", "~=")]
        out.append(req.name + ",".join(str(s) for s in specs))
    return out


def pip(venv: Path, *args: str) -> None:
    subprocess.run([str(venv / "bin" / "python"), "-m", "pip", "install", "--quiet", *args], check=True)


def installed_versions(venv: Path) -> dict[str, str]:
    listing = subprocess.run([str(venv / "bin" / "python"), "-m", "pip", "list", "--format", "json"],
                             capture_output=True, text=True, check=True).stdout
    return {canonicalize_name(p["name"]): p["version"] for p in json.loads(listing)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--venv", default=str(REPO / ".venv-newest"), help="scratch environment (made anew)")
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--beyond-ranges", action="store_true", help="lift the direct dependencies' upper bounds")
    mode.add_argument("--lowest-direct", action="store_true", help="direct dependencies at their lower bounds")
    parser.add_argument("--work", default=None, help="folder for the smoke runs (default: a temporary folder)")
    args = parser.parse_args(argv)
    venv = Path(args.venv).absolute()
    if venv.exists():
        shutil.rmtree(venv)
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    print(f"scratch environment: {venv}", flush=True)
    # No constraints file: the newest versions the ranges allow (pip prefers the newest), and the editable project.
    pip(venv, *TORCH_BUILDS)
    if args.lowest_direct:  # one resolution, so nothing newer is left behind from a first install
        pip(venv, "-e", f"{REPO}[test]", *direct_requirements(lowest=True), *TORCH_BUILDS)
    else:
        pip(venv, "--upgrade", "--upgrade-strategy", "eager", "-e", f"{REPO}[test]", *TORCH_BUILDS)
    if args.beyond_ranges:  # a second step: the lifted bounds conflict with the project's own on purpose
        pip(venv, "--upgrade", "--upgrade-strategy", "eager", *direct_requirements(beyond_ranges=True), *TORCH_BUILDS)

    locked, installed = locked_versions(REPO / "constraints.txt"), installed_versions(venv)
    newer = {name: (locked.get(name), version) for name, version in sorted(installed.items())
             if name not in ("rd-eval", "pip") and locked.get(name) != version}
    print(f"{len(newer)} package(s) differ from constraints.txt:" if newer else "every package equals constraints.txt")
    for name, (was, now) in newer.items():
        print(f"  {name:<32} {was or '(not in the lock)':>14} -> {now}")
    env = {k: v for k, v in os.environ.items() if k != "USE_HUB_KERNELS"}  # transformers' own default, on purpose
    env.update({"HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1",
                "PATH": f"{venv / 'bin'}{os.pathsep}{env.get('PATH', '')}"})
    smoke = [str(venv / "bin" / "python"), str(REPO / "scripts" / "smoke.py")]
    if args.work:
        smoke += ["--work", args.work]
    return subprocess.run(smoke, cwd=REPO, env=env, check=False).returncode


if __name__ == "__main__":
    sys.exit(main())
