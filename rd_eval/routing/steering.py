"""Router-logit steering and re-selection: pure tensor functions used inside router hooks.

Everything here runs for every token of every steered layer, so it is written as a few fused tensor
ops with no host-device synchronisation (no `.item()`, no tensor truth tests, no data-dependent shapes).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def logit_std(logits: torch.Tensor) -> torch.Tensor:
    """Per-token standard deviation over the experts (population std), shape [N, 1]."""
    return logits.std(dim=-1, keepdim=True, correction=0)


def steer_logits(
    logits: torch.Tensor,
    *,
    mode: str,
    strength: float,
    expert_mask: torch.Tensor,
    token_mask: torch.Tensor | None,
    top_k: int,
) -> torch.Tensor:
    """DESIGN §3.4 on float32 logits [N, E]; `expert_mask` [E] is 1.0 on the steered experts.

    soft / random / selection_only: z + λ·std(z) on the set. soft_topk: the same boost only where the
    expert is not already in the token's top-k. force / suppress: shift the set above the row maximum or
    below the row minimum, preserving the order inside the set, so the selection is decided by the mode.
    """
    mask = expert_mask.unsqueeze(0)  # [1, E]
    if token_mask is not None:
        mask = mask * token_mask.unsqueeze(1)  # [N, E]
    if mode in ("soft", "random", "selection_only", "soft_topk"):
        boost = strength * logit_std(logits) * mask
        if mode == "soft_topk":
            already = torch.zeros_like(logits).scatter_(1, logits.topk(top_k, dim=-1).indices, 1.0)
            boost = boost * (1.0 - already)
        return logits + boost
    span = logits.amax(dim=-1, keepdim=True) - logits.amin(dim=-1, keepdim=True) + 1.0
    if mode == "force":
        return logits + span * mask
    if mode == "suppress":
        return logits - span * mask
    raise ValueError(f"unknown steering mode {mode!r}")


def select_softmax_topk_renorm(
    selection_logits: torch.Tensor, weight_logits: torch.Tensor, top_k: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Qwen3-MoE-style routing: softmax (fp32), top-k, weights renormalised to sum 1.

    Selection uses `selection_logits`; the weights are read from `weight_logits` at the selected experts
    (the same tensor except for `selection_only`, where weights stay those of the unsteered router).
    """
    selection_probs = F.softmax(selection_logits, dim=-1, dtype=torch.float)
    top_values, top_indices = torch.topk(selection_probs, top_k, dim=-1)
    if weight_logits is not selection_logits:
        top_values = F.softmax(weight_logits, dim=-1, dtype=torch.float).gather(1, top_indices)
    return top_values / top_values.sum(dim=-1, keepdim=True), top_indices
