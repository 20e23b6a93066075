"""DeepSeek-V3-style sigmoid routers: GLM-4.5V (glm4v_moe), DeepSeek-V3 (deepseek_v3) and Kimi-VL (kimi_vl,
remote code).

Scores are sigmoid(logits) in float32; the selection adds the router's `e_score_correction_bias` and is
restricted to the `topk_group` best of `n_group` expert groups (a group's score is the sum of its two best
biased scores); the routing weights are the UNBIASED scores at the selected experts, renormalised when
`norm_topk_prob`, times `routed_scaling_factor`.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from rd_eval.routing.families import FamilyRouting
from rd_eval.routing.routers import RouterMath


def group_limited_topk(choice: torch.Tensor, *, n_group: int, topk_group: int, top_k: int,
                       forced: torch.Tensor | None = None) -> torch.Tensor:
    """Expert ids [N, k]: top-k of `choice` among the experts of the `topk_group` best groups, plus the
    groups of any `forced` [N, E] expert (a forced expert must be selectable wherever it sits).

    The op sequence follows transformers' DeepseekV3TopkRouter exactly (unsorted top-k included), so that
    unsteered re-selection is bit-identical to the router's own."""
    num_tokens, num_experts = choice.shape
    group_scores = choice.view(num_tokens, n_group, num_experts // n_group).topk(2, dim=-1)[0].sum(dim=-1)
    group_idx = torch.topk(group_scores, k=topk_group, dim=-1, sorted=False)[1]
    group_mask = torch.zeros_like(group_scores)
    group_mask.scatter_(1, group_idx, 1)
    if forced is not None:
        forced_groups = forced.view(num_tokens, n_group, num_experts // n_group).amax(dim=-1)
        group_mask = torch.maximum(group_mask, forced_groups.to(group_mask.dtype))
    score_mask = group_mask.unsqueeze(-1).expand(-1, n_group, num_experts // n_group).reshape(-1, num_experts)
    masked = choice.masked_fill(~score_mask.bool(), float("-inf"))
    return torch.topk(masked, k=top_k, dim=-1, sorted=False)[1]


def sigmoid_bias_route(router: nn.Module, selection_logits: torch.Tensor, weight_logits: torch.Tensor,
                       pin: torch.Tensor | None, *, renormalise: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """(topk_indices, topk_weights) of the DeepSeek-V3 rule on float32 logits."""
    scores = selection_logits.sigmoid()
    choice = scores + router.e_score_correction_bias
    forced = None
    if pin is not None:
        forced = (pin > 0).expand_as(choice)
        # Beyond any score + bias: pinned experts (and hence their groups) win, pinned-out ones lose.
        choice = choice + pin * (choice.abs().amax(dim=-1, keepdim=True) * 2.0 + 2.0)
    n_group = getattr(router, "num_group", None) or router.n_group  # native name, then the remote code's
    indices = group_limited_topk(choice, n_group=int(n_group), topk_group=int(router.topk_group),
                                 top_k=int(router.top_k), forced=forced)
    weight_scores = scores if weight_logits is selection_logits else weight_logits.sigmoid()
    weights = weight_scores.gather(1, indices)
    if renormalise:
        weights = weights / (weights.sum(dim=-1, keepdim=True) + 1e-20)
    return indices, weights * router.routed_scaling_factor


class SigmoidGroupBiasTopK(RouterMath):
    """transformers' native routers (Glm4vMoeTextTopkRouter, DeepseekV3TopkRouter):
    output (router_logits, topk_weights, topk_indices)."""

    name = "sigmoid_group_bias_topk"

    def logits(self, router: nn.Module, hidden: torch.Tensor) -> torch.Tensor:
        return F.linear(hidden.type(torch.float32), router.weight.type(torch.float32))

    def probabilities(self, logits: torch.Tensor) -> torch.Tensor:
        return logits.sigmoid()

    def selection(self, output: Any, router: nn.Module) -> torch.Tensor:
        return output[2]

    def reroute(self, router: nn.Module, selection_logits: torch.Tensor, weight_logits: torch.Tensor,
                output: Any, pin: torch.Tensor | None = None) -> Any:
        indices, weights = sigmoid_bias_route(router, selection_logits, weight_logits, pin,
                                              renormalise=bool(router.norm_topk_prob))
        return selection_logits.to(output[0].dtype), weights.to(output[1].dtype), indices


class RemoteMoEGate(SigmoidGroupBiasTopK):
    """The remote-code DeepSeek-V3 `MoEGate` Kimi-VL ships (noaux_tc): experts in `n_routed_experts`,
    input [batch, seq, hidden], output (topk_idx, topk_weight), renormalised only when top_k > 1."""

    name = "remote_moegate_sigmoid_group_bias_topk"

    def sizes(self, router: nn.Module) -> tuple[int, int]:
        return int(router.n_routed_experts), int(router.top_k)

    def selection(self, output: Any, router: nn.Module) -> torch.Tensor:
        return output[0]

    def reroute(self, router: nn.Module, selection_logits: torch.Tensor, weight_logits: torch.Tensor,
                output: Any, pin: torch.Tensor | None = None) -> Any:
        renormalise = bool(router.norm_topk_prob) and int(router.top_k) > 1
        indices, weights = sigmoid_bias_route(router, selection_logits, weight_logits, pin, renormalise=renormalise)
        rerouted = (indices, weights.to(output[1].dtype))
        return rerouted + tuple(output[2:])  # some versions also return an auxiliary loss


FAMILIES: dict[str, FamilyRouting] = {
    "glm4v_moe": FamilyRouting(
        family="glm4v_moe",
        router_classes=("Glm4vMoeTextTopkRouter",),
        math=SigmoidGroupBiasTopK(),
    ),
    "deepseek_v3": FamilyRouting(
        family="deepseek_v3",
        router_classes=("DeepseekV3TopkRouter",),
        math=SigmoidGroupBiasTopK(),
        image_token_attrs=(),
    ),
    "kimi_vl": FamilyRouting(
        family="kimi_vl",
        router_classes=("MoEGate",),
        math=RemoteMoEGate(),
        image_token_attrs=("media_placeholder_token_id",),
    ),
}
