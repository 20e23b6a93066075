"""The rd_mathvista tasks' lmms-eval callables (``!function utils.<name>``): rd_eval.benchmarks.mathvista.TASK."""

from rd_eval.benchmarks.mathvista import TASK

globals().update(TASK.exports())
