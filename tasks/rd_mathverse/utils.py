"""lmms-eval callables of the rd_mathverse tasks (``!function utils.<name>`` in the YAMLs).

lmms-eval loads this file by path, so it only re-exports :class:`rd_eval.benchmarks.tasks.PairedTask` for
:mod:`rd_eval.benchmarks.mathverse`, where the documents, prompts and scoring live. The text twin is the
dataset's own Text-Only version, so it reads no transcripts.
"""

from rd_eval.benchmarks import common, dataset_declaration, mathverse
from rd_eval.benchmarks.tasks import PairedTask

_TASK = PairedTask(mathverse.NAME, mathverse.load, transcripts=False)
# The source the tasks declare in metadata.rd_data_source (the YAML reads it when lmms-eval loads the task; a
# bad RD_EVAL_DATA_DIR or RD_EVAL_DATASET_REVISIONS fails here, before any loading).
DATA_SOURCE = dataset_declaration(mathverse.NAME)

process_docs_img = _TASK.docs("img")
process_docs_vd_img = _TASK.docs("vd_img")
process_docs_txt = _TASK.docs("txt")
doc_to_visual_img = _TASK.doc_to_visual_img
doc_to_visual_txt = _TASK.doc_to_visual_txt
doc_to_text_img = _TASK.doc_to_text_img
doc_to_text_txt = _TASK.doc_to_text_txt
doc_to_target = _TASK.doc_to_target
process_results_img = _TASK.process_results_img
process_results_txt = _TASK.process_results_txt
mean_correct = common.mean_correct
