"""Per-document routing statistics, accumulated on the device and transferred once per batch.

Three base token scopes are kept apart; docs/design.md §3.3's scopes are unions of them:
prompt = prompt_text + prompt_image, text = prompt_text + generated, image = prompt_image.
Padding tokens carry weight 0 and are never counted.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch

from rd_eval.vocabulary.scopes import BASE_SCOPES, SCOPE_INDICES

PROMPT_TEXT, PROMPT_IMAGE, GENERATED = (BASE_SCOPES.index(s) for s in ("prompt_text", "prompt_image", "generated"))


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
        members = SCOPE_INDICES[token_scope]
        mask = self.scope == members[0]
        for member in members[1:]:
            mask = mask | (self.scope == member)
        return mask.to(torch.float32)


@dataclass(frozen=True)
class BatchRouting:
    """Host copies of one batch's statistics. counts/prob_sums: [B, L, 3, E]; tokens: [B, 3]; effect: under an
    intervention, [B, L, 3] sums of (tokens, flipped, newly_selected) (`rd_eval.routing.effect`), else None."""

    counts: np.ndarray
    prob_sums: np.ndarray
    tokens: np.ndarray
    effect: np.ndarray | None = None

    @property
    def batch_size(self) -> int:
        return int(self.tokens.shape[0])

    def scoped(self, token_scope: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(counts [B, L, E], prob_sums [B, L, E], tokens [B]) summed over the scope's base scopes."""
        members = list(SCOPE_INDICES[token_scope])
        return (
            self.counts[:, :, members, :].sum(axis=2),
            self.prob_sums[:, :, members, :].sum(axis=2),
            self.tokens[:, members].sum(axis=1),
        )


# Router logits held back for one batched accumulation, at most (elements): 64 MiB of float32, so a long prefill
# is accumulated in a few chunks of layers instead of holding every layer's logits at once.
PENDING_BUDGET = 1 << 24


class RoutingRecorder:
    """Accumulates selection counts and router-probability sums per document, layer, scope and expert.

    This runs inside every router hook, so the per-layer work is kept to almost nothing:

    - everything that depends only on the forward call's token layout (each token's accumulator cell, its
      weight) is computed once per call (`add_tokens`);
    - with `add_logits`, a layer only hands over its logits and selection; the layers of a forward call are
      then accumulated together by `flush` (a handful of tensor ops per call instead of per layer), which the
      session calls once the call's last router has run (and which runs early when the held logits exceed
      PENDING_BUDGET, or when the token layout changes, as between the modality routers of ERNIE-4.5-VL);
    - accumulators are layer-major, so a layer's cells are one contiguous block indexed by (row, scope).

    No method synchronises the host with the device; `finish_batch` is the one transfer per batch.
    """

    def __init__(self, num_layers: int, num_experts: int, device: torch.device | str,
                 probabilities: Callable[[torch.Tensor], torch.Tensor] | None = None) -> None:
        self.num_layers = num_layers
        self.num_experts = num_experts
        self.device = torch.device(device)
        self.probabilities = probabilities  # the family's logits -> probabilities, for `add_logits`
        self._counts: torch.Tensor | None = None  # [L, B, 3, E]
        self._prob_sums: torch.Tensor | None = None  # [L, B, 3, E]
        self._tokens: torch.Tensor | None = None  # [B, 3]
        self._cells_per_layer = 0
        self._layer_offsets: torch.Tensor | None = None  # [L]: first cell of each layer, in (row, scope) cells
        self._bound: TokenLayout | None = None
        self._cells: _LayoutCells | None = None
        self._pending: list[tuple[int, torch.Tensor, torch.Tensor]] = []
        self._pending_layout: TokenLayout | None = None
        self._pending_elements = 0

    def start_batch(self, batch_size: int) -> None:
        shape = (self.num_layers, batch_size, len(BASE_SCOPES), self.num_experts)
        self._counts = torch.zeros(shape, dtype=torch.float32, device=self.device)
        self._prob_sums = torch.zeros(shape, dtype=torch.float32, device=self.device)
        self._tokens = torch.zeros((batch_size, len(BASE_SCOPES)), dtype=torch.float32, device=self.device)
        self._cells_per_layer = batch_size * len(BASE_SCOPES)
        self._layer_offsets = torch.arange(self.num_layers, device=self.device) * self._cells_per_layer
        self._bound = self._cells = None
        self._drop_pending()

    def _cells_of(self, layout: TokenLayout) -> _LayoutCells:
        """Index tensors of `layout`, cached for the layout of the current forward call."""
        if layout is not self._bound or self._cells is None:
            self._cells = _LayoutCells(layout, self.num_experts, self.device)
            self._bound = layout
        return self._cells

    def add_tokens(self, layout: TokenLayout) -> None:
        """Once per forward call: count its tokens and prepare its cells for the layers that follow."""
        if self._tokens is None:
            return
        self.flush()  # a previous call's layers, should its end not have been seen
        cells = self._cells_of(layout)
        self._tokens.view(-1).index_add_(0, cells.slot, cells.weight)

    def add_logits(self, moe_index: int, layout: TokenLayout, logits: torch.Tensor, selected: torch.Tensor) -> None:
        """Hold one layer's float router logits [N, E] and selection [N, k] for the next `flush`."""
        if self._counts is None:
            return
        if self.probabilities is None:
            raise RuntimeError("add_logits needs the recorder's `probabilities` function")
        pending = self._pending
        if pending and (layout is not self._pending_layout or moe_index != pending[-1][0] + 1
                        or logits.shape[1] != pending[-1][1].shape[1] or selected.shape[1] != pending[-1][2].shape[1]
                        or self._pending_elements + logits.numel() > PENDING_BUDGET):
            self.flush()  # only consecutive layers of one layout and one shape are accumulated together
        self._pending.append((moe_index, self._local(logits), self._local(selected)))
        self._pending_layout = layout
        self._pending_elements += logits.numel()

    def flush(self) -> None:
        """Accumulate the held layers (consecutive layers of one forward call) with one set of tensor ops."""
        pending, layout = self._pending, self._pending_layout
        if not pending or layout is None or self.probabilities is None:
            return
        self._drop_pending()
        first = pending[0][0]
        if len(pending) == 1:
            logits, selected = pending[0][1], pending[0][2]
        else:
            logits = torch.cat([entry[1] for entry in pending])
            selected = torch.cat([entry[2] for entry in pending])
        self._accumulate(first, len(pending), layout, self.probabilities(logits), selected)

    def _drop_pending(self) -> None:
        self._pending = []
        self._pending_layout = None
        self._pending_elements = 0

    def _local(self, tensor: torch.Tensor) -> torch.Tensor:
        return tensor if tensor.device == self.device else tensor.to(self.device, non_blocking=True)

    def _accumulate(self, first: int, layers: int, layout: TokenLayout, probs: torch.Tensor,
                    selected: torch.Tensor) -> None:
        """Add `layers` consecutive layers from `first` on: probs [layers * N, E], selected [layers * N, k]."""
        if self._counts is None or self._prob_sums is None or self._layer_offsets is None:
            return
        cells = self._cells_of(layout)
        top_k = int(selected.shape[1])
        if layers == 1:
            # Cells of (row, scope) within the layer's block, and of (row, scope, expert) for the counts.
            slot = cells.slot + first * self._cells_per_layer
            weight_column, weight_k = cells.weight_column, cells.weight_repeated(top_k)
        else:
            offsets = self._layer_offsets[first : first + layers].unsqueeze(1)  # [layers, 1]
            slot = (cells.slot.unsqueeze(0) + offsets).reshape(-1)  # [layers * N]
            weight_column = cells.weight_column.repeat(layers, 1)
            weight_k = weight_column.expand(-1, top_k).reshape(-1)
        count_index = (selected + (slot * self.num_experts).unsqueeze(1)).view(-1)
        self._counts.view(-1).index_add_(0, count_index, weight_k)
        self._prob_sums.view(-1, self.num_experts).index_add_(0, slot, probs * weight_column)

    def finish_batch(self, effect: torch.Tensor | None = None) -> BatchRouting:
        """The one device-to-host transfer per batch; `effect` (an intervention's device sums [L, B, 3],
        `rd_eval.routing.effect`) travels in the same transfer."""
        self.flush()
        if self._counts is None or self._prob_sums is None or self._tokens is None:
            raise RuntimeError("finish_batch() called without start_batch()")
        parts = [self._counts.flatten(), self._prob_sums.flatten(), self._tokens.flatten()]
        if effect is not None:
            parts.append(effect.to(self.device).flatten())
        stacked = torch.cat(parts).cpu()
        n = self._counts.numel()
        t = 2 * n + self._tokens.numel()
        layer_major = self._counts.shape
        result = BatchRouting(  # [L, B, 3, E] -> [B, L, 3, E]
            counts=np.ascontiguousarray(stacked[:n].view(layer_major).numpy().transpose(1, 0, 2, 3)),
            prob_sums=np.ascontiguousarray(stacked[n : 2 * n].view(layer_major).numpy().transpose(1, 0, 2, 3)),
            tokens=stacked[2 * n : t].view(self._tokens.shape).numpy().copy(),
            effect=None if effect is None else np.ascontiguousarray(  # [L, B, 3] -> [B, L, 3]
                stacked[t:].view(effect.shape).numpy().transpose(1, 0, 2)),
        )
        self._counts = self._prob_sums = self._tokens = self._layer_offsets = None
        self._bound = self._cells = None
        return result


class _LayoutCells:
    """Per forward call: each token's accumulator cell (row, scope) within a layer, and its weight."""

    def __init__(self, layout: TokenLayout, num_experts: int, device: torch.device) -> None:
        row, scope, weight = layout.row, layout.scope, layout.weight
        if row.device != device:
            row, scope, weight = (t.to(device, non_blocking=True) for t in (row, scope, weight))
        self.slot = row * len(BASE_SCOPES) + scope  # [N]
        self.weight = weight  # [N]
        self.weight_column = weight.unsqueeze(1)  # [N, 1]
        self._repeated: dict[int, torch.Tensor] = {}

    def weight_repeated(self, top_k: int) -> torch.Tensor:
        """The weight of each of the N * k selections, in the order of `selected.view(-1)`."""
        repeated = self._repeated.get(top_k)
        if repeated is None:
            repeated = self.weight_column.expand(-1, top_k).reshape(-1)
            self._repeated[top_k] = repeated
        return repeated
