"""The measured effect of an intervention on routing: per site and document, how many tokens' selected expert
set changed (flips) and how many of the set's experts were newly selected, against the family's own unsteered
selection (the router module's output).

Accumulated on the device inside the router hooks (tensor ops only, no host-device synchronisation, no
data-dependent shapes) and transferred once per batch with the routing records. Padding tokens and tokens
after a row's end of sequence carry weight 0 and are never counted; only tokens in the intervention's own
token scope are.
"""

from __future__ import annotations

import torch

from rd_eval.routing.recording import TokenLayout
from rd_eval.routing.records import EFFECT_FIELDS  # the order of the last axis of `EffectCounter.finish()`

__all__ = ["EFFECT_FIELDS", "EffectCounter", "selection_changes"]


def selection_changes(before: torch.Tensor, after: torch.Tensor, expert_mask: torch.Tensor) -> torch.Tensor:
    """Per token [N, 2]: (1.0 where the selected expert *set* differs, number of experts of `expert_mask`
    selected in `after` but not in `before`). `before`, `after`: expert ids [N, k]; `expert_mask`: [E] floats,
    1.0 on the intervention's experts at this site. Order within a selection does not count."""
    shape = (int(before.shape[0]), int(expert_mask.shape[0]))
    before_hot = torch.zeros(shape, dtype=torch.bool, device=before.device).scatter_(1, before.long(), True)
    after_hot = torch.zeros(shape, dtype=torch.bool, device=before.device).scatter_(1, after.long(), True)
    flipped = (before_hot != after_hot).any(dim=1).to(torch.float32)
    newly = ((after_hot & ~before_hot).to(torch.float32) * expert_mask.to(before.device).unsqueeze(0)).sum(dim=1)
    return torch.stack([flipped, newly], dim=1)


class EffectCounter:
    """Device sums [site, batch row, EFFECT_FIELDS] of one batch; see the module docstring."""

    def __init__(self, num_sites: int, device: torch.device | str) -> None:
        self.num_sites = num_sites
        self.device = torch.device(device)
        self._sums: torch.Tensor | None = None  # [L, B, 3]

    def start_batch(self, batch_size: int) -> None:
        self._sums = torch.zeros((self.num_sites, batch_size, len(EFFECT_FIELDS)), dtype=torch.float32,
                                 device=self.device)

    def add(self, site_index: int, layout: TokenLayout, token_mask: torch.Tensor | None, before: torch.Tensor,
            after: torch.Tensor, expert_mask: torch.Tensor) -> None:
        """Count one steered site of one forward call: `layout` its tokens, `token_mask` the intervention's
        scope among them (None: all), `before` / `after` the unsteered and steered selections [N, k]."""
        if self._sums is None:
            return
        changes = selection_changes(before, after, expert_mask).to(self.device, non_blocking=True)
        weight = layout.weight if token_mask is None else layout.weight * token_mask
        weight = weight.to(self.device, non_blocking=True).unsqueeze(1)  # [N, 1]
        values = torch.cat([weight, changes * weight], dim=1)  # [N, 3]
        self._sums[site_index].index_add_(0, layout.row.to(self.device, non_blocking=True), values)

    def finish(self) -> torch.Tensor:
        """The batch's sums [L, B, 3], still on the device (the caller transfers them with the records)."""
        if self._sums is None:
            raise RuntimeError("EffectCounter.finish() called without start_batch()")
        sums, self._sums = self._sums, None
        return sums
