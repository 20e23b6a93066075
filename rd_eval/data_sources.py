"""Where a benchmark's records come from: the Hugging Face Hub by default, or a local mirror.

Set the environment variable ``RD_EVAL_DATA_DIR`` to a folder laid out like the project's ``shared/data``::

    $RD_EVAL_DATA_DIR/gsm8k/test.jsonl
    $RD_EVAL_DATA_DIR/math500/test.jsonl
    $RD_EVAL_DATA_DIR/<benchmark>/<file>

and every rd task reads its records from ``<benchmark>/<file>`` there instead of the Hub (offline runs, pinned
copies). When the variable is set, a missing file is an error naming the path and the variable; nothing falls
back to the Hub silently. Unset (or empty), tasks load their Hub dataset as lmms-eval would.

:func:`local_path` is the pure resolution rule; :func:`load_split` loads a :class:`DataSource` either way.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

ENV_VAR = "RD_EVAL_DATA_DIR"
LOCAL_SUFFIXES = (".jsonl", ".parquet")


class LocalDataError(FileNotFoundError):
    """RD_EVAL_DATA_DIR is set but does not hold the file a task needs."""


def _relative_part(what: str, value: str) -> PurePosixPath:
    if not isinstance(value, str) or not value.strip():
        raise ValueError(f"{what} must be a non-empty relative path, got {value!r}")
    part = PurePosixPath(value.replace("\\", "/"))
    if part.is_absolute() or ".." in part.parts or Path(value).is_absolute():
        raise ValueError(f"{what} must be a relative path inside {ENV_VAR} without '..', got {value!r}")
    return part


def data_dir(environ: Mapping[str, str] | None = None) -> Path | None:
    """The folder named by RD_EVAL_DATA_DIR (``~`` expanded), or None when the variable is unset or empty."""
    raw = (os.environ if environ is None else environ).get(ENV_VAR, "").strip()
    return Path(raw).expanduser() if raw else None


def local_path(benchmark: str, relative: str, *, environ: Mapping[str, str] | None = None) -> Path | None:
    """``$RD_EVAL_DATA_DIR/<benchmark>/<relative>``, or None when RD_EVAL_DATA_DIR is not set.

    Raises :class:`LocalDataError` when the variable is set but the folder or the file does not exist, and
    ValueError for a benchmark or relative path that would leave the folder.
    """
    bench = _relative_part("benchmark", benchmark)
    rel = _relative_part("relative", relative)
    root = data_dir(environ)
    if root is None:
        return None
    if not root.is_dir():
        raise LocalDataError(
            f"{ENV_VAR}={str(root)!r} is not a folder; point it at a local data mirror "
            f"(<dir>/{bench}/{rel}) or unset {ENV_VAR} to load {bench} from the Hugging Face Hub"
        )
    path = root / bench / rel
    if not path.is_file():
        raise LocalDataError(
            f"{bench}: {path} does not exist, and {ENV_VAR} is set to {str(root)!r}, so {bench} is read from "
            f"there; put the file at {path} (layout <{ENV_VAR}>/{bench}/{rel}) or unset {ENV_VAR} to load "
            f"{bench} from the Hugging Face Hub"
        )
    return path


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    """One JSON object per non-blank line; errors name the file and line."""
    records: list[dict[str, Any]] = []
    with open(path, encoding="utf-8") as fh:
        for lineno, line in enumerate(fh, start=1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as err:
                raise ValueError(f"{path}:{lineno}: not a JSON line ({err.msg})") from None
            if not isinstance(record, dict):
                raise ValueError(f"{path}:{lineno}: expected a JSON object, got {type(record).__name__}")
            records.append(record)
    if not records:
        raise ValueError(f"{path}: no records (the file is empty)")
    return records


def content_pair_id(prefix: str, text: str) -> str:
    """A pair id that depends only on the problem text: ``<prefix>-<12 hex digits of sha256>``.

    Identical problems get identical ids however a mirror orders or subsets the records, so runs on the Hub
    copy and on a local mirror pair up.
    """
    if not prefix:
        raise ValueError("pair id prefix is empty")
    return f"{prefix}-{hashlib.sha256(text.encode('utf-8')).hexdigest()[:12]}"


@dataclass(frozen=True)
class HubSplit:
    """A split of a Hugging Face Hub dataset: ``datasets.load_dataset(path, name, split=split)``."""

    path: str
    name: str | None
    split: str


@dataclass(frozen=True)
class DataSource:
    """A benchmark split: its Hub copy, and its file in a local mirror (``<benchmark>/<relative>``)."""

    benchmark: str
    relative: str
    hub: HubSplit

    def __post_init__(self) -> None:
        _relative_part("benchmark", self.benchmark)
        if _relative_part("relative", self.relative).suffix not in LOCAL_SUFFIXES:
            raise ValueError(f"{self.benchmark}: local file {self.relative!r} must end in one of {LOCAL_SUFFIXES}")


def _hub_cache_dir() -> str | None:
    try:  # the cache lmms-eval itself uses for task datasets (LMMS_EVAL_DATASETS_CACHE, HF_DATASETS_CACHE, ...)
        from lmms_eval.api.task import _resolve_hf_datasets_cache_dir
    except ImportError:
        return os.environ.get("LMMS_EVAL_DATASETS_CACHE") or None
    return _resolve_hf_datasets_cache_dir()


def load_split(source: DataSource, *, environ: Mapping[str, str] | None = None):
    """The records of ``source`` as a ``datasets.Dataset``: from the local mirror when RD_EVAL_DATA_DIR is set,
    else from the Hub (through the datasets cache, so ``HF_DATASETS_OFFLINE=1`` works once cached)."""
    import datasets

    path = local_path(source.benchmark, source.relative, environ=environ)
    if path is not None:
        if path.suffix == ".parquet":
            return datasets.Dataset.from_parquet(str(path))
        return datasets.Dataset.from_list(read_jsonl(path))
    hub = source.hub
    try:
        return datasets.load_dataset(hub.path, hub.name, split=hub.split, cache_dir=_hub_cache_dir(),
                                     download_mode=datasets.DownloadMode.REUSE_DATASET_IF_EXISTS)
    except Exception as err:
        raise RuntimeError(
            f"{source.benchmark}: could not load {hub.path} (config {hub.name}, split {hub.split}) from the "
            f"Hugging Face Hub or its cache ({type(err).__name__}: {err}); to use a local copy instead, set "
            f"{ENV_VAR} to a folder holding {source.benchmark}/{source.relative}"
        ) from err
