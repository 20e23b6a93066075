"""The perception check of a run (docs/design.md §3.2): the seen share and the attribution of image-form failures.

A perception task (``rd_<benchmark>_see``) logs one ``rd_seen`` item per document: ``{"pair_id", "seen": 1|0|None,
"similarity", ...}``, ``seen`` None where the model could not run the document. Here those items are read from the
task's samples file and joined by pair_id with the image-form outcomes of the same setting's paired samples:

- **seen**: percent of the judged images (error documents left out; their count is ``errors``) that the model
  transcribed well enough to count as seen, over every document of the perception task;
- **attribution**: the image-form failures split into perception errors (not seen) and reasoning errors (seen),
  :func:`rd_eval.twins.perception.attribute_failures`.

`rd-eval demo`'s summary and `rd-eval report` both use these functions, so their figures agree.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from rd_eval.fileio.jsonl import jsonl_objects
from rd_eval.twins.perception import attribute_failures
from rd_eval.vocabulary.task_names import benchmark_of

__all__ = ["SEEN_METRIC", "benchmark_perception", "perception", "read_seen"]

SEEN_METRIC = "rd_seen"


def _seen_flag(value: Any, where: str) -> int | None:
    if value is None:
        return None
    if isinstance(value, (bool, int, float)) and value in (0, 1):
        return int(value)
    raise ValueError(f"{where}: '{SEEN_METRIC}.seen' must be 1, 0 or null (an error document), got {value!r}")


def read_seen(samples_file: Path) -> dict[str, int | None]:
    """pair_id -> 1 (seen), 0 (not seen) or None (the model could not run the document), from a perception
    task's samples file; a line without an ``rd_seen`` item is an error naming the file and line."""
    seen: dict[str, int | None] = {}
    for where, sample in jsonl_objects(Path(samples_file), "samples file", "perception task"):
        item = sample.get(SEEN_METRIC)
        if not isinstance(item, Mapping) or "pair_id" not in item or "seen" not in item:
            raise ValueError(f"{where}: no '{SEEN_METRIC}' item with pair_id and seen; was it a "
                             "perception (_see) task?")
        seen[str(item["pair_id"])] = _seen_flag(item["seen"], where)
    return seen


def perception(samples: pd.DataFrame, seen: Mapping[str, int | None]) -> dict[str, Any]:
    """The seen share (percent of judged images, None when none was judged), the number of judged images
    (``n``) and of error documents (``errors``), and the attribution of the image-form failures of `samples`
    (one benchmark's paired samples: columns form, pair_id, correct)."""
    def outcomes(form: str) -> dict[str, int | None]:
        part = samples[samples["form"] == form]
        return {str(p): (None if pd.isna(c) else int(c)) for p, c in zip(part["pair_id"], part["correct"],
                                                                           strict=True)}

    judged = [flag for flag in seen.values() if flag is not None]
    attribution = attribute_failures(outcomes("img"), seen, outcomes("txt"))
    return {"n": len(judged), "seen": 100.0 * sum(judged) / len(judged) if judged else None,
            "errors": len(seen) - len(judged), "attribution": attribution.as_dict()}


def benchmark_perception(samples: pd.DataFrame, benchmark: str, seen_files: Sequence[Path]) -> dict[str, Any]:
    """:func:`perception` of one benchmark of a setting: `samples` are the setting's paired samples (every
    benchmark; column task names it), `seen_files` the samples files of its perception runs, oldest first (a
    pair_id judged again by a later run takes the later flag, as a later run's paired samples do).

    A file without ``rd_seen`` items, or whose pair_ids are none of the benchmark's image-form samples (another
    benchmark's, or other documents), is a ValueError naming the file."""
    if not seen_files:
        raise ValueError(f"{benchmark}: no perception samples files given")
    part = samples[samples["task"].astype(str).map(benchmark_of) == benchmark]
    images = {str(p) for p in part.loc[part["form"] == "img", "pair_id"]}
    merged: dict[str, int | None] = {}
    for path in seen_files:
        seen = read_seen(path)
        if not seen:
            raise ValueError(f"{path}: no '{SEEN_METRIC}' items (an empty perception samples file)")
        if not images.intersection(seen):
            raise ValueError(
                f"{path}: none of its {len(seen)} '{SEEN_METRIC}' pair_ids is among the {len(images)} image-form "
                f"samples of {benchmark} in the same setting; run the perception task on the same documents, "
                f"in the same setting (model, checkpoint, intervention) as {benchmark}_img"
            )
        merged |= seen
    return {"benchmark": benchmark, **perception(part, merged), "files": [str(p) for p in seen_files]}
