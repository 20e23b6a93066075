"""ERNIE-4.5-VL (ernie4_5_vl_moe): modality-isolated experts.

Each MoE layer (`mlp_layer_types[i] == "sparse"`) has a text router (`mlp.text_moe.gate`) and a vision router
(`mlp.vision_moe.gate`), plus always-on shared experts. `Ernie4_5_VLMoeMoeBlock` splits the flattened [B*T]
tokens by the boolean `moe_mm_token_type_ids` (the processor marks image/video placeholders AND their
start/end markers): text tokens go to the text router, vision tokens to the vision router, each in original
(row-major) order. When no token is a vision token (text-only batches, every decode step: generate drops
the ids after the prefill) all tokens go to the text router. `image_token_attrs` below lists the same six
config ids, so the session's text-first/vision-second layout is exactly the block's own split.

Math (`Ernie4_5_VLMoeMoeTopKRouter`, autocast off): float32 logits; probs = softmax; selection = top-k of
probs + e_score_correction_bias (`moe_statics`); weights = the unbiased probs at the selected experts
/ clamp(their sum, min=moe_norm_min), cast to the hidden dtype.
"""

from __future__ import annotations

from contextlib import AbstractContextManager, nullcontext
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from rd_eval.routing.families import FamilyRouting
from rd_eval.routing.routers import RouterMath


def _autocast_off(device_type: str) -> AbstractContextManager[Any]:
    """The router computes its logits with autocast disabled; so must we, or an outer autocast would make
    the recomputed logits bf16 and unsteered re-selection inexact."""
    if torch.amp.is_autocast_available(device_type) and torch.is_autocast_enabled(device_type):
        return torch.autocast(device_type, enabled=False)
    return nullcontext()


class SoftmaxBiasSelectTopK(RouterMath):
    """Ernie4_5_VLMoeMoeTopKRouter: output (router_logits fp32, routing_weights, selected_experts)."""

    name = "softmax_bias_select_topk"

    def logits(self, router: nn.Module, hidden: torch.Tensor) -> torch.Tensor:
        with _autocast_off(hidden.device.type):
            return F.linear(hidden.float(), router.weight.float())

    def probabilities(self, logits: torch.Tensor) -> torch.Tensor:
        return F.softmax(logits, dim=1, dtype=torch.float)

    def selection(self, output: Any, router: nn.Module) -> torch.Tensor:
        return output[2]

    @staticmethod
    def _select_from_probs(router: nn.Module, probs: torch.Tensor, pin: torch.Tensor | None) -> torch.Tensor:
        choice = router.moe_statics(probs)  # + e_score_correction_bias: the selection-only bias
        if pin is not None:
            # Beyond any prob + bias: pinned experts win, pinned-out ones lose; unpinned rows are unchanged.
            choice = choice + pin * (choice.abs().amax(dim=-1, keepdim=True) * 2.0 + 2.0)
        return torch.topk(choice, int(router.top_k), dim=-1)[1]

    def select(self, router: nn.Module, logits: torch.Tensor, pin: torch.Tensor | None = None) -> torch.Tensor:
        return self._select_from_probs(router, F.softmax(logits, dim=1, dtype=torch.float), pin)

    def reroute(self, router: nn.Module, selection_logits: torch.Tensor, weight_logits: torch.Tensor,
                output: Any, pin: torch.Tensor | None = None, unsteered: torch.Tensor | None = None) -> Any:
        probs = F.softmax(selection_logits, dim=1, dtype=torch.float)
        # With a pin, the free slots follow prob + bias of the UNSHIFTED logits: a softmax over the shifted
        # ones would rescale every other prob against the bias and re-rank them.
        ranked = self.ranking_logits(selection_logits, pin, unsteered)
        selected = self._select_from_probs(router, probs if ranked is selection_logits else
                                           F.softmax(ranked, dim=1, dtype=torch.float), pin)
        weight_probs = probs if weight_logits is selection_logits else F.softmax(weight_logits, dim=1,
                                                                                  dtype=torch.float)
        weights = torch.gather(weight_probs, dim=-1, index=selected)
        weights = weights / torch.clamp(weights.sum(dim=-1, keepdim=True), min=router.norm_min)
        return selection_logits.to(output[0].dtype), weights.to(output[1].dtype), selected


FAMILIES: dict[str, FamilyRouting] = {
    "ernie4_5_vl_moe": FamilyRouting(
        family="ernie4_5_vl_moe",
        router_classes=("Ernie4_5_VLMoeMoeTopKRouter",),
        math=SoftmaxBiasSelectTopK(),
        # Exactly the ids the processor's `create_moe_mm_token_type_ids` marks as vision for the MoE.
        image_token_attrs=("image_token_id", "video_token_id", "image_start_token_id", "image_end_token_id",
                           "video_start_token_id", "video_end_token_id"),
        groups=(("text_moe", "text"), ("vision_moe", "vision")),
    ),
}
