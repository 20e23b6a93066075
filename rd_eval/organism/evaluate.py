"""How well a (trained) organism does on a split, per form, with greedy decoding as lmms-eval runs it.

- ``txt`` / ``img``: the reply's number (rd-eval's own extraction) equals the answer;
- ``transcribe``: the image counts as seen by rd-eval's perception check against the expression it shows.
This is the quick in-process measure used while training; the issue's figures come through lmms-eval, whose
Qwen3-VL class loads the model in bfloat16 (`rd-eval organism eval --dtype bfloat16` measures that precision).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from rd_eval.organism.batches import Encoder, Example
from rd_eval.organism.problems import Problem
from rd_eval.organism.prompts import target
from rd_eval.organism.spec import FORMS
from rd_eval.scoring.answers import extract_number
from rd_eval.twins.perception import judge_transcript

MAX_NEW_TOKENS = 16


@dataclass(frozen=True)
class FormScore:
    form: str
    correct: int
    total: int
    examples: tuple[tuple[str, str, str], ...]  # (expression, expected, reply) of the first few

    @property
    def accuracy(self) -> float:
        return self.correct / self.total if self.total else 0.0


def is_correct(problem: Problem, form: str, reply: str) -> bool:
    if form == "transcribe":
        return judge_transcript(target(problem, form), reply).seen
    return extract_number(reply) == problem.answer


def replies(model: Any, encoder: Encoder, examples: Sequence[Example], *, batch_size: int = 64) -> list[str]:
    import torch

    tokenizer = encoder.tokenizer
    out: list[str] = []
    for start in range(0, len(examples), batch_size):
        inputs = encoder.batch(examples[start:start + batch_size], with_targets=False)
        inputs = {k: v.to(model.dtype) if v.is_floating_point() else v for k, v in inputs.items()}
        with torch.no_grad():
            generated = model.generate(**inputs, max_new_tokens=MAX_NEW_TOKENS, do_sample=False,
                                       eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id)
        new = generated[:, inputs["input_ids"].shape[1]:]
        out.extend(tokenizer.batch_decode(new, skip_special_tokens=True))
    return out


def score_forms(model: Any, processor: Any, problems: Sequence[Problem], *,
                forms: Sequence[str] = FORMS, shown: int = 3) -> dict[str, FormScore]:
    encoder = Encoder(processor)
    scores: dict[str, FormScore] = {}
    for form in forms:
        texts = replies(model, encoder, [Example(p, form) for p in problems])
        marks = [is_correct(p, form, t) for p, t in zip(problems, texts, strict=True)]
        wrong = [(p.expression, target(p, form), t) for p, t, ok in zip(problems, texts, marks, strict=True) if not ok]
        scores[form] = FormScore(form, sum(marks), len(problems), tuple(wrong[:shown]))
    return scores
