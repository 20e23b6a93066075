"""The six visual reasoning benchmarks as paired documents (image form + text twin), for the rd_* lmms-eval tasks.

One module per benchmark turns its dataset's records into the common :class:`~rd_eval.benchmarks.common.BenchDoc`
schema and loads a form's documents (``load(form)``) from the Hugging Face dataset lmms-eval's own task uses,
or from a local mirror when ``RD_EVAL_DATA_DIR`` is set (:mod:`rd_eval.data.sources`).

========== ============================ =========================================== ======================
benchmark  image form                   text twin                                   pair_id
========== ============================ =========================================== ======================
mathverse  Vision-Only (+ Vision-Dom.)  the dataset's Text-Only version             problem_index
mathvista  original                     transcript (RD_EVAL_TRANSCRIPTS)            pid
mathvision original                     transcript                                  id
wemath     original                     transcript                                  <ID>/<key>
logicvista original                     transcript                                  question id
dynamath   original                     transcript                                  <question>-v<variant>
========== ============================ =========================================== ======================
"""

from __future__ import annotations

from types import ModuleType
from typing import Any

from rd_eval.benchmarks import dynamath, logicvista, mathverse, mathvision, mathvista, wemath
from rd_eval.data.sources import declaration

BENCHMARKS: dict[str, ModuleType] = {
    m.NAME: m for m in (mathverse, mathvista, mathvision, wemath, logicvista, dynamath)
}
TRANSCRIPT_TWINS: tuple[str, ...] = ("mathvista", "mathvision", "wemath", "logicvista", "dynamath")


def benchmark(name: str) -> ModuleType:
    """The module of one benchmark by name (``mathvista``, ...)."""
    try:
        return BENCHMARKS[name]
    except KeyError:
        raise ValueError(f"unknown benchmark {name!r}; known: {sorted(BENCHMARKS)}") from None


def dataset_declaration(name: str) -> dict[str, Any]:
    """The data source a benchmark's tasks declare (``metadata.rd_data_source``): its local mirror folder, or
    its Hub dataset and the revision requested (:func:`rd_eval.data.sources.declaration`)."""
    module = benchmark(name)
    hub = next(iter(module.HUB.values())) if isinstance(module.HUB, dict) else module.HUB
    return declaration(module.NAME, hub.path, module.FOLDER)
