"""What one model load per sweep saves (issue 17 item 2), in two measurements.

1. Wall time of a 5-setting `rd-eval sweep` (plain, soft λ=1 and λ=2, the random-expert control, suppress) vs the
   same 5 settings as 5 separate `python -m lmms_eval` runs, on the tiny checkpoint (`rd-eval make-tiny`), same
   tasks, limit and batch size. The separate runs use the sweep's own spec files and model_args (each with its own
   output folder), so both do the same evaluations; the sweep's time also includes what the separate runs do not
   do (expert identification, the report and the leaderboard). Target ratio: <= 0.6.
2. The model-load time a sweep saves per extra setting at real size. A 30B checkpoint does not fit this machine, so
   checkpoints of the real Qwen3-VL-30B-A3B config (perf/configs) at real width with only L of its 48 decoder
   layers (random bf16 weights, written locally) are loaded through lmms-eval's registry as the sweep loads them
   (`rd_eval.sweep.execute.load_model`), then every weight is read once (transformers maps safetensors lazily: the
   reads happen in the first batches). Cold: the files' pages dropped from the page cache first (fsync +
   POSIX_FADV_DONTNEED); warm: read again right after. Each is fitted as a + b·L and extrapolated to 48 layers
   (61 GB in bf16, more than this machine's memory: a real load is cold). Disk: ~1.2 GB per layer, deleted after.

    python perf/sweep_load.py [--part ratio|load|both] [--limit N] [--layers 1 2 3] [--json OUT.json]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from perf.common import QWEN3_VL_30B_CONFIG, drop_from_page_cache, format_table, publish  # noqa: E402

OFFLINE = {"HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
SETTINGS = {"plain": True, "soft": {"lambda": [1, 2]}, "random": {"seeds": [0]}, "suppress": True}
REAL_LAYERS = 48


def _timed(command: list[str], log: Path) -> float:
    started = time.perf_counter()
    with open(log, "w", encoding="utf-8") as out:
        done = subprocess.run(command, stdout=out, stderr=subprocess.STDOUT, env={**os.environ, **OFFLINE},
                              check=False)
    seconds = time.perf_counter() - started
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(command[:4])} ... failed ({done.returncode}); log: {log}")
    return seconds


def measure_ratio(work: Path, limit: int, batch_size: int) -> dict[str, Any]:
    """The sweep's wall time and the separate runs' (each a fresh process, as a user would run them)."""
    import yaml

    from rd_eval.lmms.runner import lmms_eval_command
    from rd_eval.models.tiny import make_tiny
    from rd_eval.sweep.config import installed_tasks_dir

    checkpoint = make_tiny("qwen3_vl_moe", work / "rd-tiny-qwen3_vl_moe-A1B", seed=0)
    config = work / "sweep.yaml"
    config.write_text(yaml.safe_dump({
        "model": "rd_qwen3_vl_moe", "model_args": f"pretrained={checkpoint}", "tasks": ["rd_demo"],
        "experts": {"identify": {"domain": "rd_demo", "n": 8}}, "settings": SETTINGS,
        "lmms": {"batch_size": batch_size, "limit": limit}}), encoding="utf-8")
    out = work / "sweep"
    sweep_seconds = _timed([sys.executable, "-m", "rd_eval", "sweep", str(config), "--out", str(out),
                            "--no-progress"], work / "sweep.log")
    planned = json.loads((out / "sweep.json").read_text(encoding="utf-8"))["settings"]
    separate: dict[str, float] = {}
    for setting in planned:
        run_dir = work / "separate" / setting["key"]
        model_args = setting["model_args"].replace(str(out / "runs" / setting["key"]), str(run_dir))
        command = lmms_eval_command("rd_qwen3_vl_moe", model_args, ["rd_demo"], run_dir,
                                    include_path=installed_tasks_dir(), batch_size=batch_size, seed=0, limit=limit)
        separate[setting["key"]] = _timed(command, work / f"separate_{setting['key']}.log")
    total = sum(separate.values())
    return {"settings": len(planned), "limit": limit, "batch_size": batch_size, "sweep_seconds": sweep_seconds,
            "separate_seconds": separate, "separate_total_seconds": total, "ratio": sweep_seconds / total}


def write_real_width(folder: Path, layers: int) -> Path:
    """The real Qwen3-VL-30B-A3B config with `layers` decoder layers, random bf16 weights, plus the tiny
    checkpoint's processor files (the tokenizer is not what is measured)."""
    import torch
    from transformers import AutoConfig, AutoModelForImageTextToText

    from rd_eval.models.tiny import ensure_tiny

    config = AutoConfig.from_pretrained(QWEN3_VL_30B_CONFIG.parent)
    config.text_config.num_hidden_layers = layers
    if getattr(config.text_config, "mlp_only_layers", None):
        config.text_config.mlp_only_layers = []
    with torch.device("cpu"):
        model = AutoModelForImageTextToText.from_config(config, dtype=torch.bfloat16)
    model.save_pretrained(folder)
    del model
    tiny, _ = ensure_tiny("qwen3_vl_moe", folder.parent / "processor-source", seed=0)
    for path in tiny.iterdir():
        if path.name not in ("config.json", "model.safetensors", "generation_config.json") and path.is_file() \
                and not (folder / path.name).exists():
            shutil.copy(path, folder / path.name)
    return folder


def _load_and_touch(invocation: Any) -> float:
    """Seconds to build the lmms-eval instance and read every weight once. transformers maps safetensors lazily,
    so the constructor alone reads almost nothing; a model's first batches read the weights (a MoE, every expert
    sooner or later), which is where a load's disk time goes. One element per 2 KiB touches every page."""
    import torch

    from rd_eval.sweep.execute import load_model

    started = time.perf_counter()
    lm = load_model(invocation)
    with torch.no_grad():
        for param in lm.model.parameters():
            float(param.detach().reshape(-1)[::1024].float().sum())
    seconds = time.perf_counter() - started
    del lm
    return seconds


def measure_load(work: Path, layer_counts: list[int]) -> dict[str, Any]:
    from rd_eval.models.tiny import ensure_tiny
    from rd_eval.sweep.config import installed_tasks_dir
    from rd_eval.sweep.execute import LmmsInvocation

    def invocation(folder: Path) -> LmmsInvocation:
        return LmmsInvocation("rd_qwen3_vl_moe", f"pretrained={folder},record_routing=false", ("rd_demo",), work,
                              installed_tasks_dir())

    tiny, _ = ensure_tiny("qwen3_vl_moe", work / "processor-source", seed=0)
    _load_and_touch(invocation(tiny))  # imports and first-use set-up, paid once by any process
    loads: dict[int, dict[str, float]] = {}
    for layers in layer_counts:
        folder = write_real_width(work / f"qwen3-vl-30b-width-{layers}L", layers)
        size = sum(p.stat().st_size for p in folder.iterdir() if p.suffix == ".safetensors")
        drop_from_page_cache(folder, ".safetensors")
        cold = _load_and_touch(invocation(folder))
        warm = _load_and_touch(invocation(folder))
        loads[layers] = {"cold_seconds": cold, "warm_seconds": warm, "gb": size / 1e9}
        shutil.rmtree(folder)
    xs = sorted(loads)
    if len(xs) < 2:
        return {"loads": {str(k): v for k, v in loads.items()}, "fits": {}, "gb_at_48_layers": None}
    fits = {kind: _line(xs, [loads[x][kind] for x in xs]) for kind in ("cold_seconds", "warm_seconds")}
    size = _line(xs, [loads[x]["gb"] for x in xs])
    return {"loads": {str(k): v for k, v in loads.items()}, "fits": fits, "gb_at_48_layers": size["at_48_layers"]}


def _line(xs: list[int], ys: list[float]) -> dict[str, float]:
    """Least-squares a + b·x, and its value at the real model's 48 layers."""
    mean_x, mean_y = sum(xs) / len(xs), sum(ys) / len(ys)
    slope = sum((x - mean_x) * (y - mean_y) for x, y in zip(xs, ys, strict=True)) / sum((x - mean_x) ** 2 for x in xs)
    fixed = mean_y - slope * mean_x
    return {"per_layer": slope, "fixed": fixed, "at_48_layers": fixed + slope * REAL_LAYERS}


def table(result: dict[str, Any]) -> str:
    rows = []
    ratio = result.get("ratio")
    if ratio:
        rows.append(["5-setting sweep (tiny, one process)", ratio["sweep_seconds"], "–"])
        rows.append(["5 separate python -m lmms_eval runs", ratio["separate_total_seconds"], "–"])
        rows.append(["ratio sweep / separate (target <= 0.6)", ratio["ratio"], "–"])
    load = result.get("load")
    if load:
        for layers, entry in load["loads"].items():
            rows.append([f"load + read weights, Qwen3-VL-30B-A3B width, {layers} of 48 layers ({entry['gb']:.1f} GB)",
                         f"{entry['cold_seconds']:.1f} cold / {entry['warm_seconds']:.1f} warm", "page cache"])
        for kind, fit in load["fits"].items():
            rows.append([f"extrapolated to 48 layers ({load['gb_at_48_layers']:.0f} GB), {kind.split('_')[0]}: saved "
                         "per extra setting", fit["at_48_layers"], f"{fit['fixed']:.1f} + {fit['per_layer']:.2f}·L"])
    return format_table(["measurement", "seconds / ratio", "note"], rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--part", choices=("ratio", "load", "both"), default="both")
    parser.add_argument("--limit", type=int, default=4, help="documents per task of each setting (default 4)")
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--layers", type=int, nargs="+", default=[1, 2, 3],
                        help="decoder layers of the real-width checkpoints (default 1 2 3)")
    parser.add_argument("--json", default=None, metavar="OUT.json")
    args = parser.parse_args()
    result: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="rd-sweep-load-") as tmp:
        work = Path(tmp)
        if args.part in ("ratio", "both"):
            result["ratio"] = measure_ratio(work, args.limit, args.batch_size)
        if args.part in ("load", "both"):
            result["load"] = measure_load(work, args.layers)
    publish(result, table, args.json)


if __name__ == "__main__":
    main()
