"""The rd_wemath tasks' lmms-eval callables (``!function utils.<name>``): rd_eval.benchmarks.wemath.TASK."""

from rd_eval.benchmarks.wemath import TASK

globals().update(TASK.exports())
