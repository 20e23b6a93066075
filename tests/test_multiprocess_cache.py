"""Issue 4 through lmms-eval's command line: two CPU processes give the one-process run's scores and merged
routing records; the response cache reproduces scores and never serves one intervention setting's answers
to another."""

from __future__ import annotations

import json
import socket
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from lmms_cli import run, tasks_path

from rd_eval.lmms.runs import find_runs
from rd_eval.routing.settings import pop_routing_settings
from rd_eval.routing.shards import merge_routing_records
from rd_eval.routing.spec import ExpertSet, LayerExperts

LIMIT = 4


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def lmms_args(checkpoint: Path, out: Path, model_args: str = "", *extra: str,
              model: str = "rd_qwen3_vl_moe") -> list[str]:
    args = f"pretrained={checkpoint}" + (f",{model_args}" if model_args else "")
    return ["-m", "lmms_eval", "--model", model, "--model_args", args, "--tasks", "rd_demo",
            "--include_path", tasks_path(), "--output_path", str(out), "--log_samples", "--limit", str(LIMIT),
            *extra]


def accelerate(*launch_args: str) -> list[str]:
    script = Path(sys.executable).parent / "accelerate"
    return [str(script), "launch", *launch_args, "--num_machines", "1", "--mixed_precision", "no",
            "--dynamo_backend", "no", "--main_process_port", str(free_port())]


def outcome(out: Path) -> tuple[dict[str, float], dict[tuple[str, int], Any]]:
    """Scores per task and (task, doc_id) -> (response, score) of the run in `out`."""
    runs = find_runs(out)
    assert len(runs) == 1, runs
    results = json.loads(runs[0].results_path.read_text())
    scores = {task: results["results"][task]["rd_acc,none"] for task in ("rd_demo_img", "rd_demo_txt")}
    answers = {}
    for task, path in runs[0].samples.items():
        for line in Path(path).read_text().splitlines():
            sample = json.loads(line)
            answers[(task, int(sample["doc_id"]))] = (sample["filtered_resps"], sample["rd_acc"])
    return scores, answers


def plain(value: Any) -> Any:
    """Records with their arrays as nested lists, so that == compares every count exactly."""
    if isinstance(value, dict):
        return {key: plain(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain(item) for item in value]
    return value.tolist() if isinstance(value, np.ndarray) else value


def routing_records(out: Path, intervention_hash: str = "none") -> list[dict[str, Any]]:
    folders = [p for p in (out / "rd_routing").glob(f"*__{intervention_hash}")]
    assert len(folders) == 1, list((out / "rd_routing").iterdir())
    return merge_routing_records(folders[0])


def test_two_cpu_processes_equal_one(tiny_dir: Path, tmp_path: Path) -> None:
    one, two = tmp_path / "one", tmp_path / "two"
    # `accelerate launch --cpu --num_processes 2` is accelerate's single-process launcher (its multi-CPU launcher
    # needs MPI): it runs as one process, the reference. (`python -m lmms_eval` is tested in test_e2e_lmms_eval.)
    command = accelerate("--cpu", "--num_processes", "2") + lmms_args(tiny_dir, one)
    result = run(command, tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    # Two ranks on the CPU: torchrun under accelerate, with ACCELERATE_USE_CPU (gloo, DistributedType.MULTI_CPU).
    # lmms-eval's own classes bind every rank to cuda:<rank> there; the adapter loads on the CPU.
    command = accelerate("--multi_gpu", "--num_processes", "2") + lmms_args(tiny_dir, two)
    result = run(command, tmp_path, extra_env={"ACCELERATE_USE_CPU": "true"})
    assert result.returncode == 0, result.stderr[-3000:]

    reference = outcome(one)
    assert len(reference[1]) == 2 * LIMIT
    assert outcome(two) == reference
    shards = sorted(p.name for p in next((two / "rd_routing").iterdir()).glob("routing_rank*.jsonl"))
    assert shards == ["routing_rank000.jsonl", "routing_rank001.jsonl"]
    merged_one, merged_two = routing_records(one), routing_records(two)
    assert len(merged_one) == 2 * LIMIT
    assert plain(merged_two) == plain(merged_one)


@pytest.fixture
def expert_file(tmp_path: Path) -> Path:
    experts = ExpertSet(model="tiny", kind="domain", layers=(LayerExperts(3, (0, 5)), LayerExperts(4, (1,))))
    return experts.save(tmp_path / "experts.json")


def test_response_cache_reproduces_and_never_crosses_settings(tiny_dir: Path, tmp_path: Path,
                                                              expert_file: Path) -> None:
    # lmms-eval keys its cache on the git commit of the working folder: run outside any repository.
    cache = tmp_path / "cache"
    first, second = tmp_path / "first", tmp_path / "second"
    for out in (first, second):
        result = run([sys.executable, *lmms_args(tiny_dir, out, "", "--use_cache", str(cache))], tmp_path, cwd=tmp_path)
        assert result.returncode == 0, result.stderr[-3000:]
    assert outcome(second) == outcome(first)
    assert len(routing_records(first)) == 2 * LIMIT
    # Every answer of the rerun came from the cache: the model generated nothing, so it recorded nothing.
    assert not (second / "rd_routing").exists() or not any((second / "rd_routing").rglob("routing_rank*.jsonl"))

    inline = "intervention_lambda=4,intervention_mode=force"
    pinned = pop_routing_settings({"expert_set": str(expert_file), "intervention_mode": "force",
                                   "intervention_lambda": "4"}).intervention_hash

    # A settings file with the cache on must be pinned by its content hash.
    unpinned = tmp_path / "unpinned"
    result = run([sys.executable, *lmms_args(tiny_dir, unpinned, f"expert_set={expert_file},{inline}",
                                             "--use_cache", str(cache))], tmp_path, cwd=tmp_path)
    # lmms-eval logs a failed evaluation and exits 0: the refusal shows as the message and no results.
    assert f"intervention_hash={pinned}" in result.stderr + result.stdout
    assert not list(unpinned.rglob("*_results.json"))

    # Pinned, the intervened run is answered by the model (it records routing), not by the plain run's cache.
    intervened = tmp_path / "intervened"
    args = f"expert_set={expert_file},{inline},intervention_hash={pinned}"
    result = run([sys.executable, *lmms_args(tiny_dir, intervened, args, "--use_cache", str(cache))], tmp_path,
                 cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    assert len(routing_records(intervened, pinned)) == 2 * LIMIT

    # The file edited in place no longer matches its pin: refused, never served the old answers.
    ExpertSet(model="tiny", kind="domain", layers=(LayerExperts(3, (2,)),)).save(expert_file)
    edited = tmp_path / "edited"
    result = run([sys.executable, *lmms_args(tiny_dir, edited, args, "--use_cache", str(cache))], tmp_path,
                 cwd=tmp_path)
    assert "does not match the intervention's content hash" in result.stderr + result.stdout
    assert not list(edited.rglob("*_results.json"))
