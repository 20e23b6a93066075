"""ERNIE-4.5-VL (ernie4_5_vl_moe): modality-isolated experts. Each MoE layer has a text router
(`mlp.text_moe.gate`) that sees only text tokens and a vision router (`mlp.vision_moe.gate`) that sees only
vision tokens (image/video placeholders AND their start/end markers, as the processor's
`moe_mm_token_type_ids` defines them), each in original token order.

Math: float32 logits; probs = softmax; selection = top-k of probs + e_score_correction_bias (`moe_statics`);
weights = the unbiased probs at the selected experts / clamp(their sum, min=moe_norm_min), in the hidden dtype.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from rd_eval.routing.families import FamilyRouting
from rd_eval.routing.routers import RouterMath


class SoftmaxBiasSelectTopK(RouterMath):
    """Ernie4_5_VLMoeMoeTopKRouter: output (router_logits, routing_weights, selected_experts)."""

    name = "softmax_bias_select_topk"

    def logits(self, router: nn.Module, hidden: torch.Tensor) -> torch.Tensor:
        return F.linear(hidden.float(), router.weight.float())

    def probabilities(self, logits: torch.Tensor) -> torch.Tensor:
        return F.softmax(logits, dim=1, dtype=torch.float)

    def selection(self, output: Any, router: nn.Module) -> torch.Tensor:
        return output[2]

    def reroute(self, router: nn.Module, selection_logits: torch.Tensor, weight_logits: torch.Tensor,
                output: Any, pin: torch.Tensor | None = None) -> Any:
        probs = F.softmax(selection_logits, dim=1, dtype=torch.float)
        choice = router.moe_statics(probs)
        if pin is not None:
            choice = choice + pin * (choice.abs().amax(dim=-1, keepdim=True) * 2.0 + 2.0)
        _, selected = torch.topk(choice, int(router.top_k), dim=-1)
        weight_probs = probs
        if weight_logits is not selection_logits:
            weight_probs = F.softmax(weight_logits, dim=1, dtype=torch.float)
        weights = torch.gather(weight_probs, dim=-1, index=selected)
        weights = weights / torch.clamp(weights.sum(dim=-1, keepdim=True), min=router.norm_min)
        return selection_logits.to(output[0].dtype), weights.to(output[1].dtype), selected


FAMILIES: dict[str, FamilyRouting] = {
    "ernie4_5_vl_moe": FamilyRouting(
        family="ernie4_5_vl_moe",
        router_classes=("Ernie4_5_VLMoeMoeTopKRouter",),
        math=SoftmaxBiasSelectTopK(),
        image_token_attrs=("image_token_id", "video_token_id", "image_start_token_id", "image_end_token_id",
                           "video_start_token_id", "video_end_token_id"),
        groups=(("text_moe", "text"), ("vision_moe", "vision")),
    ),
}
