"""The record of which data a run read, and where it lands in lmms-eval's outputs and in the report.

A :class:`DataRecord` says, for one benchmark's documents: a Hub dataset (id, config, split), the revision
asked for and why (pinned, overridden by ``RD_EVAL_DATASET_REVISIONS``, or unpinned) and the commit actually
read (the folder datasets caches a Hub dataset in is named by its commit); or a local mirror
(``RD_EVAL_DATA_DIR``): its folder and a sha256 over the files read (path within the mirror and content).

The record reaches a run's outputs twice:

- the task config: ``metadata.rd_data_source`` (see ``tasks/rd_*/_default_template_*``), the source declared
  when lmms-eval reads the task YAML, lands in the results JSON's ``configs``;
- every logged sample: the documents carry the full record in a ``rd_data_source`` column (:func:`with_record`)
  and ``process_results`` copies it into each ``rd_acc`` item as ``data_source`` (lmms-eval leaves the
  document itself out of its samples files).

:func:`report_rows` reads them back for ``rd-eval report``: per benchmark, each distinct source with the
tasks and runs that read it.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rd_eval.data.revisions import COMMIT, ENV_VAR, UNPINNED, Requested, RevisionError

if TYPE_CHECKING:
    import datasets

    from rd_eval.lmms.runs import RunRecord

log = logging.getLogger(__name__)

COLUMN = "rd_data_source"  # the document column, and the task-metadata key, holding the record
ITEM_KEY = "data_source"  # the key of the record in each rd_acc item (logged per sample)
SOURCES = ("hub", "local")
MIRROR_ORIGIN = "RD_EVAL_DATA_DIR"


@dataclass(frozen=True)
class DataRecord:
    """Where one benchmark's documents came from.

    Hub: ``dataset`` is the dataset id, ``revision`` the revision asked for (a commit, a branch or tag, or
    ``unpinned``), ``origin`` why (``pinned``, ``RD_EVAL_DATASET_REVISIONS``, ``unpinned``) and ``read`` the
    commit read (None when it could not be told, or before loading). Local: ``dataset`` is the mirror folder,
    ``revision`` ``sha256:<hex>`` over the ``files`` read (None before loading), ``origin`` RD_EVAL_DATA_DIR.
    """

    benchmark: str
    source: str
    dataset: str
    revision: str | None
    origin: str
    config: str | None = None
    split: str | None = None
    read: str | None = None
    files: int | None = None

    def __post_init__(self) -> None:
        if not self.benchmark or not self.dataset:
            raise ValueError(f"a data record needs a benchmark and a dataset, got {self.benchmark!r}, {self.dataset!r}")
        if self.source not in SOURCES:
            raise ValueError(f"{self.benchmark}: data source must be one of {SOURCES}, got {self.source!r}")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True, ensure_ascii=False)

    @classmethod
    def from_dict(cls, data: Any, where: str) -> DataRecord:
        if not isinstance(data, Mapping):
            raise ValueError(f"{where}: a data-source record must be an object, got {type(data).__name__}")
        fields = {k: data.get(k) for k in cls.__dataclass_fields__}
        try:
            return cls(**fields)
        except (TypeError, ValueError) as err:
            raise ValueError(f"{where}: not a data-source record ({err})") from None

    def describe(self) -> tuple[str, str]:
        """(data, revision) as the report prints them."""
        if self.source == "local":
            revision = "not read yet" if self.revision is None else (
                f"{self.revision[:19]}… over {self.files} file{'s' if self.files != 1 else ''}")
            where = "local mirror" if self.origin == MIRROR_ORIGIN else self.origin
            return f"{where} `{self.dataset}`", revision
        where = ", ".join(p for p in (self.config, self.split) if p)
        data = f"Hub `{self.dataset}`" + (f" ({where})" if where else "")
        asked = self.revision or UNPINNED
        asked = f"`{asked[:12]}`" if COMMIT.fullmatch(asked) else f"`{asked}`"
        if self.read is None:
            read = ""
        elif self.read == self.revision:
            read = ", read"
        else:
            read = f", read `{self.read[:12]}`"
        return data, f"{asked} ({self.origin}{read})"


# ---------------------------------------------------------------------------------------------------------
# Making records


def commit_read(dataset: datasets.Dataset) -> str | None:
    """The Hub commit a loaded dataset was read at: datasets caches it in ``.../<version>/<commit>/``; None
    for a dataset held in memory or cached elsewhere."""
    commits = {Path(f["filename"]).parent.name for f in dataset.cache_files}
    if len(commits) == 1:
        (commit,) = commits
        return commit if COMMIT.fullmatch(commit) else None
    return None


def hub_record(want: Requested, dataset_id: str, config: str | None, split: str,
               dataset: datasets.Dataset) -> DataRecord:
    """The record of a Hub load; a commit read that is not the pinned one is an error (datasets falls back to
    the newest cached copy, whatever its revision, when the Hub is out of reach)."""
    read = commit_read(dataset)
    if want.revision is not None and COMMIT.fullmatch(want.revision) and read is not None and read != want.revision:
        raise RevisionError(
            f"{want.benchmark}: {dataset_id} is pinned at {want.revision} ({want.origin}) but datasets read commit "
            f"{read}, a cached copy it fell back to; connect to the Hub once to fetch the pinned commit, use a "
            f"local mirror ({MIRROR_ORIGIN}), or read {read} on purpose with {ENV_VAR}={want.benchmark}={read}")
    if read is None:
        log.warning("%s: could not tell which commit of %s datasets read (no cache folder named by a commit); "
                    "recorded as unknown", want.benchmark, dataset_id)
    if want.revision is None:
        log.warning("%s: %s has no verified revision pinned; read at the Hub's current revision (%s). Pin one with "
                    "%s=%s=<commit>", want.benchmark, dataset_id, read or "commit unknown", ENV_VAR, want.benchmark)
    return DataRecord(benchmark=want.benchmark, source="hub", dataset=dataset_id, revision=want.label,
                      origin=want.origin, config=config, split=split, read=read)


def _file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def mirror_record(benchmark: str, folder: Path, files: Mapping[str, Path], origin: str = MIRROR_ORIGIN) -> DataRecord:
    """The record of a local-mirror load: ``files`` maps each file's path within the mirror to the file read;
    the digest covers those paths and contents, so the same files anywhere give the same record. ``origin``
    names what chose the folder (RD_EVAL_DATA_DIR, or data bundled with rd-eval)."""
    if not files:
        raise ValueError(f"{benchmark}: no file was read from the local mirror {folder}; nothing to record")
    digest = hashlib.sha256()
    for relative in sorted(files):
        digest.update(f"{relative}\0{_file_sha256(files[relative])}\n".encode())
    return DataRecord(benchmark=benchmark, source="local", dataset=str(folder), revision=f"sha256:{digest.hexdigest()}",
                      origin=origin, files=len(files))


def with_record(dataset: datasets.Dataset, record: DataRecord) -> datasets.Dataset:
    """``dataset`` with the record in a ``rd_data_source`` column (one JSON string per document)."""
    if COLUMN in dataset.column_names:
        raise ValueError(f"{record.benchmark}: the documents already have a {COLUMN!r} column")
    return dataset.add_column(COLUMN, [record.to_json()] * len(dataset))


def item_source(doc: Mapping[str, Any]) -> dict[str, Any] | None:
    """The record a document carries (for its rd_acc item); None for a document without one."""
    raw = doc.get(COLUMN)
    return None if raw is None else json.loads(raw)


# ---------------------------------------------------------------------------------------------------------
# Reading them back for the report


def _sample_record(path: Path) -> Any:
    """The record of the first logged sample of a samples file (all documents of a task share one load)."""
    with open(path, encoding="utf-8") as fh:
        for line in fh:
            if line.strip():
                sample = json.loads(line)
                items = [v for v in sample.values() if isinstance(v, Mapping) and ITEM_KEY in v]
                return items[0][ITEM_KEY] if items else None
    return None


def _declared(results_path: Path) -> dict[str, Any]:
    configs = json.loads(results_path.read_text(encoding="utf-8")).get("configs") or {}
    out = {}
    for task, config in configs.items():
        meta = config.get("metadata") if isinstance(config, Mapping) else None
        if isinstance(meta, Mapping) and meta.get(COLUMN) is not None:
            out[task] = meta[COLUMN]
    return out


def run_sources(run: RunRecord) -> dict[str, DataRecord | None]:
    """Per task of ``run``: the record of its logged samples, else the one its task config declared, else None."""
    try:
        declared = _declared(run.results_path)
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, AttributeError):
        declared = {}
    out: dict[str, DataRecord | None] = {}
    for task in run.tasks:
        raw, where = None, f"{run.results_path} (task {task})"
        if task in run.samples:
            try:
                raw, where = _sample_record(Path(run.samples[task])), str(run.samples[task])
            except (OSError, UnicodeDecodeError, json.JSONDecodeError):
                raw = None
        if raw is None:
            raw = declared.get(task)
        if raw is None and task not in run.samples and task not in declared:
            continue  # a group entry of the results, not a task that read documents
        out[task] = None if raw is None else DataRecord.from_dict(raw, where)
    return out


def report_rows(settings: Iterable[Any]) -> list[dict[str, Any]]:
    """One row per benchmark and distinct source over the runs of ``settings`` (objects with ``key`` and
    ``runs``): the record, the tasks that read it and the settings and runs they belong to. Tasks without a
    record form one row with ``record`` None."""
    rows: dict[tuple[str, str], dict[str, Any]] = {}
    for setting in settings:
        for run in setting.runs:
            for task, record in run_sources(run).items():
                benchmark = record.benchmark if record else ""
                key = (benchmark, record.to_json() if record else "")
                row = rows.setdefault(key, {"benchmark": benchmark or None,
                                            "record": record.to_dict() if record else None,
                                            "tasks": [], "settings": [], "runs": []})
                for field, value in (("tasks", task), ("settings", setting.key), ("runs", str(run.results_path))):
                    if value not in row[field]:
                        row[field].append(value)
    return [rows[k] for k in sorted(rows, key=lambda k: (k[0] == "", k))]
