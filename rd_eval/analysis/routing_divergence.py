"""Routing divergence of one setting per benchmark and site, as plain data (the report's ``routing`` section).

Input: a setting's samples (:func:`rd_eval.lmms.runs.load_paired_samples` rows) and its routing records by
(task, doc_id) (:meth:`rd_eval.reports.catalogue.RunCatalogue.records`). Per benchmark:

- ``layers``: per routing site, the mean over pairs of the JSD (bits) between the pair's image-form and
  text-twin selection distributions in the chosen token scope, with a bootstrap CI over pairs. Sites are the
  rows of the records' site table (:mod:`rd_eval.routing.site_table`): one per MoE layer for most families;
  where they are not (ERNIE-4.5-VL: a text and a vision router per layer; a dense layer before the MoE
  layers), each site also names its MoE layer, group and decoder layer, the band is taken over MoE layers
  (every group of a band layer), and a group's sites that no pair routes in both forms (ERNIE's vision
  router never sees a text twin) are shown without a pair JSD instead of dropping every pair;
- ``correlation``: point-biserial r and p between a pair's middle-band JSD (mean over the sites of the
  band 0.25-0.75 of the MoE layers) and its image-form correctness;
- ``separation``: per site, the JSD between the pooled ``prompt_image`` and pooled ``prompt_text``
  selection distributions of the benchmark's image-form documents, i.e. how differently image tokens
  and text tokens are routed at that layer (independent of the scope).

Pairs used are those of the gap table (both forms present and scored, no error) whose two documents both have a
routing record with selections in the scope; the others are counted, not guessed. Records that cannot be read
raise :class:`RoutingDataError` naming the folder, task and doc_id.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from rd_eval.analysis.divergence import (
    band_sites,
    divergence_correctness_correlation,
    jsd_base2,
    layer_summary,
    modality_separation,
)
from rd_eval.analysis.gaps import pair_forms
from rd_eval.routing.records import record_site_table
from rd_eval.routing.site_table import SiteTable
from rd_eval.vocabulary.scopes import SCOPE_MEMBERS
from rd_eval.vocabulary.task_names import benchmark_of

__all__ = ["BAND_FRACTIONS", "LEVEL", "RoutingDataError", "benchmark_routing", "scope_counts", "setting_routing"]

BAND_FRACTIONS = (0.25, 0.75)
LEVEL = 0.95
PAIR_CHUNK = 256  # pairs whose [sites, experts] counts are held at once for the vectorised JSD

RecordIndex = Mapping[tuple[str, int], tuple[Mapping[str, Any], Path]]
BootWeights = dict[tuple[int, int, int], list[np.ndarray]]


class RoutingDataError(ValueError):
    """Routing records that cannot be compared; the message names the folder, record and what is valid."""


def _scope_array(counts: Mapping[str, Any], scope: str, where: str) -> np.ndarray:
    """One base scope's [sites, experts] counts, validated (not copied where it already is a count array)."""
    if scope not in counts:
        raise RoutingDataError(f"{where}: 'counts' lacks scope {scope!r}; has {sorted(counts)}")
    value = counts[scope]
    if isinstance(value, np.ndarray) and value.dtype.kind == "u" and value.ndim == 2 and value.size:
        return value  # sidecar arrays (records version 2): unsigned integers are finite and non-negative by type
    try:
        arr = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError):
        raise RoutingDataError(f"{where}: 'counts.{scope}' must be a [sites][experts] array of numbers") from None
    if arr.ndim != 2 or arr.size == 0 or not np.isfinite(arr).all() or (arr < 0).any():
        raise RoutingDataError(
            f"{where}: 'counts.{scope}' must be a non-empty [sites][experts] array of non-negative counts, "
            f"got shape {arr.shape}"
        )
    return arr


def scope_counts(record: Mapping[str, Any], scopes: Iterable[str], where: str) -> np.ndarray:
    """The record's counts summed over `scopes` (base scopes), as a new float64 [sites, experts] array."""
    counts = record.get("counts")
    if not isinstance(counts, Mapping):
        raise RoutingDataError(f"{where}: 'counts' must be an object keyed by base scope, got {type(counts).__name__}")
    names = tuple(scopes)
    arrays = [_scope_array(counts, scope, where) for scope in names]
    for scope, arr in zip(names[1:], arrays[1:], strict=True):
        if arr.shape != arrays[0].shape:
            raise RoutingDataError(f"{where}: 'counts.{scope}' has shape {arr.shape}, other scopes {arrays[0].shape}")
    if len(arrays) == 1:
        return arrays[0].astype(np.float64)  # a copy: never hand out the record's own array
    total = np.add(arrays[0], arrays[1], dtype=np.float64)  # one pass, whatever the stored dtype
    for arr in arrays[2:]:
        total += arr
    return total


def _nan_to_none(x: float) -> float | None:
    return None if x is None or not math.isfinite(x) else float(x)


def _pair_jsd_chunks(
    pairs: Iterable[tuple[np.ndarray | None, np.ndarray | None, int]],
) -> Iterable[tuple[np.ndarray, list[int], int]]:
    """Per chunk of pairs with records in both forms: (JSD [pairs, sites], image correctness, pairs without
    a record). Memory is bounded by PAIR_CHUNK, not by the number of pairs."""
    img_chunk: list[np.ndarray] = []
    txt_chunk: list[np.ndarray] = []
    correct: list[int] = []
    no_record = 0
    for img, txt, img_correct in pairs:
        if img is None or txt is None:
            no_record += 1
            continue
        img_chunk.append(img)
        txt_chunk.append(txt)
        correct.append(img_correct)
        if len(img_chunk) == PAIR_CHUNK:
            yield np.asarray(jsd_base2(np.stack(img_chunk), np.stack(txt_chunk))), correct, no_record
            img_chunk, txt_chunk, correct, no_record = [], [], [], 0
    if img_chunk or no_record:
        jsd = np.asarray(jsd_base2(np.stack(img_chunk), np.stack(txt_chunk))) if img_chunk else np.zeros((0, 0))
        yield jsd, correct, no_record


class _BenchmarkCounts:
    """Reads a benchmark's records: counts in given scopes, checking that every record has the same layout."""

    def __init__(self, index: RecordIndex) -> None:
        self.index = index
        self.shape: tuple[int, int] | None = None
        self.shape_where = ""
        self.table: SiteTable | None = None  # what the site rows are: the records' site table (old: row = layer)

    def of(self, key: tuple[str, int], scopes: Iterable[str]) -> np.ndarray | None:
        hit = self.index.get(key)
        if hit is None or hit[0].get("error") is not None or hit[0].get("counts") is None:
            return None
        record, folder = hit
        where = f"{folder}: record task {key[0]!r} doc_id {key[1]}"
        arr = scope_counts(record, scopes, where)
        try:
            own = record_site_table(record, arr.shape[0], where)
        except ValueError as exc:
            raise RoutingDataError(str(exc)) from None
        if self.shape is None:
            self.shape, self.shape_where, self.table = arr.shape, where, own
        elif arr.shape != self.shape:
            raise RoutingDataError(
                f"{where}: counts have [sites, experts] {list(arr.shape)} but {self.shape_where} has "
                f"{list(self.shape)}; were records of different models mixed in one routing folder?"
            )
        elif self.table is not None and not self.table.same_layout(own):
            raise RoutingDataError(f"{where}: its site table differs from that of {self.shape_where}; were records "
                                   f"of different models mixed in one routing folder?")
        elif self.table is not None and self.table.legacy:
            self.table = own  # a recorded table says more than an old record's row = layer
        return arr


def benchmark_routing(
    benchmark: str,
    part: pd.DataFrame,
    index: RecordIndex,
    *,
    scope: str,
    n_boot: int,
    seed: int,
    boot_weights: BootWeights | None = None,
) -> dict[str, Any] | None:
    """One benchmark's routing divergence (module doc), or None when none of its documents has a record."""
    paired, _ = pair_forms(part)
    where_doc: dict[tuple[str, str], tuple[str, int]] = {}
    for task, doc_id, form, pair_id in zip(part["task"], part["doc_id"], part["form"], part["pair_id"], strict=True):
        where_doc[(str(pair_id), str(form))] = (str(task), int(doc_id))
    counts = _BenchmarkCounts(index)
    members = SCOPE_MEMBERS[scope]

    def pair_counts() -> Iterable[tuple[np.ndarray | None, np.ndarray | None, int]]:
        for pair_id, img_correct in zip(paired.index, paired["img"], strict=True):
            img = counts.of(where_doc[(str(pair_id), "img")], members)
            txt = counts.of(where_doc[(str(pair_id), "txt")], members)
            yield img, txt, int(img_correct)

    all_rows: list[np.ndarray] = []
    all_correct: list[int] = []
    no_record = 0
    for jsd, correct, missing in _pair_jsd_chunks(pair_counts()):
        no_record += missing
        all_rows.extend(jsd)
        all_correct.extend(correct)

    # Separation pools every image-form document's counts: running sums, not a stack of all documents.
    image_total: np.ndarray | None = None
    text_total: np.ndarray | None = None
    n_separation = 0
    img_rows = part[(part["form"] == "img")]
    for task, doc_id in zip(img_rows["task"], img_rows["doc_id"], strict=True):
        key = (str(task), int(doc_id))
        image_counts = counts.of(key, ("prompt_image",))
        text_counts = counts.of(key, ("prompt_text",))
        if image_counts is not None and text_counts is not None:
            image_total = image_counts if image_total is None else image_total + image_counts
            text_total = text_counts if text_total is None else text_total + text_counts
            n_separation += 1

    shape, table = counts.shape, counts.table
    if shape is None or table is None:
        return None
    n_sites = shape[0]
    band = band_sites(n_sites, BAND_FRACTIONS, table)
    # The sites a pair is compared on: all of them, but for a model with expert groups, not a group's sites that
    # no pair routes in both forms (ERNIE's vision router never sees a text twin: its JSD is undefined for every
    # pair, which would otherwise drop every pair).
    jsd_all = np.stack(all_rows) if all_rows else np.zeros((0, n_sites))
    compared = list(range(n_sites))
    if table.grouped and len(jsd_all):
        compared = [c for c in compared if np.isfinite(jsd_all[:, c]).any()] or compared
    finite = np.isfinite(jsd_all[:, compared]).all(axis=1)
    no_mass = int((~finite).sum())
    rows = list(jsd_all[finite][:, compared])
    img_correct = [c for c, ok in zip(all_correct, finite, strict=True) if ok]
    separation = (
        modality_separation(image_total, text_total) if image_total is not None and text_total is not None
        else np.full(n_sites, np.nan)
    )
    stacked = np.stack(rows) if rows else None
    summary = (layer_summary(stacked, n_boot, seed, level=LEVEL, weights_cache=boot_weights)
               if stacked is not None else None)
    column = {site: i for i, site in enumerate(compared)}
    plain = table.is_plain
    layers = []
    for site in range(n_sites):
        at = column.get(site)
        shown = summary is not None and at is not None
        layers.append({
            "site": site,
            "in_band": site in band,
            "jsd_mean": summary.mean[at] if shown else None,
            "ci_low": summary.ci_low[at] if shown else None,
            "ci_high": summary.ci_high[at] if shown else None,
            "separation": _nan_to_none(float(separation[site])),
        } | ({} if plain else {"moe_layer": table.rows[site].moe_index, "group": table.rows[site].group,
                                "decoder_layer": table.rows[site].layer}))
    correlation: dict[str, Any] | None = None
    mid_cols = [column[site] for site in band if site in column]
    if stacked is not None and mid_cols:
        mid = stacked[:, mid_cols].mean(axis=1)
        corr = divergence_correctness_correlation(mid, np.asarray(img_correct))
        correlation = {
            "n": corr.n, "n_img_correct": corr.n_correct, "r": _nan_to_none(corr.r), "p": _nan_to_none(corr.p),
            "mid_band_jsd_mean": float(mid.mean()),
        }
    return {
        "benchmark": benchmark,
        "n_sites": n_sites,
        "n_experts": shape[1],
        "band_sites": list(band),
        **({} if plain else {"n_moe_layers": table.num_moe_layers, "groups": list(table.groups),
                             "pair_sites": compared}),
        "n_pairs": len(rows),
        "n_pairs_without_record": no_record,
        "n_pairs_without_scope_tokens": no_mass,
        "n_separation_docs": n_separation,
        "layers": layers,
        "correlation": correlation,
    }


def setting_routing(
    samples: pd.DataFrame, index: RecordIndex, *, scope: str, n_boot: int, seed: int,
    boot_weights: BootWeights | None = None,
) -> list[dict[str, Any]]:
    """:func:`benchmark_routing` of every benchmark of a setting's samples that has routing records.

    ``boot_weights``: a dict the caller keeps across settings (see :func:`rd_eval.analysis.divergence.layer_summary`).
    """
    benchmarks = []
    bench = samples["task"].astype(str).map(benchmark_of)
    for name, part in samples.groupby(bench, sort=True):
        result = benchmark_routing(str(name), part, index, scope=scope, n_boot=n_boot, seed=seed,
                                   boot_weights=boot_weights)
        if result is not None:
            benchmarks.append(result)
    return benchmarks
