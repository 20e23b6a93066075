"""The rd_organism tasks' lmms-eval callables (``!function utils.<name>``): rd_eval.organism.benchmark's tasks."""

from pathlib import Path

from rd_eval.organism.benchmark import organism_task

DATA_FILE = Path(__file__).with_name("rd_organism.jsonl")  # the documents the YAMLs load (dataset_kwargs.data_files)
globals().update(organism_task(DATA_FILE).exports())
