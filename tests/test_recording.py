"""RoutingRecorder: held-back layers accumulate exactly as layers added one by one, whatever the chunking."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from rd_eval.routing import recording
from rd_eval.routing.recording import GENERATED, PROMPT_IMAGE, PROMPT_TEXT, RoutingRecorder, TokenLayout

LAYERS, EXPERTS, TOP_K, BATCH = 5, 6, 2, 3


def layout(length: int, *, padded_row: int | None = None) -> TokenLayout:
    row = torch.arange(BATCH).repeat_interleave(length)
    scope = torch.tensor([PROMPT_TEXT, PROMPT_IMAGE, GENERATED] * (BATCH * length))[: BATCH * length]
    weight = torch.ones(BATCH * length)
    if padded_row is not None:
        weight[padded_row * length] = 0.0  # a padding token: never counted
    return TokenLayout(row=row, scope=scope, weight=weight)


def calls(seed: int) -> list[tuple[TokenLayout, list[tuple[torch.Tensor, torch.Tensor]]]]:
    """A prefill and two decode steps: per call its layout and each layer's (logits, selection)."""
    gen = torch.Generator().manual_seed(seed)
    out = []
    for length, padded in ((4, 1), (1, None), (1, 2)):
        lay = layout(length, padded_row=padded)
        n = lay.num_tokens
        layers = []
        for _ in range(LAYERS):
            logits = torch.randn(n, EXPERTS, generator=gen)
            layers.append((logits, logits.topk(TOP_K, dim=-1).indices))
        out.append((lay, layers))
    return out


def softmax(logits: torch.Tensor) -> torch.Tensor:
    return torch.softmax(logits, dim=-1)


def record(*, deferred: bool, flush_every_call: bool = True) -> recording.BatchRouting:
    recorder = RoutingRecorder(LAYERS, EXPERTS, "cpu", probabilities=softmax)
    recorder.start_batch(BATCH)
    for lay, layers in calls(0):
        recorder.add_tokens(lay)
        for index, (logits, selected) in enumerate(layers):
            recorder.add_logits(index, lay, logits, selected)
            if not deferred:
                recorder.flush()  # each layer accumulated at once
        if deferred and flush_every_call:
            recorder.flush()
    return recorder.finish_batch()


@pytest.mark.parametrize("budget", [1 << 24, 30, 1])
@pytest.mark.parametrize("flush_every_call", [True, False])
def test_held_back_layers_accumulate_like_immediate_ones(monkeypatch: pytest.MonkeyPatch, budget: int,
                                                         flush_every_call: bool) -> None:
    immediate = record(deferred=False)
    monkeypatch.setattr(recording, "PENDING_BUDGET", budget)  # 30 elements: flushes every layer or two
    deferred = record(deferred=True, flush_every_call=flush_every_call)
    np.testing.assert_array_equal(deferred.counts, immediate.counts)
    np.testing.assert_allclose(deferred.prob_sums, immediate.prob_sums, rtol=1e-6, atol=1e-6)
    np.testing.assert_array_equal(deferred.tokens, immediate.tokens)


def test_counts_by_hand() -> None:
    routing = record(deferred=True)
    assert routing.counts.shape == (BATCH, LAYERS, 3, EXPERTS)
    # Every counted token contributes TOP_K selections per layer; the two padding tokens contribute nothing.
    tokens = routing.tokens.sum()
    assert tokens == BATCH * (4 + 1 + 1) - 2
    assert np.all(routing.counts.sum(axis=(0, 2, 3)) == TOP_K * tokens)
    np.testing.assert_allclose(routing.prob_sums.sum(axis=(0, 2, 3)), tokens, rtol=1e-5)


def test_add_logits_needs_the_probability_function() -> None:
    recorder = RoutingRecorder(LAYERS, EXPERTS, "cpu")
    recorder.start_batch(BATCH)
    lay = layout(1)
    with pytest.raises(RuntimeError, match="probabilities"):
        recorder.add_logits(0, lay, torch.zeros(BATCH, EXPERTS), torch.zeros(BATCH, TOP_K, dtype=torch.long))
