"""What a sweep shows while it runs: one line per finished setting with its headline numbers per benchmark (image
and text accuracy, gap, gain over the plain setting with its CI, flip rate), from the same analysis the demo uses
(:func:`rd_eval.analysis.gaps.compare_runs`, :func:`rd_eval.analysis.flips.flip_rates_by_benchmark`)."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from rd_eval.analysis.flips import flip_rates_by_benchmark
from rd_eval.analysis.gaps import compare_runs
from rd_eval.lmms.runs import RunRecord, load_paired_samples
from rd_eval.routing.shards import merge_routing_records

HEADLINE_N_BOOT = 2000  # the gain's CI on the progress line; the report has its own resamples


def _signed(value: float) -> str:
    return f"{value:+.1f}"


def _benchmark_text(name: str, row: Mapping[str, Any], *, against_plain: bool, flips: Mapping[str, Any] | None) -> str:
    """`against_plain`: the row compares the setting (intervened) with the plain run; else it is the setting's own
    (base). `flips`: the setting's flip rates by benchmark (None: a plain setting, which steers nothing)."""
    run = row["intervened"] if against_plain else row["base"]
    if run is None:
        return f"{name}: no complete pairs"
    parts = [f"img {run['acc_img']:.1f}", f"txt {run['acc_txt']:.1f}", f"gap {_signed(run['gap']['diff'])}"]
    effect = row.get("effect") if against_plain else None
    if effect is not None:
        gain = effect["gain"]
        parts.append(f"gain {_signed(gain['diff'])} [{_signed(gain['ci_low'])}, {_signed(gain['ci_high'])}]")
    if flips is not None:
        flip = flips.get(name)
        parts.append("flip –" if flip is None else f"flip {100 * flip:.1f}%")
    return f"{name} (n={run['n_pairs']}): " + ", ".join(parts)


def flip_rates(routing_dir: Path) -> dict[str, float | None]:
    """Per benchmark, the flip rate an intervened setting's routing shards record; empty when none do."""
    if not routing_dir.is_dir():
        return {}
    return flip_rates_by_benchmark(merge_routing_records(routing_dir), str(routing_dir)) or {}


def headline(run: RunRecord, plain: RunRecord | None, routing_dir: Path | None, *, seed: int = 0) -> str:
    """The numbers of one finished setting, benchmark by benchmark. `plain`: the plain setting's run, for the
    gain (None: the setting is plain itself, or the sweep has no plain setting). `routing_dir`: where an
    intervened setting's shards are (None: plain). Never raises for data it cannot pair: it says so instead."""
    against_plain = plain is not None and routing_dir is not None
    try:
        samples = load_paired_samples(run)
        if against_plain:
            table = compare_runs(load_paired_samples(plain), samples, n_boot=HEADLINE_N_BOOT, seed=seed)
        else:  # the setting's own accuracies and gap
            table = compare_runs(samples, None, n_boot=HEADLINE_N_BOOT, seed=seed)
        flips = flip_rates(routing_dir) if routing_dir is not None else None
    except ValueError as exc:
        return f"no headline numbers ({exc})"
    texts = [_benchmark_text(row["benchmark"], row, against_plain=against_plain, flips=flips)
             for row in table["rows"]]
    if routing_dir is not None and plain is None:
        texts.append("no plain setting to gain over")
    return "; ".join(texts) if texts else "no benchmark with both forms"
