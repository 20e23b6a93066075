"""Qwen-style softmax top-k routers: Qwen3-VL-MoE, Qwen3.5-MoE, and InternVL3.5 with a Qwen3-MoE language model."""

from __future__ import annotations

from rd_eval.routing.families import FamilyRouting
from rd_eval.routing.routers import SoftmaxTopK

FAMILIES: dict[str, FamilyRouting] = {
    "qwen3_vl_moe": FamilyRouting(
        family="qwen3_vl_moe",
        router_classes=("Qwen3VLMoeTextTopKRouter",),
        math=SoftmaxTopK(),
    ),
    "qwen3_5_moe": FamilyRouting(
        family="qwen3_5_moe",
        router_classes=("Qwen3_5MoeTopKRouter",),  # the sigmoid-gated shared expert is not routed
        math=SoftmaxTopK(),
    ),
    "internvl": FamilyRouting(
        family="internvl_moe",
        router_classes=("Qwen3MoeTopKRouter",),  # renormalises only when norm_topk_prob (SoftmaxTopK reads it)
        math=SoftmaxTopK(),
        image_token_attrs=("image_token_id",),
        text_model_types=("qwen3_moe",),
    ),
}
