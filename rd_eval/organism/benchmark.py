"""The organism's held-out split as a paired benchmark: the rd_organism tasks (issue 16).

- ``rd_organism_img``: the problem drawn by the project renderer (192 x 32), the organism's image-form prompt;
- ``rd_organism_txt``: its text twin, the organism's text-form prompt;
- ``rd_organism_see``: the same image with the organism's transcription prompt; ``rd_seen`` is rd-eval's
  perception check of the reply against the expression the image shows (what "it sees" means).

The prompts are the ones the organism was trained on (:mod:`rd_eval.organism.prompts`), so lmms-eval's
``rd_qwen3_vl_moe`` run asks exactly what the in-process evaluation asks. The documents are the held-out problems
of the shipped organism's split (:data:`SPLIT_SEED`, :data:`SPLIT_KINDS`; sizes of :class:`OrganismSpec`), bundled
as ``tasks/rd_organism/rd_organism.jsonl`` in the split's shuffled order, so ``--limit N`` takes a fair sample.
The module lives in the organism package (not in ``rd_eval.benchmarks``) because the organism's prompts already
build on the demo benchmark's wording: the organism depends on benchmarks, never the other way.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from PIL import Image

from rd_eval.benchmarks.exact_twin import SEEN_METRIC, mean_seen
from rd_eval.benchmarks.prompts import with_affixes
from rd_eval.benchmarks.task import Doc, Kwargs, PairedTask
from rd_eval.data.provenance import mirror_record
from rd_eval.organism.problems import Problem, ProblemError, make_splits, problem_image
from rd_eval.organism.prompts import target, user_text
from rd_eval.organism.spec import OrganismSpec
from rd_eval.scoring.doc_errors import error_reason
from rd_eval.scoring.item import Gold, first_response
from rd_eval.twins.perception import DEFAULT_SEEN_THRESHOLD, judge_transcript

NAME = "organism"
DATA_NAME = "rd_organism.jsonl"
# The split of the shipped organism: its training never saw a pair of numbers of these documents.
SPLIT_SEED = 0
SPLIT_KINDS: tuple[str, ...] = ("add", "max")
RECORD_KEYS = ("pair_id", "kind", "a", "b", "expression", "answer")


def split_problems(name: str, seed: int = SPLIT_SEED, kinds: tuple[str, ...] = SPLIT_KINDS) -> tuple[Problem, ...]:
    """The problems of split `name` (train, validation, heldout) of `seed` and `kinds`, with the organism's
    default split sizes."""
    spec = OrganismSpec()
    return make_splits(kinds, seed, n_heldout=spec.n_heldout, n_validation=spec.n_validation).named(name)


def heldout_problems(seed: int = SPLIT_SEED, kinds: tuple[str, ...] = SPLIT_KINDS) -> tuple[Problem, ...]:
    """The held-out problems of the split of `seed` and `kinds`: the documents of the rd_organism tasks."""
    return split_problems("heldout", seed, kinds)


def to_record(problem: Problem) -> dict[str, Any]:
    return {"pair_id": problem.pair_id, "kind": problem.kind, "a": problem.a, "b": problem.b,
            "expression": problem.expression, "answer": problem.answer}


def data_text(problems: Sequence[Problem]) -> str:
    """The bundled documents file's exact content (one JSON object per line)."""
    return "".join(json.dumps(to_record(p)) + "\n" for p in problems)


def from_record(doc: Mapping[str, Any]) -> Problem:
    """The problem of a document; a document whose stated expression, answer or pair_id disagree with its
    numbers is refused (an edited data file would otherwise score against a wrong gold answer)."""
    missing = [k for k in RECORD_KEYS if k not in doc]
    if missing:
        raise ValueError(f"{DATA_NAME} document {dict(doc)!r} lacks {missing}; keys: {list(RECORD_KEYS)}")
    try:
        problem = Problem(str(doc["kind"]), int(doc["a"]), int(doc["b"]))
    except (ProblemError, TypeError, ValueError) as exc:
        raise ValueError(f"{DATA_NAME} document {doc['pair_id']!r}: {exc}") from None
    stated = {"pair_id": doc["pair_id"], "expression": doc["expression"], "answer": doc["answer"]}
    derived = {"pair_id": problem.pair_id, "expression": problem.expression, "answer": problem.answer}
    if stated != derived:
        raise ValueError(f"{DATA_NAME} document {doc['pair_id']!r} states {stated}, but its kind and numbers give "
                         f"{derived}")
    return problem


@dataclass(frozen=True)
class OrganismDocs:
    """:class:`~rd_eval.benchmarks.task.PairedDocs` of the organism's problems."""

    def visual(self, doc: Doc) -> list[Image.Image]:
        return [problem_image(from_record(doc))]

    def prompt(self, doc: Doc, form: str, kwargs: Kwargs) -> str:
        return with_affixes(user_text(from_record(doc), form), kwargs)

    def target(self, doc: Doc) -> str:
        return from_record(doc).answer

    def gold(self, doc: Doc) -> Gold:
        return Gold(from_record(doc).answer, "number")


# -- the perception task rd_organism_see ------------------------------------------------------------------


def doc_to_text_see(doc: Doc, lmms_eval_specific_kwargs: Kwargs = None) -> str:
    return with_affixes(user_text(from_record(doc), "transcribe"), lmms_eval_specific_kwargs)


def doc_to_target_see(doc: Doc) -> str:
    """The expression the image shows: what a transcription is judged against."""
    return target(from_record(doc), "transcribe")


def seen_item(pair_id: str, reference: str, transcript: str,
              threshold: float = DEFAULT_SEEN_THRESHOLD) -> dict[str, Any]:
    """The rd_seen record of one document, in the layout of the exact twins' perception tasks."""
    reason = error_reason(transcript)
    if reason is not None:
        return {"pair_id": pair_id, "seen": None, "similarity": None, "missing_numbers": None,
                "threshold": threshold, "error": reason}
    p = judge_transcript(reference, transcript, threshold)
    return {"pair_id": pair_id, "seen": int(p.seen), "similarity": p.similarity,
            "missing_numbers": list(p.missing_numbers), "threshold": p.threshold, "error": None}


def process_results_see(doc: Doc, results: Sequence[str]) -> dict[str, dict[str, Any]]:
    problem = from_record(doc)
    return {SEEN_METRIC: seen_item(problem.pair_id, target(problem, "transcribe"), first_response(results))}


def data_source(data_file: Path) -> dict[str, Any]:
    """The tasks' data as the template's metadata.rd_data_source records it: the bundled file and its hash."""
    return mirror_record(NAME, data_file.parent, {f"rd_organism/{data_file.name}": data_file},
                         origin="bundled with rd-eval").to_dict()


def organism_task(data_file: Path) -> PairedTask:
    """The rd_organism tasks over the bundled ``data_file`` (the task folder's ``rd_organism.jsonl``)."""
    perception = {"doc_to_text_see": doc_to_text_see, "doc_to_target_see": doc_to_target_see,
                  "process_results_see": process_results_see, "mean_seen": mean_seen}
    return PairedTask(name=NAME, docs=OrganismDocs(), declare=lambda: data_source(data_file), carries_source=False,
                      auxiliary=perception)
