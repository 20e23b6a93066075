"""Router-logit steering and re-selection: pure tensor functions used inside router hooks.

Everything here runs for every token of every steered layer, so it is written as a few fused tensor
ops with no host-device synchronisation (no `.item()`, no tensor truth tests, no data-dependent shapes).
"""

from __future__ import annotations

import torch

SAMPLE_STD = 1  # torch's default, EasySteer's `logits.std(dim=-1, keepdim=True)`


def logit_std(logits: torch.Tensor, correction: int = SAMPLE_STD) -> torch.Tensor:
    """Per-token standard deviation over the experts, shape [N, 1]: sample std (correction 1) by default,
    population std with correction 0."""
    return logits.std(dim=-1, keepdim=True, correction=correction)


def steer_logits(
    logits: torch.Tensor,
    *,
    mode: str,
    strength: float,
    expert_mask: torch.Tensor,
    token_mask: torch.Tensor | None,
    selected: torch.Tensor | None = None,
    std_correction: int = SAMPLE_STD,
) -> torch.Tensor:
    """docs/design.md §3.5 on float32 logits [N, E]; `expert_mask` [E] is 1.0 on the steered experts.

    soft / random / selection_only: z + λ·std(z) on the set. soft_topk: the same boost only where the
    expert is not already selected; `selected` [N, E] (1.0 where selected) is the family's own selection of
    the unsteered logits (`RouterMath.selection_mask`: biases and expert groups included), required in
    that mode. force / suppress: shift the set above the row maximum or below the row minimum, preserving
    the order inside the set, so the selection is decided by the mode.
    """
    mask = expert_mask.unsqueeze(0)  # [1, E]
    if token_mask is not None:
        mask = mask * token_mask.unsqueeze(1)  # [N, E]
    if mode in ("soft", "random", "selection_only", "soft_topk"):
        if mode == "soft_topk":
            if selected is None:
                raise ValueError("soft_topk needs `selected`: the family's own selection mask of the logits")
            mask = mask * (1.0 - selected)
        return logits + strength * logit_std(logits, std_correction) * mask
    span = logits.amax(dim=-1, keepdim=True) - logits.amin(dim=-1, keepdim=True) + 1.0
    if mode == "force":
        return logits + span * mask
    if mode == "suppress":
        return logits - span * mask
    raise ValueError(f"unknown steering mode {mode!r}")
