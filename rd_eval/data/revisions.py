"""The revision of each benchmark's Hugging Face dataset a run reads: declared per benchmark, overridable.

Every benchmark loaded from the Hub declares its revision in :data:`PINS`: a full commit sha checked on the
Hub, or :data:`UNPINNED` where no commit could be verified (then the Hub's current revision is read, and the
commit actually read is recorded: :mod:`rd_eval.data.provenance`). A benchmark missing from :data:`PINS`
cannot be loaded from the Hub.

The environment variable ``RD_EVAL_DATASET_REVISIONS`` overrides pins for one run::

    RD_EVAL_DATASET_REVISIONS="mathvision=<40-hex commit sha>,gsm8k=unpinned"

Each entry is ``<benchmark>=<revision>``, entries separated by commas or spaces; a revision is a full
40-hex commit sha, a branch or tag name (recorded with the commit it resolved to), or ``unpinned``. A bad
entry is one error line naming the variable, the entry and what is valid.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType

ENV_VAR = "RD_EVAL_DATASET_REVISIONS"
UNPINNED = "unpinned"
PINNED = "pinned"  # origin of a revision taken from PINS
COMMIT = re.compile(r"[0-9a-f]{40}")
_ABBREVIATED = re.compile(r"(?=[0-9a-fA-F]*[0-9])(?=[0-9a-fA-F]*[a-fA-F])[0-9a-fA-F]{7,39}")
_REF = re.compile(r"[A-Za-z0-9][A-Za-z0-9._/-]{0,199}")
_FORMAT = f"<benchmark>=<40-hex commit sha | branch or tag | {UNPINNED}>, comma-separated"


class RevisionError(ValueError):
    """A dataset revision that is malformed, unknown, or not the one that was read."""


@dataclass(frozen=True)
class Pin:
    """A benchmark's declared revision: a verified 40-hex commit sha, or UNPINNED; ``evidence`` says where
    the commit was checked, or why there is none."""

    revision: str
    evidence: str

    def __post_init__(self) -> None:
        if self.revision != UNPINNED and not COMMIT.fullmatch(self.revision):
            raise RevisionError(f"a pin must be a full lowercase 40-hex commit sha or {UNPINNED!r}, "
                                f"got {self.revision!r}")
        if not self.evidence.strip():
            raise RevisionError(f"pin {self.revision}: say where the commit was verified (or why there is none)")


_HF = "https://huggingface.co/datasets/"
PINS: Mapping[str, Pin] = MappingProxyType({
    "mathverse": Pin("8479d5e87785a3274da612e169d942c3d972b7fe",
                     f"{_HF}CaraJ/MathVerse-lmmseval/commits/8479d5e87785a3274da612e169d942c3d972b7fe: "
                     "head of main ('Update README.md') in the commit history of main"),
    "mathvista": Pin("2b6ad69445fbb5695c9b165475e8decdbeb97747",
                     f"{_HF}AI4Math/MathVista/tree/2b6ad69445fbb5695c9b165475e8decdbeb97747: "
                     "head of main ('Update README.md', 34 commits) as tree/main shows it"),
    "math500": Pin("ff5b20257d8185524591543f8ff5993951537bb8",
                   f"{_HF}HuggingFaceH4/MATH-500/commits/ff5b20257d8185524591543f8ff5993951537bb8: "
                   "head of main ('Update README.md', 2024-11-15) in the commit history of main"),
    "mathvision": Pin(UNPINNED, "main moved on to a9c9d42 (answers of IDs 338 and 1826 corrected); its full "
                                "commit sha could not be verified, and the verified older commits predate the fix"),
    "wemath": Pin(UNPINNED, "head of main is 527c44d ('Update README.md (#5)'); its full commit sha could not be "
                            "verified"),
    "logicvista": Pin(UNPINNED, "no commit of lscpku/LogicVista could be verified"),
    "dynamath": Pin(UNPINNED, "no commit of kcz358/DynaMath could be verified on the Hub"),
    "gsm8k": Pin(UNPINNED, "no commit of openai/gsm8k could be verified on the Hub"),
})


def check_revision(value: str, where: str) -> str:
    """``value`` as a revision to request: a full commit sha (lowercased), a branch or tag name, or UNPINNED."""
    text = value.strip()
    if text == UNPINNED or COMMIT.fullmatch(text.lower()):
        return text.lower()
    if _ABBREVIATED.fullmatch(text):
        raise RevisionError(f"{where}: {text!r} looks like an abbreviated commit; give the full 40-hex commit sha "
                            "(the dataset's commit history on the Hub shows it)")
    if _REF.fullmatch(text) and ".." not in text and not text.endswith((".", "/", ".lock")):
        return text
    raise RevisionError(f"{where}: {text!r} is not a revision; valid: a full 40-hex commit sha, a branch or tag "
                        f"name, or {UNPINNED!r}")


def parse_overrides(text: str, known: Mapping[str, Pin] = PINS) -> dict[str, str]:
    """``"b1=rev1,b2=rev2"`` as ``{b1: rev1, b2: rev2}``; every entry checked, errors name ENV_VAR."""
    out: dict[str, str] = {}
    for entry in re.split(r"[,\s]+", text.strip()):
        if not entry:
            continue
        name, sep, value = entry.partition("=")
        if not sep or not name or not value:
            raise RevisionError(f"{ENV_VAR}: entry {entry!r} is not <benchmark>=<revision>; expected {_FORMAT}")
        if name not in known:
            raise RevisionError(f"{ENV_VAR}: entry {entry!r} names unknown benchmark {name!r}; known: "
                                f"{', '.join(sorted(known))}")
        if name in out:
            raise RevisionError(f"{ENV_VAR}: benchmark {name!r} is given twice")
        out[name] = check_revision(value, f"{ENV_VAR}: entry {entry!r}")
    return out


def overrides(environ: Mapping[str, str] | None = None) -> dict[str, str]:
    """The checked entries of RD_EVAL_DATASET_REVISIONS ({} when unset or empty)."""
    return parse_overrides((os.environ if environ is None else environ).get(ENV_VAR, ""))


@dataclass(frozen=True)
class Requested:
    """The revision a load asks the Hub for: ``revision`` None reads the Hub's current revision; ``origin`` is
    PINNED (from PINS), ENV_VAR (overridden) or UNPINNED (no verified pin)."""

    benchmark: str
    revision: str | None
    origin: str

    @property
    def label(self) -> str:
        return self.revision or UNPINNED


def requested(benchmark: str, environ: Mapping[str, str] | None = None) -> Requested:
    """The revision to read ``benchmark`` at: its RD_EVAL_DATASET_REVISIONS entry, else its pin."""
    pin = PINS.get(benchmark)
    if pin is None:
        raise RevisionError(f"{benchmark}: no dataset revision is declared for it in rd_eval.data.revisions.PINS "
                            f"(declare a verified commit sha or {UNPINNED!r}); declared: {', '.join(sorted(PINS))}")
    chosen = overrides(environ).get(benchmark)
    if chosen is not None:
        return Requested(benchmark, None if chosen == UNPINNED else chosen, ENV_VAR)
    if pin.revision == UNPINNED:
        return Requested(benchmark, None, UNPINNED)
    return Requested(benchmark, pin.revision, PINNED)
