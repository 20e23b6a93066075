"""The rd_math500 tasks' lmms-eval callables (``!function utils.<name>``): rd_eval.benchmarks.math500.TASK."""

from rd_eval.benchmarks.math500 import TASK

globals().update(TASK.exports())
