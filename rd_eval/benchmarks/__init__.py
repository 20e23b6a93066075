"""The six visual reasoning benchmarks as paired documents (image form + text twin), for the rd_* lmms-eval tasks.

One module per benchmark turns its dataset's records into the common :class:`~rd_eval.benchmarks.schema.BenchDoc`
schema and loads a form's documents (``load(form)``) from the Hugging Face dataset lmms-eval's own task uses,
or from a local mirror when ``RD_EVAL_DATA_DIR`` is set (:mod:`rd_eval.data.sources`), and states its lmms-eval
tasks as ``TASK`` (:mod:`rd_eval.benchmarks.six`, on the one task layer :mod:`rd_eval.benchmarks.task`).
The exact twins (:mod:`rd_eval.benchmarks.gsm8k`, :mod:`rd_eval.benchmarks.math500`) and the demo
(:mod:`rd_eval.benchmarks.demo`) are benchmarks of the same layer, not of these six.

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

from rd_eval.benchmarks import dynamath, logicvista, mathverse, mathvision, mathvista, wemath

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

