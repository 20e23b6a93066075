"""Family routing math: how to read a router's logits, probabilities and selection, and how to redo its
selection from steered logits so that the module's output keeps exactly its own structure and dtypes.

One `RouterMath` per distinct routing rule. They run inside the router hooks, for every token of every
layer: tensor ops only, no host-device synchronisation.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn


class RouterMath:
    """Interface of a family's routing rule (see the module docstring)."""

    name = "abstract"

    def sizes(self, router: nn.Module) -> tuple[int, int]:
        """(number of experts, top-k) of this router."""
        return int(router.num_experts), int(router.top_k)

    def logits(self, router: nn.Module, hidden: torch.Tensor) -> torch.Tensor:
        """Float32 router logits [N, E], recomputed from the router's input (never trusted from its output:
        some transformers 5.x releases returned probabilities labelled logits)."""
        raise NotImplementedError

    def probabilities(self, logits: torch.Tensor) -> torch.Tensor:
        """The router's per-expert probabilities [N, E] (what docs/design.md §3.3's P averages)."""
        raise NotImplementedError

    def selection(self, output: Any, router: nn.Module) -> torch.Tensor:
        """The expert ids [N, k] the module selected, read from its own output."""
        raise NotImplementedError

    def select(self, router: nn.Module, logits: torch.Tensor, pin: torch.Tensor | None = None) -> torch.Tensor:
        """Expert ids [N, k] the family's own selection rule picks from float32 logits [N, E] (correction
        biases and expert groups included); `pin` as in `reroute`, the other slots in the family's own order."""
        raise NotImplementedError

    def selection_mask(self, router: nn.Module, logits: torch.Tensor) -> torch.Tensor:
        """[N, E] float32, 1.0 where the family's own rule selects the expert from these float32 logits (what
        `soft_topk` counts as already selected); tensor ops only, no host sync."""
        return torch.zeros_like(logits).scatter_(1, self.select(router, logits), 1.0)

    def reroute(self, router: nn.Module, selection_logits: torch.Tensor, weight_logits: torch.Tensor,
                output: Any, pin: torch.Tensor | None = None, unsteered: torch.Tensor | None = None) -> Any:
        """The module's output recomputed from float32 logits: selection from `selection_logits`, routing
        weights from `weight_logits` (the same tensor except in `selection_only` mode).

        `pin` [N, E] (force / suppress modes): +1 marks experts that must be selected, -1 experts that must
        not be, whatever the family's selection rule adds (correction biases, expert groups); the remaining
        slots are filled in the family's own order of `unsteered` (the router's own logits; default
        `selection_logits`), never of logits the pin's shift went through (ERNIE's softmax would rescale the
        other experts against its bias and re-rank them)."""
        raise NotImplementedError

    @staticmethod
    def ranking_logits(selection_logits: torch.Tensor, pin: torch.Tensor | None,
                       unsteered: torch.Tensor | None) -> torch.Tensor:
        """The logits a selection ranks by: the unsteered ones when pinning, else `selection_logits`."""
        return unsteered if pin is not None and unsteered is not None else selection_logits


class SoftmaxTopK(RouterMath):
    """Qwen3-MoE style: softmax (fp32) over all experts, top-k, weights renormalised over the k when the
    router says so (`norm_topk_prob`; routers without the attribute always renormalise).
    Output: (router_logits, routing_weights, selected_experts)."""

    name = "softmax_topk"

    def logits(self, router: nn.Module, hidden: torch.Tensor) -> torch.Tensor:
        # Same op and dtype as the router itself, so unsteered recomputation is bit-exact.
        return F.linear(hidden, router.weight).float()

    def probabilities(self, logits: torch.Tensor) -> torch.Tensor:
        return F.softmax(logits, dim=-1, dtype=torch.float)

    def selection(self, output: Any, router: nn.Module) -> torch.Tensor:
        return output[2]

    @staticmethod
    def _top(probs: torch.Tensor, top_k: int, pin: torch.Tensor | None) -> torch.Tensor:
        if pin is None:
            return torch.topk(probs, top_k, dim=-1).indices
        # Probabilities lie in [0, 1]: shifting by 2 orders pinned experts first (or last), keeping order.
        return torch.topk(probs + 2.0 * pin, top_k, dim=-1).indices

    def select(self, router: nn.Module, logits: torch.Tensor, pin: torch.Tensor | None = None) -> torch.Tensor:
        return self._top(F.softmax(logits, dim=-1, dtype=torch.float), int(router.top_k), pin)

    def reroute(self, router: nn.Module, selection_logits: torch.Tensor, weight_logits: torch.Tensor,
                output: Any, pin: torch.Tensor | None = None, unsteered: torch.Tensor | None = None) -> Any:
        top_k = int(router.top_k)
        probs = F.softmax(selection_logits, dim=-1, dtype=torch.float)
        if pin is None:
            top_values, top_indices = torch.topk(probs, top_k, dim=-1)
        else:
            ranked = self.ranking_logits(selection_logits, pin, unsteered)
            top_indices = self.select(router, ranked, pin) if ranked is not selection_logits \
                else self._top(probs, top_k, pin)
            top_values = probs.gather(1, top_indices)
        if weight_logits is not selection_logits:
            top_values = F.softmax(weight_logits, dim=-1, dtype=torch.float).gather(1, top_indices)
        if getattr(router, "norm_topk_prob", True):
            top_values = top_values / top_values.sum(dim=-1, keepdim=True)
        return selection_logits.to(output[0].dtype), top_values.to(output[1].dtype), top_indices
