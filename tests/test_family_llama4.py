"""Router hooks on the tiny random Llama 4: recording, steering, hook hygiene, no host syncs.

Llama 4 routes top-1 (num_experts_per_tok) on the raw logits and gates the selected expert with sigmoid of
its logit: the router returns (scores [N, E], logits [N, E]) with scores 0 off the selection, and the gates
are not normalised. MoE sits on every second decoder layer (1, 3, 5, 7), so MoE index != layer index.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from routing_contract import (
    expert_set,
    hook_counts,
    mixed_batch_fixtures,
    record_forward,
    routers,
    tiny_checkpoint_fixtures,
)
from skipped_routers import router_skipped
from torch import nn

from rd_eval.routing.families.llama4 import SigmoidTopKScores
from rd_eval.routing.recording import GENERATED, PROMPT_IMAGE, PROMPT_TEXT, BatchRouting
from rd_eval.routing.session import RoutingHooksNotFiredError, routing_session
from rd_eval.routing.sites import find_router_sites, image_token_ids, model_family
from rd_eval.routing.spec import InterventionSpec, LayerBand
from rd_eval.routing.steering import steer_logits

TOP_K = 1
NUM_EXPERTS = 8
NUM_MOE = 4
MOE_DECODER_LAYERS = [1, 3, 5, 7]
BAND = (1, 2)  # LayerBand() (fractions 0.25-0.75) on 4 MoE layers

IMAGE_PROMPT = "What is the total cost?"
TEXT_PROMPT = "Mia has 7 apples and buys 5 more. How many apples does she have now?"
LONG_PROMPT = "The bar chart shows values per category. Which category has the largest value? Reply with a letter."


# -- fixtures -------------------------------------------------------------------------------------------
checkpoint_fixture, model_fixture, processor_fixture = tiny_checkpoint_fixtures(
    "llama4", "rd-tiny-llama4", dir_fixture="llama4_dir"
)


batch_fixture, plain_fixture, baseline_fixture = mixed_batch_fixtures(IMAGE_PROMPT, TEXT_PROMPT)


@contextmanager
def capture_routers(model: nn.Module) -> Iterator[dict[int, dict[str, torch.Tensor]]]:
    """Each router's input and final output (registered after the session's hooks: what the experts get)."""
    captured: dict[int, dict[str, torch.Tensor]] = {}
    handles = []
    for index, router in enumerate(routers(model)):
        def hook(module: nn.Module, args: tuple, output: Any, index: int = index) -> None:
            captured[index] = {"hidden": args[0].clone(), "scores": output[0].clone(), "logits": output[1].clone()}
        handles.append(router.register_forward_hook(hook))
    try:
        yield captured
    finally:
        for handle in handles:
            handle.remove()


def gated_experts(scores: torch.Tensor, top_k: int = TOP_K) -> torch.Tensor:
    """The experts a scores tensor gates (non-zero), as [N, k]; asserts every row gates exactly k."""
    gated = scores != 0
    assert torch.all(gated.sum(dim=-1) == top_k)
    return gated.nonzero()[:, 1].reshape(-1, top_k)


def own_selection(router: nn.Module, hidden: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return F.linear(hidden, router.weight).topk(TOP_K, dim=-1).indices.sort(dim=-1).values


def assert_sigmoid_gate_rule(scores: torch.Tensor, logits: torch.Tensor, top_k: int = TOP_K) -> None:
    """Llama 4's weight rule: the selected experts carry sigmoid(their logit), every other expert exactly 0."""
    selected = gated_experts(scores, top_k)
    torch.testing.assert_close(scores.gather(1, selected), torch.sigmoid(logits.gather(1, selected)))
    assert torch.all(scores.gather(1, selected) > 0) and torch.all(scores <= 1)
    assert float(scores.sum()) == pytest.approx(float(scores.gather(1, selected).sum()))


# -- 1. no-op hooks are bit-identical --------------------------------------------------------------------
NOOP_CASES = {
    "record_only": (True, None),
    "lambda_0_soft": (True, InterventionSpec(experts=expert_set({i: (1, 5) for i in BAND}), mode="soft",
                                              strength=0.0)),
    "lambda_0_selection_only_no_record": (
        False, InterventionSpec(experts=expert_set({i: (1, 5) for i in BAND}), mode="selection_only", strength=0.0)),
    "empty_expert_set_force": (True, InterventionSpec(experts=expert_set({i: () for i in BAND}), mode="force")),
}


def test_nonzero_lambda_changes_outputs(model: nn.Module, mixed_batch: Any,
                                        plain_outputs: dict[str, torch.Tensor]) -> None:
    spec = InterventionSpec(experts=expert_set({i: (1, 5) for i in BAND}), mode="soft", strength=2.0)
    outputs, _ = record_forward(model, mixed_batch, spec)
    assert not torch.equal(outputs.logits, plain_outputs["logits"])


def router_variant(model: nn.Module, top_k: int, dtype: torch.dtype) -> nn.Module:
    """A copy of MoE router 2 with another k or dtype (the family's math must not assume k = 1 or fp32)."""
    router = copy.deepcopy(routers(model)[2]).to(dtype)
    router.top_k = top_k
    return router


@pytest.mark.parametrize("top_k,dtype", [(1, torch.float32), (2, torch.float32), (1, torch.bfloat16),
                                         (3, torch.bfloat16)])
@pytest.mark.parametrize("mode", ["soft", "soft_topk", "random", "selection_only"])
def test_lambda_zero_reroute_reproduces_router(model: nn.Module, mode: str, top_k: int, dtype: torch.dtype) -> None:
    router = router_variant(model, top_k, dtype)
    math = SigmoidTopKScores()
    generator = torch.Generator().manual_seed(7)
    hidden = (torch.randn(53, router.weight.shape[-1], generator=generator) * 3.0).to(dtype)
    expert_mask = torch.zeros(NUM_EXPERTS)
    expert_mask[[0, 5]] = 1.0
    token_mask = (torch.rand(53, generator=generator) > 0.5).float()
    with torch.no_grad():
        output = router(hidden)
        logits = math.logits(router, hidden)
        assert math.sizes(router) == (NUM_EXPERTS, top_k)
        steered = steer_logits(logits, mode=mode, strength=0.0, expert_mask=expert_mask, token_mask=token_mask,
                               selected=math.selection_mask(router, logits))
        weight_source = logits if mode == "selection_only" else steered
        rerouted = math.reroute(router, steered, weight_source, output)
        selected = math.selection(output, router)
    assert len(rerouted) == len(output) == 2
    for mine, theirs in zip(rerouted, output, strict=True):
        assert mine.dtype == theirs.dtype
        assert torch.equal(mine, theirs)
    # selection() recovers exactly the router's own top-k of its logits.
    assert torch.equal(selected.sort(dim=-1).values, output[1].topk(top_k, dim=-1).indices.sort(dim=-1).values)
    assert torch.equal(math.selection(rerouted, router).sort(dim=-1).values, selected.sort(dim=-1).values)


def test_reroute_pins_force_and_suppress(model: nn.Module) -> None:
    router = router_variant(model, 2, torch.float32)
    math = SigmoidTopKScores()
    hidden = torch.randn(29, router.weight.shape[-1], generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        output = router(hidden)
        logits = math.logits(router, hidden)
    pin = torch.zeros(NUM_EXPERTS)
    pin[[2, 6, 7]] = 1.0
    forced = math.reroute(router, logits, logits, output, pin.unsqueeze(0))
    chosen = math.selection(forced, router)
    assert torch.isin(chosen, torch.tensor([2, 6, 7])).all()
    # Among the pinned experts the higher logits win (order inside the set is kept).
    expected = logits[:, [2, 6, 7]].topk(2, dim=-1).indices
    assert torch.equal(chosen.sort(dim=-1).values, torch.tensor([2, 6, 7])[expected].sort(dim=-1).values)
    assert_sigmoid_gate_rule(forced[0], forced[1], 2)
    suppressed = math.reroute(router, logits, logits, output, -pin.unsqueeze(0))
    assert not torch.isin(math.selection(suppressed, router), torch.tensor([2, 6, 7])).any()
    assert_sigmoid_gate_rule(suppressed[0], suppressed[1], 2)


# -- 2. recorded counts equal the model's own router logits, selected independently --------------------------
def test_recorded_counts_match_router_logits_reference(model: nn.Module, mixed_batch: Any) -> None:
    outputs, routing = record_forward(model, mixed_batch, output_router_logits=True)
    input_ids = mixed_batch["input_ids"]
    batch, length = input_ids.shape
    weight = mixed_batch["attention_mask"].reshape(-1).double().numpy()
    is_image = (input_ids == model.config.image_token_id).reshape(-1).numpy()
    scope = np.where(is_image, PROMPT_IMAGE, PROMPT_TEXT)
    row = np.repeat(np.arange(batch), length)
    assert len(outputs.router_logits) == NUM_MOE
    counts = np.zeros((batch, NUM_MOE, 3, NUM_EXPERTS))
    prob_sums = np.zeros((batch, NUM_MOE, 3, NUM_EXPERTS))
    tokens = np.zeros((batch, 3))
    np.add.at(tokens, (row, scope), weight)
    for layer, layer_logits in enumerate(outputs.router_logits):
        assert layer_logits.shape == (batch * length, NUM_EXPERTS)
        selected = layer_logits.float().topk(TOP_K, dim=-1).indices.numpy()
        for k in range(TOP_K):
            np.add.at(counts, (row, layer, scope, selected[:, k]), weight)
        gates = torch.sigmoid(layer_logits.float()).double().numpy()
        np.add.at(prob_sums, (row, layer, scope), gates * weight[:, None])
    assert tokens[0, PROMPT_IMAGE] == int(is_image.reshape(batch, length)[0].sum()) == 16
    assert tokens[1, PROMPT_IMAGE] == 0 and tokens[1].sum() < length
    np.testing.assert_array_equal(routing.tokens, tokens)
    np.testing.assert_array_equal(routing.counts, counts)
    np.testing.assert_allclose(routing.prob_sums, prob_sums, rtol=1e-5, atol=1e-5)
    assert np.all(routing.counts[:, :, GENERATED] == 0)


# -- 3. force / suppress / soft / selection_only / token scope --------------------------------------------
@pytest.mark.parametrize("forced", [(3,)], ids=["one"])  # more than k: refused
def test_force_puts_experts_in_topk(model: nn.Module, mixed_batch: Any, baseline_routing: BatchRouting,
                                    forced: tuple[int, ...]) -> None:
    assert LayerBand().resolve(NUM_MOE) == BAND
    spec = InterventionSpec(experts=expert_set({i: forced for i in BAND}), mode="force")  # band layers only
    all_routers = routers(model)
    with routing_session(model, intervention=spec) as session, torch.inference_mode():
        with capture_routers(model) as captured:
            session.begin(2)
            model(**mixed_batch)
        routing = session.finish_batch().routing
    for layer in BAND:
        np.testing.assert_array_equal(routing.counts[:, layer][:, :, list(forced)].sum(axis=2), routing.tokens)
        got = captured[layer]
        assert torch.isin(gated_experts(got["scores"]), torch.tensor(forced)).all()  # every token, padding too
        assert_sigmoid_gate_rule(got["scores"], got["logits"])
        assert not np.array_equal(routing.counts[:, layer], baseline_routing.counts[:, layer])
    np.testing.assert_array_equal(routing.counts[:, : BAND[0]], baseline_routing.counts[:, : BAND[0]])
    np.testing.assert_array_equal(routing.prob_sums[:, : BAND[0]], baseline_routing.prob_sums[:, : BAND[0]])
    np.testing.assert_array_equal(routing.tokens, baseline_routing.tokens)
    for layer in [i for i in range(NUM_MOE) if i not in BAND]:  # outside the band: the router's own choice
        got = captured[layer]
        assert torch.equal(gated_experts(got["scores"]), own_selection(all_routers[layer], got["hidden"]))
        assert_sigmoid_gate_rule(got["scores"], got["logits"])


def most_selected(routing: BatchRouting, n: int) -> dict[int, tuple[int, ...]]:
    most = {}
    for layer in BAND:
        per_expert = routing.counts[:, layer].sum(axis=(0, 1))
        most[layer] = tuple(sorted(sorted(range(NUM_EXPERTS), key=lambda e: (per_expert[e], e))[-n:]))
    return most


def test_suppress_never_selects_experts(model: nn.Module, mixed_batch: Any, baseline_routing: BatchRouting) -> None:
    most = most_selected(baseline_routing, 3)
    for layer in BAND:
        assert baseline_routing.counts[:, layer][:, :, list(most[layer])].sum() > 0
    spec = InterventionSpec(experts=expert_set(most), mode="suppress")
    with routing_session(model, intervention=spec) as session, torch.inference_mode():
        with capture_routers(model) as captured:
            session.begin(2)
            model(**mixed_batch)
        routing = session.finish_batch().routing
    for layer in BAND:
        assert routing.counts[:, layer][:, :, list(most[layer])].sum() == 0
        assert not torch.isin(gated_experts(captured[layer]["scores"]), torch.tensor(most[layer])).any()
        assert_sigmoid_gate_rule(captured[layer]["scores"], captured[layer]["logits"])
    np.testing.assert_array_equal(routing.counts[:, : BAND[0]], baseline_routing.counts[:, : BAND[0]])


def test_soft_raises_selection_frequency(model: nn.Module, mixed_batch: Any, baseline_routing: BatchRouting) -> None:
    least = {}
    for layer in BAND:
        per_expert = baseline_routing.counts[:, layer].sum(axis=(0, 1))
        least[layer] = tuple(sorted(sorted(range(NUM_EXPERTS), key=lambda e: (per_expert[e], e))[:2]))
    _, routing = record_forward(model, mixed_batch, InterventionSpec(experts=expert_set(least), mode="soft",
                                                                     strength=2.0))
    for layer in BAND:
        before = baseline_routing.counts[:, layer][:, :2][:, :, list(least[layer])].sum()
        after = routing.counts[:, layer][:, :2][:, :, list(least[layer])].sum()
        assert after > before, (layer, before, after)


def test_selection_only_gates_with_unsteered_logits(model: nn.Module, mixed_batch: Any,
                                                    baseline_routing: BatchRouting) -> None:
    least = {}
    for layer in BAND:
        per_expert = baseline_routing.counts[:, layer].sum(axis=(0, 1))
        least[layer] = tuple(sorted(sorted(range(NUM_EXPERTS), key=lambda e: (per_expert[e], e))[:2]))
    spec = InterventionSpec(experts=expert_set(least), mode="selection_only", strength=3.0)
    all_routers = routers(model)
    with routing_session(model, intervention=spec) as session, torch.inference_mode():
        with capture_routers(model) as captured:
            session.begin(2)
            model(**mixed_batch)
        session.finish_batch()
    for layer in BAND:
        got = captured[layer]
        selected = gated_experts(got["scores"])
        changed = selected != own_selection(all_routers[layer], got["hidden"])
        assert changed.any(), f"MoE layer {layer}: the boost changed no selection; the test would be vacuous"
        with torch.no_grad():
            own_logits = F.linear(got["hidden"], all_routers[layer].weight)
        gates = got["scores"].gather(1, selected)
        torch.testing.assert_close(gates, torch.sigmoid(own_logits.gather(1, selected)))
        # ... not the gates of the boosted logits the rerouted output carries.
        rows = changed.any(dim=-1)
        assert not torch.allclose(gates[rows], torch.sigmoid(got["logits"].gather(1, selected))[rows])


def test_force_on_image_scope_leaves_text_tokens(model: nn.Module, mixed_batch: Any,
                                                 baseline_routing: BatchRouting) -> None:
    forced = (3,)
    spec = InterventionSpec(experts=expert_set({i: forced for i in BAND}), mode="force", token_scope="image")
    all_routers = routers(model)
    is_image = (mixed_batch["input_ids"] == model.config.image_token_id).reshape(-1)
    with routing_session(model, intervention=spec) as session, torch.inference_mode():
        with capture_routers(model) as captured:
            session.begin(2)
            model(**mixed_batch)
        routing = session.finish_batch().routing
    assert routing.tokens[:, PROMPT_IMAGE].sum() > 0
    for layer in BAND:
        np.testing.assert_array_equal(routing.counts[:, layer, PROMPT_IMAGE, 3], routing.tokens[:, PROMPT_IMAGE])
        got = captured[layer]
        own = own_selection(all_routers[layer], got["hidden"])
        assert torch.equal(gated_experts(got["scores"])[~is_image], own[~is_image])
    first = BAND[0]
    np.testing.assert_array_equal(routing.counts[:, first, PROMPT_TEXT], baseline_routing.counts[:, first, PROMPT_TEXT])


# -- 4. a document's counts do not depend on its batch (generate, KV cache) ------------------------------


# -- 5. hooks are always removed ----------------------------------------------------------------------------


# -- 6. no host-device synchronisation inside the hooks ------------------------------------------------------


# -- 7. the tiny checkpoint and its sites ---------------------------------------------------------------------
def test_tiny_checkpoint_loads_with_auto_classes(llama4_dir: Path, model: nn.Module, processor: Any) -> None:
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    config = AutoConfig.from_pretrained(llama4_dir)
    tokenizer = AutoTokenizer.from_pretrained(llama4_dir)
    assert config.model_type == "llama4" and type(model).__name__ == "Llama4ForConditionalGeneration"
    assert type(processor).__name__ == "Llama4Processor"
    assert config.image_token_id == tokenizer.convert_tokens_to_ids("<|patch|>")
    assert config.boi_token_id == tokenizer.convert_tokens_to_ids("<|image_start|>")
    assert max(tokenizer.get_vocab().values()) < config.text_config.vocab_size
    assert model.generation_config.eos_token_id == tokenizer.convert_tokens_to_ids("<|eot|>")
    causal = AutoModelForCausalLM.from_pretrained(llama4_dir, dtype=torch.float32, use_kernels=False).eval()
    inputs = tokenizer(["Mia has 7 apples"], return_tensors="pt")
    with torch.inference_mode():
        ids = causal.generate(**inputs, max_new_tokens=3, do_sample=False)
    assert ids.shape[1] == inputs["input_ids"].shape[1] + 3


def test_sites_and_use_kernels(model: nn.Module) -> None:
    sites = find_router_sites(model)
    assert [s.moe_index for s in sites] == list(range(NUM_MOE))
    assert [s.layer_index for s in sites] == MOE_DECODER_LAYERS == model.config.text_config.moe_layers
    assert {(s.num_experts, s.top_k, s.family, s.math) for s in sites} == {
        (NUM_EXPERTS, TOP_K, "llama4", "sigmoid_topk_scores")}
    assert image_token_ids(model) == (model.config.image_token_id,)
    assert isinstance(model_family(model).math, SigmoidTopKScores)
    model._use_kernels = True  # accepted (it was refused before): the session proves the hooks fire instead
    try:
        assert find_router_sites(model) == sites
    finally:
        del model._use_kernels
    assert hook_counts(model)[0] == (0, 0)


@pytest.mark.parametrize("record", [True, False], ids=["recording", "intervention_only"])
def test_a_skipped_router_stops_the_session(model: nn.Module, mixed_batch: Any, record: bool) -> None:
    """A MoE block that no longer calls its router (as hub kernels may do) stops recording and steering; the
    skipped router is outside the band, so with intervention only it carries just the proof's witness hook."""
    spec = None if record else InterventionSpec(experts=expert_set({i: (1,) for i in BAND}), mode="force")
    path = find_router_sites(model)[NUM_MOE - 1].module_path
    with router_skipped(model, path), pytest.raises(RoutingHooksNotFiredError, match=re.escape(path)):
        with routing_session(model, record=record, intervention=spec) as session, torch.inference_mode():
            session.begin(2)
            model(**mixed_batch)
    assert hook_counts(model)[0] == (0, 0)
