"""Expert identification: selection frequencies, the domain-expert rule, probe routing on the tiny model."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from torch import nn

from rd_eval.experts.identify import (
    domain_expert_set,
    general_probe_texts,
    records_selection_frequency,
    selection_frequency,
    top_positive_experts,
)
from rd_eval.experts.pipeline import probe_routing
from rd_eval.routing.recording import BatchRouting
from rd_eval.routing.records import DocIdentity, document_record, error_record
from rd_eval.routing.session import plan_intervention
from rd_eval.routing.sites import find_router_sites
from rd_eval.routing.spec import ExpertSet, InterventionSpec, LayerBand, LayerExperts

DELTA = np.array(
    [
        [0.1, 0.3, 0.3, -0.2, 0.0, 0.05],
        [-0.1, -0.2, 0.0, 0.0, -0.3, -0.01],
        [0.2, 0.1, 0.4, 0.2, 0.2, 0.3],
        [0.5, 0.5, 0.5, 0.5, 0.5, 0.5],
    ]
)


# -- top_positive_experts ---------------------------------------------------------------------------------
def test_top_positive_experts_ties_and_negatives() -> None:
    layers = top_positive_experts(DELTA, band=(0, 1, 2, 3), top_n=3)
    assert layers == (
        LayerExperts(0, (1, 2, 0), (0.3, 0.3, 0.1)),  # tie 0.3: lower id first
        LayerExperts(1, (), ()),  # nothing positive
        LayerExperts(2, (2, 5, 0), (0.4, 0.3, 0.2)),  # tie 0.2 between 0, 3, 4: expert 0
        LayerExperts(3, (0, 1, 2), (0.5, 0.5, 0.5)),
    )


def test_top_positive_experts_top_n_and_band() -> None:
    assert top_positive_experts(DELTA, band=(0,), top_n=1) == (LayerExperts(0, (1,), (0.3,)),)
    # A large top_n still drops zero and negative deltas.
    assert top_positive_experts(DELTA, band=(0,), top_n=6) == (LayerExperts(0, (1, 2, 0, 5), (0.3, 0.3, 0.1, 0.05)),)
    # Only band layers, in band order; ids and scores are plain Python numbers.
    layers = top_positive_experts(DELTA, band=(2, 0), top_n=2)
    assert [le.moe_index for le in layers] == [2, 0]
    assert layers[0].experts == (2, 5) and layers[1].experts == (1, 2)
    assert all(type(e) is int for le in layers for e in le.experts)
    assert all(type(s) is float for le in layers for s in le.scores)
    assert top_positive_experts(DELTA, band=(), top_n=2) == ()


def test_top_positive_experts_rejects_bad_input() -> None:
    with pytest.raises(ValueError, match=r"delta must be \[layers, experts\], got shape \(6,\)"):
        top_positive_experts(DELTA[0], band=(0,), top_n=2)
    with pytest.raises(ValueError, match="top_n must be >= 1, got 0"):
        top_positive_experts(DELTA, band=(0,), top_n=0)


# -- domain_expert_set -------------------------------------------------------------------------------------
def test_domain_expert_set_records_method_and_band(tmp_path: Any) -> None:
    phi_general = np.full((4, 6), 0.25)
    phi_domain = phi_general + DELTA
    expert_set = domain_expert_set(phi_domain, phi_general, band=[0, 2], top_n=2, model="tiny/model",
                                   method={"domain_probe": "gsm8k", "n": 20})
    assert expert_set.kind == "domain" and expert_set.model == "tiny/model"
    assert expert_set.method == {"statistic": "delta_phi = phi(domain) - phi(general)", "top_n": 2,
                                 "band_layers": [0, 2], "domain_probe": "gsm8k", "n": 20,
                                 "delta_phi": np.round(DELTA, 6).tolist()}
    assert expert_set.experts_by_site_key() == {(0, ""): (1, 2), (2, ""): (2, 5)}
    np.testing.assert_allclose([s for le in expert_set.layers for s in le.scores], [0.3, 0.3, 0.4, 0.3])
    assert ExpertSet.load(expert_set.save(tmp_path / "domain.json")) == expert_set


def test_domain_expert_set_shape_mismatch() -> None:
    with pytest.raises(ValueError, match=r"shapes differ: domain \(4, 6\) vs general \(4, 5\)"):
        domain_expert_set(np.zeros((4, 6)), np.zeros((4, 5)), band=[0], top_n=1, model="m", method={})


def test_domain_expert_set_all_negative_is_empty() -> None:
    expert_set = domain_expert_set(np.zeros((2, 3)), np.ones((2, 3)), band=[0, 1], top_n=3, model="m", method={})
    assert expert_set.is_empty
    assert InterventionSpec(experts=expert_set).is_noop


# -- selection_frequency -----------------------------------------------------------------------------------
def one_row(batch: BatchRouting, row: int) -> BatchRouting:
    """Document `row` of a batch, as a batch of one."""
    return BatchRouting(batch.counts[row : row + 1], batch.prob_sums[row : row + 1], batch.tokens[row : row + 1])


def synthetic_batches() -> list[BatchRouting]:
    """Two batches, 2 layers, 3 experts, top-2; base scopes (prompt_text, prompt_image, generated)."""
    counts_a = np.array(
        [  # doc 0: tokens (2, 1, 4)
            [[[2, 1, 1], [1, 0, 1], [4, 3, 1]],  # layer 0
             [[0, 2, 2], [0, 1, 1], [2, 2, 4]]],  # layer 1
        ],
        dtype=np.float32,
    )
    counts_b = np.array(
        [
            [[[3, 2, 1], [0, 0, 0], [1, 0, 1]],  # doc 1: tokens (3, 0, 1)
             [[1, 2, 3], [0, 0, 0], [0, 1, 1]]],
            [[[1, 1, 0], [2, 1, 1], [0, 0, 0]],  # doc 2: tokens (1, 2, 0)
             [[0, 1, 1], [1, 2, 1], [0, 0, 0]]],
        ],
        dtype=np.float32,
    )
    tokens_a = np.array([[2, 1, 4]], dtype=np.float32)
    tokens_b = np.array([[3, 0, 1], [1, 2, 0]], dtype=np.float32)
    return [BatchRouting(counts_a, counts_a * 0.1, tokens_a), BatchRouting(counts_b, counts_b * 0.1, tokens_b)]


@pytest.mark.parametrize(
    "scope, expected",
    [
        # prompt: tokens 2+1 + 3+0 + 1+2 = 9
        ("prompt", [[9 / 9, 5 / 9, 4 / 9], [2 / 9, 8 / 9, 8 / 9]]),
        # generated: tokens 4 + 1 + 0 = 5
        ("generated", [[5 / 5, 3 / 5, 2 / 5], [2 / 5, 3 / 5, 5 / 5]]),
        # image: tokens 1 + 0 + 2 = 3
        ("image", [[3 / 3, 1 / 3, 2 / 3], [1 / 3, 3 / 3, 2 / 3]]),
        # text = prompt_text + generated: tokens 2+4 + 3+1 + 1+0 = 11
        ("text", [[11 / 11, 7 / 11, 4 / 11], [3 / 11, 8 / 11, 11 / 11]]),
        # all: tokens 14
        ("all", [[14 / 14, 8 / 14, 6 / 14], [4 / 14, 11 / 14, 13 / 14]]),
    ],
)
def test_selection_frequency_by_hand(scope: str, expected: list[list[float]]) -> None:
    phi = selection_frequency(synthetic_batches(), token_scope=scope)
    assert phi.shape == (2, 3) and phi.dtype == np.float64
    np.testing.assert_allclose(phi, expected, rtol=1e-12)
    np.testing.assert_allclose(phi.sum(axis=1), [2.0, 2.0])  # top-2: each token selects two experts


def test_selection_frequency_default_scope_is_prompt() -> None:
    np.testing.assert_array_equal(selection_frequency(synthetic_batches()),
                                  selection_frequency(synthetic_batches(), "prompt"))
    one_doc = one_row(synthetic_batches()[1], 1)
    np.testing.assert_allclose(selection_frequency([one_doc], "image"), [[2 / 2, 1 / 2, 1 / 2], [1 / 2, 2 / 2, 1 / 2]])


def test_selection_frequency_errors() -> None:
    with pytest.raises(ValueError, match="at least one batch"):
        selection_frequency([])
    text_only = one_row(synthetic_batches()[1], 0)
    with pytest.raises(ValueError, match="no tokens in scope 'image'"):
        selection_frequency([text_only], "image")


# -- probe texts and probe routing on the tiny model ---------------------------------------------------------
def test_general_probe_texts() -> None:
    texts = general_probe_texts()
    assert len(texts) >= 20  # docs/design.md §3.4: 20 samples by default
    assert all(isinstance(t, str) and t and t == t.strip() for t in texts)
    assert len(set(texts)) == len(texts)


def test_probe_routing_on_tiny_model(tiny_model: nn.Module, tiny_processor: Any) -> None:
    texts = general_probe_texts()[:5]
    batches = probe_routing(tiny_model, tiny_processor, texts, batch_size=2)
    assert [b.batch_size for b in batches] == [2, 2, 1]
    for start, batch in zip((0, 2, 4), batches, strict=True):
        assert batch.counts.shape[1:] == (8, 3, 16)
        chunk = texts[start:start + 2]
        prompts = [tiny_processor.apply_chat_template(
            [{"role": "system", "content": "You are a helpful assistant."},
             {"role": "user", "content": [{"type": "text", "text": t}]}], tokenize=False, add_generation_prompt=True)
            for t in chunk]
        lengths = [len(tiny_processor.tokenizer(p)["input_ids"]) for p in prompts]
        np.testing.assert_array_equal(batch.tokens, [[n, 0, 0] for n in lengths])  # no padding, no image
    phi = selection_frequency(batches, "prompt")
    assert phi.shape == (8, 16)
    assert np.all((phi >= 0) & (phi <= 1))
    np.testing.assert_allclose(phi.sum(axis=1), np.full(8, 4.0), rtol=1e-12)  # top_k = 4 per token and layer
    for batch in batches:
        counts, _, tokens = batch.scoped("prompt")
        np.testing.assert_array_equal(counts.sum(axis=2), 4 * np.repeat(tokens[:, None], 8, axis=1))
    without_system = probe_routing(tiny_model, tiny_processor, texts[:1], system_prompt=None)
    assert without_system[0].tokens[0, 0] < batches[0].tokens[0, 0]


def test_domain_experts_from_probes_plan_on_tiny_model(tiny_model: nn.Module, tiny_processor: Any) -> None:
    domain = ["Mia has 7 apples and buys 5 more. How many apples does she have now?",
              "What is 37 + 52 - 18? Reply with only the final number.",
              "The table lists items, prices and quantities. What is the total cost?"]
    phi_domain = selection_frequency(probe_routing(tiny_model, tiny_processor, domain, batch_size=3))
    phi_general = selection_frequency(probe_routing(tiny_model, tiny_processor, general_probe_texts()[:6],
                                                    batch_size=3))
    band = LayerBand().resolve(8)
    expert_set = domain_expert_set(phi_domain, phi_general, band=band, top_n=4, model="tiny", method={})
    assert [le.moe_index for le in expert_set.layers] == list(band)
    for layer in expert_set.layers:
        assert len(layer.experts) <= 4
        delta = phi_domain[layer.moe_index] - phi_general[layer.moe_index]
        assert all(delta[e] > 0 for e in layer.experts)
        positive = int((delta > 0).sum())
        assert len(layer.experts) == min(4, positive)
    assert not expert_set.is_empty
    plans = plan_intervention(InterventionSpec(experts=expert_set), find_router_sites(tiny_model))
    assert {(p.moe_index, p.group): p.experts for p in plans} == expert_set.experts_by_site_key()


def test_selection_frequency_of_records_equals_that_of_their_batches() -> None:
    rng = np.random.default_rng(0)
    batches = [BatchRouting(counts=rng.integers(0, 9, (n, 4, 3, 6)).astype(np.float32),
                            prob_sums=rng.random((n, 4, 3, 6), dtype=np.float32),
                            tokens=rng.integers(1, 20, (n, 3)).astype(np.float32)) for n in (2, 3)]
    records = [document_record(DocIdentity("t_txt", 10 * i + row, "txt"), b, row, model="m", intervention_hash="none")
               for i, b in enumerate(batches) for row in range(b.batch_size)]
    records.append(error_record(DocIdentity("t_txt", 99, "txt"), model="m", intervention_hash="none", error="x"))
    for scope in ("prompt", "all", "image", "generated", "text"):
        np.testing.assert_allclose(records_selection_frequency(records, scope), selection_frequency(batches, scope))
    with pytest.raises(ValueError, match="token scope 'nope' invalid"):
        records_selection_frequency(records, "nope")
    with pytest.raises(ValueError, match="no tokens in scope"):
        records_selection_frequency(records[-1:], "prompt")
