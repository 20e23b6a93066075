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
    runs = find_runs(out)
    assert len(runs) == 1, log[-3000:]
    answers = []
    for path in runs[0].samples.values():
        answers += [json.loads(line)["filtered_resps"] for line in Path(path).read_text().splitlines()]
    assert len(answers) == 4 and not any(is_error_response(str(a)) for a in answers), answers
