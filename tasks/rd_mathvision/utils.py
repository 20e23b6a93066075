"""The rd_mathvision tasks' lmms-eval callables (``!function utils.<name>``): rd_eval.benchmarks.mathvision.TASK."""

from rd_eval.benchmarks.mathvision import TASK

globals().update(TASK.exports())
