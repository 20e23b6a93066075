"""An intervention spec checked against the model it will steer, before any generation.

A spec is valid on its own (`rd_eval.routing.spec`) yet may be impossible on a given model: a layer or an
expert the model lacks, an expert group its routers do not have, experts named outside the band (never
steered), more experts forced than the router selects, or a suppression that leaves fewer than top-k. Each is a
`SpecError` naming the spec, the layer, the count and k; nothing is ignored, truncated or silently skipped.
"""

from __future__ import annotations

from collections.abc import Sequence

from rd_eval.routing.sites import RouterSite
from rd_eval.routing.spec import InterventionSpec, SpecError

__all__ = ["validate_intervention"]


def _layer_name(moe: int, group: str) -> str:
    return f"layer {moe}" + (f" ({group} experts)" if group else "")


def _groups_text(groups: set[str]) -> str:
    named = sorted(g for g in groups if g)
    return ", ".join(repr(g) for g in named) if named else "none"


def _check_groups(by_key: dict[tuple[int, str], tuple[int, ...]], sites_by_key: dict[tuple[int, str], RouterSite],
                  groups_of_layer: dict[int, set[str]]) -> None:
    for moe, group in sorted(by_key):
        if (moe, group) in sites_by_key:
            continue
        have = groups_of_layer[moe]
        if not group:
            raise SpecError(f"layer {moe}: experts without a group, but this layer routes by expert group "
                            f"({_groups_text(have)}); set \"group\" on each layer of the expert set")
        if have == {""}:
            raise SpecError(f"layer {moe}: expert group {group!r}, but this model's routers have no expert groups; "
                            "drop \"group\" from the expert set")
        raise SpecError(f"layer {moe}: expert group {group!r} not in this layer; its groups: {_groups_text(have)}")


def _problems(spec: InterventionSpec, sites: Sequence[RouterSite]) -> None:
    num_layers = 1 + max(site.moe_index for site in sites)
    band = spec.band.resolve(num_layers)  # explicit band layers beyond the model raise here
    by_key = spec.experts.experts_by_site_key()
    beyond = sorted({moe for moe, _ in by_key if moe >= num_layers})
    if beyond:
        raise SpecError(f"expert set names MoE layers {beyond}; this model has MoE layers 0..{num_layers - 1}")
    sites_by_key = {(site.moe_index, site.group): site for site in sites}
    groups_of_layer: dict[int, set[str]] = {}
    for site in sites:
        groups_of_layer.setdefault(site.moe_index, set()).add(site.group)
    _check_groups(by_key, sites_by_key, groups_of_layer)
    for key, experts in sorted(by_key.items()):
        size = sites_by_key[key].num_experts
        bad = [e for e in experts if e >= size]
        if bad:  # outside the band too: an expert set made for another model is an error, not a silent no-op
            raise SpecError(f"{_layer_name(*key)}: expert ids {bad} out of range; this model has experts "
                            f"0..{size - 1}")
    outside = sorted({moe for moe, _ in by_key if moe not in band})
    if outside:
        raise SpecError(f"expert set names MoE layers {outside} outside the band {spec.band.to_json()} "
                        f"(MoE layers {list(band)} of this model), where they would never be steered; "
                        "drop those layers or widen the band")
    for key, experts in sorted(by_key.items()):
        site = sites_by_key[key]
        count, k, size = len(experts), site.top_k, site.num_experts
        if spec.mode == "force" and count > k:
            raise SpecError(f"{_layer_name(*key)}: force names {count} experts {list(experts)} but the router "
                            f"selects top-{k}; at most {k} can be forced")
        if spec.mode == "suppress" and size - count < k:
            raise SpecError(f"{_layer_name(*key)}: suppress names {count} of the {size} experts, leaving "
                            f"{size - count} for top-{k}; at most {size - k} can be suppressed")


def validate_intervention(spec: InterventionSpec, sites: Sequence[RouterSite], *,
                          source: str = "intervention spec") -> None:
    """Raise `SpecError` ("<source>: <what is impossible>", one line) if `spec` cannot run as written on the
    model whose routing sites are `sites`; λ = 0 is checked too (a spec that fits no model is no no-op)."""
    if not sites:
        raise SpecError(f"{source}: the model has no routing sites to steer")
    try:
        _problems(spec, sites)
    except SpecError as exc:
        raise SpecError(f"{source}: {exc}") from None
