"""Router-logit steering and re-selection: pure tensor functions used inside router hooks.

Everything here runs for every token of every steered layer, so it is written as a few fused tensor
ops with no host-device synchronisation (no `.item()`, no tensor truth tests, no data-dependent shapes).
"""

from __future__ import annotations

import torch


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
