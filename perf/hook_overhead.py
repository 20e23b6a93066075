"""Hook overhead at real width: a stack of Qwen3-VL-30B-A3B text layers, no hooks vs recording vs soft intervention.

The model is transformers' own `Qwen3VLMoeTextModel` built from the real `config.json` shipped in
`perf/configs/` with only `num_hidden_layers` reduced (2-4 of the checkpoint's 48 layers; the full model
does not fit this machine), random weights. It sits under a thin top-level module whose config is the full
Qwen3-VL-MoE config, so that rd-eval discovers and hooks it exactly as it does the real model, and is driven
the way the lmms-eval adapter drives a model: per batch `session.begin(batch, stop_token_ids)`, a prefill of
the prompts (left-padded, two rows carry an image span of placeholder tokens), decode steps with transformers'
KV cache, then `session.finish_batch()` and the batch's records appended to a shard (fsynced), as the adapter
writes them. The sessions are rd-eval's own `RoutingSession` / `RoutingRecorder`, built as `routing_session()`
builds them.

The three variants (none, record, intervene) each generate their own batch, with their own KV cache and
routing session, advanced in lockstep: the prefill of each, then decode step 0 of each, ..., in an order that
rotates every call; a session's hooks are installed only around its own variant's calls. So a burst of load
on the machine hits all three alike, and each repeat gives the ratios record/none and intervene/none of the
time of a batch (prefill + decode + the record writing); the figures are the medians of those ratios minus
one. Both wall and process CPU time are taken: on a CPU the headline uses CPU time with one intra-op thread
(other processes' load moves wall time on a shared machine; with two threads, OpenMP spin-waits for a
descheduled peer inflate CPU time too), on a GPU wall time (synchronised), in bf16. A few layers instead of 48
makes the per-forward-call costs (the token layout, the batched accumulation, the shard write) count 12-24x
more than in the real model, so the figures are upper bounds of the real model's overhead.

    python perf/hook_overhead.py [--quick] [--layers N] [--prefill T] [--decode S] [--repeats R]
                                       [--dtype D] [--threads N] [--metric wall|cpu] [--json OUT]
"""

from __future__ import annotations

import argparse
import copy
import json
import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import nn

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from perf.common import QWEN3_VL_30B_CONFIG, format_table, load_average, median, publish  # noqa: E402, I001

VARIANTS = ("none", "record", "intervene")


class TextStack(nn.Module):
    """The text model under a top-level module carrying the full Qwen3-VL-MoE config (what rd-eval hooks)."""

    def __init__(self, config: Any, language_model: nn.Module) -> None:
        super().__init__()
        self.config = config
        self.language_model = language_model

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, past_key_values: Any = None) -> Any:
        return self.language_model(input_ids=input_ids, attention_mask=attention_mask,
                                   past_key_values=past_key_values, use_cache=True)


def load_config(layers: int, text_overrides: dict[str, Any] | None = None) -> Any:
    """The shipped real config with `num_hidden_layers` = layers (`text_overrides` only for the smoke test)."""
    from transformers import Qwen3VLMoeConfig

    raw = copy.deepcopy(json.loads(QWEN3_VL_30B_CONFIG.read_text(encoding="utf-8")))
    raw["text_config"] |= {"num_hidden_layers": layers, **(text_overrides or {})}
    return Qwen3VLMoeConfig(**raw)


@torch.no_grad()
def _fill(model: nn.Module, seed: int) -> None:
    """Random weights, fast: large tensors tile one random block (scaled per slice), small ones are drawn whole.

    Values only need to be ordinary floats of the real scale (no NaN, no denormals) and the routers random, so
    that tokens spread over the experts as in a real model; drawing 2.4 G expert weights per layer would take
    minutes. Drawn where the parameters live, in their dtype."""
    device = next(model.parameters()).device
    gen = torch.Generator(device=device).manual_seed(seed)

    def randn(shape: tuple[int, ...], dtype: torch.dtype) -> torch.Tensor:
        return torch.randn(shape, generator=gen, device=device, dtype=torch.float32).mul_(0.02).to(dtype)

    for name, param in model.named_parameters():
        if name.endswith("norm.weight"):
            param.fill_(1.0)
        elif param.numel() <= 1 << 25:
            param.copy_(randn(tuple(param.shape), param.dtype))
        else:
            param.copy_(randn((1, *param.shape[1:]), param.dtype).expand_as(param))
            scales = 1.0 + 0.5 * torch.rand(param.shape[0], generator=gen, device=device)
            param.mul_(scales.to(param.dtype).view(-1, *([1] * (param.dim() - 1))))


def build_model(layers: int, device: str, dtype: torch.dtype, seed: int = 0,
                text_overrides: dict[str, Any] | None = None) -> TextStack:
    """Built directly on `device` in `dtype`, as `from_pretrained(dtype=...)` builds it (48 layers of the 30B
    model in bf16 fit an 80 GB GPU; built in float32 on the host first, they would need ~120 GB of RAM)."""
    from transformers.initialization import no_init_weights
    from transformers.models.qwen3_vl_moe.modeling_qwen3_vl_moe import Qwen3VLMoeTextModel

    config = load_config(layers, text_overrides)
    default_dtype = torch.get_default_dtype()
    torch.set_default_dtype(dtype)
    try:
        with no_init_weights(), torch.device(device):
            text = Qwen3VLMoeTextModel(config.text_config)
    finally:
        torch.set_default_dtype(default_dtype)
    _fill(text, seed)
    return TextStack(config, text).eval()


def make_inputs(config: Any, batch: int, prefill: int, device: str, seed: int = 0) -> tuple[torch.Tensor, ...]:
    """Left-padded prompts (rows lose 0/32/64/... tokens to padding), rows 0 and 1 with an image span."""
    gen = torch.Generator().manual_seed(seed)
    text = config.text_config
    ids = torch.randint(1000, text.vocab_size - 1000, (batch, prefill), generator=gen)
    mask = torch.ones(batch, prefill, dtype=torch.long)
    for row in range(batch):
        pad = (row % 4) * (prefill // 16)
        mask[row, :pad] = 0
        ids[row, :pad] = text.pad_token_id if text.pad_token_id is not None else 0
        if row < 2:  # an image: a quarter of the prompt is image placeholder tokens
            start = pad + 8
            ids[row, start : start + prefill // 4] = config.image_token_id
    decode = torch.randint(1000, text.vocab_size - 1000, (batch, 1024), generator=gen)
    return ids.to(device), mask.to(device), decode.to(device)


def soft_spec(config: Any, layers: int) -> Any:
    """Soft intervention on 8 domain experts per middle-band layer (the 0.25-0.75 default band), λ = 1."""
    from rd_eval.routing.spec import ExpertSet, InterventionSpec, LayerBand, LayerExperts

    band = LayerBand().resolve(layers)
    top_k = config.text_config.num_experts_per_tok
    experts = ExpertSet(model="Qwen/Qwen3-VL-30B-A3B-Instruct (benchmark stack)", kind="domain",
                        layers=tuple(LayerExperts(layer, tuple(range(3, 3 + 2 * top_k, 2))) for layer in band))
    return InterventionSpec(experts=experts, mode="soft", strength=1.0)


def _sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def _clock(device: str) -> tuple[float, float]:
    """(wall, process CPU time of all threads) after the device has finished its queued work."""
    _sync(device)
    return time.perf_counter(), time.process_time()


def timed_session_class() -> type:
    """rd-eval's RoutingSession with a clock around each of its hooks (the layout pre-hook, which also counts the
    tokens, and each router hook, which steers, reroutes, records and, at the last layer, runs the batched
    accumulation): the time spent inside rd-eval's code, a low-noise cross-check of the A/B ratio."""
    from rd_eval.routing.session import RoutingSession

    class TimedSession(RoutingSession):
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            self.hook_wall = 0.0
            self.hook_cpu = 0.0

        def _timed(self, call: Callable[..., Any], *args: Any) -> Any:
            wall, cpu = time.perf_counter(), time.process_time()
            try:
                return call(*args)
            finally:
                self.hook_wall += time.perf_counter() - wall
                self.hook_cpu += time.process_time() - cpu

        def _read_layout(self, module: nn.Module, args: tuple, kwargs: dict) -> None:
            return self._timed(super()._read_layout, module, args, kwargs)

        def _router_hook(self, site: Any, expert_mask: torch.Tensor | None) -> Callable[..., Any]:
            inner = super()._router_hook(site, expert_mask)
            return lambda router, args, output: self._timed(inner, router, args, output)

    return TimedSession


class Stream:
    """One variant's generation: its own KV cache and mask, and (for record / intervene) its own routing session,
    installed only around its own forward calls, so that the three variants can advance in lockstep."""

    def __init__(self, variant: str, model: TextStack, inputs: tuple[torch.Tensor, ...], spec: Any,
                 sites: list[Any]) -> None:
        from transformers.cache_utils import DynamicCache

        from rd_eval.routing.recording import RoutingRecorder
        from rd_eval.routing.session import model_family

        self.variant = variant
        self.model = model
        self.ids, self.mask, self.next_tokens = inputs
        self.cache = DynamicCache(config=model.language_model.config)
        self.session: Any = None
        if variant != "none":  # what routing_session() builds, kept open across the interleaved calls
            device = next(model.parameters()).device
            recorder = RoutingRecorder(len(sites), max(site.num_experts for site in sites), device,
                                       probabilities=model_family(model).math.probabilities)
            self.session = timed_session_class()(model, sites, recorder, spec if variant == "intervene" else None)
            batch = int(self.ids.shape[0])
            self.session.begin(batch, stop_token_ids=[int(model.config.text_config.eos_token_id)])

    def forward(self, step: int | None, device: str) -> tuple[float, float]:
        """Prefill (step None) or one decode step; (wall s, CPU s) of the model call alone."""
        if step is None:
            ids = self.ids
        else:
            self.mask = torch.cat([self.mask, self.mask.new_ones((self.mask.shape[0], 1))], dim=1)
            ids = self.next_tokens[:, step : step + 1]
        if self.session is not None:
            self.session.install()
        try:
            wall, cpu = _clock(device)
            self.model(input_ids=ids, attention_mask=self.mask, past_key_values=self.cache)
            wall_end, cpu_end = _clock(device)
        finally:
            if self.session is not None:
                self.session.remove()
        return wall_end - wall, cpu_end - cpu

    def write_records(self, shard_dir: Path, device: str) -> tuple[float, float]:
        """The adapter's per-batch work after generate: finish_batch, records, shard append (fsynced)."""
        from rd_eval.routing.records import DocIdentity, document_record
        from rd_eval.routing.shards import ShardWriter

        if self.session is None:
            return 0.0, 0.0
        wall, cpu = _clock(device)
        routing = self.session.finish_batch().routing  # as the adapter: the intervention's effect rides along
        records = [document_record(DocIdentity("bench_img", row, "img"), routing, row, model="bench",
                                   intervention_hash=self.variant) for row in range(routing.batch_size)]
        ShardWriter(shard_dir, 0).append(records)
        wall_end, cpu_end = _clock(device)
        return wall_end - wall, cpu_end - cpu


def run_batch(model: TextStack, inputs: tuple[torch.Tensor, ...], decode_steps: int, device: str, spec: Any,
              sites: list[Any], shard_dir: Path, rotation: int) -> dict[str, dict[str, Any]]:
    """One batch of each variant, advanced call by call in rotating order (prefill of each, then step 0 of
    each, ...), so that a burst of load on the machine hits all three alike. Per variant: seconds of prefill,
    decode, records and their total (wall_* and cpu_*), and each decode step's (wall, cpu)."""
    streams = {v: Stream(v, model, inputs, spec, sites) for v in VARIANTS}
    times: dict[str, dict[str, Any]] = {v: {"prefill": (0.0, 0.0), "steps": []} for v in VARIANTS}
    with torch.inference_mode():
        for index, step in enumerate([None, *range(decode_steps)]):
            shift = (rotation + index) % len(VARIANTS)
            for variant in VARIANTS[shift:] + VARIANTS[:shift]:
                took = streams[variant].forward(step, device)
                if step is None:
                    times[variant]["prefill"] = took
                else:
                    times[variant]["steps"].append(took)
        for variant in VARIANTS:
            times[variant]["records"] = streams[variant].write_records(shard_dir, device)
    out: dict[str, dict[str, Any]] = {}
    for variant, t in times.items():
        phases = {"prefill": t["prefill"], "decode": tuple(map(sum, zip(*t["steps"], strict=True))) if t["steps"]
                  else (0.0, 0.0), "records": t["records"]}
        row: dict[str, Any] = {}
        for m, metric in enumerate(("wall", "cpu")):
            for name, value in phases.items():
                row[f"{metric}_{name}"] = value[m]
            row[f"{metric}_total"] = sum(value[m] for value in phases.values())
        session = streams[variant].session
        row["wall_in_hooks"] = session.hook_wall if session is not None else 0.0
        row["cpu_in_hooks"] = session.hook_cpu if session is not None else 0.0
        row["steps"] = t["steps"]
        out[variant] = row
    return out


def measure(*, layers: int, batch: int, prefill: int, decode_steps: int, repeats: int, device: str,
            dtype: torch.dtype, log: Callable[[str], None], metric: str = "wall",
            text_overrides: dict[str, Any] | None = None) -> dict[str, Any]:
    from rd_eval.routing.sites import find_router_sites

    t0 = time.perf_counter()
    model = build_model(layers, device, dtype, text_overrides=text_overrides)
    build_seconds = time.perf_counter() - t0
    sites = find_router_sites(model)
    inputs = make_inputs(model.config, batch, prefill, device)
    spec = soft_spec(model.config, layers)
    shard_dir = Path(tempfile.mkdtemp(prefix="rd_hook_bench_"))
    samples: dict[str, list[dict[str, Any]]] = {v: [] for v in VARIANTS}
    try:
        # Warm-up: first touch of every weight page, the allocator, kernel selection.
        run_batch(model, inputs, min(decode_steps, 4), device, spec, sites, shard_dir, 0)
        for repeat in range(repeats):
            batch_times = run_batch(model, inputs, decode_steps, device, spec, sites, shard_dir, repeat)
            for variant in VARIANTS:
                samples[variant].append(batch_times[variant])
            base = batch_times["none"]
            log(f"  repeat {repeat}: none {base['wall_total']:.3f} s wall / {base['cpu_total']:.3f} s CPU; "
                + ", ".join(f"{v} x{batch_times[v]['wall_total'] / base['wall_total']:.4f} wall "
                            f"x{batch_times[v]['cpu_total'] / base['cpu_total']:.4f} CPU" for v in VARIANTS[1:]))
    finally:
        shutil.rmtree(shard_dir, ignore_errors=True)

    def ratio(variant: str, key: str) -> float:
        return median([s[key] / b[key] for s, b in zip(samples[variant], samples["none"], strict=True)]) - 1.0

    def step_ratio(variant: str, m: int) -> float:
        pairs = [(a[m], b[m]) for s, base in zip(samples[variant], samples["none"], strict=True)
                 for a, b in zip(s["steps"], base["steps"], strict=True)]
        return median([a / b for a, b in pairs]) - 1.0 if pairs else float("nan")

    phases = ("total", "prefill", "decode")
    overheads: dict[str, Any] = {m: {v: {p: round(ratio(v, f"{m}_{p}"), 5) for p in phases} for v in VARIANTS[1:]}
                                 for m in ("wall", "cpu")}
    for m, metric_name in enumerate(("wall", "cpu")):
        for v in VARIANTS[1:]:
            overheads[metric_name][v]["decode_step_median"] = round(step_ratio(v, m), 5)
    # Direct measure: time inside rd-eval's hooks plus the record writing, over the no-hook batch time.
    direct = {m: {v: round(median([(s[f"{m}_in_hooks"] + s[f"{m}_records"]) / b[f"{m}_total"]
                                   for s, b in zip(samples[v], samples["none"], strict=True)]), 5)
                  for v in VARIANTS[1:]} for m in ("wall", "cpu")}
    keys = [k for k in samples["none"][0] if k != "steps"]
    return {
        "in_hook_share": direct,
        "record_overhead": overheads[metric]["record"]["total"],
        "intervene_overhead": overheads[metric]["intervene"]["total"],
        "metric": metric,
        "overheads": overheads,
        "median_seconds": {v: {k: round(median([s[k] for s in samples[v]]), 4) for k in keys} for v in VARIANTS},
        "targets": {"cpu": 0.03, "gpu_bf16": 0.02},
        "settings": {"config": str(QWEN3_VL_30B_CONFIG.relative_to(QWEN3_VL_30B_CONFIG.parents[2])),
                     "source": "Qwen/Qwen3-VL-30B-A3B-Instruct",
                     "layers": layers, "batch": batch, "prefill_tokens": prefill, "decode_steps": decode_steps,
                     "repeats": repeats, "device": device, "dtype": str(dtype).replace("torch.", ""),
                     "torch_threads": torch.get_num_threads(), "band_layers": list(spec.band.resolve(layers)),
                     "build_seconds": round(build_seconds, 1)},
        "samples": {v: [{k: round(x, 5) for k, x in s.items() if k != "steps"} for s in samples[v]]
                    for v in VARIANTS},
        "load_average": load_average(),
    }


def table(result: dict[str, Any]) -> str:
    seconds, overheads = result["median_seconds"], result["overheads"]

    def pct(value: float) -> str:
        return f"{100 * value:+.2f}%"

    rows = []
    for v in VARIANTS:
        row: list[Any] = [v, seconds[v]["wall_total"], seconds[v]["cpu_total"], seconds[v]["wall_prefill"],
                          seconds[v]["wall_decode"], seconds[v]["wall_records"]]
        if v == "none":
            row += [None] * 5
        else:
            metric = result["metric"]
            row += [pct(overheads["wall"][v]["total"]), pct(overheads["cpu"][v]["total"]),
                    pct(overheads[metric][v]["prefill"]), pct(overheads[metric][v]["decode_step_median"]),
                    pct(result["in_hook_share"][metric][v])]
        rows.append(row)
    return format_table(["variant", "batch s (wall)", "batch s (CPU)", "prefill s", "decode s", "records s",
                         "overhead wall", "overhead CPU", f"prefill ovh ({result['metric']})",
                         f"decode step ovh ({result['metric']})", "in rd-eval code"], rows)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="2 layers, prefill 128, 16 decode steps")
    parser.add_argument("--layers", type=int, default=None, help="decoder layers (default 4, quick 2)")
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--prefill", type=int, default=None, help="prompt tokens per row (default 512, quick 128)")
    parser.add_argument("--decode", type=int, default=None, help="decode steps (default 64, quick 16)")
    parser.add_argument("--repeats", type=int, default=None, help="interleaved repeats (default 9, quick 9)")
    parser.add_argument("--device", default=None, help="default: cuda when available, else cpu")
    parser.add_argument("--dtype", choices=("float32", "bfloat16"), default=None,
                        help="default: bfloat16 on a GPU, float32 on a CPU")
    parser.add_argument("--threads", type=int, default=None,
                        help="torch intra-op threads (default: 1 on a CPU, torch's default on a GPU; 0 = torch's)")
    parser.add_argument("--metric", choices=("wall", "cpu"), default=None,
                        help="time the headline figures use: wall (default on a GPU) or process CPU time (default "
                             "on a CPU, where other processes' load swings wall time far more than 3%%)")
    parser.add_argument("--json", default=None, help="write the figures here")
    args = parser.parse_args(argv)
    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    dtype = {"bfloat16": torch.bfloat16, "float32": torch.float32}.get(
        args.dtype or ("bfloat16" if device.startswith("cuda") else "float32"))
    assert dtype is not None
    threads = args.threads if args.threads is not None else (0 if device.startswith("cuda") else 1)
    if threads > 0:
        torch.set_num_threads(threads)
    metric = args.metric or ("wall" if device.startswith("cuda") else "cpu")
    result = measure(
        metric=metric,
        layers=args.layers or (2 if args.quick else 4), batch=args.batch,
        prefill=args.prefill or (128 if args.quick else 512), decode_steps=args.decode or (16 if args.quick else 64),
        repeats=args.repeats or 9, device=device, dtype=dtype,
        log=lambda line: print(line, file=sys.stderr),
    )
    return publish(result, table, args.json)


if __name__ == "__main__":
    main()
