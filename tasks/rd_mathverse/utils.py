"""The rd_mathverse tasks' lmms-eval callables (``!function utils.<name>``): rd_eval.benchmarks.mathverse.TASK."""

from rd_eval.benchmarks.mathverse import TASK

globals().update(TASK.exports())
