"""lmms-eval callables of the rd_mathvision tasks (``!function utils.<name>`` in the YAMLs).

lmms-eval loads this file by path, so it only re-exports :class:`rd_eval.benchmarks.tasks.PairedTask` for
:mod:`rd_eval.benchmarks.mathvision`, where the documents, prompts and scoring live.
"""

from rd_eval.benchmarks import common, dataset_declaration, mathvision
from rd_eval.benchmarks.tasks import PairedTask
from rd_eval.twins import transcripts

_TASK = PairedTask(mathvision.NAME, mathvision.load)
# The source the tasks declare in metadata.rd_data_source (the YAML reads it when lmms-eval loads the task; a
# bad RD_EVAL_DATA_DIR or RD_EVAL_DATASET_REVISIONS fails here, before any loading).
DATA_SOURCE = dataset_declaration(mathvision.NAME)

process_docs_img = _TASK.docs("img")
process_docs_txt = _TASK.docs("txt")
doc_to_visual_img = _TASK.doc_to_visual_img
doc_to_visual_txt = _TASK.doc_to_visual_txt
doc_to_text_img = _TASK.doc_to_text_img
doc_to_text_txt = _TASK.doc_to_text_txt
doc_to_text_transcribe = _TASK.doc_to_text_transcribe
doc_to_target = _TASK.doc_to_target
process_results_img = _TASK.process_results_img
process_results_txt = _TASK.process_results_txt
process_results_transcribe = _TASK.process_results_transcribe
mean_correct = common.mean_correct
transcribed_share = transcripts.transcribed_share
