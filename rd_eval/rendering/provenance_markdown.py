"""The report's "Data" section: which data each task's documents were read from, as the runs recorded it."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from rd_eval.data.provenance import DataRecord
from rd_eval.rendering.mdtable import md_row


def provenance_markdown(rows: Sequence[Mapping[str, Any]] | None) -> list[str]:
    """The report's "Data" section: a table of the rows, and a warning per task read from more than one source
    or revision across the runs."""
    if not rows:
        return []
    lines = ["", "## Data", "",
             "What each task's documents were read from (Hub dataset and revision, or local mirror and a sha256 of "
             "the files read), as the runs recorded it.", "",
             "| benchmark | data | revision | tasks | runs |", "|---|---|---|---|---:|"]
    sources: dict[str, int] = {}
    missing: list[str] = []
    for row in rows:
        if row["record"] is None:
            missing += [t for t in row["tasks"] if t not in missing]
            continue
        record = DataRecord.from_dict(row["record"], "report")
        data, revision = record.describe()
        tasks = ", ".join(f"`{t}`" for t in row["tasks"])
        lines.append(md_row((record.benchmark, data, revision, tasks, len(row["runs"]))))
        for task in row["tasks"]:
            sources[task] = sources.get(task, 0) + 1
    if missing:
        lines.append(md_row(("–", "not recorded", "–", ", ".join(f"`{t}`" for t in missing), "–")))
    mixed = sorted(t for t, n in sources.items() if n > 1)
    if mixed:
        lines += ["", f"- Warning: {', '.join(f'`{t}`' for t in mixed)} read different data in different runs "
                      "(rows above): those runs' scores may not be comparable."]
    return lines
