"""Router hooks on the tiny random GLM-4.5V (glm4v_moe): DeepSeek-V3-style sigmoid routing with a correction
bias and group-limited top-k. Layer 0 is dense, so MoE layer i is decoder layer i + 1.

GLM-4.5V never records its router logits upstream (`_can_record_outputs = {}`), so the independent reference
recomputes the selection from router inputs captured by this file's own hooks."""

from __future__ import annotations

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
    record_forward,
    routers,
    tiny_checkpoint_fixtures,
)
from torch import nn

from rd_eval.routing.families.deepseek_style import SigmoidGroupBiasTopK
from rd_eval.routing.recording import GENERATED, PROMPT_IMAGE, PROMPT_TEXT, BatchRouting
from rd_eval.routing.session import routing_session
from rd_eval.routing.sites import find_router_sites, image_token_ids
from rd_eval.routing.spec import InterventionSpec, LayerBand
from rd_eval.routing.steering import steer_logits

FAMILY = "glm4v_moe"
TOP_K, NUM_EXPERTS, NUM_MOE_LAYERS, N_GROUP, TOPK_GROUP, SCALE = 4, 16, 5, 2, 1, 2.0
BAND = (1, 2, 3)  # LayerBand() on 5 MoE layers
IMAGE_PROMPT = "What is the total cost?"
TEXT_PROMPT = "Mia has 7 apples and buys 5 more. How many apples does she have now?"
LONG_PROMPT = "The bar chart shows values per category. Which category has the largest value?"


def reference_selection(router: nn.Module, hidden: torch.Tensor) -> torch.Tensor:
    """Expert ids [N, k] by the DeepSeek-V3 rule, written independently of rd_eval (sorts, not the
    router's op sequence): best group by the sum of its two best biased scores, then top-k inside it."""
    with torch.no_grad():
        scores = torch.sigmoid(hidden.float() @ router.weight.float().t())
        choice = scores + router.e_score_correction_bias.float()
        grouped = choice.reshape(-1, N_GROUP, NUM_EXPERTS // N_GROUP)
        group_score = grouped.sort(dim=-1, descending=True).values[..., :2].sum(dim=-1)
        keep = torch.zeros_like(group_score, dtype=torch.bool)
        keep.scatter_(1, group_score.argsort(dim=-1, descending=True)[:, :TOPK_GROUP], True)
        allowed = keep.repeat_interleave(NUM_EXPERTS // N_GROUP, dim=1)
        return torch.where(allowed, choice, torch.full_like(choice, -1e9)).argsort(dim=-1, descending=True)[:, :TOP_K]


@contextmanager
def capture_routers(model: nn.Module) -> Iterator[dict[int, dict[str, torch.Tensor]]]:
    """Each router's input and final output per MoE layer (registered after any session hook, so it sees what
    the experts receive)."""
    captured: dict[int, dict[str, torch.Tensor]] = {}

    def make(layer: int):
        def hook(module: nn.Module, args: tuple, output: Any) -> None:
            captured[layer] = {"hidden": args[0].reshape(-1, module.weight.shape[-1]).clone(),
                               "weights": output[1].clone(), "selected": output[2].clone()}
        return hook

    handles = [router.register_forward_hook(make(i)) for i, router in enumerate(routers(model))]
    try:
        yield captured
    finally:
        for handle in handles:
            handle.remove()


checkpoint_fixture, model_fixture, processor_fixture = tiny_checkpoint_fixtures(
    FAMILY, "rd-tiny-glm4v_moe", dir_fixture="tiny_path"
)








@pytest.fixture(scope="module")
def batch(processor: Any) -> Any:
    inputs = encode(processor, [(IMAGE_PROMPT, drawn_image(1)), (TEXT_PROMPT, None)])
    assert (inputs["attention_mask"] == 0).any(), "row 1 must be left-padded"
    return inputs


@pytest.fixture(scope="module")
def baseline(model: nn.Module, batch: Any) -> BatchRouting:
    return record_forward(model, batch)[1]


# -- 7. the tiny checkpoint ------------------------------------------------------------------------------
def test_tiny_checkpoint_loads_offline_with_auto_classes(tiny_path: Path, model: nn.Module, processor: Any) -> None:
    from transformers import AutoConfig, AutoTokenizer

    config = AutoConfig.from_pretrained(tiny_path)
    assert config.model_type == FAMILY and type(model).__name__ == "Glm4vMoeForConditionalGeneration"
    assert type(processor).__name__ == "Glm4vProcessor"
    assert type(processor.image_processor).__name__ == "Glm4vImageProcessor"
    tokenizer = AutoTokenizer.from_pretrained(tiny_path)
    for attr, token in (("image_token_id", "<|image|>"), ("video_token_id", "<|video|>"),
                        ("image_start_token_id", "<|begin_of_image|>"), ("image_end_token_id", "<|end_of_image|>")):
        assert getattr(config, attr) == tokenizer.convert_tokens_to_ids(token) != tokenizer.unk_token_id
    text = config.text_config
    assert (text.first_k_dense_replace, text.n_group, text.topk_group) == (1, N_GROUP, TOPK_GROUP)
    biases = [router.e_score_correction_bias for router in routers(model)]
    assert all(b.dtype == torch.float32 and b.abs().min() > 0 for b in biases)  # loaded, non-zero
    prompt = processor.apply_chat_template([{"role": "user", "content": [{"type": "image"}, {"type": "text",
                                            "text": "hi"}]}], tokenize=False, add_generation_prompt=True)
    assert prompt.startswith("[gMASK]<sop><|user|>") and prompt.endswith("<|assistant|>\n")


def test_sites_skip_the_dense_first_layer(model: nn.Module) -> None:
    sites = find_router_sites(model)
    assert [s.moe_index for s in sites] == list(range(NUM_MOE_LAYERS))
    assert [s.layer_index for s in sites] == list(range(1, NUM_MOE_LAYERS + 1))
    assert {(s.family, s.num_experts, s.top_k, s.math) for s in sites} == {
        (FAMILY, NUM_EXPERTS, TOP_K, "sigmoid_group_bias_topk")}
    assert image_token_ids(model) == (model.config.image_token_id, model.config.video_token_id)
    assert LayerBand().resolve(NUM_MOE_LAYERS) == BAND


# -- 1. no-ops are bit-identical ---------------------------------------------------------------------------
NOOP_CASES = {
    "record_only": None,
    "lambda_0_soft": InterventionSpec(experts=expert_set({i: (1, 9) for i in BAND}), mode="soft", strength=0.0),
    "lambda_0_selection_only": InterventionSpec(experts=expert_set({i: (1, 9) for i in BAND}),
                                                mode="selection_only", strength=0.0),
    "empty_expert_set_force": InterventionSpec(experts=expert_set({i: () for i in BAND}), mode="force"),
}




@pytest.mark.parametrize("mode", ["soft", "selection_only"])
def test_reroute_at_lambda_zero_reproduces_the_router(model: nn.Module, mode: str) -> None:
    router = routers(model)[2]
    generator = torch.Generator().manual_seed(7)
    hidden = torch.randn(97, router.weight.shape[-1], generator=generator) * 3.0
    expert_mask = torch.zeros(NUM_EXPERTS)
    expert_mask[[0, 5, 9, 14]] = 1.0
    math = SigmoidGroupBiasTopK()
    with torch.no_grad():
        output = router(hidden)
        logits = math.logits(router, hidden)
        steered = steer_logits(logits, mode=mode, strength=0.0, expert_mask=expert_mask,
                               token_mask=(torch.rand(97, generator=generator) > 0.5).float(),
                               selected=math.selection_mask(router, logits))
        rerouted = math.reroute(router, steered, logits if mode == "selection_only" else steered, output)
        # The bias and the groups both matter on these inputs (else exactness above would prove less).
        unbiased = logits.sigmoid().topk(TOP_K, dim=-1).indices.sort(dim=-1).values
    assert all(torch.equal(a, b) and a.dtype == b.dtype for a, b in zip(rerouted, output, strict=True))
    assert (unbiased != output[2].sort(dim=-1).values).any()
    group_of = output[2] // (NUM_EXPERTS // N_GROUP)
    assert torch.all(group_of == group_of[:, :1])  # topk_group 1: every token's experts share one group


# -- 2. recorded counts equal an independent reference ----------------------------------------------------
def test_recorded_counts_match_recomputation_from_captured_router_inputs(model: nn.Module, batch: Any) -> None:
    inputs: dict[int, torch.Tensor] = {}
    gates = routers(model)
    handles = [gate.register_forward_pre_hook(lambda m, args, i=i: inputs.__setitem__(i, args[0].detach().clone()))
               for i, gate in enumerate(gates)]
    try:
        with torch.inference_mode():
            model(**batch)  # plain run, no rd_eval hooks
    finally:
        for handle in handles:
            handle.remove()
    _, routing = record_forward(model, batch)
    input_ids = batch["input_ids"]
    rows, length = input_ids.shape
    weight = batch["attention_mask"].reshape(-1).double().numpy()
    scope = np.where((input_ids == model.config.image_token_id).reshape(-1).numpy(), PROMPT_IMAGE, PROMPT_TEXT)
    row = np.repeat(np.arange(rows), length)
    counts = np.zeros((rows, NUM_MOE_LAYERS, 3, NUM_EXPERTS))
    prob_sums = np.zeros_like(counts)
    for layer, gate in enumerate(gates):
        hidden = inputs[layer].reshape(-1, gate.weight.shape[-1])
        selected = reference_selection(gate, hidden).numpy()
        for k in range(TOP_K):
            np.add.at(counts, (row, layer, scope, selected[:, k]), weight)
        probs = torch.sigmoid(hidden.double() @ gate.weight.detach().double().t()).numpy()
        np.add.at(prob_sums, (row, layer, scope), probs * weight[:, None])
    tokens = np.zeros((rows, 3))
    np.add.at(tokens, (row, scope), weight)
    assert tokens[0, PROMPT_IMAGE] > 0 and tokens[1, PROMPT_IMAGE] == 0 and (tokens.sum(axis=1) < length).any()
    np.testing.assert_array_equal(routing.tokens, tokens)
    np.testing.assert_array_equal(routing.counts, counts)
    np.testing.assert_allclose(routing.prob_sums, prob_sums, rtol=1e-5, atol=1e-5)
    assert np.all(routing.counts[:, :, GENERATED] == 0)


# -- 3. force / suppress: in the band only, weights normalised to routed_scaling_factor --------------------
FORCE_CASES = {
    "force_two_groups": ("force", (3, 11)),
    "suppress_a_whole_group": ("suppress", tuple(range(8))),
    "suppress_all_but_k": ("suppress", (0, 1, 2, 3, 4, 5, 8, 9, 10, 11, 12, 13)),  # leaves 6, 7, 14, 15
}


@pytest.mark.parametrize("case", sorted(FORCE_CASES))
def test_force_and_suppress_act_in_the_band_only(model: nn.Module, batch: Any, baseline: BatchRouting,
                                                 case: str) -> None:
    mode, experts = FORCE_CASES[case]
    spec = InterventionSpec(experts=expert_set({i: experts for i in BAND}), mode=mode)  # band layers only
    gates = routers(model)
    with routing_session(model, intervention=spec) as session, torch.inference_mode():
        with capture_routers(model) as captured:
            session.begin(2)
            model(**batch)
        routing = session.finish_batch().routing
    chosen = torch.tensor(experts)
    for layer in range(NUM_MOE_LAYERS):
        got = captured[layer]
        in_set = torch.isin(got["selected"], chosen).sum(dim=-1)
        if layer in BAND:
            # Every token (padding too: scope "all") and the recorded counts obey the mode.
            expected = min(len(experts), TOP_K) if mode == "force" else 0
            assert torch.all(in_set == expected), (layer, in_set)
            assert torch.all(got["selected"].sort(dim=-1).values.diff(dim=-1) > 0)  # k distinct experts
            np.testing.assert_array_equal(routing.counts[:, layer][:, :, list(experts)].sum(axis=2),
                                          expected * routing.tokens)
            assert torch.all(got["weights"] > 0)
            torch.testing.assert_close(got["weights"].sum(dim=-1), torch.full((in_set.shape[0],), SCALE))
            assert not np.array_equal(routing.counts[:, layer], baseline.counts[:, layer])
            if case == "force_two_groups":  # both forced experts' groups are kept: the other picks come from
                router = gates[layer]       # either group, by biased score (forcing leaves those unchanged)
                with torch.no_grad():
                    choice = torch.sigmoid(F.linear(got["hidden"], router.weight)) + router.e_score_correction_bias
                choice[:, list(experts)] = -1e9
                others = choice.topk(TOP_K - len(experts), dim=-1).indices.sort(dim=-1).values
                picked = got["selected"].sort(dim=-1).values
                assert torch.equal(picked[~torch.isin(picked, chosen)].view(-1, TOP_K - len(experts)), others)
        else:  # outside the band: the router's own choice from its (possibly changed) input
            assert torch.equal(got["selected"].sort(dim=-1).values,
                               reference_selection(gates[layer], got["hidden"]).sort(dim=-1).values)
    np.testing.assert_array_equal(routing.counts[:, :BAND[0]], baseline.counts[:, :BAND[0]])
    np.testing.assert_array_equal(routing.prob_sums[:, :BAND[0]], baseline.prob_sums[:, :BAND[0]])
    np.testing.assert_array_equal(routing.tokens, baseline.tokens)


def test_force_on_image_tokens_leaves_text_tokens_unchanged(model: nn.Module, batch: Any) -> None:
    spec = InterventionSpec(experts=expert_set({i: (3, 11) for i in BAND}), mode="force", token_scope="image")
    is_image = (batch["input_ids"] == model.config.image_token_id).reshape(-1)
    gates = routers(model)
    with routing_session(model, intervention=spec) as session, torch.inference_mode():
        with capture_routers(model) as captured:
            session.begin(2)
            model(**batch)
        session.finish_batch()
    for layer in BAND:
        got = captured[layer]
        assert torch.all(torch.isin(got["selected"][is_image], torch.tensor((3, 11))).sum(dim=-1) == 2)
        # Unpinned rows keep the router's own output exactly (same ids in the same order, same weights).
        with torch.no_grad():
            own = gates[layer](got["hidden"])
        assert torch.equal(got["selected"][~is_image], own[2][~is_image])
        assert torch.equal(got["weights"][~is_image], own[1][~is_image])


# -- 4. a document's counts do not depend on its batch ----------------------------------------------------


# -- 5. hooks go away, also after an exception --------------------------------------------------------------


# -- 6. no host-device synchronisation inside the hooks -----------------------------------------------------


def test_probabilities_are_the_sigmoid_scores(model: nn.Module) -> None:
    router = routers(model)[0]
    hidden = torch.randn(5, router.weight.shape[-1], generator=torch.Generator().manual_seed(3))
    math = SigmoidGroupBiasTopK()
    with torch.no_grad():
        logits = math.logits(router, hidden)
        assert torch.equal(logits, router(hidden)[0])
    torch.testing.assert_close(math.probabilities(logits), torch.sigmoid(F.linear(hidden, router.weight)))
