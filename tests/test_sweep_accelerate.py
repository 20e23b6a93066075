"""`rd-eval sweep` under `accelerate launch`: two CPU processes (data-parallel, as lmms-eval runs) write the files
one process writes: the same results and samples, and routing shards whose records, merged, are the same."""

from __future__ import annotations

from pathlib import Path

import pytest
from lmms_cli import run
from test_multiprocess_cache import accelerate, plain
from test_sweep_run import ENV, files_of, normalised_results, samples_of, sweep_yaml

from rd_eval.lmms.runs import find_runs
from rd_eval.routing.shards import merge_routing_records
from rd_eval.sweep.config import load_sweep_config
from rd_eval.sweep.run import run_sweep
from rd_eval.sweep.state import SweepLayout

pytestmark = pytest.mark.usefixtures("one_thread")


def test_two_cpu_processes_write_what_one_writes(tiny_dir: Path, tmp_path: Path) -> None:
    config = sweep_yaml(tmp_path, tiny_dir)  # plain and soft λ=1
    one, two = tmp_path / "one", tmp_path / "two"
    run_sweep(load_sweep_config(config, out=one), progress=False, say=lambda line: None, report_n_boot=200)
    # Two ranks on the CPU: torchrun under accelerate with ACCELERATE_USE_CPU (gloo, DistributedType.MULTI_CPU).
    command = accelerate("--multi_gpu", "--num_processes", "2") + ["-m", "rd_eval", "sweep", str(config),
                                                                    "--out", str(two), "--no-progress"]
    result = run(command, tmp_path, extra_env={**ENV, "ACCELERATE_USE_CPU": "true"})
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert result.stdout.count("Sweep done:") == 1  # only the main process speaks
    assert result.stdout.count("soft λ=1, domain experts") == 1

    rank_files = {name.replace("rank001", "rank000").replace(".rank1.log", ".log") for name in files_of(two)}
    assert rank_files == files_of(one)  # and each rank wrote its own shard (and log) beside
    for key in ("plain", "soft_l1_b0.25-0.75"):
        run_one, run_two = SweepLayout(one).run_dir(key), SweepLayout(two).run_dir(key)
        assert sorted(p.name for p in SweepLayout(two).routing_dir(key).glob("*.jsonl")) == [
            "routing_rank000.jsonl", "routing_rank001.jsonl"]
        assert samples_of(run_two) == samples_of(run_one)
        (results_one,), (results_two,) = find_runs(run_one), find_runs(run_two)
        assert normalised_results(results_two.results_path, two) == normalised_results(results_one.results_path, one)
        records_one = merge_routing_records(SweepLayout(one).routing_dir(key))
        assert len(records_one) == 4
        assert plain(merge_routing_records(SweepLayout(two).routing_dir(key))) == plain(records_one)
