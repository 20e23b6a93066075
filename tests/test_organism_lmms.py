"""A trained organism folder runs through `python -m lmms_eval --model rd_qwen3_vl_moe` unchanged (issue 16
item 2): lmms-eval's Qwen3-VL class loads it by its config's model_type, with the organism's pixel bounds."""

from __future__ import annotations

import json
import sys
from dataclasses import replace
from pathlib import Path

from lmms_cli import run, tasks_path
from test_organism_train import TOY, quiet

from rd_eval.lmms.runs import find_runs
from rd_eval.organism.assets import MAX_PIXELS, MIN_PIXELS
from rd_eval.organism.train import train
from rd_eval.scoring.doc_errors import is_error_response


def test_the_organism_runs_through_lmms_eval(tmp_path: Path) -> None:
    checkpoint = tmp_path / "organism"
    train(replace(TOY, steps=1), checkpoint, progress=False, log=quiet)
    out = tmp_path / "out"
    model_args = f"pretrained={checkpoint},min_pixels={MIN_PIXELS},max_pixels={MAX_PIXELS}"
    command = [sys.executable, "-m", "lmms_eval", "--model", "rd_qwen3_vl_moe", "--model_args", model_args,
               "--tasks", "rd_demo", "--include_path", tasks_path(), "--output_path", str(out), "--log_samples",
               "--limit", "2", "--batch_size", "2", "--gen_kwargs", "max_new_tokens=4", "--device", "cpu"]
    result = run(command, tmp_path)
    log = result.stdout + result.stderr
    assert result.returncode == 0, log[-3000:]
    assert "[rd-eval] rd_qwen3_vl_moe: Qwen3VLMoeForConditionalGeneration (model_type" in log, log[-3000:]
    (run_found,) = find_runs(out)
    logged = [json.loads(line) for path in run_found.samples.values() for line in Path(path).read_text().splitlines()]
    replies = [str(sample["filtered_resps"]) for sample in logged]
    assert len(replies) == 4 and not any(map(is_error_response, replies)), replies  # 2 documents x img, txt


def test_lmms_eval_s_own_batching_gives_the_in_process_replies(tmp_path: Path) -> None:
    """The adapter (lmms-eval's Qwen3-VL preprocessing: chat template, qwen_vl_utils resizing within the pixel
    bounds, processor) and the organism's own evaluation give the same greedy replies from the same weights, so
    the in-process figures of docs/organism_log.md are what lmms-eval measures (in the same precision)."""
    from lmms_eval.api.instance import Instance
    from rd_eval_adapters.qwen3_vl_moe import RDQwen3VLMoe

    from rd_eval.organism.batches import Encoder, Example
    from rd_eval.organism.evaluate import replies
    from rd_eval.organism.problems import make_splits, problem_image
    from rd_eval.organism.prompts import user_text

    checkpoint = tmp_path / "organism"
    train(replace(TOY, steps=2), checkpoint, progress=False, log=quiet)
    adapter = RDQwen3VLMoe(pretrained=str(checkpoint), device="cpu", device_map="cpu", batch_size=2,
                           min_pixels=MIN_PIXELS, max_pixels=MAX_PIXELS, routing_dir=str(tmp_path / "routing"))
    problems = make_splits(TOY.kinds, TOY.seed, n_heldout=TOY.n_heldout, n_validation=TOY.n_validation).heldout[:4]
    gen_kwargs = {"max_new_tokens": 16, "temperature": 0, "until": ["<|im_end|>"]}
    for form in ("img", "txt", "transcribe"):
        task = f"organism_{form}"

        def visual(doc: dict[str, int], form: str = form) -> list:
            return [] if form == "txt" else [problem_image(problems[doc["i"]])]

        adapter.task_dict[task] = {"test": [{"i": i} for i in range(len(problems))]}
        requests = [Instance(request_type="generate_until", idx=0,
                             arguments=(user_text(p, form), dict(gen_kwargs), visual, i, task, "test"),
                             metadata={"task": task, "doc_id": i, "repeats": 1}) for i, p in enumerate(problems)]
        through_lmms = adapter.generate_until(requests)
        ours = replies(adapter.model, Encoder(adapter.processor), [Example(p, form) for p in problems], batch_size=2)
        assert through_lmms == ours, form
