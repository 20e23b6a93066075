"""Router discovery: where a loaded MoE model routes, and with which math.

Hooks go on the router module (the gate), never on the experts: transformers 5.x swaps expert
implementations (eager / batched / grouped GEMM) but keeps the router a separate module.
"""

from __future__ import annotations

from dataclasses import dataclass

from torch import nn

from rd_eval.routing.families import FamilyRouting, UnsupportedModelError, family_routing, supported_families

__all__ = [
    "RouterSite",
    "UnsupportedModelError",
    "find_router_sites",
    "image_token_ids",
    "model_family",
    "supported_families",
]


@dataclass(frozen=True)
class RouterSite:
    """One MoE routing site of a loaded model."""

    moe_index: int  # position of its decoder layer in the model's MoE-layer list; bands and expert sets use it
    layer_index: int  # decoder layer index
    module_path: str
    family: str
    num_experts: int
    top_k: int
    math: str
    group: str = ""  # expert group of modality-isolated families ("text" / "vision"), else ""
    site_index: int = 0  # position in the site list (recording arrays are indexed by it)


def model_family(model: nn.Module) -> FamilyRouting:
    config = getattr(model, "config", None)
    spec = family_routing(getattr(config, "model_type", None))
    if spec.text_model_types:
        text_type = getattr(getattr(config, "text_config", None), "model_type", None)
        if text_type not in spec.text_model_types:
            raise UnsupportedModelError(
                f"{config.model_type} with a {text_type!r} language model is not a MoE model we can route; "
                f"supported language models: {', '.join(spec.text_model_types)}"
            )
    return spec


def _layer_index(module_path: str) -> int:
    parts = module_path.split(".")
    for before, part in zip(parts, parts[1:], strict=False):
        if before == "layers" and part.isdigit():
            return int(part)
    raise UnsupportedModelError(f"cannot tell the decoder layer of router {module_path!r}")


def find_router_sites(model: nn.Module) -> list[RouterSite]:
    """The model's MoE routing sites, ordered by decoder layer (and group within a layer).

    A model loaded with hub kernels (`use_kernels`) is accepted: kernels may or may not replace a MoE block's
    forward, so a routing session proves that the router hooks fire instead (`rd_eval.routing.firing`).
    """
    spec = model_family(model)
    found = [
        (_layer_index(path), spec.group_of(path), path, module)
        for path, module in model.named_modules()
        if type(module).__name__ in spec.router_classes
    ]
    if not found:
        raise UnsupportedModelError(
            f"no {'/'.join(spec.router_classes)} router found in this {spec.family} model; is it a MoE checkpoint?"
        )
    found.sort(key=lambda item: (item[0], item[1]))
    moe_layers = sorted({layer for layer, _, _, _ in found})
    sites = []
    for site_index, (layer, group, path, module) in enumerate(found):
        num_experts, top_k = spec.math.sizes(module)
        sites.append(RouterSite(moe_index=moe_layers.index(layer), layer_index=layer, module_path=path,
                                family=spec.family, num_experts=num_experts, top_k=top_k, math=spec.math.name,
                                group=group, site_index=site_index))
    return sites


def image_token_ids(model: nn.Module) -> tuple[int, ...]:
    """Ids of the placeholder tokens that carry image (or video) features in the language model."""
    spec = model_family(model)
    ids = (getattr(model.config, attr, None) for attr in spec.image_token_attrs)
    return tuple(int(i) for i in ids if isinstance(i, int))
