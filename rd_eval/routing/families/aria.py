"""Aria routing: top-k on the raw router logits, weights = softmax over the k selected logits."""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from rd_eval.routing.families import FamilyRouting
from rd_eval.routing.families.llama4 import pinned_topk
from rd_eval.routing.routers import SoftmaxTopK


class LogitTopKSoftmax(SoftmaxTopK):
    """`AriaTextTopKRouter`: top-k of the raw logits, routing weights = softmax over the k selected logits
    (the same as renormalising a softmax over all experts), computed in the router's dtype.
    Output: (router_logits [N, E], top_k_weights [N, k], top_k_index [N, k]). Shared experts are not routed."""

    name = "logit_topk_softmax"

    # Logits, probabilities (softmax over all experts) and the output layout are SoftmaxTopK's; only the
    # selection rule differs.
    def select(self, router: nn.Module, logits: torch.Tensor, pin: torch.Tensor | None = None) -> torch.Tensor:
        # The router's logits come out of F.linear in its weight's dtype.
        return pinned_topk(logits.to(router.weight.dtype).float(), int(router.top_k), pin)

    def reroute(self, router: nn.Module, selection_logits: torch.Tensor, weight_logits: torch.Tensor,
                output: Any, pin: torch.Tensor | None = None, unsteered: torch.Tensor | None = None) -> Any:
        logits_dtype = output[0].dtype
        # Rank in the router's dtype (what its topk sees), so lambda = 0 reproduces its selection exactly.
        ranked = self.ranking_logits(selection_logits, pin, unsteered)
        indices = pinned_topk(ranked.to(logits_dtype).float(), int(router.top_k), pin)
        top_logits = weight_logits.to(logits_dtype).gather(1, indices)
        weights = F.softmax(top_logits, dim=-1).to(output[1].dtype)
        return selection_logits.to(logits_dtype), weights, indices.to(output[2].dtype)


FAMILIES: dict[str, FamilyRouting] = {
    "aria": FamilyRouting(
        family="aria",
        router_classes=("AriaTextTopKRouter",),
        math=LogitTopKSoftmax(),
        image_token_attrs=("image_token_id",),
    ),
}
