"""scripts/check_newest.py: what it installs in each mode (the scratch install itself runs by hand, not in CI)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

from packaging.requirements import Requirement
from packaging.version import Version

REPO = Path(__file__).resolve().parents[1]


def load_script():
    spec = importlib.util.spec_from_file_location("check_newest", REPO / "scripts" / "check_newest.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def by_name(lines: list[str]) -> dict[str, Requirement]:
    return {Requirement(line).name: Requirement(line) for line in lines}


def test_beyond_ranges_lifts_upper_bounds_but_keeps_exact_pins_and_lower_bounds() -> None:
    script = load_script()
    lifted = by_name(script.direct_requirements(beyond_ranges=True))
    assert str(lifted["transformers"].specifier) == ">=5.23"
    assert str(lifted["filelock"].specifier) == ">=3.16"
    assert str(lifted["lmms-eval"].specifier) == "==0.7.3"
    assert "torch" not in lifted and "torchvision" not in lifted  # held at the README's builds


def test_lowest_direct_pins_each_direct_dependency_at_its_lower_bound() -> None:
    script = load_script()
    lowest = by_name(script.direct_requirements(lowest=True))
    assert str(lowest["datasets"].specifier) == "==4.0"
    assert str(lowest["tokenizers"].specifier) == "==0.23.1"
    assert str(lowest["lmms-eval"].specifier) == "==0.7.3"
    plain = by_name(script.direct_requirements())
    assert set(lowest) == set(plain)


def test_locked_versions_reads_every_pin_of_the_lock() -> None:
    script = load_script()
    pins = script.locked_versions(REPO / "constraints.txt")
    assert Version(pins["transformers"]).major == 5 and Version(pins["filelock"]) < Version("4.3")
    assert pins["lmms-eval"] == "0.7.3" and "rd-eval" not in pins
