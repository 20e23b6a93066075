"""The rd_dynamath tasks' lmms-eval callables (``!function utils.<name>``): rd_eval.benchmarks.dynamath.TASK."""

from rd_eval.benchmarks.dynamath import TASK

globals().update(TASK.exports())
