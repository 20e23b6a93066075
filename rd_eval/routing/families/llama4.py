"""Llama 4 routing: top-k on the raw router logits, then an unnormalised sigmoid gate per selected expert."""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from rd_eval.routing.families import FamilyRouting
from rd_eval.routing.routers import RouterMath


def pinned_topk(logits: torch.Tensor, top_k: int, pin: torch.Tensor | None) -> torch.Tensor:
    """Top-k ids of `logits` [N, E]; `pin` +1 experts rank above every other, -1 below, order kept inside."""
    if pin is None:
        return torch.topk(logits, top_k, dim=-1).indices
    # Logits are unbounded: shift by the row's span (+1) so a pinned expert clears every unpinned one.
    span = logits.amax(dim=-1, keepdim=True) - logits.amin(dim=-1, keepdim=True) + 1.0
    return torch.topk(logits + span * pin, top_k, dim=-1).indices


class SigmoidTopKScores(RouterMath):
    """`Llama4Router` (an nn.Linear): top-k of the raw logits in the model dtype; the selected logits are
    scattered into a -inf-filled [N, E] and passed through sigmoid (fp32, cast back), so an unselected
    expert's score is exactly 0 and a selected one's is its own sigmoid gate; nothing is normalised.
    Output: (router_scores [N, E], router_logits [N, E]). The always-on shared expert is not routed."""

    name = "sigmoid_topk_scores"

    def sizes(self, router: nn.Module) -> tuple[int, int]:
        return int(router.num_experts), int(router.top_k)

    def logits(self, router: nn.Module, hidden: torch.Tensor) -> torch.Tensor:
        # nn.Linear's own op on the same dtype, so the unsteered recomputation is bit-exact.
        return F.linear(hidden, router.weight, router.bias).float()

    def probabilities(self, logits: torch.Tensor) -> torch.Tensor:
        # The per-expert gate the router would give each expert if selected.
        return torch.sigmoid(logits)

    def selection(self, output: Any, router: nn.Module) -> torch.Tensor:
        # Selected experts score sigmoid(z) > 0, unselected exactly sigmoid(-inf) = 0, so the k largest scores
        # are the selection whatever the logits (a rerouted output's logits need not rank its pinned experts
        # first). A selected logit below about -88 would underflow to 0 and tie; real routers never get there.
        return torch.topk(output[0], int(router.top_k), dim=-1).indices

    def select(self, router: nn.Module, logits: torch.Tensor, pin: torch.Tensor | None = None) -> torch.Tensor:
        # The router (an nn.Linear) ranks its logits in its weight's dtype.
        return pinned_topk(logits.to(router.weight.dtype).float(), int(router.top_k), pin)

    def reroute(self, router: nn.Module, selection_logits: torch.Tensor, weight_logits: torch.Tensor,
                output: Any, pin: torch.Tensor | None = None, unsteered: torch.Tensor | None = None) -> Any:
        scores_dtype, logits_dtype = output[0].dtype, output[1].dtype
        # Rank and gate in the router's own dtype (as it does), so lambda = 0 reproduces its output exactly.
        ranked = self.ranking_logits(selection_logits, pin, unsteered)
        indices = pinned_topk(ranked.to(logits_dtype).float(), int(router.top_k), pin)
        gated = weight_logits.to(logits_dtype).gather(1, indices)
        scores = torch.full_like(selection_logits, float("-inf"), dtype=logits_dtype).scatter_(1, indices, gated)
        scores = torch.sigmoid(scores.float()).to(scores_dtype)
        return scores, selection_logits.to(logits_dtype)


FAMILIES: dict[str, FamilyRouting] = {
    "llama4": FamilyRouting(
        family="llama4",
        router_classes=("Llama4Router",),
        math=SigmoidTopKScores(),
        # Image features replace the <|patch|> placeholders (config.image_token_index); there is no video.
        image_token_attrs=("image_token_id",),
    ),
}
