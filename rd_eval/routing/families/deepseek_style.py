"""DeepSeek-V3-style sigmoid routers: GLM-4.5V (glm4v_moe), DeepSeek-V3 (deepseek_v3) and Kimi-VL (kimi_vl,
remote code, opt-in).

Scores are sigmoid(logits) in float32; the selection adds the router's `e_score_correction_bias` and is
restricted to the `topk_group` best of `n_group` expert groups (a group's score is the sum of its two best
biased scores); the routing weights are the UNBIASED scores at the selected experts, renormalised when
`norm_topk_prob` (+1e-20), times `routed_scaling_factor`.

transformers' native routers fill the experts of dropped groups with -inf before the final top-k; the
DeepSeek-V3 remote code Kimi-VL ships (`MoEGate`, topk_method "noaux_tc") fills them with 0.0 and
renormalises only when top_k > 1. Both run the one selection function below.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from rd_eval.routing.families import FamilyRouting
from rd_eval.routing.routers import RouterMath

NATIVE_FILL = float("-inf")  # transformers' DeepseekV3TopkRouter / Glm4vMoeTextTopkRouter
REMOTE_FILL = 0.0  # DeepSeek-V3 remote code (modeling_deepseek.py, Kimi-VL's modeling_kimi_vl.py)


def group_limited_topk(choice: torch.Tensor, *, n_group: int, topk_group: int, top_k: int, fill: float,
                       pin: torch.Tensor | None = None) -> torch.Tensor:
    """Expert ids [N, top_k] chosen by the DeepSeek-V3 group-limited rule from biased scores `choice` [N, E].

    Without `pin` the op sequence is the routers' own (unsorted top-k included), so re-selection is
    bit-identical; `fill` is what the router puts on the experts of dropped groups (-inf natively, 0.0 in
    the remote code). With `pin` ([N, E] or [1, E]; +1 must be selected, -1 must not be), pinned rows rank in
    tiers around the unchanged biased scores: forced experts first (their groups are always kept), then the
    kept groups' experts, then the dropped groups', then suppressed ones; rows without a pin are unchanged.
    """
    num_tokens, num_experts = choice.shape
    per_group = num_experts // n_group
    ranked = choice
    if pin is not None:
        # `span` exceeds twice any |score + bias| of the row: shifts by multiples of it never reorder a tier.
        span = choice.abs().amax(dim=-1, keepdim=True) * 2.0 + 1.0
        ranked = choice + pin * (8.0 * span)
    group_scores = ranked.view(num_tokens, n_group, per_group).topk(2, dim=-1)[0].sum(dim=-1)
    group_idx = torch.topk(group_scores, k=topk_group, dim=-1, sorted=False)[1]
    group_mask = torch.zeros_like(group_scores)
    group_mask.scatter_(1, group_idx, 1)
    score_mask = group_mask.unsqueeze(-1).expand(-1, n_group, per_group).reshape(-1, num_experts)
    masked = choice.masked_fill(~score_mask.bool(), fill)
    if pin is None:
        return torch.topk(masked, k=top_k, dim=-1, sorted=False)[1]
    forced_groups = (pin > 0).expand_as(choice).reshape(num_tokens, n_group, per_group).any(dim=-1)
    keep = (group_mask.bool() | forced_groups).unsqueeze(-1).expand(-1, n_group, per_group).reshape(-1, num_experts)
    # Experts of dropped groups rank just below every kept one (not at the family's fill, -inf or 0.0), so
    # suppression that empties the kept groups falls back on them by score, never on a suppressed expert.
    tiered = torch.where(keep, choice, choice - 2.0 * span) + pin * (8.0 * span)
    # Rows without a pin (out-of-scope tokens) rank exactly the router's own values: same ids, same order.
    pinned_rows = (pin != 0).any(dim=-1, keepdim=True)
    return torch.topk(torch.where(pinned_rows, tiered, masked), k=top_k, dim=-1, sorted=False)[1]


def sigmoid_group_select(router: nn.Module, logits: torch.Tensor, pin: torch.Tensor | None, *, n_group: int,
                         fill: float) -> torch.Tensor:
    """Expert ids [N, k] the DeepSeek-V3 rule selects from float32 logits: sigmoid scores + correction bias,
    within the best expert groups."""
    choice = logits.sigmoid() + router.e_score_correction_bias
    return group_limited_topk(choice, n_group=n_group, topk_group=int(router.topk_group), top_k=int(router.top_k),
                              fill=fill, pin=pin)


def sigmoid_group_route(router: nn.Module, selection_logits: torch.Tensor, weight_logits: torch.Tensor,
                        pin: torch.Tensor | None, unsteered: torch.Tensor | None, *, n_group: int, fill: float,
                        renormalise: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """(topk_indices int64 [N, k], topk_weights float32 [N, k]) of the DeepSeek-V3 rule on float32 logits; with a
    pin, the free slots rank by the unsteered logits (when given)."""
    scores = selection_logits.sigmoid()
    ranked = RouterMath.ranking_logits(selection_logits, pin, unsteered)
    indices = sigmoid_group_select(router, ranked, pin, n_group=n_group, fill=fill)
    weight_scores = scores if weight_logits is selection_logits else weight_logits.sigmoid()
    weights = weight_scores.gather(1, indices)
    if renormalise:
        weights = weights / (weights.sum(dim=-1, keepdim=True) + 1e-20)
    return indices, weights * router.routed_scaling_factor


class SigmoidGroupBiasTopK(RouterMath):
    """transformers' native routers (Glm4vMoeTextTopkRouter, DeepseekV3TopkRouter): attributes `num_experts`,
    `top_k`, `num_group`, `topk_group`, `norm_topk_prob`, `routed_scaling_factor`, buffer
    `e_score_correction_bias`; output (router_logits, topk_weights, topk_indices)."""

    name = "sigmoid_group_bias_topk"

    def logits(self, router: nn.Module, hidden: torch.Tensor) -> torch.Tensor:
        # The routers' own op: float32 inputs and weight, so unsteered recomputation is bit-exact.
        return F.linear(hidden.type(torch.float32), router.weight.type(torch.float32))

    def probabilities(self, logits: torch.Tensor) -> torch.Tensor:
        return logits.sigmoid()  # independent per-expert scores, not a distribution

    def selection(self, output: Any, router: nn.Module) -> torch.Tensor:
        return output[2]

    def select(self, router: nn.Module, logits: torch.Tensor, pin: torch.Tensor | None = None) -> torch.Tensor:
        return sigmoid_group_select(router, logits, pin, n_group=int(router.num_group), fill=NATIVE_FILL)

    def reroute(self, router: nn.Module, selection_logits: torch.Tensor, weight_logits: torch.Tensor,
                output: Any, pin: torch.Tensor | None = None, unsteered: torch.Tensor | None = None) -> Any:
        indices, weights = sigmoid_group_route(router, selection_logits, weight_logits, pin, unsteered,
                                               n_group=int(router.num_group), fill=NATIVE_FILL,
                                               renormalise=bool(router.norm_topk_prob))
        return selection_logits.to(output[0].dtype), weights.to(output[1].dtype), indices


class RemoteMoEGate(SigmoidGroupBiasTopK):
    """The DeepSeek-V3 remote-code `MoEGate` that Kimi-VL ships: attributes `n_routed_experts`, `top_k`,
    `n_group`, `topk_group`, `norm_topk_prob`, `routed_scaling_factor`, `e_score_correction_bias`,
    `scoring_func` ("sigmoid"), `topk_method` ("noaux_tc"); input [batch, seq, hidden]; output
    (topk_idx, topk_weight, aux_loss) (aux_loss None in eval) or, in older copies, (topk_idx, topk_weight)."""

    name = "remote_moegate_sigmoid_group_bias_topk"

    def sizes(self, router: nn.Module) -> tuple[int, int]:
        # Called once per router when the sites are found: refuse gates whose rule this math does not redo.
        scoring = getattr(router, "scoring_func", "sigmoid")
        method = getattr(router, "topk_method", "noaux_tc")
        if scoring != "sigmoid" or method != "noaux_tc":
            raise ValueError(
                f"MoEGate with scoring_func={scoring!r}, topk_method={method!r} is not supported; "
                "only scoring_func='sigmoid' with topk_method='noaux_tc' (DeepSeek-V3 / Kimi-VL) is"
            )
        return int(router.n_routed_experts), int(router.top_k)

    def selection(self, output: Any, router: nn.Module) -> torch.Tensor:
        return output[0]

    def select(self, router: nn.Module, logits: torch.Tensor, pin: torch.Tensor | None = None) -> torch.Tensor:
        return sigmoid_group_select(router, logits, pin, n_group=int(router.n_group), fill=REMOTE_FILL)

    def reroute(self, router: nn.Module, selection_logits: torch.Tensor, weight_logits: torch.Tensor,
                output: Any, pin: torch.Tensor | None = None, unsteered: torch.Tensor | None = None) -> Any:
        renormalise = int(router.top_k) > 1 and bool(router.norm_topk_prob)
        indices, weights = sigmoid_group_route(router, selection_logits, weight_logits, pin, unsteered,
                                               n_group=int(router.n_group), fill=REMOTE_FILL, renormalise=renormalise)
        return (indices.to(output[0].dtype), weights.to(output[1].dtype), *output[2:])


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
        image_token_attrs=(),  # text only
    ),
    "kimi_vl": FamilyRouting(
        family="kimi_vl",
        router_classes=("MoEGate",),  # remote code (trust_remote_code, opt-in); the class name it ships
        math=RemoteMoEGate(),
        image_token_attrs=("media_placeholder_token_id",),
    ),
}
