"""Tiny random MoE VLM checkpoints, built entirely offline.

A tiny checkpoint is a complete local model folder (config, safetensors weights, a tokenizer trained
here, processor configs and a chat template) that transformers' Auto classes and lmms-eval's stock
model class for the family load with no network. Weights are random: such a model answers near chance;
it exists to exercise the pipeline, the routing hooks and the tests on a CPU.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from importlib import import_module
from pathlib import Path
from types import MappingProxyType

from rd_eval import __version__

PROVENANCE_FILE = "rd_tiny.json"


class TinyModelError(ValueError):
    """A tiny checkpoint cannot be built or reused as asked."""


@dataclass(frozen=True)
class TinySpec:
    """What a tiny checkpoint is: recorded beside it so a later run can reuse it safely."""

    family: str
    seed: int

    def to_json(self) -> dict[str, object]:
        return {"family": self.family, "seed": self.seed, "rd_eval_version": __version__}


# family -> module with `build(out_dir: Path, seed: int) -> None`; imported only when that family is built.
TINY_BUILDERS: MappingProxyType[str, str] = MappingProxyType(
    {
        "qwen3_vl_moe": "rd_eval.models.tiny.qwen3_vl_moe",
        "qwen3_5_moe": "rd_eval.models.tiny.qwen3_5_moe",
        "internvl_moe": "rd_eval.models.tiny.internvl_moe",
        "glm4v_moe": "rd_eval.models.tiny.glm4v_moe",
        "deepseek_v3": "rd_eval.models.tiny.deepseek_v3",
        "ernie4_5_vl_moe": "rd_eval.models.tiny.ernie4_5_vl_moe",
        "llama4": "rd_eval.models.tiny.llama4",
        "aria": "rd_eval.models.tiny.aria",
    }
)


def _builder(family: str) -> Callable[[Path, int], None] | None:
    try:
        return import_module(TINY_BUILDERS[family]).build
    except (KeyError, ModuleNotFoundError, AttributeError):
        return None


def supported_tiny_families() -> tuple[str, ...]:
    return tuple(sorted(f for f in TINY_BUILDERS if _builder(f) is not None))


def read_tiny_spec(out_dir: Path) -> TinySpec | None:
    """The spec a folder was built with, or None when it holds no tiny checkpoint of ours.

    A tiny checkpoint is recognised by the provenance file `make_tiny` has written beside every checkpoint
    since its first version (a folder without it is never ours), naming a known family, next to a config.json.
    """
    folder = Path(out_dir)
    path = folder / PROVENANCE_FILE
    if not path.is_file() or not (folder / "config.json").is_file():
        return None
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        spec = TinySpec(family=str(data["family"]), seed=int(data["seed"]))
    except (ValueError, KeyError, TypeError, OSError):
        return None
    return spec if spec.family in TINY_BUILDERS else None


def _check_target(target: Path, shown: str, overwrite: bool) -> None:
    """Refuse to write where a user's files would be lost: `--overwrite` replaces only an earlier tiny checkpoint."""
    if not target.exists() and not target.is_symlink():
        return
    if not target.is_dir() or target.is_symlink():
        raise TinyModelError(f"output folder {shown!r} exists and is not a folder; name a new folder")
    cwd = Path.cwd().resolve()
    if target.resolve() == cwd or target.resolve() in cwd.parents:
        # The folder is replaced by a rename: the shell would be left in a deleted folder.
        raise TinyModelError(f"output folder {shown!r} is (or contains) the current folder; name a subfolder")
    if not any(target.iterdir()):
        return
    if read_tiny_spec(target) is None:
        raise TinyModelError(
            f"output folder {shown!r} is not empty and holds no tiny checkpoint ({PROVENANCE_FILE} and config.json); "
            "--overwrite replaces only a folder written by make-tiny: name a new or empty folder"
        )
    if not overwrite:
        raise TinyModelError(f"output folder {shown!r} already holds a tiny checkpoint; pass --overwrite to replace it")


def make_tiny(family: str, out_dir: str | os.PathLike[str], *, seed: int = 0, overwrite: bool = False) -> Path:
    """Write a tiny random checkpoint of `family` to `out_dir`, atomically (built aside, then renamed).

    `out_dir` must be new or empty; with `overwrite`, it may also hold an earlier tiny checkpoint, which is
    replaced. Any other content is refused, so a mistyped path never loses a user's files.
    """
    build = _builder(family)
    if build is None:
        raise TinyModelError(
            f"unknown model family {family!r} for make-tiny; supported: {', '.join(supported_tiny_families())}"
        )
    if not str(out_dir).strip():
        raise TinyModelError("output folder '' is empty; name a folder ('.' for the current one)")
    target = Path(out_dir).expanduser().absolute()
    _check_target(target, str(out_dir), overwrite)
    parent = target.parent
    try:
        parent.mkdir(parents=True, exist_ok=True)
        staging = parent / f".{target.name}.{secrets.token_hex(6)}.tmp"
        staging.mkdir(mode=0o777)  # like any new folder (the umask applies): a checkpoint folder is not private
    except OSError as exc:
        raise TinyModelError(f"cannot write to {str(parent)!r}: {exc.strerror or exc}") from None
    try:
        build(staging, seed)
        (staging / PROVENANCE_FILE).write_text(json.dumps(TinySpec(family, seed).to_json(), indent=2) + "\n")
        if target.exists():
            _check_target(target, str(out_dir), overwrite)  # still ours after the build
            shutil.rmtree(target)
        os.replace(staging, target)
    finally:
        if staging.exists():
            shutil.rmtree(staging, ignore_errors=True)
    return target


def ensure_tiny(family: str, out_dir: str | os.PathLike[str], *, seed: int = 0) -> tuple[Path, bool]:
    """Reuse `out_dir` when it already holds this family and seed; otherwise build it. Returns (path, built)."""
    target = Path(out_dir).expanduser().absolute()
    if read_tiny_spec(target) == TinySpec(family, seed):
        return target, False
    return make_tiny(family, target, seed=seed, overwrite=True), True
