"""Router discovery: where a loaded MoE model routes, and with which math.

Hooks go on the router module (the gate), never on the experts: transformers 5.x swaps expert
implementations (eager / batched / grouped GEMM) but keeps the router a separate module.
"""

from __future__ import annotations

from dataclasses import dataclass
from types import MappingProxyType

from torch import nn


class UnsupportedModelError(ValueError):
    """The model is not a MoE family we can route, or is loaded in a way that bypasses router hooks."""


@dataclass(frozen=True)
class FamilyRouting:
    """How one model family routes: which module is the router and how selection is computed."""

    family: str
    router_class: str  # class name of the router module
    math: str  # "softmax_topk_renorm": softmax over logits, top-k, weights renormalised to sum 1
    image_token_attr: tuple[str, ...]  # config attributes holding the ids of image/video placeholder tokens


# Keyed by the top-level HF `model_type`. Families are added here as their routing math is implemented.
FAMILIES: MappingProxyType[str, FamilyRouting] = MappingProxyType(
    {
        "qwen3_vl_moe": FamilyRouting(
            family="qwen3_vl_moe",
            router_class="Qwen3VLMoeTextTopKRouter",
            math="softmax_topk_renorm",
            image_token_attr=("image_token_id", "video_token_id"),
        ),
    }
)


@dataclass(frozen=True)
class RouterSite:
    """One MoE routing site of a loaded model."""

    moe_index: int  # position in the model's list of MoE layers (0-based); bands and expert sets use this
    layer_index: int  # decoder layer index
    module_path: str
    family: str
    num_experts: int
    top_k: int
    math: str


def supported_families() -> tuple[str, ...]:
    return tuple(sorted(FAMILIES))


def model_family(model: nn.Module) -> FamilyRouting:
    model_type = getattr(getattr(model, "config", None), "model_type", None)
    if model_type not in FAMILIES:
        raise UnsupportedModelError(
            f"model_type {model_type!r} is not a supported MoE family; supported: {', '.join(supported_families())}"
        )
    return FAMILIES[model_type]


def _layer_index(module_path: str) -> int:
    parts = module_path.split(".")
    for before, part in zip(parts, parts[1:], strict=False):
        if before == "layers" and part.isdigit():
            return int(part)
    raise UnsupportedModelError(f"cannot tell the decoder layer of router {module_path!r}")


def find_router_sites(model: nn.Module) -> list[RouterSite]:
    """The model's MoE routing sites, ordered by decoder layer."""
    if getattr(model, "use_kernels", False):
        raise UnsupportedModelError(
            "use_kernels=True is not supported: hub kernels replace the MoE forward and skip the router "
            "hooks, so routing could be neither recorded nor steered; load the model without use_kernels"
        )
    spec = model_family(model)
    sites: list[tuple[int, str, nn.Module]] = []
    for path, module in model.named_modules():
        if type(module).__name__ == spec.router_class:
            sites.append((_layer_index(path), path, module))
    if not sites:
        raise UnsupportedModelError(
            f"no {spec.router_class} router found in this {spec.family} model; is it a MoE checkpoint?"
        )
    sites.sort(key=lambda s: s[0])
    return [
        RouterSite(
            moe_index=i,
            layer_index=layer,
            module_path=path,
            family=spec.family,
            num_experts=int(module.num_experts),
            top_k=int(module.top_k),
            math=spec.math,
        )
        for i, (layer, path, module) in enumerate(sites)
    ]


def image_token_ids(model: nn.Module) -> tuple[int, ...]:
    """Ids of the placeholder tokens that carry image (or video) features in the language model."""
    spec = model_family(model)
    ids = (getattr(model.config, attr, None) for attr in spec.image_token_attr)
    return tuple(int(i) for i in ids if i is not None)
