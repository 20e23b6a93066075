"""The rd_demo tasks' lmms-eval callables (``!function utils.<name>``): rd_eval.benchmarks.demo's tasks."""

from pathlib import Path

from rd_eval.benchmarks.demo import demo_task

DATA_FILE = Path(__file__).with_name("rd_demo.jsonl")  # the documents the YAMLs load (dataset_kwargs.data_files)
globals().update(demo_task(DATA_FILE).exports())
