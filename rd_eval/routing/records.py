"""Per-document routing records: what one record holds, and whose it is.

A record is one document's routing under one setting: its identity (task, doc id, form, model, checkpoint,
intervention hash), token counts per base scope, selection counts and router-probability sums per base scope,
site and expert, the site table that says what each row is, and under an intervention its measured effect.
How records are stored, one shard per rank, is :mod:`rd_eval.routing.shards`.

Whose records: a record names the model id, the checkpoint (``pretrained`` as the run gave it, and
``checkpoint``, what identifies it: the absolute path of a local folder, symlinks resolved, or the hub id as
given) and the intervention hash; :func:`select_records` picks a run's own records by those. Records written
before checkpoints were recorded carry neither key: they are taken as the records of whichever run of their
model and setting reads them, as before.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from rd_eval.routing.site_table import SiteTable
from rd_eval.vocabulary.scopes import BASE_SCOPES

if TYPE_CHECKING:  # readers (`rd-eval report`) must not pay for importing torch
    from rd_eval.routing.recording import BatchRouting



RECORD_FORMAT = "rd-eval.routing-record"
RECORD_VERSION = 3  # 3: lines name their site table (sites sidecar)
READABLE_VERSIONS = (1, 2, 3)


def checkpoint_label(pretrained: str) -> str:
    """A checkpoint as run folders name it: its last two path parts joined by '__' (lmms-eval's own rule)."""
    parts = [p for p in str(pretrained).rstrip("/").split("/") if p]
    return "__".join(parts[-2:]) if parts else "model"


def checkpoint_identity(pretrained: str) -> str:
    """What identifies a checkpoint: a local folder by its absolute path (symlinks resolved), anything else (a
    hub id) as given. Two runs naming one folder differently (``./ckpt``, ``/abs/ckpt``) get the same identity;
    one relative name run from two folders gets two."""
    text = str(pretrained).strip()
    local = Path(text).expanduser()
    if text and local.is_dir():
        return str(local.resolve())
    return text


@dataclass(frozen=True)
class CheckpointRef:
    """The checkpoint a record was made with: `pretrained` as the run gave it and its identity."""

    pretrained: str
    checkpoint: str

    @classmethod
    def of(cls, pretrained: str) -> CheckpointRef:
        return cls(pretrained=str(pretrained), checkpoint=checkpoint_identity(pretrained))


def routing_folder(output_path: str | os.PathLike[str], pretrained: str, intervention_hash: str) -> Path:
    """Where a run's routing shards go by default: beside lmms-eval's output, one folder per setting."""
    return Path(output_path) / "rd_routing" / f"{checkpoint_label(pretrained)}__{intervention_hash}"


def record_site_table(record: Mapping[str, Any], n_rows: int, where: str) -> SiteTable:
    """What the site rows of a read record are: its own table, or for a record written before tables were
    recorded (versions 1-2) the meaning it was written with, row i = MoE layer i (:meth:`SiteTable.legacy_of`)."""
    table = record.get("site_table")
    if table is None:
        return SiteTable.legacy_of(n_rows)
    if not isinstance(table, SiteTable):
        raise ValueError(f"{where}: 'site_table' is not a site table (read records with read_routing_records)")
    table.check_rows(n_rows, where)
    return table


@dataclass(frozen=True)
class DocIdentity:
    task: str
    doc_id: int
    form: str  # "img", "txt", or "" when the task is not a paired form


def _record_header(identity: DocIdentity, model: str, intervention_hash: str, error: str | None,
                   checkpoint: CheckpointRef | None) -> dict[str, Any]:
    header = {
        "format": RECORD_FORMAT,
        "version": RECORD_VERSION,
        "task": identity.task,
        "doc_id": identity.doc_id,
        "form": identity.form,
        "model": model,
        "intervention": intervention_hash,
        "error": error,
    }
    if checkpoint is not None:
        header |= {"pretrained": checkpoint.pretrained, "checkpoint": checkpoint.checkpoint}
    return header


# Under an intervention a record carries, per site, the tokens counted in the intervention's scope, those whose
# selected expert set the intervention changed and the set's experts newly selected (`rd_eval.routing.effect`):
# ``"intervention_effect": {"tokens": [L], "flipped": [L], "newly_selected": [L]}``. Absent: no intervention
# data (a plain run, or a record written before the effect was measured).
EFFECT_KEY = "intervention_effect"
EFFECT_FIELDS = ("tokens", "flipped", "newly_selected")


def effect_fields(effect: np.ndarray) -> dict[str, list[int]]:
    """A document's effect sums [L, 3] (EFFECT_FIELDS order) as the record's field (integers per site)."""
    values = np.rint(np.asarray(effect, dtype=np.float64)).astype(np.int64)
    return {name: [int(v) for v in values[:, i]] for i, name in enumerate(EFFECT_FIELDS)}


def document_record(identity: DocIdentity, routing: BatchRouting, row: int, *, model: str,
                    intervention_hash: str, checkpoint: CheckpointRef | None = None,
                    error: str | None = None) -> dict[str, Any]:
    """Record of row `row` of a batch: counts as integer arrays [L, E] and probability sums as float32 [L, E]
    per base scope (numpy arrays; `ShardWriter.append` moves them into the shard's sidecar). The adapter always
    names the checkpoint; a record without one reads as a record of an unknown checkpoint (see the module doc)."""
    counts = np.rint(routing.counts[row])  # [L, 3, E]
    prob_sums = routing.prob_sums[row].astype(np.float32, copy=False)
    record = _record_header(identity, model, intervention_hash, error, checkpoint) | {
        "tokens": {scope: int(routing.tokens[row, s]) for s, scope in enumerate(BASE_SCOPES)},
        "counts": {scope: counts[:, s, :].astype(np.int64) for s, scope in enumerate(BASE_SCOPES)},
        "prob_sums": {scope: prob_sums[:, s, :] for s, scope in enumerate(BASE_SCOPES)},
    }
    effect = getattr(routing, "effect", None)  # None: no intervention
    if effect is not None:
        record[EFFECT_KEY] = effect_fields(effect[row])
    return record


def error_record(identity: DocIdentity, *, model: str, intervention_hash: str, error: str,
                 checkpoint: CheckpointRef | None = None) -> dict[str, Any]:
    """A document that could not be run: its identity and the reason, no statistics."""
    return _record_header(identity, model, intervention_hash, error, checkpoint) | {
        "tokens": None, "counts": None, "prob_sums": None,
    }


@dataclass(frozen=True)
class RecordOwner:
    """Whose records a reader wants: a run's model id, its ``pretrained`` as its model_args gave it (None: the
    run named none, so any) and its intervention hash; None for the model or the hash: any."""

    model: str | None
    pretrained: str | None
    intervention: str | None


def select_records(records: Iterable[Mapping[str, Any]], owner: RecordOwner, *, where: str) -> list[Any]:
    """The records of `owner`'s run among `records` (e.g. a folder shared by several runs), in order.

    A record is the run's when its intervention hash and model id are the run's and it names the run's
    ``pretrained``; a record naming no checkpoint (written before checkpoints were recorded) is taken as the
    run's. Records that match but come from different checkpoints (one relative ``pretrained`` run from two
    folders) are refused with a ValueError naming `where`, unless the run's ``pretrained`` is a folder here
    whose identity picks one of them."""
    pretrained = None if owner.pretrained is None else owner.pretrained.strip()
    chosen = [r for r in records
              if (owner.intervention is None or str(r.get("intervention")) == owner.intervention)
              and (owner.model is None or r.get("model") == owner.model)
              and (pretrained is None or r.get("pretrained") is None or str(r["pretrained"]).strip() == pretrained)]
    identities = {str(r["checkpoint"]) for r in chosen if r.get("checkpoint") is not None}
    if len(identities) <= 1:
        return chosen
    own = checkpoint_identity(pretrained) if pretrained else None
    if own in identities:
        return [r for r in chosen if r.get("checkpoint") in (None, own)]
    named = f"pretrained={pretrained!r}" if pretrained else "no pretrained="
    raise ValueError(
        f"{where}: routing records of {len(identities)} checkpoints ({', '.join(sorted(identities))}) match a run "
        f"of model {owner.model or '(any)'} with {named} and intervention {owner.intervention or '(any)'}; cannot "
        f"tell which is the run's: give each checkpoint its own routing_dir (or output path), or name it by its "
        f"absolute path"
    )
