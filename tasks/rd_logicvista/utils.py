"""The rd_logicvista tasks' lmms-eval callables (``!function utils.<name>``): rd_eval.benchmarks.logicvista.TASK."""

from rd_eval.benchmarks.logicvista import TASK

globals().update(TASK.exports())
