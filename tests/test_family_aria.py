"""Router hooks on the tiny random Aria: recording, steering, hook hygiene, no host syncs.

Aria routes top-k (moe_topk = 2 here) on the raw logits; the routing weights are the softmax over the k
selected logits (sum 1). The router returns (logits [N, E], weights [N, k], ids [N, k]); every decoder layer
is MoE, and shared experts run on every token (not routed).
"""

from __future__ import annotations

import copy
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from routing_contract import (
    drawn_image,
    encode,
    expert_set,
    mixed_batch_fixtures,
    record_forward,
    routers,
    tiny_checkpoint_fixtures,
)
from torch import nn

from rd_eval.routing.families.aria import LogitTopKSoftmax
from rd_eval.routing.recording import GENERATED, PROMPT_IMAGE, PROMPT_TEXT, BatchRouting
from rd_eval.routing.session import routing_session
from rd_eval.routing.sites import find_router_sites, image_token_ids, model_family
from rd_eval.routing.spec import InterventionSpec, LayerBand
from rd_eval.routing.steering import steer_logits

TOP_K = 2
NUM_EXPERTS = 8
NUM_MOE = 6
BAND = (2, 3, 4)  # LayerBand() (fractions 0.25-0.75) on 6 MoE layers
IMAGE_TOKENS = 16  # a 980 px image: 14x14 patches of 70 px -> 16 projector queries

IMAGE_PROMPT = "What is the total cost?"
TEXT_PROMPT = "Mia has 7 apples and buys 5 more. How many apples does she have now?"
LONG_PROMPT = "The bar chart shows values per category. Which category has the largest value? Reply with a letter."


# -- fixtures -------------------------------------------------------------------------------------------
checkpoint_fixture, model_fixture, processor_fixture = tiny_checkpoint_fixtures(
    "aria", "rd-tiny-aria", dir_fixture="aria_dir"
)


batch_fixture, plain_fixture, baseline_fixture = mixed_batch_fixtures(IMAGE_PROMPT, TEXT_PROMPT)


@contextmanager
def capture_routers(model: nn.Module) -> Iterator[dict[int, dict[str, torch.Tensor]]]:
    """Each router's input and final output (registered after the session's hooks: what the experts get)."""
    captured: dict[int, dict[str, torch.Tensor]] = {}
    handles = []
    for index, router in enumerate(routers(model)):
        def hook(module: nn.Module, args: tuple, output: Any, index: int = index) -> None:
            captured[index] = {"hidden": args[0].clone(), "logits": output[0].clone(),
                               "weights": output[1].clone(), "selected": output[2].clone()}
        handles.append(router.register_forward_hook(hook))
    try:
        yield captured
    finally:
        for handle in handles:
            handle.remove()


def own_selection(router: nn.Module, hidden: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return F.linear(hidden, router.weight).topk(TOP_K, dim=-1).indices.sort(dim=-1).values


def assert_softmax_weight_rule(got: dict[str, torch.Tensor], logits: torch.Tensor | None = None) -> None:
    """Aria's weight rule: softmax over the selected logits (of `logits`, default the output's own): sum 1."""
    source = got["logits"] if logits is None else logits
    weights = got["weights"]
    torch.testing.assert_close(weights, F.softmax(source.gather(1, got["selected"]), dim=-1))
    torch.testing.assert_close(weights.sum(dim=-1), torch.ones(weights.shape[0]))
    assert torch.all(weights > 0)


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


@pytest.mark.parametrize("top_k,dtype", [(2, torch.float32), (1, torch.float32), (2, torch.bfloat16),
                                         (3, torch.float16)])
@pytest.mark.parametrize("mode", ["soft", "soft_topk", "random", "selection_only"])
def test_lambda_zero_reroute_reproduces_router(model: nn.Module, mode: str, top_k: int, dtype: torch.dtype) -> None:
    router = copy.deepcopy(routers(model)[3]).to(dtype)
    router.top_k = top_k
    math = LogitTopKSoftmax()
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
    assert len(rerouted) == len(output) == 3
    for mine, theirs in zip(rerouted, output, strict=True):
        assert mine.dtype == theirs.dtype
        assert torch.equal(mine, theirs)
    assert torch.equal(math.selection(rerouted, router), output[2])


def test_reroute_pins_force_and_suppress(model: nn.Module) -> None:
    router = routers(model)[0]
    math = LogitTopKSoftmax()
    hidden = torch.randn(29, router.weight.shape[-1], generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        output = router(hidden)
        logits = math.logits(router, hidden)
    pinned = torch.tensor([2, 6, 7])
    pin = torch.zeros(NUM_EXPERTS)
    pin[pinned] = 1.0
    forced = math.reroute(router, logits, logits, output, pin.unsqueeze(0))
    expected = pinned[logits[:, pinned].topk(TOP_K, dim=-1).indices]  # the higher logits win inside the set
    assert torch.equal(forced[2].sort(dim=-1).values, expected.sort(dim=-1).values)
    assert_softmax_weight_rule({"logits": logits, "weights": forced[1], "selected": forced[2]})
    suppressed = math.reroute(router, logits, logits, output, -pin.unsqueeze(0))
    assert not torch.isin(suppressed[2], pinned).any()
    assert_softmax_weight_rule({"logits": logits, "weights": suppressed[1], "selected": suppressed[2]})


# -- 2. recorded counts equal a reference recomputed from router inputs captured by our own hooks ----------
def test_recorded_counts_match_captured_input_reference(model: nn.Module, mixed_batch: Any) -> None:
    all_routers = routers(model)
    with capture_routers(model) as captured, torch.inference_mode():
        model(**mixed_batch)
    _, routing = record_forward(model, mixed_batch)
    input_ids = mixed_batch["input_ids"]
    batch, length = input_ids.shape
    weight = mixed_batch["attention_mask"].reshape(-1).double().numpy()
    is_image = (input_ids == model.config.image_token_id).reshape(-1).numpy()
    scope = np.where(is_image, PROMPT_IMAGE, PROMPT_TEXT)
    row = np.repeat(np.arange(batch), length)
    counts = np.zeros((batch, NUM_MOE, 3, NUM_EXPERTS))
    prob_sums = np.zeros((batch, NUM_MOE, 3, NUM_EXPERTS))
    tokens = np.zeros((batch, 3))
    np.add.at(tokens, (row, scope), weight)
    assert sorted(captured) == list(range(NUM_MOE))
    for layer in range(NUM_MOE):
        with torch.no_grad():
            logits = captured[layer]["hidden"] @ all_routers[layer].weight.T
        assert logits.shape == (batch * length, NUM_EXPERTS)
        selected = logits.topk(TOP_K, dim=-1).indices.numpy()
        for k in range(TOP_K):
            np.add.at(counts, (row, layer, scope, selected[:, k]), weight)
        np.add.at(prob_sums, (row, layer, scope), F.softmax(logits, dim=-1).double().numpy() * weight[:, None])
    assert tokens[0, PROMPT_IMAGE] == int(is_image.reshape(batch, length)[0].sum()) == IMAGE_TOKENS
    assert tokens[1, PROMPT_IMAGE] == 0 and tokens[1].sum() < length
    np.testing.assert_array_equal(routing.tokens, tokens)
    np.testing.assert_array_equal(routing.counts, counts)
    np.testing.assert_allclose(routing.prob_sums, prob_sums, rtol=1e-5, atol=1e-5)
    assert np.all(routing.counts[:, :, GENERATED] == 0)
    np.testing.assert_array_equal(routing.counts.sum(axis=3),
                                  TOP_K * np.broadcast_to(tokens[:, None, :], (batch, NUM_MOE, 3)))


# -- 3. force / suppress / soft / selection_only / token scope --------------------------------------------
@pytest.mark.parametrize("forced", [(3, 6)], ids=["k"])  # more than k: refused
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
        np.testing.assert_array_equal(routing.counts[:, layer][:, :, list(forced)].sum(axis=2), TOP_K * routing.tokens)
        got = captured[layer]
        assert torch.isin(got["selected"], torch.tensor(forced)).all()  # every token, padding included
        assert_softmax_weight_rule(got)
        assert not np.array_equal(routing.counts[:, layer], baseline_routing.counts[:, layer])
    np.testing.assert_array_equal(routing.counts[:, : BAND[0]], baseline_routing.counts[:, : BAND[0]])
    np.testing.assert_array_equal(routing.prob_sums[:, : BAND[0]], baseline_routing.prob_sums[:, : BAND[0]])
    np.testing.assert_array_equal(routing.tokens, baseline_routing.tokens)
    for layer in [i for i in range(NUM_MOE) if i not in BAND]:  # outside the band: the router's own choice
        got = captured[layer]
        assert torch.equal(got["selected"].sort(dim=-1).values, own_selection(all_routers[layer], got["hidden"]))
        assert_softmax_weight_rule(got)


def ranked(routing: BatchRouting, n: int, most: bool) -> dict[int, tuple[int, ...]]:
    chosen = {}
    for layer in BAND:
        per_expert = routing.counts[:, layer].sum(axis=(0, 1))
        order = sorted(range(NUM_EXPERTS), key=lambda e: (per_expert[e], e))
        chosen[layer] = tuple(sorted(order[-n:] if most else order[:n]))
    return chosen


def test_suppress_never_selects_experts(model: nn.Module, mixed_batch: Any, baseline_routing: BatchRouting) -> None:
    most = ranked(baseline_routing, 3, most=True)
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
        assert not torch.isin(captured[layer]["selected"], torch.tensor(most[layer])).any()
        assert_softmax_weight_rule(captured[layer])
    np.testing.assert_array_equal(routing.counts[:, : BAND[0]], baseline_routing.counts[:, : BAND[0]])


def test_soft_raises_selection_frequency(model: nn.Module, mixed_batch: Any, baseline_routing: BatchRouting) -> None:
    least = ranked(baseline_routing, 2, most=False)
    _, routing = record_forward(model, mixed_batch, InterventionSpec(experts=expert_set(least), mode="soft",
                                                                     strength=2.0))
    for layer in BAND:
        before = baseline_routing.counts[:, layer][:, :2][:, :, list(least[layer])].sum()
        after = routing.counts[:, layer][:, :2][:, :, list(least[layer])].sum()
        assert after > before, (layer, before, after)


def test_selection_only_weights_from_unsteered_logits(model: nn.Module, mixed_batch: Any,
                                                      baseline_routing: BatchRouting) -> None:
    least = ranked(baseline_routing, 2, most=False)
    spec = InterventionSpec(experts=expert_set(least), mode="selection_only", strength=3.0)
    all_routers = routers(model)
    with routing_session(model, intervention=spec) as session, torch.inference_mode():
        with capture_routers(model) as captured:
            session.begin(2)
            model(**mixed_batch)
        session.finish_batch()
    for layer in BAND:
        got = captured[layer]
        changed = (got["selected"].sort(dim=-1).values != own_selection(all_routers[layer], got["hidden"])).any(-1)
        assert changed.any(), f"MoE layer {layer}: the boost changed no selection; the test would be vacuous"
        with torch.no_grad():
            own_logits = F.linear(got["hidden"], all_routers[layer].weight)
        assert_softmax_weight_rule(got, own_logits)
        steered_weights = F.softmax(got["logits"].gather(1, got["selected"]), dim=-1)
        assert not torch.allclose(got["weights"][changed], steered_weights[changed])


def test_force_on_image_scope_leaves_text_tokens(model: nn.Module, mixed_batch: Any,
                                                 baseline_routing: BatchRouting) -> None:
    forced = (3, 6)
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
        for expert in forced:
            np.testing.assert_array_equal(routing.counts[:, layer, PROMPT_IMAGE, expert],
                                          routing.tokens[:, PROMPT_IMAGE])
        got = captured[layer]
        own = own_selection(all_routers[layer], got["hidden"])
        assert torch.equal(got["selected"].sort(dim=-1).values[~is_image], own[~is_image])
    first = BAND[0]
    np.testing.assert_array_equal(routing.counts[:, first, PROMPT_TEXT], baseline_routing.counts[:, first, PROMPT_TEXT])


# -- 4. a document's counts do not depend on its batch (generate, KV cache) ------------------------------


# -- 5. hooks are always removed ----------------------------------------------------------------------------


# -- 6. no host-device synchronisation inside the hooks ------------------------------------------------------


# -- 7. the tiny checkpoint and its sites ---------------------------------------------------------------------
def test_tiny_checkpoint_loads_with_auto_classes(aria_dir: Path, model: nn.Module, processor: Any) -> None:
    from transformers import AutoConfig, AutoTokenizer

    config = AutoConfig.from_pretrained(aria_dir)
    tokenizer = AutoTokenizer.from_pretrained(aria_dir)
    assert config.model_type == "aria" and type(model).__name__ == "AriaForConditionalGeneration"
    assert type(processor).__name__ == "AriaProcessor"
    assert type(processor.image_processor).__name__ == "AriaImageProcessor"
    assert config.image_token_id == tokenizer.convert_tokens_to_ids("<|img|>") == processor.image_token_id
    assert max(tokenizer.get_vocab().values()) < config.text_config.vocab_size
    assert model.generation_config.eos_token_id == tokenizer.convert_tokens_to_ids("<|im_end|>")
    # Both image sizes the processor allows map onto a patch count the projector knows.
    for max_size, queries in ((980, IMAGE_TOKENS), (490, IMAGE_TOKENS // 2)):
        messages = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "Which is larger?"}]}]
        prompt = processor.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
        inputs = processor(text=[prompt], images=[drawn_image(4, size=96)], return_tensors="pt",
                           images_kwargs={"max_image_size": max_size})
        assert int((inputs["input_ids"] == config.image_token_id).sum()) == queries
        with torch.inference_mode():
            assert model(**inputs).logits.shape[1] == inputs["input_ids"].shape[1]
    text_only = encode(processor, [(TEXT_PROMPT, None)])
    with torch.inference_mode():
        ids = model.generate(**text_only, max_new_tokens=3, do_sample=False)
    assert ids.shape[1] == text_only["input_ids"].shape[1] + 3


def test_sites_of_tiny_model(model: nn.Module) -> None:
    sites = find_router_sites(model)
    assert [s.moe_index for s in sites] == [s.layer_index for s in sites] == list(range(NUM_MOE))
    assert {(s.num_experts, s.top_k, s.family, s.math) for s in sites} == {
        (NUM_EXPERTS, TOP_K, "aria", "logit_topk_softmax")}
    assert image_token_ids(model) == (model.config.image_token_id,)
    assert isinstance(model_family(model).math, LogitTopKSoftmax)
