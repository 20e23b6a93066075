"""Router hooks on the tiny random Qwen3-VL-MoE: recording, steering, hook hygiene, no host syncs."""

from __future__ import annotations

import types
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from routing_contract import (
    HostSyncGuard,
    HostSyncViolation,
    bracket_session_hooks,
    drawn_image,
    encode,
    expert_set,
    hook_counts,
    mixed_batch_fixtures,
    record_forward,
    record_generate,
    routers,
)
from skipped_routers import router_skipped
from torch import nn

from rd_eval.routing.recording import GENERATED, PROMPT_IMAGE, PROMPT_TEXT, BatchRouting
from rd_eval.routing.routers import SoftmaxTopK
from rd_eval.routing.session import RoutingHooksNotFiredError, plan_intervention, routing_session
from rd_eval.routing.sites import UnsupportedModelError, find_router_sites, image_token_ids
from rd_eval.routing.spec import InterventionSpec, LayerBand
from rd_eval.routing.steering import steer_logits

TOP_K = 4
NUM_EXPERTS = 16
NUM_LAYERS = 8
BAND = (2, 3, 4, 5)  # LayerBand() (fractions 0.25-0.75) on 8 MoE layers

IMAGE_PROMPT = "What is the total cost?"
TEXT_PROMPT = "Mia has 7 apples and buys 5 more. How many apples does she have now?"
LONG_PROMPT = (
    "The bar chart shows values per category. Which category has the largest value? "
    "Reply with only the letter of the correct option."
)


# -- inputs ---------------------------------------------------------------------------------------------
@contextmanager
def capture_routers(model: nn.Module, layers: tuple[int, ...]) -> Iterator[dict[int, dict[str, torch.Tensor]]]:
    """Record each router's input and final output (registered after the session's hooks, so it sees
    what the MoE block receives)."""
    captured: dict[int, dict[str, torch.Tensor]] = {}
    all_routers = routers(model)
    handles = []

    def make(layer: int):
        def hook(module: nn.Module, args: tuple, output: Any) -> None:
            captured[layer] = {"hidden": args[0].reshape(-1, module.weight.shape[-1]).clone(),
                               "logits": output[0].clone(), "weights": output[1].clone(),
                               "selected": output[2].clone()}
        return hook

    for layer in layers:
        handles.append(all_routers[layer].register_forward_hook(make(layer)))
    try:
        yield captured
    finally:
        for handle in handles:
            handle.remove()


def unsteered_selection(router: nn.Module, hidden: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(probabilities [N, E], top-k ids [N, k]) of the router's own math on `hidden`."""
    with torch.no_grad():
        probs = F.softmax(F.linear(hidden, router.weight), dim=-1, dtype=torch.float)
    return probs, probs.topk(TOP_K, dim=-1).indices


# -- fixtures -------------------------------------------------------------------------------------------
batch_fixture, plain_fixture, baseline_fixture = mixed_batch_fixtures(
    IMAGE_PROMPT, TEXT_PROMPT, model_fixture="tiny_model", processor_fixture="tiny_processor", max_new_tokens=6
)


# -- 1. no-op hooks are bit-identical ---------------------------------------------------------------------
NOOP_CASES = {
    "record_only": (True, None),
    "lambda_0_soft": (True, InterventionSpec(experts=expert_set({i: (1, 5) for i in BAND}), mode="soft",
                                              strength=0.0)),
    "lambda_0_selection_only_no_record": (
        False, InterventionSpec(experts=expert_set({i: (1, 5) for i in BAND}), mode="selection_only", strength=0.0)),
    "empty_expert_set_force": (True, InterventionSpec(experts=expert_set({i: () for i in BAND}), mode="force")),
    "no_layers_suppress": (True, InterventionSpec(experts=expert_set({}), mode="suppress", strength=3.0)),
}


@pytest.mark.parametrize("case", sorted(NOOP_CASES))
def test_noop_hooks_are_bit_identical(tiny_model: nn.Module, mixed_batch: Any,
                                      plain_outputs: dict[str, torch.Tensor], case: str) -> None:
    record, spec = NOOP_CASES[case]
    with routing_session(tiny_model, record=record, intervention=spec) as session, torch.inference_mode():
        session.begin(2)
        logits = tiny_model(**mixed_batch).logits
        session.begin(2)
        ids = tiny_model.generate(**mixed_batch, max_new_tokens=6, do_sample=False)
    assert torch.equal(logits, plain_outputs["logits"])
    assert torch.equal(ids, plain_outputs["ids"])


def test_nonzero_lambda_changes_outputs(tiny_model: nn.Module, mixed_batch: Any,
                                        plain_outputs: dict[str, torch.Tensor]) -> None:
    """The bit-identity above is not vacuous: the same spec with lambda != 0 changes the logits."""
    spec = InterventionSpec(experts=expert_set({i: (1, 5) for i in BAND}), mode="soft", strength=2.0)
    outputs, _ = record_forward(tiny_model, mixed_batch, spec)
    assert not torch.equal(outputs.logits, plain_outputs["logits"])


@pytest.mark.parametrize("mode", ["soft", "soft_topk", "random", "selection_only"])
def test_lambda_zero_hook_math_reproduces_router(tiny_model: nn.Module, mode: str) -> None:
    router = routers(tiny_model)[3]
    generator = torch.Generator().manual_seed(7)
    hidden = torch.randn(53, router.weight.shape[-1], generator=generator) * 3.0
    expert_mask = torch.zeros(NUM_EXPERTS)
    expert_mask[[0, 5, 9, 14]] = 1.0
    token_mask = (torch.rand(53, generator=generator) > 0.5).float()
    with torch.no_grad():
        output = router(hidden)
        _, router_weights, router_selected = output
        logits = F.linear(hidden, router.weight)
        steered = steer_logits(logits.float(), mode=mode, strength=0.0, expert_mask=expert_mask,
                               token_mask=token_mask, selected=SoftmaxTopK().selection_mask(router, logits.float()))
        weight_source = logits.float() if mode == "selection_only" else steered
        _, weights, selected = SoftmaxTopK().reroute(router, steered, weight_source, output)
    assert torch.equal(steered, logits)
    assert torch.equal(selected, router_selected)
    assert torch.equal(weights, router_weights)


# -- 2. recorded counts equal an independent reference --------------------------------------------------
def test_recorded_counts_match_router_logits_reference(tiny_model: nn.Module, mixed_batch: Any) -> None:
    outputs, routing = record_forward(tiny_model, mixed_batch, output_router_logits=True)
    input_ids = mixed_batch["input_ids"]
    batch, length = input_ids.shape
    weight = mixed_batch["attention_mask"].reshape(-1).double().numpy()
    is_image = (input_ids == tiny_model.config.image_token_id).reshape(-1).numpy()
    scope = np.where(is_image, PROMPT_IMAGE, PROMPT_TEXT)
    row = np.repeat(np.arange(batch), length)
    assert len(outputs.router_logits) == NUM_LAYERS

    counts = np.zeros((batch, NUM_LAYERS, 3, NUM_EXPERTS))
    prob_sums = np.zeros((batch, NUM_LAYERS, 3, NUM_EXPERTS))
    tokens = np.zeros((batch, 3))
    np.add.at(tokens, (row, scope), weight)
    for layer, layer_logits in enumerate(outputs.router_logits):
        assert layer_logits.shape == (batch * length, NUM_EXPERTS)
        probs = F.softmax(layer_logits.float(), dim=-1)
        selected = probs.topk(TOP_K, dim=-1).indices.numpy()
        for k in range(TOP_K):
            np.add.at(counts, (row, layer, scope, selected[:, k]), weight)
        np.add.at(prob_sums, (row, layer, scope), probs.double().numpy() * weight[:, None])

    # The reference is not trivial: padding, image tokens in row 0 only, text tokens in both rows.
    assert tokens[0, PROMPT_IMAGE] == int(is_image.reshape(batch, length)[0].sum()) > 0
    assert tokens[1, PROMPT_IMAGE] == 0
    assert tokens[1].sum() < length
    assert routing.counts.shape == (batch, NUM_LAYERS, 3, NUM_EXPERTS)
    np.testing.assert_array_equal(routing.tokens, tokens)
    np.testing.assert_array_equal(routing.counts, counts)
    np.testing.assert_allclose(routing.prob_sums, prob_sums, rtol=1e-5, atol=1e-5)
    assert np.all(routing.counts[:, :, GENERATED] == 0)
    # Every counted token selects exactly k experts.
    np.testing.assert_array_equal(routing.counts.sum(axis=3), TOP_K * np.broadcast_to(tokens[:, None, :],
                                                                                      (batch, NUM_LAYERS, 3)))


# -- 3. padding is never counted; a document's counts do not depend on its batch -------------------------
@pytest.mark.parametrize("a_has_image", [True, False], ids=["A_image", "A_text"])
def test_counts_alone_equal_counts_in_padded_batch(tiny_model: nn.Module, tiny_processor: Any,
                                                   a_has_image: bool) -> None:
    doc_a = (IMAGE_PROMPT if a_has_image else TEXT_PROMPT, drawn_image(2) if a_has_image else None)
    doc_b = (LONG_PROMPT, drawn_image(3))
    alone = encode(tiny_processor, [doc_a])
    batched = encode(tiny_processor, [doc_b, doc_a])
    real_a = int(alone["attention_mask"].sum())
    assert int(batched["attention_mask"][1].sum()) == real_a
    assert batched["input_ids"].shape[1] > real_a, "A must be left-padded in the batch"

    ids_alone, r_alone = record_generate(tiny_model, alone, max_new_tokens=4)
    ids_batch, r_batch = record_generate(tiny_model, batched, max_new_tokens=4)
    new_alone = ids_alone[0, alone["input_ids"].shape[1]:]
    new_batch = ids_batch[1, batched["input_ids"].shape[1]:]
    assert torch.equal(new_alone, new_batch)
    assert new_alone.shape[0] == 4  # the random model does not stop early here

    n_image = int((alone["input_ids"] == tiny_model.config.image_token_id).sum())
    # Prompt: every real token once, padding never; generated: one forward per new token but the last.
    expected_tokens = np.array([[real_a - n_image, n_image, 3]], dtype=np.float32)
    np.testing.assert_array_equal(r_alone.tokens, expected_tokens)
    np.testing.assert_array_equal(r_batch.tokens[1:2], expected_tokens)
    # Exact equality of the selections, all scopes (observed: no top-k flips from batched attention).
    np.testing.assert_array_equal(r_batch.counts[1:2], r_alone.counts)
    np.testing.assert_allclose(r_batch.prob_sums[1:2], r_alone.prob_sums, rtol=1e-5, atol=1e-4)
    real_b = int(batched["attention_mask"][0].sum())
    n_image_b = int((batched["input_ids"][0] == tiny_model.config.image_token_id).sum())
    np.testing.assert_array_equal(r_batch.tokens[0], [real_b - n_image_b, n_image_b, 3])


def test_rows_finished_at_eos_count_no_more_generated_tokens(tiny_model: nn.Module, tiny_processor: Any) -> None:
    doc_a = (IMAGE_PROMPT, drawn_image(2))
    doc_b = ("Write a short poem about the sea. Explain how photosynthesis works. Give three tips for sleep.", None)
    alone = encode(tiny_processor, [doc_a])
    with torch.inference_mode():
        first = int(tiny_model.generate(**alone, max_new_tokens=1, do_sample=False)[0, -1])
    batched = encode(tiny_processor, [doc_b, doc_a])
    # Make A's first new token its end of sequence: alone it stops at once, in the batch B keeps going.
    _, r_alone = record_generate(tiny_model, alone, max_new_tokens=4, eos_token_id=first)
    ids_batch, r_batch = record_generate(tiny_model, batched, max_new_tokens=4, eos_token_id=first)
    new_batch = ids_batch[:, batched["input_ids"].shape[1]:]
    assert int(new_batch[1, 0]) == first and int(new_batch[0, 0]) != first and new_batch.shape[1] == 4
    assert r_alone.tokens[0, GENERATED] == 0
    np.testing.assert_array_equal(r_batch.tokens[1:2], r_alone.tokens)  # actual: generated 3.0, not 0.0
    np.testing.assert_array_equal(r_batch.counts[1:2], r_alone.counts)


# -- 4. intervention modes ------------------------------------------------------------------------------
def band_phi(routing: BatchRouting, layer: int, experts: tuple[int, ...], scopes: tuple[int, ...]) -> float:
    counts = routing.counts[:, layer][:, list(scopes)][:, :, list(experts)].sum()
    return float(counts / routing.tokens[:, list(scopes)].sum())


def least_and_most_selected(routing: BatchRouting, n: int) -> tuple[dict[int, tuple[int, ...]], dict]:
    least, most = {}, {}
    for layer in BAND:
        per_expert = routing.counts[:, layer].sum(axis=(0, 1))
        order = sorted(range(NUM_EXPERTS), key=lambda e: (per_expert[e], e))
        least[layer] = tuple(sorted(order[:n]))
        most[layer] = tuple(sorted(order[-n:]))
    return least, most


@pytest.mark.parametrize("forced", [(3, 11), (0, 2, 4, 6)], ids=["two", "k"])  # more than k: refused
def test_force_puts_experts_in_topk(tiny_model: nn.Module, mixed_batch: Any, baseline_routing: BatchRouting,
                                    forced: tuple[int, ...]) -> None:
    assert LayerBand().resolve(NUM_LAYERS) == BAND
    # Experts on band layers only: a set naming layers outside the band is refused (tests/test_impossible_settings.py).
    spec = InterventionSpec(experts=expert_set({i: forced for i in BAND}), mode="force")
    all_routers = routers(tiny_model)
    with routing_session(tiny_model, intervention=spec) as session, torch.inference_mode():
        with capture_routers(tiny_model, tuple(range(NUM_LAYERS))) as captured:
            session.begin(2)
            tiny_model(**mixed_batch)
        routing = session.finish_batch().routing
    expected_per_token = min(len(forced), TOP_K)
    for layer in BAND:
        for expert in forced[:TOP_K] if len(forced) <= TOP_K else ():
            np.testing.assert_array_equal(routing.counts[:, layer, :, expert], routing.tokens)
        np.testing.assert_array_equal(routing.counts[:, layer][:, :, list(forced)].sum(axis=2),
                                      expected_per_token * routing.tokens)
        selected = captured[layer]["selected"]
        in_set = torch.isin(selected, torch.tensor(forced)).sum(dim=-1)
        assert torch.all(in_set == expected_per_token)  # every token, padding included (scope all)
        weights = captured[layer]["weights"]
        assert torch.all(weights >= 0)
        torch.testing.assert_close(weights.sum(dim=-1), torch.ones(weights.shape[0]))
        assert not np.array_equal(routing.counts[:, layer], baseline_routing.counts[:, layer])
    # Layers before the band are untouched; layers after it are not steered (own selection from their input).
    np.testing.assert_array_equal(routing.counts[:, : BAND[0]], baseline_routing.counts[:, : BAND[0]])
    np.testing.assert_array_equal(routing.prob_sums[:, : BAND[0]], baseline_routing.prob_sums[:, : BAND[0]])
    np.testing.assert_array_equal(routing.tokens, baseline_routing.tokens)
    for layer in [i for i in range(NUM_LAYERS) if i not in BAND]:
        _, own = unsteered_selection(all_routers[layer], captured[layer]["hidden"])
        assert torch.equal(captured[layer]["selected"], own)


def test_suppress_never_selects_experts(tiny_model: nn.Module, mixed_batch: Any,
                                        baseline_routing: BatchRouting) -> None:
    _, most = least_and_most_selected(baseline_routing, 3)
    for layer in BAND:
        assert baseline_routing.counts[:, layer][:, :, list(most[layer])].sum() > 0
    spec = InterventionSpec(experts=expert_set(most), mode="suppress")
    with routing_session(tiny_model, intervention=spec) as session, torch.inference_mode():
        with capture_routers(tiny_model, BAND) as captured:
            session.begin(2)
            tiny_model(**mixed_batch)
        routing = session.finish_batch().routing
    for layer in BAND:
        assert routing.counts[:, layer][:, :, list(most[layer])].sum() == 0
        assert not torch.isin(captured[layer]["selected"], torch.tensor(most[layer])).any()
        torch.testing.assert_close(captured[layer]["weights"].sum(dim=-1), torch.ones(mixed_batch["input_ids"].numel()))
    np.testing.assert_array_equal(routing.counts[:, : BAND[0]], baseline_routing.counts[:, : BAND[0]])


def test_soft_raises_selection_frequency(tiny_model: nn.Module, mixed_batch: Any,
                                         baseline_routing: BatchRouting) -> None:
    least, _ = least_and_most_selected(baseline_routing, 2)
    spec = InterventionSpec(experts=expert_set(least), mode="soft", strength=2.0)
    _, routing = record_forward(tiny_model, mixed_batch, spec)
    scopes = (PROMPT_TEXT, PROMPT_IMAGE)
    for layer in BAND:
        before = band_phi(baseline_routing, layer, least[layer], scopes)
        after = band_phi(routing, layer, least[layer], scopes)
        assert after > before, (layer, before, after)
    # At the first band layer the input is unchanged, so no boosted expert can lose a token.
    first = BAND[0]
    boosted = list(least[first])
    assert np.all(routing.counts[:, first][:, :, boosted] >= baseline_routing.counts[:, first][:, :, boosted])
    np.testing.assert_array_equal(routing.counts[:, :first], baseline_routing.counts[:, :first])


def test_selection_only_keeps_unsteered_weights(tiny_model: nn.Module, mixed_batch: Any,
                                                baseline_routing: BatchRouting) -> None:
    least, _ = least_and_most_selected(baseline_routing, 2)
    spec = InterventionSpec(experts=expert_set(least), mode="selection_only", strength=3.0)
    all_routers = routers(tiny_model)
    with routing_session(tiny_model, intervention=spec) as session, torch.inference_mode():
        with capture_routers(tiny_model, BAND) as captured:
            session.begin(2)
            tiny_model(**mixed_batch)
        session.finish_batch()
    for layer in BAND:
        got = captured[layer]
        probs, own = unsteered_selection(all_routers[layer], got["hidden"])
        changed = (got["selected"].sort(dim=-1).values != own.sort(dim=-1).values).any(dim=-1)
        assert changed.any(), f"layer {layer}: the boost changed no selection; the test would be vacuous"
        expected = probs.gather(1, got["selected"])
        expected = expected / expected.sum(dim=-1, keepdim=True)
        torch.testing.assert_close(got["weights"], expected, rtol=1e-6, atol=1e-7)
        # ... which differ from the steered router's own weights where the selection changed.
        steered_probs = F.softmax(got["logits"].float(), dim=-1).gather(1, got["selected"])
        steered_weights = steered_probs / steered_probs.sum(dim=-1, keepdim=True)
        assert not torch.allclose(got["weights"][changed], steered_weights[changed])


def test_random_control_plan(tiny_model: nn.Module) -> None:
    sites = find_router_sites(tiny_model)
    given = {i: (0, 1, 2) for i in BAND}

    def plan(seed: int):
        spec = InterventionSpec(experts=expert_set(given), mode="random", seed=seed)
        return {p.moe_index: p.experts for p in plan_intervention(spec, sites)}

    first, again, other = plan(0), plan(0), plan(1)
    assert sorted(first) == list(BAND)
    for layer, experts in first.items():
        assert len(experts) == len(given[layer])
        assert not set(experts) & set(given[layer])
        assert all(0 <= e < NUM_EXPERTS for e in experts)
    assert first == again
    assert first != other
    assert {p.moe_index: p.experts for p in plan_intervention(
        InterventionSpec(experts=expert_set(given), mode="soft"), sites)} == {i: given[i] for i in BAND}


def test_force_on_image_scope_leaves_text_tokens(tiny_model: nn.Module, mixed_batch: Any,
                                                 baseline_routing: BatchRouting) -> None:
    forced = (3, 11)
    spec = InterventionSpec(experts=expert_set({i: forced for i in BAND}), mode="force", token_scope="image")
    all_routers = routers(tiny_model)
    is_image = (mixed_batch["input_ids"] == tiny_model.config.image_token_id).reshape(-1)
    with routing_session(tiny_model, intervention=spec) as session, torch.inference_mode():
        with capture_routers(tiny_model, BAND) as captured:
            session.begin(2)
            tiny_model(**mixed_batch)
        routing = session.finish_batch().routing
    assert routing.tokens[:, PROMPT_IMAGE].sum() > 0
    for layer in BAND:
        for expert in forced:
            np.testing.assert_array_equal(routing.counts[:, layer, PROMPT_IMAGE, expert],
                                          routing.tokens[:, PROMPT_IMAGE])
        # Text tokens keep the router's own choice from their (possibly changed) input at every band layer.
        _, own = unsteered_selection(all_routers[layer], captured[layer]["hidden"])
        assert torch.equal(captured[layer]["selected"][~is_image], own[~is_image])
        assert not torch.equal(captured[layer]["selected"][is_image], own[is_image])
    # At the first band layer the input is unchanged, so text-token counts equal the unsteered run's.
    first = BAND[0]
    np.testing.assert_array_equal(routing.counts[:, first, PROMPT_TEXT], baseline_routing.counts[:, first, PROMPT_TEXT])
    np.testing.assert_array_equal(routing.counts[:, :first], baseline_routing.counts[:, :first])


# -- 5. hooks are always removed --------------------------------------------------------------------------
def test_hooks_removed_on_fresh_model(fresh_tiny_model: nn.Module) -> None:
    model = fresh_tiny_model
    assert hook_counts(model) == [(0, 0)] * (NUM_LAYERS + 1)
    spec = InterventionSpec(experts=expert_set({i: (1,) for i in BAND}), mode="force")
    with routing_session(model, intervention=spec):
        # The layout pre-hook, and until the first call proves every router fires, the check after each call.
        assert hook_counts(model) == [(1, 1)] + [(1, 0)] * NUM_LAYERS
    assert hook_counts(model) == [(0, 0)] * (NUM_LAYERS + 1)
    with pytest.raises(KeyError, match="boom"), routing_session(model, intervention=spec) as session:
        session.begin(1)
        raise KeyError("boom")
    assert hook_counts(model) == [(0, 0)] * (NUM_LAYERS + 1)


def test_hooks_removed_after_exception_during_forward(tiny_model: nn.Module, mixed_batch: Any) -> None:
    with torch.inference_mode():
        tiny_model(**mixed_batch)  # transformers installs its own output-capturing hooks on first use
    before = hook_counts(tiny_model)
    assert before[0] == (0, 0)
    spec = InterventionSpec(experts=expert_set({i: (1,) for i in BAND}), mode="soft")

    def explode(module: nn.Module, args: tuple, output: Any) -> None:
        raise RuntimeError("router exploded")

    with pytest.raises(RuntimeError, match="router exploded"):
        with routing_session(tiny_model, intervention=spec) as session, torch.inference_mode():
            handle = routers(tiny_model)[4].register_forward_hook(explode)
            try:
                session.begin(2)
                tiny_model(**mixed_batch)
            finally:
                handle.remove()
    assert hook_counts(tiny_model) == before
    with routing_session(tiny_model) as session, torch.inference_mode():
        session.begin(2)
        tiny_model.generate(**mixed_batch, max_new_tokens=2, do_sample=False)
        session.finish_batch()
    assert hook_counts(tiny_model) == before


# -- 6. no host-device synchronisation inside the hooks ---------------------------------------------------
def soft_spec() -> InterventionSpec:
    return InterventionSpec(experts=expert_set({i: (1, 5, 9) for i in BAND}), mode="soft", strength=1.5,
                            token_scope="prompt")


def test_no_host_sync_inside_hooks(tiny_model: nn.Module, mixed_batch: Any) -> None:
    guard = HostSyncGuard()
    with routing_session(tiny_model, intervention=soft_spec()) as session, torch.inference_mode():
        handles = bracket_session_hooks(tiny_model, guard)
        try:
            with guard:
                session.begin(2)
                tiny_model.generate(**mixed_batch, max_new_tokens=4, do_sample=False)
        finally:
            for handle in handles:
                handle.remove()
        assert guard.armed == 0
        routing = session.finish_batch().routing  # the one transfer per batch, by design outside the guard
    assert not [name for name, armed in guard.seen if armed]
    assert guard.seen, "generate itself syncs; the guard saw none, so it was not active"
    assert routing.tokens[:, GENERATED].tolist() == [3.0, 3.0]


def test_host_sync_guard_catches_violations(tiny_model: nn.Module, mixed_batch: Any) -> None:
    guard = HostSyncGuard()
    with guard:
        guard.armed = 1
        with pytest.raises(HostSyncViolation, match="'item'"):
            torch.ones(()).item()
        guard.armed = 0
        torch.ones(()).item()  # outside hooks: recorded only

    def leaky_hook(module: nn.Module, args: tuple, output: Any) -> None:
        output[1].sum().item()

    with routing_session(tiny_model, intervention=soft_spec()) as session, torch.inference_mode():
        # Registered before the bracketing hooks: it runs after the session's hook, before the disarm hook.
        leak = routers(tiny_model)[3].register_forward_hook(leaky_hook)
        handles = [leak, *bracket_session_hooks(tiny_model, guard)]
        try:
            with guard, pytest.raises(HostSyncViolation, match="'item'"):
                session.begin(2)
                tiny_model.generate(**mixed_batch, max_new_tokens=2, do_sample=False)
        finally:
            for handle in handles:
                handle.remove()
    assert ("item", True) in guard.seen


# -- 7. unsupported models --------------------------------------------------------------------------------
def test_unsupported_model_type_lists_supported_families() -> None:
    model = nn.Linear(2, 2)
    model.config = types.SimpleNamespace(model_type="bert")
    with pytest.raises(UnsupportedModelError, match="qwen3_vl_moe") as info:
        find_router_sites(model)
    assert "'bert'" in str(info.value)
    with pytest.raises(UnsupportedModelError), routing_session(model):
        pass


def test_use_kernels_flag_is_accepted_and_a_skipped_router_is_not(tiny_model: nn.Module, mixed_batch: Any) -> None:
    """transformers 5.25 sets use_kernels by default; the flag alone is no reason to refuse (it was, before):
    the session proves instead that every router hook fires."""
    missing = object()
    original = tiny_model.__dict__.get("_use_kernels", missing)
    tiny_model._use_kernels = True
    try:
        assert len(find_router_sites(tiny_model)) == NUM_LAYERS
        _, routing = record_forward(tiny_model, mixed_batch)
        assert routing.counts.sum() == TOP_K * NUM_LAYERS * routing.tokens.sum()
        path = find_router_sites(tiny_model)[1].module_path
        with router_skipped(tiny_model, path), pytest.raises(RoutingHooksNotFiredError, match="use_kernels=True"):
            record_forward(tiny_model, mixed_batch)
    finally:
        if original is missing:
            del tiny_model._use_kernels
        else:
            tiny_model._use_kernels = original
    assert hook_counts(tiny_model)[0] == (0, 0)


def test_sites_of_tiny_model(tiny_model: nn.Module) -> None:
    sites = find_router_sites(tiny_model)
    assert [s.moe_index for s in sites] == list(range(NUM_LAYERS))
    assert [s.layer_index for s in sites] == list(range(NUM_LAYERS))
    assert {(s.num_experts, s.top_k, s.family) for s in sites} == {(NUM_EXPERTS, TOP_K, "qwen3_vl_moe")}
    assert image_token_ids(tiny_model) == (tiny_model.config.image_token_id, tiny_model.config.video_token_id)
