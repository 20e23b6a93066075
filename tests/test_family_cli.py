"""Every family's model id through lmms-eval's command line on its tiny checkpoint: one process, then two CPU
processes, with equal scores, answers and merged routing records."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from lmms_cli import run
from test_multiprocess_cache import LIMIT, accelerate, lmms_args, outcome, plain, routing_records

from rd_eval.scoring.doc_errors import is_error_response

# model id -> `rd-eval make-tiny` family (rd_kimi_vl has no offline checkpoint: Kimi-VL is remote code only).
FAMILY_OF_MODEL = {
    "rd_qwen3_5_moe": "qwen3_5_moe",
    "rd_glm4v_moe": "glm4v_moe",
    "rd_llama4": "llama4",
    "rd_aria": "aria",
    "rd_internvl_moe": "internvl_moe",
    "rd_ernie4_5_vl_moe": "ernie4_5_vl_moe",
}
ONE_THREAD = {"OMP_NUM_THREADS": "1"}  # two ranks on two cores: no oversubscription


@pytest.mark.parametrize("model_id", sorted(FAMILY_OF_MODEL))
def test_family_runs_rd_demo_in_one_and_two_processes(model_id: str, tmp_path: Path) -> None:
    from rd_eval.models.tiny import make_tiny

    checkpoint = make_tiny(FAMILY_OF_MODEL[model_id], tmp_path / f"rd-tiny-{FAMILY_OF_MODEL[model_id]}", seed=0)
    one, two = tmp_path / "one", tmp_path / "two"
    result = run([sys.executable, *lmms_args(checkpoint, one, model=model_id)], tmp_path, extra_env=ONE_THREAD)
    assert result.returncode == 0, result.stderr[-3000:]
    command = accelerate("--multi_gpu", "--num_processes", "2") + lmms_args(checkpoint, two, model=model_id)
    result = run(command, tmp_path, extra_env={"ACCELERATE_USE_CPU": "true", **ONE_THREAD})
    assert result.returncode == 0, result.stderr[-3000:]

    scores, answers = outcome(one)
    assert len(answers) == 2 * LIMIT
    assert not any(is_error_response(str(r)) for responses, _ in answers.values() for r in responses), answers
    assert outcome(two) == (scores, answers)
    records = routing_records(one)
    assert len(records) == 2 * LIMIT and {r["model"] for r in records} == {model_id}
    assert all(r["tokens"]["prompt_image"] > 0 for r in records if r["form"] == "img")
    assert all(r["tokens"]["prompt_image"] == 0 for r in records if r["form"] == "txt")
    assert plain(routing_records(two)) == plain(records)
