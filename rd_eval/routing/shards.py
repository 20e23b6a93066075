"""Routing records on disk: one shard per rank, appended as batches finish (what a record holds:
:mod:`rd_eval.routing.records`).

A shard is three files written side by side:

- ``routing_rank000.jsonl``: one JSON line per document, its identity (task, doc id, form, model,
  intervention hash), token counts per base scope and, for version 2, where its arrays lie in the sidecars;
- ``routing_rank000.counts.bin``: per document, its selection counts ``[scope, layer, expert]``, raw
  little-endian, in the smallest unsigned integer type that holds them;
- ``routing_rank000.probs.bin``: per document, its router-probability sums ``[scope, layer, expert]``, float32;
- ``routing_rank000.sites.json`` (version 3): the site tables of the shard's lines, by digest. A line names its
  table (``"site_table": digest``); the table says what each site row is (decoder layer, MoE-layer index, expert
  group, module path, experts, k: :mod:`rd_eval.routing.site_table`), written once per shard, not per line.

JSON text of 2 x 3 x 48 x 128 numbers per document made a 10k-pair run ~4 GB to parse into ~20 GB of Python
floats. The sidecars are memory-mapped, so a reader touches only the arrays it uses, and counts (all the
report and expert identification read) have a file of their own: a third of the bytes, read in one sweep.

Crash safety: a batch's arrays are written and fsynced before its JSON lines, and a line names the offsets of
its own arrays, so a crash loses at most the batch in flight: sidecar bytes that no line names are ignored, a
torn last line is skipped, and the next batch appended to the shard trims that torn line first. Shards of
a run are merged by the reader, multi-GPU needs no gather.

Concurrent writers: two processes may append to one shard (two runs with the same output path, checkpoint
and setting share the default folder). Each batch is appended under an exclusive OS lock on the shard's JSONL
file (``flock``, one lock per batch), and its offsets are taken under that lock, so batches of different
writers follow each other whole and every line names its own arrays.

Version 1 shards (arrays inline as JSON lists) are still read, and so are early version 2 shards, whose lines
name no file because counts and sums shared one sidecar, ``routing_rank000.bin``. Lines of version 1 and 2 name
no site table: readers take their site rows with the meaning they were written with, row i = MoE layer i, one
router per layer (:meth:`SiteTable.legacy_of`). That is right for every family but ERNIE-4.5-VL, whose old
records interleave text and vision rows: nothing in such a record tells them apart, so they are read the old (wrong)
way too; rerun ERNIE to record a table.

"""

from __future__ import annotations

import contextlib
import json
import math
import os
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO

import numpy as np

from rd_eval.routing.site_table import SiteTable, SiteTableError
from rd_eval.vocabulary.scopes import BASE_SCOPES

if TYPE_CHECKING:  # readers (`rd-eval report`) must not pay for importing torch
    pass

from rd_eval.routing.records import READABLE_VERSIONS, RECORD_FORMAT, RECORD_VERSION

SHARD_PATTERN = "routing_rank{rank:03d}.jsonl"
SIDECAR_SUFFIXES = {"counts": ".counts.bin", "prob_sums": ".probs.bin"}
SITES_SUFFIX = ".sites.json"
SITES_FORMAT = "rd-eval.site-tables"
# Early version 2 shards kept counts and sums in one sidecar and their lines name no file.
SHARED_SIDECAR_SUFFIX = ".bin"
PROB_DTYPE = "<f4"
# Count dtypes from the smallest up: a document's counts are bounded by its token count.
COUNT_DTYPES = ("<u2", "<u4", "<u8")


def sidecar_paths(shard: Path) -> dict[str, Path]:
    """The binary sidecars of a JSONL shard, by the record field they hold."""
    return {name: shard.with_suffix(suffix) for name, suffix in SIDECAR_SUFFIXES.items()}


def sites_path(shard: Path) -> Path:
    """The shard's site tables (JSON, by digest)."""
    return shard.with_suffix(SITES_SUFFIX)



# ---------------------------------------------------------------------------------------------------------
# Writing


def _count_dtype(counts: np.ndarray) -> str:
    """The smallest unsigned dtype that holds `counts` exactly (they are non-negative integers)."""
    if counts.size and (counts.min() < 0 or not np.array_equal(counts, np.rint(counts))):
        raise ValueError("routing counts must be non-negative integers")
    top = int(counts.max()) if counts.size else 0
    for dtype in COUNT_DTYPES:
        if top <= np.iinfo(np.dtype(dtype)).max:
            return dtype
    raise ValueError(f"routing count {top} too large to store")


def _stack_scopes(name: str, by_scope: Mapping[str, Any]) -> np.ndarray:
    """[scope, L, E] from a {base scope: [L, E]} mapping, in BASE_SCOPES order."""
    missing = [scope for scope in BASE_SCOPES if scope not in by_scope]
    if missing:
        raise ValueError(f"record '{name}' lacks base scopes {missing}")
    return np.stack([np.asarray(by_scope[scope]) for scope in BASE_SCOPES])


def _array_blocks(record: Mapping[str, Any]) -> tuple[dict[str, Any], np.ndarray | None, np.ndarray | None]:
    """The record's JSON line (sidecar references to be completed with offsets) and its two array blocks,
    counts [scope, L, E] and prob_sums [scope, L, E]; an error record (no statistics) has no blocks."""
    header = {k: v for k, v in record.items() if k not in ("counts", "prob_sums")}
    if record.get("counts") is None:
        return header | {"counts": None, "prob_sums": None}, None, None
    counts = _stack_scopes("counts", record["counts"])
    counts = np.ascontiguousarray(counts.astype(_count_dtype(counts)))
    prob_sums = np.ascontiguousarray(_stack_scopes("prob_sums", record["prob_sums"]).astype(PROB_DTYPE))
    if counts.shape != prob_sums.shape:
        raise ValueError(f"record counts {counts.shape} and prob_sums {prob_sums.shape} differ in shape")
    refs = {"scopes": list(BASE_SCOPES), "shape": list(counts.shape),
            "counts": {"offset": 0, "dtype": counts.dtype.str}, "prob_sums": {"offset": 0, "dtype": PROB_DTYPE}}
    return header | {"version": RECORD_VERSION, "arrays": refs}, counts, prob_sums


def _trim_torn_tail(path: Path) -> None:
    """Cut a partial last line (a crash mid-write) so that appended lines start on a line of their own."""
    try:
        size = path.stat().st_size
    except FileNotFoundError:
        return
    if size == 0:
        return
    with open(path, "rb+") as fh:
        fh.seek(size - 1)
        if fh.read(1) == b"\n":
            return
        # Scan back for the last complete line; lines are at most a few kB (headers only).
        end = size
        while end > 0:
            start = max(0, end - 65536)
            fh.seek(start)
            chunk = fh.read(end - start)
            cut = chunk.rfind(b"\n")
            if cut >= 0:
                fh.truncate(start + cut + 1)
                break
            end = start
        else:
            fh.truncate(0)
        fh.flush()
        os.fsync(fh.fileno())


@contextlib.contextmanager
def _locked_for_append(path: Path) -> Iterator[BinaryIO]:
    """`path` open for appending, under an exclusive OS lock (``flock``) until the block ends: another process
    appending to the same shard waits for the whole batch. The lock goes with the file's closing, also when
    the process dies."""
    import fcntl  # POSIX; ShardWriter checks for it when constructed

    with open(path, "ab") as fh:
        try:
            fcntl.flock(fh.fileno(), fcntl.LOCK_EX)
        except OSError as exc:  # a file system without locks (some network or FUSE mounts)
            raise OSError(f"routing shard {path}: cannot lock it for appending ({exc.strerror or exc}); put "
                          f"routing records on a file system with file locks (routing_dir= in model_args)") from None
        try:
            yield fh
        finally:
            fcntl.flock(fh.fileno(), fcntl.LOCK_UN)


def _read_site_tables(path: Path) -> dict[str, Any]:
    """The tables of a sites sidecar by digest ({} when it does not exist yet)."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as exc:
        raise ValueError(f"{path}: unreadable site tables ({exc})") from None
    if not isinstance(data, dict) or data.get("format") != SITES_FORMAT or not isinstance(data.get("tables"), dict):
        raise ValueError(f"{path}: not an rd-eval site-table file (format {SITES_FORMAT!r})")
    return data["tables"]


def _write_site_table(path: Path, table: SiteTable) -> str:
    """Add `table` to the shard's sites sidecar (under the shard's lock), fsynced; its digest."""
    digest = table.digest()
    tables = _read_site_tables(path)
    if digest not in tables:
        tables[digest] = table.to_json()
        tmp = path.with_name(f"{path.name}.tmp{os.getpid()}")
        with open(tmp, "w", encoding="utf-8") as fh:
            json.dump({"format": SITES_FORMAT, "tables": tables}, fh, separators=(",", ":"))
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    return digest


class ShardWriter:
    """Appends records to this rank's shard; each batch is appended under the shard's lock, flushed and fsynced
    before generation goes on. `sites`: the model's site table, written once into the shard's sites sidecar and
    named by every line (None only for callers that write no routing arrays of a model, e.g. tests of old shards)."""

    def __init__(self, directory: str | os.PathLike[str], rank: int, sites: SiteTable | None = None) -> None:
        self.path = Path(directory) / SHARD_PATTERN.format(rank=rank)
        self.sidecars = sidecar_paths(self.path)
        self.sites = sites
        self._sites_digest: str | None = None
        try:
            import fcntl  # noqa: F401
        except ImportError:
            raise ValueError("routing records need POSIX file locks (fcntl), which this platform lacks; "
                             "pass record_routing=false in model_args") from None
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise ValueError(f"routing_dir {str(self.path.parent)!r} is not writable: {exc.strerror or exc}") from None

    def append(self, records: list[dict[str, Any]]) -> None:
        if not records:
            return
        split = [_array_blocks(record) for record in records]
        if self.sites is not None:
            for entry in split:
                if entry[1] is not None:
                    self.sites.check_rows(entry[1].shape[1], f"routing shard {self.path}")
        with _locked_for_append(self.path) as shard:
            # Under the lock: a writer that died mid-line (this run's predecessor or a concurrent run) left a
            # torn line, and every offset below is the end of a sidecar no other writer is extending.
            _trim_torn_tail(self.path)
            if self.sites is not None:
                if self._sites_digest is None or not sites_path(self.path).is_file():
                    self._sites_digest = _write_site_table(sites_path(self.path), self.sites)
                for entry in split:
                    entry[0]["site_table"] = self._sites_digest
            for name, index in (("counts", 1), ("prob_sums", 2)):
                with open(self.sidecars[name], "ab") as fh:
                    offset = fh.seek(0, os.SEEK_END)  # bytes of a batch that died before its lines are skipped
                    for entry in split:
                        block = entry[index]
                        if block is not None:
                            entry[0]["arrays"][name] |= {"file": self.sidecars[name].name, "offset": offset}
                            fh.write(memoryview(block).cast("B"))
                            offset += block.nbytes
                    fh.flush()
                    os.fsync(fh.fileno())
            lines = [entry[0] for entry in split]
            payload = "".join(json.dumps(line, separators=(",", ":")) + "\n" for line in lines)
            shard.write(payload.encode("utf-8"))
            shard.flush()
            os.fsync(shard.fileno())


# ---------------------------------------------------------------------------------------------------------
# Reading


class _Sidecar:
    """A sidecar file, memory-mapped on first use (read only; pages are loaded as arrays are touched)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._map: np.ndarray | None = None

    def _mapped(self, needed: int) -> np.ndarray | None:
        # Map again when a line names bytes past the mapped end: the shard may be growing while it is read.
        if self._map is None or self._map.size < needed:
            size = self.path.stat().st_size if self.path.is_file() else 0
            self._map = np.memmap(self.path, dtype=np.uint8, mode="r") if size else None
        return self._map

    def array(self, offset: int, dtype: np.dtype, shape: tuple[int, ...]) -> np.ndarray | None:
        """The array at `offset`, or None when the sidecar does not hold it (missing or truncated)."""
        end = offset + dtype.itemsize * math.prod(shape)
        mapped = self._mapped(end)
        if mapped is None or mapped.size < end:
            return None
        return np.ndarray(shape, dtype=dtype, buffer=mapped, offset=offset)


_DTYPES = {name: np.dtype(name) for name in (*COUNT_DTYPES, PROB_DTYPE)}
_ALLOWED = {"counts": COUNT_DTYPES, "prob_sums": (PROB_DTYPE,)}


class _ShardSidecars:
    """The sidecars a shard's lines name, each opened once. Only files beside the shard, named after it."""

    def __init__(self, shard: Path) -> None:
        self.shard = shard
        self._open: dict[str, _Sidecar] = {}
        self._tables: dict[str, SiteTable] = {}
        self._table_json: dict[str, Any] | None = None

    def site_table(self, digest: Any, where: str) -> SiteTable:
        """The table a line names, read from the shard's sites sidecar (again when a new digest appears: the
        shard may be growing while it is read)."""
        table = self._tables.get(digest) if isinstance(digest, str) else None
        if table is not None:
            return table
        if self._table_json is None or digest not in self._table_json:
            self._table_json = _read_site_tables(sites_path(self.shard))
        if not isinstance(digest, str) or digest not in self._table_json:
            raise ValueError(f"{where}: names site table {digest!r}, which {sites_path(self.shard).name} lacks "
                             f"(missing or corrupt sites sidecar)")
        try:
            table = SiteTable.from_json(self._table_json[digest], source=f"{sites_path(self.shard)} table {digest}")
        except SiteTableError as exc:
            raise ValueError(str(exc)) from None
        self._tables[digest] = table
        return table

    def get(self, name: Any) -> _Sidecar:
        sidecar = self._open.get(name) if isinstance(name, str) else None
        if sidecar is None:  # checked once per name: every line of a shard names the same two files
            if not isinstance(name, str) or Path(name).name != name or not name.startswith(self.shard.stem + "."):
                raise ValueError
            sidecar = self._open[name] = _Sidecar(self.shard.parent / name)
        return sidecar


def _array_ref(refs: Mapping[str, Any], name: str, sidecars: _ShardSidecars) -> tuple[_Sidecar, int, np.dtype]:
    ref = refs[name]
    dtype_name, offset = ref["dtype"], ref["offset"]
    if dtype_name not in _ALLOWED[name] or isinstance(offset, bool) or not isinstance(offset, int) or offset < 0:
        raise ValueError
    file = ref.get("file", sidecars.shard.with_suffix(SHARED_SIDECAR_SUFFIX).name)
    return sidecars.get(file), offset, _DTYPES[dtype_name]


def _attach_arrays(record: dict[str, Any], sidecars: _ShardSidecars, where: str) -> dict[str, Any]:
    """Replace a version 2 record's sidecar references by (read-only, memory-mapped) arrays [L, E] per scope."""
    refs = record.pop("arrays", None)
    if refs is None:
        return record
    try:
        scopes = [str(scope) for scope in refs["scopes"]]
        shape = tuple(int(n) for n in refs["shape"])
        if len(shape) != 3 or shape[0] != len(scopes) or min(shape) < 1:
            raise ValueError
        blocks = {name: _array_ref(refs, name, sidecars) for name in ("counts", "prob_sums")}
    except (KeyError, TypeError, ValueError):
        raise ValueError(f"{where}: corrupt sidecar reference in routing record") from None
    for name, (sidecar, offset, dtype) in blocks.items():
        block = sidecar.array(offset, dtype, shape)
        if block is None:
            raise ValueError(f"{where}: its {name} lie outside {sidecar.path.name} (missing or truncated sidecar)")
        record[name] = {scope: block[s] for s, scope in enumerate(scopes)}
    return record


def _attach_site_table(record: dict[str, Any], sidecars: _ShardSidecars, where: str) -> dict[str, Any]:
    """Replace a version 3 line's site-table digest by the table (checked against its arrays); None for older
    lines (see :func:`record_site_table`)."""
    digest = record.get("site_table")
    if digest is None:
        record["site_table"] = None
        return record
    table = sidecars.site_table(digest, where)
    counts = record.get("counts")
    if isinstance(counts, Mapping) and counts:
        try:
            table.check_rows(len(next(iter(counts.values()))), where)
        except SiteTableError as exc:
            raise ValueError(str(exc)) from None
    record["site_table"] = table
    return record


def _shard_records(shard: Path) -> Iterator[dict[str, Any]]:
    sidecars = _ShardSidecars(shard)
    lines = shard.read_text(encoding="utf-8").splitlines()
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            if number == len(lines):
                continue  # only the last line can be torn by a crash
            raise ValueError(f"{shard}:{number}: corrupt routing record") from None
        if not isinstance(record, dict) or record.get("format") != RECORD_FORMAT:
            raise ValueError(f"{shard}:{number}: not an rd-eval routing record")
        if record.get("version", 1) not in READABLE_VERSIONS:
            raise ValueError(f"{shard}:{number}: routing record version {record.get('version')!r} is newer than "
                             f"this rd-eval reads ({max(READABLE_VERSIONS)}); upgrade rd-eval")
        where = f"{shard}:{number}"
        yield _attach_site_table(_attach_arrays(record, sidecars, where), sidecars, where)


def read_routing_records(directory: str | os.PathLike[str]) -> Iterator[dict[str, Any]]:
    """All records of a run's shards, in shard order. A torn last line (a crash mid-write) is skipped.

    Counts and probability sums come as {base scope: [L, E]} (read-only arrays mapped from the sidecar, or
    the lists of a version 1 shard); ``site_table`` is the record's :class:`SiteTable`, or None for a record
    written before tables were recorded (:func:`record_site_table` gives its meaning)."""
    root = Path(directory)
    shards = sorted(root.glob("routing_rank*.jsonl"))
    if not shards:
        raise ValueError(f"{root}: no routing shards (routing_rank*.jsonl) found")
    for shard in shards:
        yield from _shard_records(shard)


def merge_routing_records(directory: str | os.PathLike[str]) -> list[dict[str, Any]]:
    """Records of all ranks, one per (task, doc_id, intervention, model, checkpoint), sorted; a rerun's later
    record wins. Records of different checkpoints or models in one folder are all kept: pick a run's own with
    :func:`select_records`."""
    merged: dict[tuple[str, int, str, str, str, str], dict[str, Any]] = {}
    for record in read_routing_records(directory):
        key = (record["task"], int(record["doc_id"]), record["intervention"], str(record.get("model") or ""),
               str(record.get("checkpoint") or ""), str(record.get("pretrained") or ""))
        merged[key] = record
    return [merged[key] for key in sorted(merged)]


