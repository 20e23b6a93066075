"""Per-document routing statistics, accumulated on the device and transferred once per batch.

Three base token scopes are kept apart; DESIGN §3.3's scopes are unions of them:
prompt = prompt_text + prompt_image, text = prompt_text + generated, image = prompt_image.
Padding tokens carry weight 0 and are never counted.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

BASE_SCOPES = ("prompt_text", "prompt_image", "generated")
PROMPT_TEXT, PROMPT_IMAGE, GENERATED = range(3)
SCOPE_UNIONS: dict[str, tuple[int, ...]] = {
    "all": (PROMPT_TEXT, PROMPT_IMAGE, GENERATED),
    "prompt": (PROMPT_TEXT, PROMPT_IMAGE),
    "generated": (GENERATED,),
    "text": (PROMPT_TEXT, GENERATED),
    "image": (PROMPT_IMAGE,),
}


@dataclass(frozen=True)
class TokenLayout:
    """Where each flattened token of one forward call belongs: batch row, base scope, padding weight."""

    row: torch.Tensor  # [N] long
    scope: torch.Tensor  # [N] long, one of PROMPT_TEXT / PROMPT_IMAGE / GENERATED
    weight: torch.Tensor  # [N] float32, 1.0 for real tokens, 0.0 for padding

    @property
    def num_tokens(self) -> int:
        return int(self.row.shape[0])

    def scope_mask(self, token_scope: str) -> torch.Tensor | None:
        """Float [N] mask of the tokens in `token_scope`, or None for all tokens."""
        if token_scope == "all":
            return None
        members = SCOPE_UNIONS[token_scope]
        mask = self.scope == members[0]
        for member in members[1:]:
            mask = mask | (self.scope == member)
        return mask.to(torch.float32)


@dataclass(frozen=True)
class BatchRouting:
    """Host copies of one batch's statistics. counts/prob_sums: [B, L, 3, E]; tokens: [B, 3]."""

    counts: np.ndarray
    prob_sums: np.ndarray
    tokens: np.ndarray

    @property
    def batch_size(self) -> int:
        return int(self.tokens.shape[0])

    def scoped(self, token_scope: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(counts [B, L, E], prob_sums [B, L, E], tokens [B]) summed over the scope's base scopes."""
        members = list(SCOPE_UNIONS[token_scope])
        return (
            self.counts[:, :, members, :].sum(axis=2),
            self.prob_sums[:, :, members, :].sum(axis=2),
            self.tokens[:, members].sum(axis=1),
        )

    def row(self, index: int) -> BatchRouting:
        return BatchRouting(self.counts[index : index + 1], self.prob_sums[index : index + 1],
                            self.tokens[index : index + 1])

    def select_rows(self, rows: Sequence[int]) -> BatchRouting:
        idx = np.asarray(rows, dtype=np.int64)
        return BatchRouting(self.counts[idx], self.prob_sums[idx], self.tokens[idx])


class RoutingRecorder:
    """Accumulates selection counts and router-probability sums per document, layer, scope and expert."""

    def __init__(self, num_layers: int, num_experts: int, device: torch.device | str) -> None:
        self.num_layers = num_layers
        self.num_experts = num_experts
        self.device = torch.device(device)
        self._counts: torch.Tensor | None = None
        self._prob_sums: torch.Tensor | None = None
        self._tokens: torch.Tensor | None = None

    def start_batch(self, batch_size: int) -> None:
        shape = (batch_size, self.num_layers, len(BASE_SCOPES), self.num_experts)
        self._counts = torch.zeros(shape, dtype=torch.float32, device=self.device)
        self._prob_sums = torch.zeros(shape, dtype=torch.float32, device=self.device)
        self._tokens = torch.zeros((batch_size, len(BASE_SCOPES)), dtype=torch.float32, device=self.device)

    @property
    def active(self) -> bool:
        return self._counts is not None

    def add_tokens(self, layout: TokenLayout) -> None:
        if self._tokens is None:
            return
        flat = layout.row * len(BASE_SCOPES) + layout.scope
        self._tokens.view(-1).index_add_(0, flat, layout.weight)

    def add_layer(self, moe_index: int, layout: TokenLayout, probs: torch.Tensor, selected: torch.Tensor) -> None:
        """probs: [N, E] float router probabilities; selected: [N, k] chosen expert ids."""
        if self._counts is None or self._prob_sums is None:
            return
        probs = probs.to(self.device, non_blocking=True)
        selected = selected.to(self.device, non_blocking=True)
        cell = (layout.row * self.num_layers + moe_index) * len(BASE_SCOPES) + layout.scope  # [N]
        top_k = selected.shape[1]
        count_index = (cell.unsqueeze(1) * self.num_experts + selected).reshape(-1)
        self._counts.view(-1).index_add_(0, count_index, layout.weight.repeat_interleave(top_k))
        self._prob_sums.view(-1, self.num_experts).index_add_(0, cell, probs * layout.weight.unsqueeze(1))

    def finish_batch(self) -> BatchRouting:
        """The one device-to-host transfer per batch."""
        if self._counts is None or self._prob_sums is None or self._tokens is None:
            raise RuntimeError("finish_batch() called without start_batch()")
        stacked = torch.cat([self._counts.flatten(), self._prob_sums.flatten(), self._tokens.flatten()]).cpu()
        n = self._counts.numel()
        result = BatchRouting(
            counts=stacked[:n].view(self._counts.shape).numpy().copy(),
            prob_sums=stacked[n : 2 * n].view(self._prob_sums.shape).numpy().copy(),
            tokens=stacked[2 * n :].view(self._tokens.shape).numpy().copy(),
        )
        self._counts = self._prob_sums = self._tokens = None
        return result
