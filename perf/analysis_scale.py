"""Analysis at scale: `rd-eval report` and expert identification over 1k / 3k / 10k synthetic pairs.

Each size is a realistic result tree: six benchmarks (image form + text twin each), a plain and a soft-intervened
setting over the same pair ids (N/2 pairs each, so N pairs = 2N routing records), lmms-eval results and samples
files as lmms-eval 0.7.3 writes them, and routing shards of two ranks written by rd-eval's own `ShardWriter` in
batches of 8 documents, at the real width of Qwen3-VL-30B-A3B (48 MoE layers x 128 experts, top-8).

The analysis runs in a fresh child process, so that its peak resident memory (ru_maxrss) is its own:
`build_report` (gaps with bootstrap CIs, per-layer JSD with bootstrap CIs, separation, correlation; the default
10,000 resamples) rendered as markdown and JSON, then domain-expert identification (ΔΦ of text-twin vs image-form
records over the middle band) from the records. The time is the child's wall time, interpreter start and imports
included: what a user waits for. Each size is analysed twice: first with the benchmark's files evicted from the
page cache (`posix_fadvise(DONTNEED)`, after an fsync; nothing else is evicted), so they are read from disk as
for results written earlier or elsewhere, then warm. The figures are the slower run and the larger peak.

    python perf/analysis_scale.py [--sizes 1000,3000,10000] [--json OUT.json] [--keep DIR]
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from perf.common import drop_from_page_cache, format_table, load_average, publish  # noqa: E402

LAYERS, EXPERTS, TOP_K = 48, 128, 8
BENCHMARKS = 6
BATCH = 8
RANKS = 2
POOL = 64  # distinct random routing profiles per form; documents cycle through them with shifted experts
CHECKPOINT = "/ckpts/Qwen/Qwen3-VL-30B-A3B-Instruct"
CHECKPOINT_DIR = "Qwen__Qwen3-VL-30B-A3B-Instruct"
MODEL_ID = "rd_qwen3_vl_moe"
# Token counts per document and base scope (prompt_text, prompt_image, generated), like a math VQA item.
IMG_TOKENS = (60, 640, 200)
TXT_TOKENS = (320, 0, 200)


# ---------------------------------------------------------------------------------------------------------
# Synthetic runs


def _profiles(rng: np.random.Generator, tokens: tuple[int, int, int]) -> tuple[np.ndarray, np.ndarray]:
    """POOL documents' counts and probability sums [POOL, L, 3, E]: per scope, n·k selections over experts."""
    counts = np.zeros((POOL, LAYERS, 3, EXPERTS), dtype=np.float32)
    probs = np.zeros_like(counts)
    for s, n in enumerate(tokens):
        if n == 0:
            continue
        logits = rng.normal(0.0, 1.5, size=(POOL, LAYERS, EXPERTS))
        dist = np.exp(logits) / np.exp(logits).sum(axis=-1, keepdims=True)
        counts[:, :, s, :] = rng.multinomial(n * TOP_K, dist)
        probs[:, :, s, :] = dist * n
    return counts, probs


def _batch_routing(profile: tuple[np.ndarray, np.ndarray], docs: range, tokens: tuple[int, int, int]) -> Any:
    from rd_eval.routing.recording import BatchRouting

    counts, probs = profile
    picks = [d % POOL for d in docs]
    shifts = [(d // POOL) % EXPERTS for d in docs]
    # Rolling the experts makes documents that share a profile differ, as real documents do.
    c = np.stack([np.roll(counts[p], s, axis=-1) for p, s in zip(picks, shifts, strict=True)])
    q = np.stack([np.roll(probs[p], s, axis=-1) for p, s in zip(picks, shifts, strict=True)])
    t = np.tile(np.asarray(tokens, dtype=np.float32), (len(picks), 1))
    return BatchRouting(counts=c, prob_sums=q, tokens=t)


def _write_results(folder: Path, date_id: str, model_args: str, tasks: list[str]) -> None:
    results = {
        "results": {t: {"alias": t, "rd_acc,none": 0.5, "rd_acc_stderr,none": "N/A"} for t in tasks},
        "configs": {t: {"task": t, "output_type": "generate_until"} for t in tasks},
        "versions": {t: 1.0 for t in tasks},
        "config": {"model": MODEL_ID, "model_args": model_args, "batch_size": "8", "limit": None},
        "lmms_eval_version": "0.7.3",
        "date": date_id,
        "model_name": CHECKPOINT,
        "model_name_sanitized": CHECKPOINT_DIR,
    }
    (folder / f"{date_id}_results.json").write_text(json.dumps(results, indent=2), encoding="utf-8")


def _sample_line(doc_id: int, pair_id: str, form: str, correct: int) -> str:
    answer = str(doc_id % 10)
    pred = answer if correct else "x"
    return json.dumps({"doc_id": doc_id, "target": answer, "filtered_resps": [pred], "doc_hash": f"h{doc_id}",
                       "rd_acc": {"pair_id": pair_id, "form": form, "correct": correct, "pred": pred,
                                  "answer": answer}}) + "\n"


def _write_setting(root: Path, date_id: str, model_args: str, intervention_hash: str, pairs: int,
                   rng: np.random.Generator) -> None:
    from rd_eval.routing.records import DocIdentity, document_record
    from rd_eval.routing.shards import ShardWriter

    folder = root / CHECKPOINT_DIR
    folder.mkdir(parents=True, exist_ok=True)
    tasks = [f"rd_syn{b}_{form}" for b in range(BENCHMARKS) for form in ("img", "txt")]
    _write_results(folder, date_id, model_args, tasks)
    writers = [ShardWriter(root / "rd_routing" / f"{CHECKPOINT_DIR}__{intervention_hash}", r) for r in range(RANKS)]
    profiles = {"img": _profiles(rng, IMG_TOKENS), "txt": _profiles(rng, TXT_TOKENS)}
    per_bench = [pairs // BENCHMARKS + (1 if b < pairs % BENCHMARKS else 0) for b in range(BENCHMARKS)]
    batches = 0
    for b, n in enumerate(per_bench):
        for form, tokens in (("img", IMG_TOKENS), ("txt", TXT_TOKENS)):
            task = f"rd_syn{b}_{form}"
            p_correct = 0.45 if form == "img" else 0.6
            correct = rng.random(n) < p_correct
            lines = [_sample_line(i, f"b{b}p{i}", form, int(correct[i])) for i in range(n)]
            (folder / f"{date_id}_samples_{task}.jsonl").write_text("".join(lines), encoding="utf-8")
            for start in range(0, n, BATCH):
                docs = range(start, min(n, start + BATCH))
                routing = _batch_routing(profiles[form], docs, tokens)
                records = [document_record(DocIdentity(task, d, form), routing, row, model=MODEL_ID,
                                           intervention_hash=intervention_hash) for row, d in enumerate(docs)]
                writers[batches % RANKS].append(records)
                batches += 1


def make_runs(root: Path, n_pairs: int, *, seed: int = 0) -> Path:
    """root/runs/{plain,soft}: N/2 pairs each over the same pair ids; returns root/runs."""
    from rd_eval.routing.spec import ExpertSet, InterventionSpec, LayerExperts

    rng = np.random.default_rng(seed)
    band = range(LAYERS // 4, 3 * LAYERS // 4)
    experts = ExpertSet(model=CHECKPOINT, kind="domain",
                        layers=tuple(LayerExperts(layer, tuple(range(TOP_K))) for layer in band))
    spec = InterventionSpec(experts=experts)
    spec_path = root / "experts" / "soft.json"
    spec.save(spec_path)
    plain, soft = n_pairs // 2, n_pairs - n_pairs // 2
    _write_setting(root / "runs" / "plain", "20260101_120000", f"pretrained={CHECKPOINT}", "none", plain, rng)
    _write_setting(root / "runs" / "soft", "20260101_130000", f"pretrained={CHECKPOINT},intervention={spec_path}",
                   spec.content_hash(), soft, rng)
    return root / "runs"


# ---------------------------------------------------------------------------------------------------------
# The analysis (child process)


def analyse(runs: Path, out: Path) -> None:
    """Report + expert identification; phase times and peak RSS written to `out` (runs in the child)."""
    import resource

    start = time.perf_counter()
    phases: dict[str, float] = {}

    def lap(name: str, since: float) -> float:
        now = time.perf_counter()
        phases[name] = round(now - since, 3)
        return now

    from rd_eval.analysis.divergence import band_sites
    from rd_eval.experts.identify import domain_expert_set, records_selection_frequency
    from rd_eval.reports.report import build_report, to_json, to_markdown
    from rd_eval.routing.shards import merge_routing_records

    t = lap("imports", start)
    report = build_report([runs])
    t = lap("build_report", t)
    markdown, as_json = to_markdown(report), to_json(report)
    t = lap("render_md_json", t)
    records = merge_routing_records(next((runs / "plain" / "rd_routing").iterdir()))
    domain = records_selection_frequency((r for r in records if r["form"] == "txt"), "prompt")
    general = records_selection_frequency((r for r in records if r["form"] == "img"), "prompt")
    expert_set = domain_expert_set(domain, general, band=band_sites(LAYERS), top_n=TOP_K, model=CHECKPOINT,
                                   method={"source": "synthetic records"})
    lap("expert_identification", t)
    usage = resource.getrusage(resource.RUSAGE_SELF)
    peak_kib = usage.ru_maxrss  # KiB on Linux
    n_pairs = sum(b["n_pairs"] for s in report["settings"] for b in (s["routing"] or {}).get("benchmarks", []))
    out.write_text(json.dumps({
        "phases_seconds": phases, "peak_rss_gib": peak_kib / 2**20, "routing_pairs": n_pairs,
        "cpu_seconds": usage.ru_utime + usage.ru_stime,
        "markdown_chars": len(markdown), "json_chars": len(as_json),
        "expert_layers": len(expert_set.layers),
    }), encoding="utf-8")


def _du(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def _analyse_child(runs: Path, out: Path) -> tuple[float, dict[str, Any]]:
    start = time.perf_counter()
    subprocess.run([sys.executable, str(Path(__file__).resolve()), "--child", str(runs), str(out)], check=True)
    return time.perf_counter() - start, json.loads(out.read_text(encoding="utf-8"))


def measure(n_pairs: int, workdir: Path) -> dict[str, Any]:
    """Generate N pairs, then analyse them twice: from disk (files evicted from the page cache) and warm."""
    root = workdir / f"pairs_{n_pairs}"
    t0 = time.perf_counter()
    runs = make_runs(root, n_pairs)
    generated = time.perf_counter() - t0
    cold = drop_from_page_cache(root)
    runs_of = {}
    for label in ("cold", "warm"):
        seconds, child = _analyse_child(runs, root / f"analysis_{label}.json")
        runs_of[label] = {"seconds": round(seconds, 3), "cpu_seconds": round(child["cpu_seconds"], 3),
                          "peak_gib": round(child["peak_rss_gib"], 3), "phases_seconds": child["phases_seconds"],
                          "routing_pairs_reported": child["routing_pairs"]}
    if not cold:
        runs_of["cold"]["note"] = "posix_fadvise unavailable: the first run read from the page cache too"
    # Headline: the slower of the two runs (usually the one from disk) and the larger peak.
    worst = max(runs_of.values(), key=lambda r: r["seconds"])
    return {"pairs": n_pairs, "records": 2 * n_pairs, "seconds": worst["seconds"],
            "peak_gib": max(r["peak_gib"] for r in runs_of.values()), "phases_seconds": worst["phases_seconds"],
            "cold": runs_of["cold"], "warm": runs_of["warm"], "disk_mib": round(_du(runs) / 2**20, 1),
            "generate_seconds": round(generated, 1), "load_average": load_average()}


def run(sizes: list[int], *, keep: Path | None = None) -> dict[str, Any]:
    workdir = Path(tempfile.mkdtemp(prefix="rd_analysis_")) if keep is None else keep
    results = []
    try:
        for n in sizes:
            results.append(measure(n, workdir))
            if keep is None:
                shutil.rmtree(workdir / f"pairs_{n}", ignore_errors=True)
            print(f"  {n} pairs: {results[-1]['seconds']:.2f} s, peak {results[-1]['peak_gib']:.2f} GiB",
                  file=sys.stderr)
    finally:
        if keep is None:
            shutil.rmtree(workdir, ignore_errors=True)
    largest = max(results, key=lambda r: r["pairs"])
    per_pair = [r["seconds"] / r["pairs"] for r in results]
    return {
        "sizes": results,
        "layers": LAYERS, "experts": EXPERTS, "top_k": TOP_K,
        "analysis_seconds_10k": largest["seconds"] if largest["pairs"] == 10_000 else None,
        "analysis_peak_gib_10k": largest["peak_gib"] if largest["pairs"] == 10_000 else None,
        "seconds_per_1k_pairs": [round(1000 * x, 3) for x in per_pair],
        "targets": {"seconds_10k": 10.0, "peak_gib_10k": 4.0},
    }


def table(result: dict[str, Any]) -> str:
    rows = [(r["pairs"], r["records"], r["disk_mib"], r["cold"]["seconds"], r["warm"]["seconds"], r["peak_gib"],
             r["phases_seconds"]["build_report"], r["phases_seconds"]["expert_identification"])
            for r in result["sizes"]]
    return format_table(["pairs", "records", "disk MiB", "seconds from disk", "seconds warm", "peak GiB",
                         "build_report s", "experts s"], rows)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="1000,3000,10000", help="comma-separated pair counts")
    parser.add_argument("--quick", action="store_true", help="same sizes (the 10k target needs 10k pairs)")
    parser.add_argument("--json", default=None, help="write the figures here")
    parser.add_argument("--keep", type=Path, default=None, help="keep the synthetic runs in this folder")
    parser.add_argument("--child", nargs=2, type=Path, metavar=("RUNS", "OUT"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        analyse(*args.child)
        return {}
    result = run([int(s) for s in args.sizes.split(",") if s.strip()], keep=args.keep)
    return publish(result, table, args.json)


if __name__ == "__main__":
    main()
