"""Writer processes for the concurrent-append test of routing shards (imported by spawned processes: numpy and
rd_eval.routing.records only, no torch, so that a process starts in well under a second)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from rd_eval.routing.records import DocIdentity, document_record
from rd_eval.routing.shards import ShardWriter
from rd_eval.vocabulary.scopes import BASE_SCOPES

LAYERS, EXPERTS = 8, 32


@dataclass(frozen=True)
class FakeRouting:
    """What `document_record` reads of a BatchRouting: counts and sums [B, L, scope, E], tokens [B, scope]."""

    counts: np.ndarray
    prob_sums: np.ndarray
    tokens: np.ndarray


def task_of(writer: int) -> str:
    return f"writer{writer}_img"


def batch_routing(writer: int, batch: int, size: int) -> FakeRouting:
    """The statistics writer `writer` appends as batch `batch`: a function of the two, so a reader can check."""
    rng = np.random.default_rng([writer, batch])
    shape = (size, LAYERS, len(BASE_SCOPES), EXPERTS)
    counts = rng.integers(0, 300 if writer == 0 else 70_000, size=shape).astype(np.float64)  # u2 vs u4 blocks
    prob_sums = rng.random(shape, dtype=np.float32) * 10
    tokens = rng.integers(0, 100, size=(size, len(BASE_SCOPES))).astype(np.float32)
    return FakeRouting(counts=counts, prob_sums=prob_sums, tokens=tokens)


def doc_id(batch: int, row: int, size: int) -> int:
    return batch * size + row


def append_batches(folder: str, writer: int, batches: int, size: int, start: Any) -> None:
    """Append `batches` batches of `size` records to rank 0's shard of `folder`; every batch starts when the
    barrier `start` opens, so that the two writers' appends overlap however busy the machine is."""
    shard = ShardWriter(folder, 0)
    for batch in range(batches):
        routing = batch_routing(writer, batch, size)
        start.wait()
        shard.append([document_record(DocIdentity(task_of(writer), doc_id(batch, row, size), "img"), routing, row,
                                      model=f"model{writer}", intervention_hash="none") for row in range(size)])
