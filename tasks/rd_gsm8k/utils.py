"""The rd_gsm8k tasks' lmms-eval callables (``!function utils.<name>``): rd_eval.benchmarks.gsm8k.TASK."""

from rd_eval.benchmarks.gsm8k import TASK

globals().update(TASK.exports())
