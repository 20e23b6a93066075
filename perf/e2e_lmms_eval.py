"""End to end: `rd_demo` through lmms-eval, its stock Qwen3-VL class vs rd-eval's adapter (recording on).

Both runs are `python -m lmms_eval --tasks rd_demo --include_path <rd-eval tasks>` on the same tiny checkpoint
(`rd-eval make-tiny qwen3_vl_moe`), with the same batch size and greedy generation, so they generate the same
tokens (checked: the responses must be identical). The stock class is the one lmms-eval's `qwen3_vl` model id
resolves to with `--force_simple`: `lmms_eval.models.simple.qwen3_vl.Qwen3_VL`, the class our `rd_qwen3_vl_moe`
adapter extends, so the difference is exactly what rd-eval adds (per-task batching, the image check, routing
hooks, per-batch record writing). Without `--force_simple`, `qwen3_vl` resolves to lmms-eval's chat class,
which preprocesses images differently (`do_resize=False`) and so does different work; it is not compared.

The measured time is the model's generate phase: the wall time of `generate_until` (preprocessing, generation,
decoding, for ours also the routing records), taken by `perf/lmms_eval_timed.py`, which runs lmms-eval's
own CLI entry point with a timer around that method. Process start, task indexing and model loading are the
same for both and excluded. Runs rotate (stock, ours, ours without records; ours, ours without records,
stock; ...); the figure is the median over repeats of the per-repeat throughput ratio ours / stock (= stock
seconds / ours seconds, equal tokens). Ours with `record_routing=false` isolates what recording itself costs
inside the adapter.

    python perf/e2e_lmms_eval.py [--quick] [--repeats N] [--limit N] [--json OUT.json]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from perf.common import PERF, format_table, load_average, median, publish  # noqa: E402

DRIVER = PERF / "lmms_eval_timed.py"


@dataclass(frozen=True)
class Runner:
    label: str
    model: str
    flags: tuple[str, ...] = ()
    model_args: str = ""


STOCK = Runner("stock", "qwen3_vl", ("--force_simple",))
OURS = Runner("ours", "rd_qwen3_vl_moe")
# Our adapter with routing records off: separates the cost of recording from the rest of the adapter.
OURS_NO_RECORD = Runner("ours_no_record", "rd_qwen3_vl_moe", (), ",record_routing=false")
OFFLINE = {"HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1",
           "TOKENIZERS_PARALLELISM": "false"}


def build_checkpoint(workdir: Path) -> Path:
    """The tiny checkpoint; its folder name matches A<digits>B, which lmms-eval's class needs to pick MoE."""
    from rd_eval.models.tiny import make_tiny

    return make_tiny("qwen3_vl_moe", workdir / "rd-tiny-qwen3_vl_moe-A1B", seed=0)


def tasks_path() -> str:
    from rd_eval.commands.demo import tasks_dir

    return str(tasks_dir())


def run_once(runner: Runner, checkpoint: Path, out: Path, *, limit: int | None, batch_size: int,
             device: str, env: dict[str, str]) -> dict[str, Any]:
    """One lmms-eval run; returns the timings of its generate phase and where its outputs are."""
    model = runner.model
    timing = out / "timing.json"
    command = [sys.executable, str(DRIVER), str(timing), "--model", model, *runner.flags,
               "--model_args", f"pretrained={checkpoint},device={device},device_map={device}{runner.model_args}",
               "--tasks", "rd_demo", "--include_path", tasks_path(), "--output_path", str(out / "lmms"),
               "--log_samples", "--batch_size", str(batch_size)]
    if limit is not None:
        command += ["--limit", str(limit)]
    result = subprocess.run(command, capture_output=True, text=True, env=env, check=False)
    (out / "log.txt").write_text(result.stdout + result.stderr, encoding="utf-8")
    if result.returncode != 0 or not timing.is_file():
        raise RuntimeError(f"lmms-eval run of {model} failed (exit {result.returncode}); log: {out / 'log.txt'}\n"
                           + (result.stdout + result.stderr)[-3000:])
    return json.loads(timing.read_text(encoding="utf-8")) | {"output": str(out / "lmms")}


def responses(output: str) -> dict[tuple[str, int], Any]:
    """(task, doc_id) -> filtered response, from a run's samples files."""
    found: dict[tuple[str, int], Any] = {}
    for path in Path(output).rglob("*_samples_*.jsonl"):
        task = path.name.split("_samples_", 1)[1][: -len(".jsonl")]
        for line in path.read_text(encoding="utf-8").splitlines():
            if line.strip():
                sample = json.loads(line)
                found[(task, int(sample["doc_id"]))] = sample.get("filtered_resps")
    return found


def measure(*, repeats: int, limit: int | None, batch_size: int, threads: int | None,
            keep: Path | None = None) -> dict[str, Any]:
    import torch

    workdir = Path(tempfile.mkdtemp(prefix="rd_e2e_")) if keep is None else keep
    device = "cuda" if torch.cuda.is_available() else "cpu"
    env = {**os.environ, **OFFLINE, "LMMS_EVAL_DATASETS_CACHE": str(workdir / "datasets_cache")}
    if threads is not None:
        env["OMP_NUM_THREADS"] = str(threads)
    try:
        checkpoint = build_checkpoint(workdir)
        # Warm-up: the first run of each pays for the dataset cache and cold files.
        run_once(STOCK, checkpoint, workdir / "warm_stock", limit=4, batch_size=batch_size, device=device, env=env)
        rows: list[dict[str, Any]] = []
        identical = True
        runners = (STOCK, OURS, OURS_NO_RECORD)
        for repeat in range(repeats):
            order = runners[repeat % 3:] + runners[: repeat % 3]
            timings = {}
            for runner in order:
                out = workdir / f"r{repeat}_{runner.label}"
                timings[runner.label] = run_once(runner, checkpoint, out, limit=limit, batch_size=batch_size,
                                                 device=device, env=env)
            stock, ours, bare = timings[STOCK.label], timings[OURS.label], timings[OURS_NO_RECORD.label]
            same = responses(stock["output"]) == responses(ours["output"]) == responses(bare["output"])
            identical = identical and same
            rows.append({
                "repeat": repeat, "stock_seconds": round(stock["generate_until_seconds"], 3),
                "ours_seconds": round(ours["generate_until_seconds"], 3),
                "ratio": stock["generate_until_seconds"] / ours["generate_until_seconds"],
                "stock_cpu_seconds": round(stock["generate_until_cpu_seconds"], 3),
                "ours_cpu_seconds": round(ours["generate_until_cpu_seconds"], 3),
                "cpu_ratio": stock["generate_until_cpu_seconds"] / ours["generate_until_cpu_seconds"],
                "ours_no_record_seconds": round(bare["generate_until_seconds"], 3),
                "recording_ratio": bare["generate_until_seconds"] / ours["generate_until_seconds"],
                "generated_tokens": ours["generated_tokens"], "prompt_tokens": ours["prompt_tokens"],
                "same_tokens": stock["generated_tokens"] == ours["generated_tokens"]
                and stock["prompt_tokens"] == ours["prompt_tokens"],
                "same_responses": same, "load_average": load_average(),
            })
            print(f"  repeat {repeat}: stock {rows[-1]['stock_seconds']} s, ours {rows[-1]['ours_seconds']} s, "
                  f"ratio {rows[-1]['ratio']:.3f}", file=sys.stderr)
    finally:
        if keep is None:
            shutil.rmtree(workdir, ignore_errors=True)
    return {
        "e2e_throughput_ratio": round(median([r["ratio"] for r in rows]), 4),
        "e2e_cpu_time_ratio": round(median([r["cpu_ratio"] for r in rows]), 4),
        "recording_throughput_ratio": round(median([r["recording_ratio"] for r in rows]), 4),
        "target": 0.95,
        "repeats": rows,
        "identical_responses": identical,
        "settings": {"limit": limit, "batch_size": batch_size, "device": device, "omp_num_threads": threads,
                     "stock": "qwen3_vl --force_simple (lmms_eval.models.simple.qwen3_vl.Qwen3_VL)",
                     "ours": "rd_qwen3_vl_moe (record_routing=true, no intervention)"},
    }


def table(result: dict[str, Any]) -> str:
    rows = [(r["repeat"], r["stock_seconds"], r["ours_seconds"], r["ours_no_record_seconds"], r["ratio"],
             r["cpu_ratio"], r["recording_ratio"], r["generated_tokens"], r["same_responses"])
            for r in result["repeats"]]
    rows.append(("median", None, None, None, result["e2e_throughput_ratio"], result["e2e_cpu_time_ratio"],
                 result["recording_throughput_ratio"], None, result["identical_responses"]))
    return format_table(["repeat", "stock s", "ours s", "ours, no records s", "throughput ours/stock",
                         "CPU-time ratio", "records on/off", "gen tokens", "same output"], rows)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="16 documents per form, 3 repeats")
    parser.add_argument("--repeats", type=int, default=None, help="stock/ours pairs (default 5, quick 3)")
    parser.add_argument("--limit", type=int, default=None, help="documents per task (default: all 40)")
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--threads", type=int, default=1,
                        help="OMP_NUM_THREADS for both runs (default 1; 0 = torch's default). On a shared 2-core "
                             "machine, intra-op threads that wait for each other turn other processes' load into "
                             "10x swings; the tiny model's ops are too small to gain from threads anyway")
    parser.add_argument("--keep", type=Path, default=None, help="keep checkpoint and runs in this folder")
    parser.add_argument("--json", default=None, help="write the figures here")
    args = parser.parse_args(argv)
    repeats = args.repeats or (3 if args.quick else 5)
    limit = args.limit if args.limit is not None else (16 if args.quick else None)
    threads = args.threads if args.threads > 0 else None
    result = measure(repeats=repeats, limit=limit, batch_size=args.batch_size, threads=threads, keep=args.keep)
    return publish(result, table, args.json)


if __name__ == "__main__":
    main()
