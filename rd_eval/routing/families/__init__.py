"""The registry of routable model families.

Each family module defines `FAMILIES: dict[model_type, FamilyRouting]`; this registry only maps HF
`model_type`s to those modules, so a model's family is imported when it is used and nothing else is.
"""

from __future__ import annotations

from dataclasses import dataclass
from importlib import import_module
from types import MappingProxyType

from rd_eval.routing.routers import RouterMath


class UnsupportedModelError(ValueError):
    """The model is not a MoE family we can route, or is loaded in a way that bypasses router hooks."""


@dataclass(frozen=True)
class FamilyRouting:
    """How one model family routes."""

    family: str  # rd-eval's family id: model ids are rd_<family>, make-tiny takes it
    router_classes: tuple[str, ...]  # class names of its router modules
    math: RouterMath
    image_token_attrs: tuple[str, ...] = ("image_token_id", "video_token_id")
    # InternVL-style wrappers: the MoE lives in the language model, whose model_type must be one of these.
    text_model_types: tuple[str, ...] = ()
    # Modality-isolated experts (ERNIE-4.5-VL): (module-path fragment, expert group) pairs. A router whose
    # path contains the fragment sees only that modality's tokens, in their original order.
    groups: tuple[tuple[str, str], ...] = ()

    def group_of(self, module_path: str) -> str:
        for fragment, group in self.groups:
            if fragment in module_path:
                return group
        return ""


FAMILY_MODULES: MappingProxyType[str, str] = MappingProxyType(
    {
        "qwen3_vl_moe": "rd_eval.routing.families.qwen",
        "qwen3_5_moe": "rd_eval.routing.families.qwen",
        "internvl": "rd_eval.routing.families.qwen",
        "glm4v_moe": "rd_eval.routing.families.deepseek_style",
        "deepseek_v3": "rd_eval.routing.families.deepseek_style",
        "kimi_vl": "rd_eval.routing.families.deepseek_style",
        "ernie4_5_vl_moe": "rd_eval.routing.families.ernie",
        "llama4": "rd_eval.routing.families.llama4",
        "aria": "rd_eval.routing.families.aria",
    }
)


def _load(model_type: str) -> FamilyRouting | None:
    try:
        module = import_module(FAMILY_MODULES[model_type])
    except ModuleNotFoundError:
        return None
    return getattr(module, "FAMILIES", {}).get(model_type)


def supported_families() -> tuple[str, ...]:
    """HF model_types whose routing is implemented."""
    return tuple(sorted(t for t in FAMILY_MODULES if _load(t) is not None))


def family_routing(model_type: str | None) -> FamilyRouting:
    spec = _load(model_type) if model_type in FAMILY_MODULES else None
    if spec is None:
        raise UnsupportedModelError(
            f"model_type {model_type!r} is not a supported MoE family; supported: {', '.join(supported_families())}"
        )
    return spec
