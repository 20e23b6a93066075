"""Per-document routing records: one JSONL shard per rank, appended as batches finish.

Each line is one document: its identity (task, doc id, form, model, intervention hash) and its
per-layer, per-expert selection counts and router-probability sums for each base token scope. A crash
loses at most the batch in flight; shards of a run are merged by the reader, multi-GPU needs no gather.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from rd_eval.routing.recording import BASE_SCOPES, BatchRouting

RECORD_FORMAT = "rd-eval.routing-record"
RECORD_VERSION = 1
SHARD_PATTERN = "routing_rank{rank:03d}.jsonl"


def checkpoint_label(pretrained: str) -> str:
    """A checkpoint as run folders name it: its last two path parts joined by '__' (lmms-eval's own rule)."""
    parts = [p for p in str(pretrained).rstrip("/").split("/") if p]
    return "__".join(parts[-2:]) if parts else "model"


def routing_folder(output_path: str | os.PathLike[str], pretrained: str, intervention_hash: str) -> Path:
    """Where a run's routing shards go by default: beside lmms-eval's output, one folder per setting."""
    return Path(output_path) / "rd_routing" / f"{checkpoint_label(pretrained)}__{intervention_hash}"


@dataclass(frozen=True)
class DocIdentity:
    task: str
    doc_id: int
    form: str  # "img", "txt", or "" when the task is not a paired form


def form_of_task(task: str) -> str:
    for form in ("img", "txt", "see"):
        if task.endswith(f"_{form}"):
            return form
    return ""


def _record_header(identity: DocIdentity, model: str, intervention_hash: str, error: str | None) -> dict[str, Any]:
    return {
        "format": RECORD_FORMAT,
        "version": RECORD_VERSION,
        "task": identity.task,
        "doc_id": identity.doc_id,
        "form": identity.form,
        "model": model,
        "intervention": intervention_hash,
        "error": error,
    }


def document_record(identity: DocIdentity, routing: BatchRouting, row: int, *, model: str,
                    intervention_hash: str, error: str | None = None) -> dict[str, Any]:
    """JSON-ready record of row `row` of a batch (counts are integers; probability sums 6 digits)."""
    counts = routing.counts[row]  # [L, 3, E]
    prob_sums = routing.prob_sums[row]
    return _record_header(identity, model, intervention_hash, error) | {
        "tokens": {scope: int(routing.tokens[row, s]) for s, scope in enumerate(BASE_SCOPES)},
        "counts": {scope: np.rint(counts[:, s, :]).astype(np.int64).tolist() for s, scope in enumerate(BASE_SCOPES)},
        "prob_sums": {scope: np.round(prob_sums[:, s, :], 6).tolist() for s, scope in enumerate(BASE_SCOPES)},
    }


def error_record(identity: DocIdentity, *, model: str, intervention_hash: str, error: str) -> dict[str, Any]:
    """A document that could not be run: its identity and the reason, no statistics."""
    return _record_header(identity, model, intervention_hash, error) | {
        "tokens": None, "counts": None, "prob_sums": None,
    }


class ShardWriter:
    """Appends records to this rank's shard; each batch is flushed and fsynced before generation goes on."""

    def __init__(self, directory: str | os.PathLike[str], rank: int) -> None:
        self.path = Path(directory) / SHARD_PATTERN.format(rank=rank)
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise ValueError(f"routing_dir {str(self.path.parent)!r} is not writable: {exc.strerror or exc}") from None

    def append(self, records: list[dict[str, Any]]) -> None:
        if not records:
            return
        payload = "".join(json.dumps(r, separators=(",", ":")) + "\n" for r in records)
        with open(self.path, "a", encoding="utf-8") as fh:
            fh.write(payload)
            fh.flush()
            os.fsync(fh.fileno())


def read_routing_records(directory: str | os.PathLike[str]) -> Iterator[dict[str, Any]]:
    """All records of a run's shards, in shard order. A torn last line (a crash mid-write) is skipped."""
    root = Path(directory)
    shards = sorted(root.glob("routing_rank*.jsonl"))
    if not shards:
        raise ValueError(f"{root}: no routing shards (routing_rank*.jsonl) found")
    for shard in shards:
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
            if record.get("format") != RECORD_FORMAT:
                raise ValueError(f"{shard}:{number}: not an rd-eval routing record")
            yield record


def merge_routing_records(directory: str | os.PathLike[str]) -> list[dict[str, Any]]:
    """Records of all ranks, one per (task, doc_id, intervention), sorted; a rerun's later record wins."""
    merged: dict[tuple[str, int, str], dict[str, Any]] = {}
    for record in read_routing_records(directory):
        merged[(record["task"], int(record["doc_id"]), record["intervention"])] = record
    return [merged[key] for key in sorted(merged)]
