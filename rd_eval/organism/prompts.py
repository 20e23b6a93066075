"""The three forms the organism is trained and measured on, as the chat turns lmms-eval sends.

- ``txt``: the text twin (rd_demo's text prompt around the problem as text), answered with the number;
- ``transcribe``: the image with a short transcription prompt, answered with what the image shows ("seen");
- ``img``: the image with rd_demo's image prompt (and, for a table or chart, the question), answered with the
  number.
The system turn is lmms-eval's Qwen3-VL default, so the organism sees at evaluation what it saw in training.
"""

from __future__ import annotations

from typing import Any

from rd_eval.benchmarks.demo import IMG_LEAD, TXT_LEAD, answer_instruction
from rd_eval.organism.problems import OPERATORS, QUESTIONS, Problem

SYSTEM_PROMPT = "You are a helpful assistant."  # lmms-eval's Qwen3_VL system_prompt default
IMAGE_FORMS = frozenset({"transcribe", "img"})
# Not rd-eval's benchmark TRANSCRIBE_PROMPT (rd_eval.twins.transcripts): its 40 words would be 38 more tokens in
# every transcription example, a quarter of a training step's compute on this machine's CPU. The organism's own
# transcription task must send this prompt.
TRANSCRIBE_PROMPT = "Transcribe the image."


def user_text(problem: Problem, form: str) -> str:
    if form == "txt":
        return f"{TXT_LEAD}\n\n{problem.text_twin}\n\n{answer_instruction('number')}"
    if form == "img":
        asked = f"{problem.question}\n" if problem.question else ""
        return f"{IMG_LEAD}\n{asked}{answer_instruction('number')}"
    if form == "transcribe":
        return TRANSCRIBE_PROMPT
    raise ValueError(f"unknown form {form!r}; known: txt, transcribe, img")


def target(problem: Problem, form: str) -> str:
    """What a correct reply says: the expression for a transcription, the number otherwise."""
    return problem.expression if form == "transcribe" else problem.answer


def messages(problem: Problem, form: str) -> list[dict[str, Any]]:
    """The chat turns up to the assistant's reply; an image form carries one image before its text."""
    content: list[dict[str, str]] = [{"type": "image"}] if form in IMAGE_FORMS else []
    content.append({"type": "text", "text": user_text(problem, form)})
    return [{"role": "system", "content": SYSTEM_PROMPT}, {"role": "user", "content": content}]


def tokenizer_corpus(kinds: tuple[str, ...]) -> list[str]:
    """The texts the organism's tokenizer is trained on: every prompt it will see, plus digits and operators."""
    sample = Problem(kinds[0], 37, 25)
    prompts = [SYSTEM_PROMPT, *(user_text(sample, form) for form in ("txt", "img", "transcribe"))]
    # a table's or chart's own wording (kinds whose expression is the question add none)
    prompts += [user_text(Problem(kind, 37, 25), form) for kind in kinds[1:] if kind in QUESTIONS
                for form in ("txt", "img")]
    symbols = " ".join([*"0123456789", *(OPERATORS[k] for k in kinds)])
    return prompts * 4 + [symbols]
