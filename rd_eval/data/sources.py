"""Where a benchmark's records come from: the Hugging Face Hub by default, or a local mirror.

Set the environment variable ``RD_EVAL_DATA_DIR`` to a folder laid out like the project's ``shared/data``::

    $RD_EVAL_DATA_DIR/gsm8k/test.jsonl
    $RD_EVAL_DATA_DIR/math500/test.jsonl
    $RD_EVAL_DATA_DIR/<benchmark>/<file>

and every rd task reads its records from ``<benchmark>/<file>`` there instead of the Hub (offline runs, pinned
copies). When the variable is set, a missing file is an error naming the path and the variable; nothing falls
back to the Hub silently. An image form needs every image its records name: the missing and unreadable ones
(:func:`image_problem`) are named together when the task is built, not when a model first needs one.
Unset (or empty), tasks load their Hub dataset as lmms-eval would, at the revision pinned for the benchmark
(:mod:`rd_eval.data.revisions`; ``RD_EVAL_DATASET_REVISIONS`` overrides it).

:func:`local_path` is the pure resolution rule; :func:`load_split` loads a :class:`DataSource` either way,
:func:`load_hub` a Hub split at the benchmark's pinned revision (:mod:`rd_eval.data.revisions`), and a
:class:`MirrorReader` remembers the mirror files a loader reads. Every load comes with its
:class:`~rd_eval.data.provenance.DataRecord`; :func:`declaration` is the source a task declares before loading.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Any

from rd_eval.data.provenance import MIRROR_ORIGIN, DataRecord, hub_record, mirror_record
from rd_eval.data.revisions import ENV_VAR as REVISIONS_VAR
from rd_eval.data.revisions import RevisionError, overrides, requested
from rd_eval.fileio.jsonl import jsonl_objects

if TYPE_CHECKING:
    import datasets

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


def mirror_path(benchmark: str, relative: str, *, environ: Mapping[str, str] | None = None) -> Path | None:
    """``$RD_EVAL_DATA_DIR/<benchmark>/<relative>``, which may not exist, or None when RD_EVAL_DATA_DIR is not set.

    Raises :class:`LocalDataError` when the variable is set but is not a folder, and ValueError for a benchmark
    or relative path that would leave the folder.
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
    return root / bench / rel


def local_path(benchmark: str, relative: str, *, environ: Mapping[str, str] | None = None) -> Path | None:
    """``$RD_EVAL_DATA_DIR/<benchmark>/<relative>``, or None when RD_EVAL_DATA_DIR is not set.

    Raises :class:`LocalDataError` when the variable is set but the folder or the file does not exist, and
    ValueError for a benchmark or relative path that would leave the folder.
    """
    path = mirror_path(benchmark, relative, environ=environ)
    if path is None:
        return None
    bench, rel, root = _relative_part("benchmark", benchmark), _relative_part("relative", relative), data_dir(environ)
    if not path.is_file():
        raise LocalDataError(
            f"{bench}: {path} does not exist, and {ENV_VAR} is set to {str(root)!r}, so {bench} is read from "
            f"there; put the file at {path} (layout <{ENV_VAR}>/{bench}/{rel}) or unset {ENV_VAR} to load "
            f"{bench} from the Hugging Face Hub"
        )
    return path


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    """One JSON object per non-blank line; errors name the file and line."""
    records = [record for _where, record in jsonl_objects(path, "data file")]
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
    """A split of a Hugging Face Hub dataset: ``datasets.load_dataset(path, name, split=split)``, as lmms-eval's
    own task for the benchmark loads it; ``image_column`` names the column holding the image forms' images."""

    path: str
    name: str | None
    split: str
    image_column: str | None = None


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


@dataclass(frozen=True)
class Loaded:
    """A loaded split and the record of where it came from."""

    dataset: datasets.Dataset
    record: DataRecord


def load_hub(benchmark: str, hub: HubSplit, *, environ: Mapping[str, str] | None = None) -> Loaded:
    """``hub`` at the revision requested for ``benchmark`` (its pin, or RD_EVAL_DATASET_REVISIONS), through the
    datasets cache lmms-eval uses (so ``HF_DATASETS_OFFLINE=1`` works once cached); the commit read is recorded
    and must be the pinned one."""
    import datasets

    want = requested(benchmark, environ)
    try:
        dataset = datasets.load_dataset(hub.path, hub.name, split=hub.split, revision=want.revision,
                                        cache_dir=_hub_cache_dir(),
                                        download_mode=datasets.DownloadMode.REUSE_DATASET_IF_EXISTS)
    except Exception as err:
        raise RuntimeError(
            f"{benchmark}: could not load {hub.path} (config {hub.name}, split {hub.split}, revision "
            f"{want.label}) from the Hugging Face Hub or its cache ({type(err).__name__}: {err}); to use a local "
            f"copy instead, set {ENV_VAR} to a local mirror (see rd_eval.data.sources)"
        ) from err
    return Loaded(dataset, hub_record(want, hub.path, hub.name, hub.split, dataset))


def _check_no_revision_override(benchmark: str, root: Path, environ: Mapping[str, str] | None) -> None:
    if benchmark in overrides(environ):
        raise RevisionError(
            f"{REVISIONS_VAR} sets a Hub revision for {benchmark}, but {ENV_VAR}={str(root)!r} is set, so {benchmark} "
            f"is read from that local mirror and the revision would do nothing; unset one of the two")


_LFS_POINTER = b"version https://git-lfs"


def image_problem(path: Path) -> str | None:
    """Why ``path`` is no usable image ("does not exist", a Git LFS pointer, not an image PIL can open), or
    None. Only the header is read; the image forms decode it when a model sees it."""
    if not path.is_file():
        return "does not exist"
    from PIL import Image, UnidentifiedImageError

    with open(path, "rb") as fh:
        if fh.read(len(_LFS_POINTER)) == _LFS_POINTER:
            return "is a Git LFS pointer, not the image (`git lfs pull` in the mirror's repository fetches it)"
    try:
        with Image.open(path):  # opening reads the header, which is the check
            pass
    except (UnidentifiedImageError, OSError) as err:
        return f"is not an image that can be opened ({type(err).__name__}: {err})"
    return None


class MirrorReader:
    """Reads one benchmark's files from the local mirror (``$RD_EVAL_DATA_DIR/<folder>/...``) and remembers
    each file read, for the record's content hash, and each image asked for that is missing or unreadable, so
    that :meth:`check_images` names them all at once."""

    def __init__(self, benchmark: str, folder: str, root: Path, environ: Mapping[str, str] | None = None) -> None:
        self.benchmark, self.folder, self.root, self._environ = benchmark, folder, root, environ
        self._read: dict[str, Path] = {}
        self._bad_images: list[str] = []

    @classmethod
    def from_env(cls, benchmark: str, folder: str,
                 environ: Mapping[str, str] | None = None) -> MirrorReader | None:
        """A reader when RD_EVAL_DATA_DIR is set, else None (the benchmark comes from the Hub)."""
        root = data_dir(environ)
        if root is None:
            return None
        _check_no_revision_override(benchmark, root, environ)
        return cls(benchmark, folder, root, environ)

    def file(self, relative: str) -> Path:
        """``<folder>/<relative>`` of the mirror, which must exist (errors name the path and the variable)."""
        path = local_path(self.folder, relative, environ=self._environ)
        if path is None:  # RD_EVAL_DATA_DIR was unset after the reader was made
            raise LocalDataError(f"{self.benchmark}: {ENV_VAR} is no longer set; cannot read {self.folder}/{relative}")
        within = PurePosixPath(self.folder) / PurePosixPath(relative.replace("\\", "/"))
        self._read[within.as_posix()] = path
        return path

    def image(self, relative: str) -> str:
        """An image file of the mirror, as an absolute path. A missing or unreadable image is remembered, not
        raised, so that :meth:`check_images` can name every one (the image forms need them all)."""
        path = mirror_path(self.folder, relative, environ=self._environ)
        if path is None:  # RD_EVAL_DATA_DIR was unset after the reader was made
            raise LocalDataError(f"{self.benchmark}: {ENV_VAR} is no longer set; cannot read {self.folder}/{relative}")
        problem = image_problem(path)
        if problem is None:
            within = PurePosixPath(self.folder) / PurePosixPath(relative.replace("\\", "/"))
            self._read[within.as_posix()] = path
        else:
            self._bad_images.append(f"{path} {problem}")
        return str(path.resolve())

    def check_images(self) -> None:
        """Raise :class:`LocalDataError` naming the images asked for that the mirror does not hold (or holds
        unreadable)."""
        bad = self._bad_images
        if not bad:
            return
        folder = self.root / self.folder
        others = "; ".join(bad[1:6]) + (f"; ... ({len(bad) - 6} more)" if len(bad) > 6 else "")
        also = f"; and {len(bad) - 1} more of the images the records name: {others}" if len(bad) > 1 else ""
        raise LocalDataError(
            f"{self.benchmark}: image {bad[0]}{also}. The image form needs every image of the local mirror "
            f"{folder} ({ENV_VAR}={str(self.root)!r}): put each at {folder}/<the path its record names>, run only "
            f"the text twin (it needs no image), or unset {ENV_VAR} to load {self.benchmark} from the Hugging Face "
            f"Hub")

    def record(self) -> DataRecord:
        """The record of every file read so far; refused (:meth:`check_images`) while an image is missing."""
        self.check_images()
        return mirror_record(self.benchmark, self.root / self.folder, self._read)


def declaration(benchmark: str, dataset: str, folder: str,
                environ: Mapping[str, str] | None = None) -> dict[str, Any]:
    """The source a task declares when lmms-eval reads its YAML (``metadata.rd_data_source``): the local mirror
    folder, or the Hub dataset and the revision requested. Bad settings fail here, before any loading."""
    root = data_dir(environ)
    if root is not None:
        _check_no_revision_override(benchmark, root, environ)
        return DataRecord(benchmark=benchmark, source="local", dataset=str(root / folder), revision=None,
                          origin=MIRROR_ORIGIN).to_dict()
    want = requested(benchmark, environ)
    return DataRecord(benchmark=benchmark, source="hub", dataset=dataset, revision=want.label,
                      origin=want.origin).to_dict()


def load_split(source: DataSource, *, environ: Mapping[str, str] | None = None) -> Loaded:
    """The records of ``source`` as a ``datasets.Dataset`` with their record: from the local mirror when
    RD_EVAL_DATA_DIR is set, else from the Hub at the benchmark's revision."""
    import datasets

    reader = MirrorReader.from_env(source.benchmark, source.benchmark, environ)
    if reader is not None:
        path = reader.file(source.relative)
        if path.suffix == ".parquet":
            return Loaded(datasets.Dataset.from_parquet(str(path)), reader.record())
        return Loaded(datasets.Dataset.from_list(read_jsonl(path)), reader.record())
    return load_hub(source.benchmark, source.hub, environ=environ)
