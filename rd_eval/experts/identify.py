"""Expert identification (docs/design.md §3.4): selection frequencies on probe sets and the domain-expert rule.

Φ_l,i = fraction of the probe tokens whose top-k at MoE layer l contains expert i (pooled over the probe
set's tokens in the chosen scope). Domain experts: the top-N experts per band layer by
ΔΦ = Φ(domain text) − Φ(general text), keeping only ΔΦ > 0.

Φ and ΔΦ are arrays of site rows ``[S, E]``; the model's site table (:mod:`rd_eval.routing.site_table`) says
which MoE layer and expert group each row is. The band selects MoE layers, and every site of a band layer (both
the text and the vision router of an ERNIE layer) gets its own entry, named by (MoE layer, group). Without a
table, rows are taken as MoE layers (one router per layer), the meaning sets had before tables were recorded.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from importlib import resources
from typing import TYPE_CHECKING, Any

import numpy as np

from rd_eval.routing.site_table import SiteTable
from rd_eval.routing.spec import ExpertSet, LayerExperts
from rd_eval.vocabulary.scopes import SCOPE_MEMBERS

if TYPE_CHECKING:  # the statistics need no torch (probing a model: rd_eval.experts.pipeline)
    from rd_eval.routing.recording import BatchRouting


def general_probe_texts() -> list[str]:
    """rd-eval's embedded general-domain probe set (short everyday instructions, written for this project)."""
    text = resources.files("rd_eval.experts").joinpath("general_probe.txt").read_text(encoding="utf-8")
    return [line.strip() for line in text.splitlines() if line.strip()]


def selection_frequency(batches: Sequence[BatchRouting], token_scope: str = "prompt") -> np.ndarray:
    """Pooled Φ [L, E] over all documents of `batches` in `token_scope`."""
    if not batches:
        raise ValueError("selection_frequency needs at least one batch of routing statistics")
    counts: np.ndarray | float = 0.0
    tokens = 0.0
    for b in batches:
        scoped_counts, _, scoped_tokens = b.scoped(token_scope)  # one copy per batch, not one per sum
        counts = counts + scoped_counts.sum(axis=0)
        tokens += float(scoped_tokens.sum())
    if tokens <= 0:
        raise ValueError(f"no tokens in scope {token_scope!r}: cannot compute selection frequencies")
    return np.asarray(counts, dtype=np.float64) / tokens


def records_selection_frequency(records: Iterable[Mapping[str, Any]], token_scope: str = "prompt") -> np.ndarray:
    """Pooled Φ [L, E] of routing records (as `rd_eval.routing.shards.read_routing_records` yields them) in
    `token_scope`; error records (no statistics) are skipped. Streams: memory does not grow with the records."""
    if token_scope not in SCOPE_MEMBERS:
        raise ValueError(f"token scope {token_scope!r} invalid; valid: {', '.join(SCOPE_MEMBERS)}")
    members = SCOPE_MEMBERS[token_scope]
    counts: np.ndarray | None = None
    tokens = 0.0
    for record in records:
        if record.get("counts") is None or record.get("tokens") is None:
            continue
        for scope in members:
            block = np.asarray(record["counts"][scope], dtype=np.float64)
            if counts is None:
                counts = np.zeros_like(block)
            elif block.shape != counts.shape:
                raise ValueError(f"record {record.get('task')!r} doc {record.get('doc_id')}: counts of shape "
                                 f"{block.shape}, earlier records {counts.shape}")
            counts += block
            tokens += float(record["tokens"][scope])
    if counts is None or tokens <= 0:
        raise ValueError(f"no tokens in scope {token_scope!r}: cannot compute selection frequencies")
    return counts / tokens


def top_positive_experts(delta: np.ndarray, band: Sequence[int], top_n: int | None,
                         sites: SiteTable | None = None) -> tuple[LayerExperts, ...]:
    """Per site of each band MoE layer (band order; a layer's groups in row order): the `top_n` experts with the
    largest ΔΦ, keeping only ΔΦ > 0 (ties: lower id first). `delta` is [site rows, experts]; `sites` says what
    the rows are (None: row i is MoE layer i). `top_n` None: each site's own top-k (needs `sites`)."""
    if delta.ndim != 2:
        raise ValueError(f"delta must be [layers, experts], got shape {delta.shape}")
    if top_n is None and sites is None:
        raise ValueError("top_n None (each site's top-k) needs the site table")
    if top_n is not None and top_n < 1:
        raise ValueError(f"top_n must be >= 1, got {top_n}")
    table = sites if sites is not None else SiteTable.legacy_of(delta.shape[0])
    table.check_rows(delta.shape[0], "delta")
    layers = []
    for layer in band:
        if sites is None:
            site_rows = [table.rows[layer]]  # as before tables: a band index past the rows is an IndexError
        else:
            site_rows = list(table.rows_in((layer,)))
            if not site_rows:
                raise ValueError(f"band MoE layer {layer} is not in the site table (MoE layers "
                                 f"0..{table.num_moe_layers - 1})")
        for site in site_rows:
            row = delta[site.site]
            n = top_n if top_n is not None else site.top_k
            order = sorted(range(row.shape[0]), key=lambda e: (-row[e], e))[:n]
            chosen = [e for e in order if row[e] > 0]
            layers.append(LayerExperts(moe_index=int(site.moe_index), experts=tuple(int(e) for e in chosen),
                                       scores=tuple(float(row[e]) for e in chosen), group=site.group))
    return tuple(layers)


def _delta_expert_set(kind: str, statistic: str, plus: np.ndarray, minus: np.ndarray, names: tuple[str, str], *,
                      band: Sequence[int], top_n: int | None, model: str, method: dict[str, Any],
                      sites: SiteTable | None) -> ExpertSet:
    """The experts of ΔΦ = `plus` − `minus` ([site rows, experts]) with ΔΦ > 0, top-N per site of the band."""
    if plus.shape != minus.shape:
        raise ValueError(f"Φ shapes differ: {names[0]} {plus.shape} vs {names[1]} {minus.shape}")
    delta = plus - minus
    layers = top_positive_experts(delta, band, top_n, sites)
    return ExpertSet(model=model, kind=kind, layers=layers, sites=sites,
                     method={"statistic": statistic,
                             "top_n": top_n if top_n is not None else "top_k of each site",
                             "band_layers": [int(b) for b in band], **method,
                             # every site x expert, not only the chosen: what the report's heatmap draws
                             "delta_phi": np.round(delta, 6).tolist()})


def domain_expert_set(phi_domain: np.ndarray, phi_general: np.ndarray, *, band: Sequence[int], top_n: int | None,
                      model: str, method: dict[str, Any], sites: SiteTable | None = None) -> ExpertSet:
    """Domain experts of Φ arrays [site rows, experts]; with `sites`, the set records the site table (version 2)
    and names each entry by (MoE layer, group)."""
    return _delta_expert_set("domain", "delta_phi = phi(domain) - phi(general)", phi_domain, phi_general,
                             ("domain", "general"), band=band, top_n=top_n, model=model, method=method, sites=sites)


def visual_expert_set(phi_image: np.ndarray, phi_text: np.ndarray, *, band: Sequence[int], top_n: int | None,
                      model: str, method: dict[str, Any], sites: SiteTable | None = None) -> ExpertSet:
    """Visual experts: ΔΦ = Φ(image tokens) − Φ(text tokens), per site of the band layers."""
    return _delta_expert_set("visual", "delta_phi = phi(image tokens) - phi(text tokens), image-form probes",
                             phi_image, phi_text, ("image", "text"), band=band, top_n=top_n, model=model,
                             method=method, sites=sites)

