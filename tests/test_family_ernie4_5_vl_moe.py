"""Router hooks on the tiny random ERNIE-4.5-VL: recording, steering, hook hygiene, no host syncs.

ERNIE's MoE layers have modality-isolated experts: a text router (`mlp.text_moe.gate`) sees only the text
tokens and a vision router (`mlp.vision_moe.gate`) only the vision tokens (image/video placeholders and their
start/end markers, `moe_mm_token_type_ids`), each in original order; decode steps and text-only batches send
everything to the text router. Selection is top-k of softmax probs + e_score_correction_bias, weights are the
unbiased probs renormalised (clamp moe_norm_min). Sites: (MoE layer m, text) = 2m, (m, vision) = 2m + 1.
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
    encode,
    mixed_batch_fixtures,
    record_forward,
    record_generate,
    routers,
    tiny_checkpoint_fixtures,
)
from torch import nn

from rd_eval.routing.families.ernie import SoftmaxBiasSelectTopK
from rd_eval.routing.recording import GENERATED, PROMPT_IMAGE, PROMPT_TEXT, BatchRouting
from rd_eval.routing.session import routing_session
from rd_eval.routing.sites import find_router_sites, image_token_ids, model_family
from rd_eval.routing.spec import ExpertSet, InterventionSpec, LayerBand, LayerExperts, SpecError
from rd_eval.routing.steering import steer_logits

TOP_K = 4
NUM_EXPERTS = 16
NUM_MOE = 5  # decoder layers 1..5; layer 0 is dense
GROUPS = ("text", "vision")
BAND = (1, 2, 3)  # LayerBand() (fractions 0.25-0.75) on 5 MoE layers
TEXT_SITES = [2 * m for m in range(NUM_MOE)]
VISION_SITES = [2 * m + 1 for m in range(NUM_MOE)]
VISION_ATTRS = ("image_token_id", "video_token_id", "image_start_token_id", "image_end_token_id",
                "video_start_token_id", "video_end_token_id")

IMAGE_PROMPT = "What is the total cost?"
TEXT_PROMPT = "Mia has 7 apples and buys 5 more. How many apples does she have now?"
LONG_PROMPT = (
    "The bar chart shows values per category. Which category has the largest value? "
    "Reply with only the letter of the correct option."
)


def site(moe_index: int, group: str) -> int:
    return 2 * moe_index + GROUPS.index(group)


def grouped(by_layer: dict[int, tuple[int, ...]], group: str) -> ExpertSet:
    return ExpertSet(model="tiny", kind="domain",
                     layers=tuple(LayerExperts(i, tuple(e), group=group) for i, e in sorted(by_layer.items())))


def ernie_rule(router: nn.Module, hidden: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(probs [N, E], selected [N, k], weights [N, k]) of ERNIE's rule, written out from the modeling code."""
    with torch.no_grad():
        probs = torch.softmax(F.linear(hidden.float(), router.weight.float()), dim=-1)
        bias = router.moe_statics.e_score_correction_bias.reshape(-1)
        selected = (probs + bias).topk(TOP_K, dim=-1).indices
        weights = probs.gather(1, selected)
        weights = weights / weights.sum(dim=-1, keepdim=True).clamp(min=router.norm_min)
    return probs, selected, weights


# -- fixtures -------------------------------------------------------------------------------------------
checkpoint_fixture, model_fixture, processor_fixture = tiny_checkpoint_fixtures(
    "ernie4_5_vl_moe", "rd-tiny-ernie4_5_vl_moe", dir_fixture="ernie_dir"
)


batch_fixture, plain_fixture, baseline_fixture = mixed_batch_fixtures(IMAGE_PROMPT, TEXT_PROMPT)


@contextmanager
def capture(model: nn.Module) -> Iterator[dict[str, dict[int, Any]]]:
    """Each router's input and final output by site (registered after the session's hooks: what the experts
    get), and each MoE block's input hidden states and token types by MoE index."""
    captured: dict[str, dict[int, Any]] = {"router": {}, "block": {}, "calls": {}}
    handles = []
    for index, router in enumerate(routers(model)):
        def hook(module: nn.Module, args: tuple, output: Any, index: int = index) -> None:
            captured["router"][index] = {"hidden": args[0].clone(), "logits": output[0].clone(),
                                         "weights": output[1].clone(), "selected": output[2].clone()}
            captured["calls"][index] = captured["calls"].get(index, 0) + 1
        handles.append(router.register_forward_hook(hook))
    blocks = [layer.mlp for layer in model.model.language_model.layers if hasattr(layer.mlp, "text_moe")]
    for moe_index, block in enumerate(blocks):
        def pre(module: nn.Module, args: tuple, kwargs: dict, moe_index: int = moe_index) -> None:
            types = args[1] if len(args) > 1 else kwargs.get("moe_mm_token_type_ids")
            captured["block"][moe_index] = {"hidden": args[0].clone(), "types": types}
        handles.append(block.register_forward_pre_hook(pre, with_kwargs=True))
    try:
        yield captured
    finally:
        for handle in handles:
            handle.remove()


def vision_mask(inputs: Any) -> np.ndarray:
    return inputs["moe_mm_token_type_ids"].bool().reshape(-1).numpy()


# -- sites, vision ids, ERNIE's own dispatch -------------------------------------------------------------
def test_sites_and_vision_token_ids(model: nn.Module, processor: Any) -> None:
    sites = find_router_sites(model)
    assert [(s.moe_index, s.group) for s in sites] == [(m, g) for m in range(NUM_MOE) for g in GROUPS]
    assert [s.layer_index for s in sites] == [m + 1 for m in range(NUM_MOE) for _ in GROUPS]
    assert [s.site_index for s in sites] == list(range(2 * NUM_MOE))
    assert [s.module_path.rsplit(".", 2)[-2] for s in sites] == ["text_moe", "vision_moe"] * NUM_MOE
    assert {(s.num_experts, s.top_k, s.family, s.math) for s in sites} == {
        (NUM_EXPERTS, TOP_K, "ernie4_5_vl_moe", "softmax_bias_select_topk")}
    # The layout's vision ids are ERNIE's six config ids, which are the processor's (tokenizer's) ids.
    config = model.config
    assert image_token_ids(model) == tuple(getattr(config, attr) for attr in VISION_ATTRS)
    assert len(set(image_token_ids(model))) == 6
    for attr in VISION_ATTRS:
        assert getattr(processor, attr) == getattr(config, attr), attr
    # ... and mark exactly what the processor's moe_mm_token_type_ids sends to the vision experts.
    rng = np.random.default_rng(0)
    ids = rng.choice(np.array([*range(40), *image_token_ids(model)]), size=(3, 60))
    types = np.asarray(processor.create_moe_mm_token_type_ids(ids.tolist()))
    assert set(np.unique(types)) == {0, 1, 2}
    np.testing.assert_array_equal(types != 0, np.isin(ids, image_token_ids(model)))


def test_block_dispatch_is_boolean_mask_order(model: nn.Module, mixed_batch: Any) -> None:
    """The text router gets the text tokens, the vision router the vision tokens, each in row-major order."""
    with capture(model) as got, torch.inference_mode():
        model(**mixed_batch)
    is_vision = torch.from_numpy(vision_mask(mixed_batch))
    marked = torch.from_numpy(np.isin(mixed_batch["input_ids"].numpy(), image_token_ids(model)).reshape(-1))
    assert torch.equal(is_vision, marked)
    assert is_vision.sum() < is_vision.numel()
    for moe_index in range(NUM_MOE):
        block = got["block"][moe_index]
        assert torch.equal(block["types"].bool().reshape(-1), is_vision)
        flat = block["hidden"].reshape(-1, block["hidden"].shape[-1])
        assert torch.equal(got["router"][site(moe_index, "text")]["hidden"], flat[~is_vision])
        assert torch.equal(got["router"][site(moe_index, "vision")]["hidden"], flat[is_vision])


# -- 1. no-ops are bit-identical --------------------------------------------------------------------------
def band_experts(experts: tuple[int, ...], *groups: str) -> ExpertSet:
    layers = tuple(LayerExperts(i, experts, group=g) for i in BAND for g in groups)
    return ExpertSet(model="tiny", kind="domain", layers=layers)


NOOP_CASES = {
    "record_only": (True, None),
    "lambda_0_soft_both_groups": (True, InterventionSpec(experts=band_experts((1, 5), "text", "vision"),
                                                         mode="soft", strength=0.0)),
    "lambda_0_selection_only_vision_no_record": (
        False, InterventionSpec(experts=band_experts((1, 5), "vision"), mode="selection_only", strength=0.0)),
    "empty_expert_set_force": (True, InterventionSpec(experts=band_experts((), "text"), mode="force")),
    "no_layers_suppress": (True, InterventionSpec(experts=grouped({}, "text"), mode="suppress", strength=3.0)),
}


@pytest.mark.parametrize("group", GROUPS)
def test_nonzero_lambda_changes_outputs(model: nn.Module, mixed_batch: Any, plain_outputs: dict[str, torch.Tensor],
                                        group: str) -> None:
    spec = InterventionSpec(experts=band_experts((1, 5), group), mode="soft", strength=2.0)
    outputs, _ = record_forward(model, mixed_batch, spec)
    assert not torch.equal(outputs.logits, plain_outputs["logits"])


@pytest.mark.parametrize("mode", ["soft", "soft_topk", "random", "selection_only"])
@pytest.mark.parametrize("group", GROUPS)
def test_lambda_zero_reroute_reproduces_router(model: nn.Module, mode: str, group: str) -> None:
    router = routers(model)[site(2, group)]
    math = SoftmaxBiasSelectTopK()
    generator = torch.Generator().manual_seed(7)
    hidden = torch.randn(53, router.weight.shape[-1], generator=generator) * 3.0
    expert_mask = torch.zeros(NUM_EXPERTS)
    expert_mask[[0, 5, 9, 14]] = 1.0
    token_mask = (torch.rand(53, generator=generator) > 0.5).float()
    with torch.no_grad():
        output = router(hidden)
        logits = math.logits(router, hidden)
        steered = steer_logits(logits, mode=mode, strength=0.0, expert_mask=expert_mask, token_mask=token_mask,
                               selected=math.selection_mask(router, logits))
        again = math.reroute(router, steered, logits if mode == "selection_only" else steered, output)
        pinned_nowhere = math.reroute(router, logits, logits, output, torch.zeros(53, NUM_EXPERTS))
    assert torch.equal(logits, output[0])
    for mine, theirs in zip(again, output, strict=True):
        assert mine.dtype == theirs.dtype and torch.equal(mine, theirs)
    for mine, theirs in zip(pinned_nowhere, output, strict=True):
        assert torch.equal(mine, theirs)
    # The selection bias matters here, so a rule that ignored it would fail above.
    plain = F.softmax(logits, dim=-1).topk(TOP_K, dim=-1).indices
    assert not torch.equal(plain.sort(dim=-1).values, output[2].sort(dim=-1).values)


@pytest.mark.parametrize("mode", ["force", "suppress"])
def test_pin_beats_a_strong_selection_bias(model: nn.Module, mode: str) -> None:
    """The correction bias is added after the softmax, where a steered logit shift cannot outweigh it (probs
    lie in [0, 1]); `pin` must still force / suppress. Biases here are far beyond any probability."""
    router = copy.deepcopy(routers(model)[site(2, "text")])
    chosen = [2, 7]
    with torch.no_grad():
        bias = torch.zeros(NUM_EXPERTS)
        bias[chosen] = -5.0 if mode == "force" else 5.0  # against the mode
        router.moe_statics.e_score_correction_bias.copy_(bias.unsqueeze(0))
    math = SoftmaxBiasSelectTopK()
    hidden = torch.randn(41, router.weight.shape[-1], generator=torch.Generator().manual_seed(11))
    expert_mask = torch.zeros(NUM_EXPERTS)
    expert_mask[chosen] = 1.0
    token_mask = torch.arange(41) % 2 == 0  # pin every other token only
    pin = token_mask.float().unsqueeze(1) * expert_mask * (1.0 if mode == "force" else -1.0)
    with torch.no_grad():
        output = router(hidden)
        logits = math.logits(router, hidden)
        steered = steer_logits(logits, mode=mode, strength=1.0, expert_mask=expert_mask,
                               token_mask=token_mask.float())
        unpinned = math.reroute(router, steered, steered, output)
        _, weights, selected = math.reroute(router, steered, steered, output, pin)
    in_set = torch.isin(selected, torch.tensor(chosen)).sum(dim=-1)
    unpinned_in_set = torch.isin(unpinned[2], torch.tensor(chosen)).sum(dim=-1)
    want = len(chosen) if mode == "force" else 0
    assert torch.all(in_set[token_mask] == want)
    assert torch.all(unpinned_in_set[token_mask] != want), "the bias does not fight the mode; vacuous"
    assert torch.equal(selected[~token_mask], output[2][~token_mask])  # unpinned tokens keep their choice
    probs = F.softmax(steered, dim=-1).gather(1, selected)
    assert torch.equal(weights, probs / probs.sum(dim=-1, keepdim=True).clamp(min=router.norm_min))


def test_logits_ignore_an_outer_autocast(model: nn.Module) -> None:
    """The router turns autocast off for its logits; the recomputation must too (bf16 logits would differ)."""
    router = routers(model)[site(1, "text")]
    math = SoftmaxBiasSelectTopK()
    hidden = torch.randn(29, router.weight.shape[-1], generator=torch.Generator().manual_seed(5))
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        output = router(hidden)
        logits = math.logits(router, hidden)
        again = math.reroute(router, logits, logits, output)
        lowered = F.linear(hidden.float(), router.weight.float())
    assert lowered.dtype == torch.bfloat16, "autocast was not active; the test would be vacuous"
    assert logits.dtype == torch.float32 and torch.equal(logits, output[0])
    for mine, theirs in zip(again, output, strict=True):
        assert torch.equal(mine, theirs)


# -- 2. recorded counts equal an independent reference ----------------------------------------------------
def reference_counts(model: nn.Module, inputs: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """counts / prob_sums [B, sites, 3, E] and tokens [B, 3], recomputed from router inputs captured by our
    own hooks, placed at the positions the block's own token-type mask gives."""
    all_routers = routers(model)
    with capture(model) as got, torch.inference_mode():
        model(**inputs)
    input_ids = inputs["input_ids"]
    batch, length = input_ids.shape
    weight = inputs["attention_mask"].reshape(-1).double().numpy()
    vision = vision_mask(inputs)
    scope = np.where(vision, PROMPT_IMAGE, PROMPT_TEXT)
    row = np.repeat(np.arange(batch), length)
    counts = np.zeros((batch, 2 * NUM_MOE, 3, NUM_EXPERTS))
    prob_sums = np.zeros_like(counts)
    tokens = np.zeros((batch, 3))
    np.add.at(tokens, (row, scope), weight)
    biased_differs = False
    for moe_index in range(NUM_MOE):
        mask = got["block"][moe_index]["types"].bool().reshape(-1).numpy()
        for group, where in (("text", np.flatnonzero(~mask)), ("vision", np.flatnonzero(mask))):
            index = site(moe_index, group)
            probs, selected, _ = ernie_rule(all_routers[index], got["router"][index]["hidden"])
            assert selected.shape[0] == len(where)
            plain = probs.topk(TOP_K, dim=-1).indices
            biased_differs |= not torch.equal(plain.sort(-1).values, selected.sort(-1).values)
            for k in range(TOP_K):
                np.add.at(counts, (row[where], index, scope[where], selected[:, k].numpy()), weight[where])
            np.add.at(prob_sums, (row[where], index, scope[where]), probs.double().numpy() * weight[where, None])
    assert biased_differs, "no token where the selection bias changes the choice: the reference would not see it"
    return counts, prob_sums, tokens


def test_recorded_counts_match_recomputed_reference(model: nn.Module, mixed_batch: Any) -> None:
    counts, prob_sums, tokens = reference_counts(model, mixed_batch)
    _, routing = record_forward(model, mixed_batch)
    assert routing.counts.shape == (2, 2 * NUM_MOE, 3, NUM_EXPERTS)
    np.testing.assert_array_equal(routing.tokens, tokens)
    np.testing.assert_array_equal(routing.counts, counts)
    np.testing.assert_allclose(routing.prob_sums, prob_sums, rtol=1e-5, atol=1e-5)
    # Not trivial: padding, vision tokens (placeholders + markers) in row 0 only, text in both rows.
    n_vision = int(vision_mask(mixed_batch).reshape(2, -1)[0].sum())
    assert tokens[0, PROMPT_IMAGE] == n_vision > 2 and tokens[1, PROMPT_IMAGE] == 0
    assert tokens.sum() < mixed_batch["input_ids"].numel()
    # Modality isolation: text tokens never count at a vision site, vision tokens never at a text site, and
    # every token selects exactly k experts at its own modality's site.
    assert routing.counts[:, VISION_SITES, PROMPT_TEXT].sum() == 0
    assert routing.counts[:, TEXT_SITES, PROMPT_IMAGE].sum() == 0
    for sites, scope in ((VISION_SITES, PROMPT_IMAGE), (TEXT_SITES, PROMPT_TEXT)):
        np.testing.assert_array_equal(routing.counts[:, sites, scope].sum(axis=-1),
                                      TOP_K * np.repeat(tokens[:, scope, None], NUM_MOE, axis=1))
    assert routing.counts[:, :, GENERATED].sum() == 0


def test_counts_match_the_blocks_router_logits(model: nn.Module, mixed_batch: Any) -> None:
    """Cross-check through the model's own output: `output_router_logits` records each block's router logits
    put back at the original token positions (the decoder layer drops them; transformers' OutputRecorder
    on the block keeps them)."""
    outputs, routing = record_forward(model, mixed_batch, output_router_logits=True)
    all_routers = routers(model)
    batch, length = mixed_batch["input_ids"].shape
    weight = mixed_batch["attention_mask"].reshape(-1).double().numpy()
    vision = torch.from_numpy(vision_mask(mixed_batch))
    scope = np.where(vision.numpy(), PROMPT_IMAGE, PROMPT_TEXT)
    row = np.repeat(np.arange(batch), length)
    assert len(outputs.router_logits) == NUM_MOE
    for moe_index, merged in enumerate(outputs.router_logits):
        assert merged.shape == (batch * length, NUM_EXPERTS)
        for group, where in (("text", ~vision), ("vision", vision)):
            router = all_routers[site(moe_index, group)]
            probs = F.softmax(merged[where].float(), dim=-1)
            bias = router.moe_statics.e_score_correction_bias.reshape(-1)
            selected = (probs + bias).topk(TOP_K, dim=-1).indices.numpy()
            expected = np.zeros((batch, 3, NUM_EXPERTS))
            idx = np.flatnonzero(where.numpy())
            for k in range(TOP_K):
                np.add.at(expected, (row[idx], scope[idx], selected[:, k]), weight[idx])
            np.testing.assert_array_equal(routing.counts[:, site(moe_index, group)], expected)


def test_decode_and_text_only_batches_use_the_text_router_only(model: nn.Module, mixed_batch: Any,
                                                               processor: Any) -> None:
    _, routing = record_generate(model, mixed_batch, max_new_tokens=3)
    assert routing.tokens[:, GENERATED].tolist() == [2.0, 2.0]  # the last new token is never fed back
    assert routing.counts[:, VISION_SITES, GENERATED].sum() == 0
    np.testing.assert_array_equal(routing.counts[:, TEXT_SITES, GENERATED].sum(axis=-1),
                                  TOP_K * np.repeat(routing.tokens[:, GENERATED, None], NUM_MOE, axis=1))
    text_only = encode(processor, [(TEXT_PROMPT, None), (LONG_PROMPT, None)])
    assert not text_only["moe_mm_token_type_ids"].any()
    with capture(model) as got:
        _, routing = record_forward(model, text_only)
    assert sorted(got["calls"]) == TEXT_SITES  # ERNIE never calls the vision routers here
    assert routing.counts[:, VISION_SITES].sum() == 0
    np.testing.assert_array_equal(routing.counts[:, TEXT_SITES].sum(axis=(2, 3)),
                                  TOP_K * np.repeat(routing.tokens.sum(axis=1, keepdims=True), NUM_MOE, axis=1))


# -- 3. force / suppress / selection-only, per expert group ------------------------------------------------
def most_selected(routing: BatchRouting, group: str, n: int) -> dict[int, tuple[int, ...]]:
    most = {}
    for layer in BAND:
        per_expert = routing.counts[:, site(layer, group)].sum(axis=(0, 1))
        most[layer] = tuple(sorted(sorted(range(NUM_EXPERTS), key=lambda e: (per_expert[e], e))[-n:]))
    return most


def run_steered(model: nn.Module, inputs: Any, spec: InterventionSpec) -> tuple[BatchRouting, dict]:
    with routing_session(model, intervention=spec) as session, torch.inference_mode():
        with capture(model) as got:
            session.begin(inputs["input_ids"].shape[0])
            model(**inputs)
        routing = session.finish_batch().routing
    return routing, got


def assert_unsteered(model: nn.Module, got: dict, sites: list[int]) -> None:
    """These routers kept their own choice from their (possibly changed) input."""
    all_routers = routers(model)
    for index in sites:
        _, own, own_weights = ernie_rule(all_routers[index], got["router"][index]["hidden"])
        assert torch.equal(got["router"][index]["selected"], own), index
        torch.testing.assert_close(got["router"][index]["weights"], own_weights)


@pytest.mark.parametrize("forced", [(3, 11), (0, 2, 4, 6)], ids=["two", "k"])  # more than k: refused
@pytest.mark.parametrize("group", GROUPS)
def test_force_puts_experts_in_topk_of_its_group_only(model: nn.Module, mixed_batch: Any,
                                                      baseline_routing: BatchRouting, forced: tuple[int, ...],
                                                      group: str) -> None:
    assert LayerBand().resolve(NUM_MOE) == BAND
    other = GROUPS[1 - GROUPS.index(group)]
    spec = InterventionSpec(experts=grouped({i: forced for i in BAND}, group), mode="force")
    routing, got = run_steered(model, mixed_batch, spec)
    per_token = min(len(forced), TOP_K)
    # The group's router sees its own modality's prompt tokens only (a single prefill: no generated ones).
    scope = PROMPT_TEXT if group == "text" else PROMPT_IMAGE
    seen = np.zeros_like(routing.tokens)
    seen[:, scope] = routing.tokens[:, scope]
    assert seen.sum() > 0
    for layer in BAND:
        index = site(layer, group)
        np.testing.assert_array_equal(routing.counts[:, index][:, :, list(forced)].sum(axis=2), per_token * seen)
        if len(forced) <= TOP_K:
            for expert in forced:
                np.testing.assert_array_equal(routing.counts[:, index, :, expert], seen)
        selected = got["router"][index]["selected"]
        assert torch.all(torch.isin(selected, torch.tensor(forced)).sum(dim=-1) == per_token)  # padding too
        weights = got["router"][index]["weights"]
        assert torch.all(weights >= 0)
        # ERNIE's normalisation: the gathered probs over clamp(their sum, moe_norm_min), i.e. sum 1.
        torch.testing.assert_close(weights.sum(dim=-1), torch.ones(weights.shape[0]))
        assert not np.array_equal(routing.counts[:, index], baseline_routing.counts[:, index])
    # Outside the band and in the other group, routers keep their own rule; before the band (and the other
    # group at the band's first layer, which reads the same block input) nothing changes.
    outside = [site(m, group) for m in range(NUM_MOE) if m not in BAND]
    assert_unsteered(model, got, outside + [site(m, other) for m in range(NUM_MOE)])
    unchanged = [i for i in range(2 * NUM_MOE) if i < site(BAND[0], "text")] + [site(BAND[0], other)]
    np.testing.assert_array_equal(routing.counts[:, unchanged], baseline_routing.counts[:, unchanged])
    np.testing.assert_array_equal(routing.prob_sums[:, unchanged], baseline_routing.prob_sums[:, unchanged])
    np.testing.assert_array_equal(routing.tokens, baseline_routing.tokens)


def test_text_intervention_leaves_vision_selections(model: nn.Module, mixed_batch: Any) -> None:
    """In a single prefill, steering the text experts changes no vision router's selection logic: every
    vision router selects by its own rule from its input, and where that input is unchanged (the band's
    first layer, which reads the same block input) its selection equals the unsteered run's exactly."""
    with capture(model) as plain, torch.inference_mode():
        model(**mixed_batch)
    spec = InterventionSpec(experts=grouped({i: (0, 1, 2) for i in BAND}, "text"), mode="soft", strength=3.0)
    routing, got = run_steered(model, mixed_batch, spec)
    assert_unsteered(model, got, VISION_SITES)
    first = site(BAND[0], "vision")
    assert torch.equal(got["router"][first]["hidden"], plain["router"][first]["hidden"])
    assert torch.equal(got["router"][first]["selected"], plain["router"][first]["selected"])
    text_first = site(BAND[0], "text")
    assert not torch.equal(got["router"][text_first]["selected"], plain["router"][text_first]["selected"])


@pytest.mark.parametrize("group", GROUPS)
def test_suppress_never_selects(model: nn.Module, mixed_batch: Any, baseline_routing: BatchRouting,
                                group: str) -> None:
    most = most_selected(baseline_routing, group, 3)
    for layer in BAND:
        assert baseline_routing.counts[:, site(layer, group)][:, :, list(most[layer])].sum() > 0
    routing, got = run_steered(model, mixed_batch, InterventionSpec(experts=grouped(most, group), mode="suppress"))
    for layer in BAND:
        index = site(layer, group)
        assert routing.counts[:, index][:, :, list(most[layer])].sum() == 0
        assert not torch.isin(got["router"][index]["selected"], torch.tensor(most[layer])).any()
        weights = got["router"][index]["weights"]
        torch.testing.assert_close(weights.sum(dim=-1), torch.ones(weights.shape[0]))
    before = list(range(site(BAND[0], "text")))
    np.testing.assert_array_equal(routing.counts[:, before], baseline_routing.counts[:, before])


def test_selection_only_keeps_unbiased_unsteered_weights(model: nn.Module, mixed_batch: Any,
                                                         baseline_routing: BatchRouting) -> None:
    least = {layer: tuple(e for e in range(NUM_EXPERTS) if e not in most)[:2]
             for layer, most in most_selected(baseline_routing, "text", NUM_EXPERTS - 2).items()}
    spec = InterventionSpec(experts=grouped(least, "text"), mode="selection_only", strength=3.0)
    _, got = run_steered(model, mixed_batch, spec)
    all_routers = routers(model)
    for layer in BAND:
        index = site(layer, "text")
        probs, own, _ = ernie_rule(all_routers[index], got["router"][index]["hidden"])
        selected = got["router"][index]["selected"]
        changed = (selected.sort(dim=-1).values != own.sort(dim=-1).values).any(dim=-1)
        assert changed.any(), f"layer {layer}: the boost changed no selection; the test would be vacuous"
        expected = probs.gather(1, selected)
        torch.testing.assert_close(got["router"][index]["weights"], expected / expected.sum(dim=-1, keepdim=True))


def test_expert_set_must_name_a_group(model: nn.Module, mixed_batch: Any) -> None:
    ungrouped = ExpertSet(model="tiny", kind="domain", layers=(LayerExperts(1, (0, 1)),))
    with pytest.raises(SpecError, match=r"layer 1: experts without a group, but this layer routes by "
                                         r"expert group \('text', 'vision'\)"):
        record_forward(model, mixed_batch, InterventionSpec(experts=ungrouped, mode="force"))


# -- 4. a document alone and inside a left-padded batch ---------------------------------------------------


# -- 5. hooks are always removed --------------------------------------------------------------------------


# -- 6. no host-device synchronisation inside the hooks ---------------------------------------------------


# -- 7. the tiny checkpoint loads with the Auto classes offline --------------------------------------------
def test_make_tiny_loads_with_auto_classes(ernie_dir: Path, model: nn.Module) -> None:
    from transformers import AutoConfig, AutoModelForImageTextToText, AutoProcessor, AutoTokenizer

    config = AutoConfig.from_pretrained(ernie_dir)
    assert config.model_type == "ernie4_5_vl_moe"
    assert type(model).__name__ == "Ernie4_5_VLMoeForConditionalGeneration"
    assert isinstance(model, AutoModelForImageTextToText._model_mapping[type(config)])
    processor = AutoProcessor.from_pretrained(ernie_dir)
    tokenizer = AutoTokenizer.from_pretrained(ernie_dir)
    assert type(processor).__name__ == "Ernie4_5_VLMoeProcessor"
    assert type(processor.image_processor).__name__.startswith("Ernie4_5_VLMoeImageProcessor")
    for attr in VISION_ATTRS:
        token = getattr(processor, attr.removesuffix("_id"))
        assert tokenizer.convert_tokens_to_ids(token) == getattr(config, attr) < config.text_config.vocab_size
    text = config.text_config
    assert text.mlp_layer_types.count("sparse") == NUM_MOE
    assert (text.moe_num_experts, text.moe_k) == (NUM_EXPERTS, TOP_K)
    assert model_family(model).groups == (("text_moe", "text"), ("vision_moe", "vision"))
    assert any(float(r.moe_statics.e_score_correction_bias.abs().max()) > 0 for r in routers(model))
    assert "<|IMAGE_START|><|IMAGE_PLACEHOLDER|><|IMAGE_END|>" in processor.apply_chat_template(
        [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "hi"}]}], tokenize=False)


def test_the_mixed_batch_routes_row_0_to_the_vision_experts(mixed_batch: Any) -> None:
    assert mixed_batch["moe_mm_token_type_ids"].any(), "row 0 must route tokens to the vision experts"
