"""Router hooks on the tiny random DeepSeek-V3 (deepseek_v3, text only), and Kimi-VL's remote-code gate math
checked on it.

Kimi-VL (`moonshotai/Kimi-VL-A3B-*`) is remote code and cannot be downloaded here, so its real code is NOT
exercised: `MoEGate` below mimics its DeepSeek-V3 gate (attributes, input [batch, seq, hidden], output
(topk_idx, topk_weight, aux_loss), dropped groups filled with 0.0, renormalised only when top_k > 1), driven
by the native tiny model's own router weights and correction biases."""

from __future__ import annotations

import types
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from routing_contract import (
    encode,
    expert_set,
    record_forward,
    routers,
    tiny_checkpoint_fixtures,
)
from torch import nn

from rd_eval.routing.families.deepseek_style import RemoteMoEGate, SigmoidGroupBiasTopK
from rd_eval.routing.recording import GENERATED, PROMPT_IMAGE, PROMPT_TEXT, BatchRouting
from rd_eval.routing.session import routing_session
from rd_eval.routing.sites import find_router_sites, image_token_ids
from rd_eval.routing.spec import InterventionSpec, LayerBand

FAMILY = "deepseek_v3"
TOP_K, NUM_EXPERTS, NUM_MOE_LAYERS, N_GROUP, TOPK_GROUP, SCALE = 4, 16, 5, 2, 1, 2.5
BAND = (1, 2, 3)  # LayerBand() on 5 MoE layers
SHORT = "Mia has 7 apples and buys 5 more. How many apples does she have now?"
LONG = ("The bar chart shows values per category. Which category has the largest value? "
        "Reply with only the letter of the correct option.")


def reference_selection(logits: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
    """Expert ids [N, k] by the DeepSeek-V3 rule from router logits, written independently of rd_eval."""
    choice = torch.sigmoid(logits.float()) + bias.float()
    grouped = choice.reshape(-1, N_GROUP, NUM_EXPERTS // N_GROUP)
    group_score = grouped.sort(dim=-1, descending=True).values[..., :2].sum(dim=-1)
    keep = torch.zeros_like(group_score, dtype=torch.bool)
    keep.scatter_(1, group_score.argsort(dim=-1, descending=True)[:, :TOPK_GROUP], True)
    allowed = keep.repeat_interleave(NUM_EXPERTS // N_GROUP, dim=1)
    return torch.where(allowed, choice, torch.full_like(choice, -1e9)).argsort(dim=-1, descending=True)[:, :TOP_K]


checkpoint_fixture, model_fixture, tokenizer_fixture = tiny_checkpoint_fixtures(
    FAMILY, "rd-tiny-deepseek_v3", dir_fixture="tiny_path", model_class="AutoModelForCausalLM",
    processor_class="AutoTokenizer", processor_fixture="tokenizer",
)








@pytest.fixture(scope="module")
def batch(tokenizer: Any) -> Any:
    inputs = encode(tokenizer, [(LONG, None), (SHORT, None)])
    assert (inputs["attention_mask"] == 0).any(), "row 1 must be left-padded"
    return inputs


@pytest.fixture(scope="module")
def baseline(model: nn.Module, batch: Any) -> BatchRouting:
    return record_forward(model, batch)[1]


def capture(model: nn.Module, captured: dict[int, dict[str, torch.Tensor]]) -> list[Any]:
    def make(layer: int):
        def hook(module: nn.Module, args: tuple, output: Any) -> None:
            captured[layer] = {"hidden": args[0].detach().clone(), "weights": output[1].clone(),
                               "selected": output[2].clone()}
        return hook

    return [router.register_forward_hook(make(i)) for i, router in enumerate(routers(model))]


# -- 7. the tiny checkpoint; sites ---------------------------------------------------------------------------
def test_tiny_checkpoint_loads_offline_and_sites_skip_the_dense_layer(tiny_path: Path, model: nn.Module,
                                                                       tokenizer: Any) -> None:
    from transformers import AutoConfig

    config = AutoConfig.from_pretrained(tiny_path)
    assert config.model_type == FAMILY and type(model).__name__ == "DeepseekV3ForCausalLM"
    assert (config.first_k_dense_replace, config.n_group, config.topk_group) == (1, N_GROUP, TOPK_GROUP)
    assert config.eos_token_id == tokenizer.convert_tokens_to_ids("<|im_end|>")
    assert all(r.e_score_correction_bias.abs().min() > 0 for r in routers(model))  # loaded, non-zero
    sites = find_router_sites(model)
    assert [s.moe_index for s in sites] == list(range(NUM_MOE_LAYERS))
    assert [s.layer_index for s in sites] == list(range(1, NUM_MOE_LAYERS + 1))
    assert {(s.family, s.num_experts, s.top_k, s.math) for s in sites} == {
        (FAMILY, NUM_EXPERTS, TOP_K, "sigmoid_group_bias_topk")}
    assert image_token_ids(model) == ()
    assert LayerBand().resolve(NUM_MOE_LAYERS) == BAND


# -- 1. no-ops are bit-identical ---------------------------------------------------------------------------


# -- 2. recorded counts equal the model's own router logits, selected independently ------------------------
def test_recorded_counts_match_output_router_logits(model: nn.Module, batch: Any) -> None:
    outputs, routing = record_forward(model, batch, output_router_logits=True)
    assert len(outputs.router_logits) == NUM_MOE_LAYERS
    rows, length = batch["input_ids"].shape
    weight = batch["attention_mask"].reshape(-1).double().numpy()
    row = np.repeat(np.arange(rows), length)
    counts = np.zeros((rows, NUM_MOE_LAYERS, 3, NUM_EXPERTS))
    prob_sums = np.zeros_like(counts)
    for layer, (logits, router) in enumerate(zip(outputs.router_logits, routers(model), strict=True)):
        selected = reference_selection(logits, router.e_score_correction_bias).numpy()
        for k in range(TOP_K):
            np.add.at(counts, (row, layer, PROMPT_TEXT, selected[:, k]), weight)
        np.add.at(prob_sums, (row, layer, PROMPT_TEXT), torch.sigmoid(logits.double()).numpy() * weight[:, None])
    np.testing.assert_array_equal(routing.tokens[:, PROMPT_TEXT], batch["attention_mask"].sum(dim=1).numpy())
    assert np.all(routing.tokens[:, [PROMPT_IMAGE, GENERATED]] == 0)
    np.testing.assert_array_equal(routing.counts, counts)
    np.testing.assert_allclose(routing.prob_sums, prob_sums, rtol=1e-5, atol=1e-5)


# -- 3. force / suppress --------------------------------------------------------------------------------------
@pytest.mark.parametrize("mode,experts", [("force", (3, 11)), ("suppress", (0, 1, 2, 3, 4, 5, 8, 9, 10, 11, 12, 13))],
                         ids=["force", "suppress_all_but_k"])
def test_force_and_suppress_act_in_the_band_only(model: nn.Module, batch: Any, baseline: BatchRouting,
                                                 mode: str, experts: tuple[int, ...]) -> None:
    spec = InterventionSpec(experts=expert_set({i: experts for i in BAND}), mode=mode,
                            token_scope="prompt")
    captured: dict[int, dict[str, torch.Tensor]] = {}
    with routing_session(model, intervention=spec) as session, torch.inference_mode():
        handles = capture(model, captured)
        try:
            session.begin(2)
            model(**batch)
        finally:
            for handle in handles:
                handle.remove()
        routing = session.finish_batch().routing
    gates = routers(model)
    for layer in range(NUM_MOE_LAYERS):
        got = captured[layer]
        in_set = torch.isin(got["selected"], torch.tensor(experts)).sum(dim=-1)
        if layer in BAND:
            expected = len(experts) if mode == "force" else 0
            assert torch.all(in_set == expected)
            np.testing.assert_array_equal(routing.counts[:, layer, PROMPT_TEXT][:, list(experts)].sum(axis=1),
                                          expected * routing.tokens[:, PROMPT_TEXT])
            torch.testing.assert_close(got["weights"].sum(dim=-1), torch.full((in_set.shape[0],), SCALE))
        else:
            hidden = got["hidden"].reshape(-1, got["hidden"].shape[-1])
            logits = F.linear(hidden.float(), gates[layer].weight.detach().float())
            own = reference_selection(logits, gates[layer].e_score_correction_bias)
            assert torch.equal(got["selected"].sort(dim=-1).values, own.sort(dim=-1).values)
    np.testing.assert_array_equal(routing.counts[:, :BAND[0]], baseline.counts[:, :BAND[0]])


# -- 4. batch invariance with the KV cache -------------------------------------------------------------------


# -- 5, 6. hook hygiene and no host syncs ---------------------------------------------------------------------


# -- Kimi-VL's remote-code gate, mimicked and driven by the native router's weights ---------------------------
class MoEGate(nn.Module):
    """Stand-in for the DeepSeek-V3 remote-code gate Kimi-VL ships (noaux_tc), sharing `native`'s tensors."""

    def __init__(self, native: nn.Module) -> None:
        super().__init__()
        self.top_k, self.n_routed_experts = native.top_k, native.num_experts
        self.n_group, self.topk_group = native.num_group, native.topk_group
        self.routed_scaling_factor, self.norm_topk_prob = native.routed_scaling_factor, native.norm_topk_prob
        self.scoring_func, self.topk_method = "sigmoid", "noaux_tc"
        self.weight = native.weight
        self.register_buffer("e_score_correction_bias", native.e_score_correction_bias)

    def forward(self, hidden_states: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, None]:
        bsz, seq_len, h = hidden_states.shape
        logits = F.linear(hidden_states.view(-1, h).type(torch.float32), self.weight.type(torch.float32), None)
        scores = logits.sigmoid()
        choice = scores.view(bsz * seq_len, -1) + self.e_score_correction_bias.unsqueeze(0)
        group_scores = choice.view(bsz * seq_len, self.n_group, -1).topk(2, dim=-1)[0].sum(dim=-1)
        group_idx = torch.topk(group_scores, k=self.topk_group, dim=-1, sorted=False)[1]
        group_mask = torch.zeros_like(group_scores).scatter_(1, group_idx, 1)
        per_group = self.n_routed_experts // self.n_group
        score_mask = group_mask.unsqueeze(-1).expand(bsz * seq_len, self.n_group, per_group).reshape(bsz * seq_len, -1)
        _, topk_idx = torch.topk(choice.masked_fill(~score_mask.bool(), 0.0), k=self.top_k, dim=-1, sorted=False)
        topk_weight = scores.gather(1, topk_idx)
        if self.top_k > 1 and self.norm_topk_prob:
            topk_weight = topk_weight / (topk_weight.sum(dim=-1, keepdim=True) + 1e-20)
        return topk_idx, topk_weight * self.routed_scaling_factor, None


def remote_moe_forward(self: nn.Module, hidden_states: torch.Tensor) -> torch.Tensor:
    """DeepseekV3MoE.forward reading the remote gate's (topk_idx, topk_weight, aux_loss) instead."""
    topk_idx, topk_weight, _ = self.gate(hidden_states)
    flat = hidden_states.view(-1, hidden_states.shape[-1])
    return self.experts(flat, topk_idx, topk_weight).view(hidden_states.shape) + self.shared_experts(hidden_states)


class KimiLike(nn.Module):
    """Kimi-VL's layout (model_type kimi_vl, language_model.model.layers.<i>.mlp.gate = MoEGate) around the
    native tiny DeepSeek-V3, its gates swapped for stand-ins driven by the same weights."""

    def __init__(self, language_model: nn.Module) -> None:
        super().__init__()
        self.config = types.SimpleNamespace(model_type="kimi_vl", media_placeholder_token_id=-1)
        self.language_model = language_model
        for layer in language_model.model.layers:
            if hasattr(layer.mlp, "gate"):
                layer.mlp.gate = MoEGate(layer.mlp.gate)
                layer.mlp.forward = types.MethodType(remote_moe_forward, layer.mlp)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None) -> Any:
        return self.language_model(input_ids=input_ids, attention_mask=attention_mask)


def test_remote_gate_math_shares_the_native_selection(model: nn.Module, batch: Any) -> None:
    captured: dict[int, dict[str, torch.Tensor]] = {}
    handles = capture(model, captured)
    try:
        with torch.inference_mode():
            model(**batch)
    finally:
        for handle in handles:
            handle.remove()
    native_math, remote_math = SigmoidGroupBiasTopK(), RemoteMoEGate()
    pins = [torch.zeros(1, NUM_EXPERTS).index_fill_(1, torch.tensor([3, 11]), 1.0),
            -torch.ones(1, NUM_EXPERTS).index_fill_(1, torch.tensor([6, 7, 14, 15]), 0.0)]
    for layer, router in enumerate(routers(model)):
        gate = MoEGate(router)
        assert remote_math.sizes(gate) == native_math.sizes(router) == (NUM_EXPERTS, TOP_K)
        hidden = captured[layer]["hidden"]
        with torch.no_grad():
            native_out, remote_out = router(hidden), gate(hidden)
            flat = hidden.reshape(-1, hidden.shape[-1])
            logits = remote_math.logits(gate, flat)
            assert torch.equal(logits, native_math.logits(router, flat))
            # At lambda = 0 each math reproduces its own module exactly ...
            assert all(torch.equal(a, b) for a, b in zip(native_math.reroute(router, logits, logits, native_out),
                                                         native_out, strict=True))
            rerouted = remote_math.reroute(gate, logits, logits, remote_out)
            assert torch.equal(rerouted[0], remote_out[0]) and torch.equal(rerouted[1], remote_out[1])
            assert rerouted[2] is None
            # ... and the two select the same experts with the same weights, pinned or not.
            for pin in [None, *pins]:
                idx_n = native_math.reroute(router, logits, logits, native_out, pin)[2]
                idx_r, w_r, _ = remote_math.reroute(gate, logits, logits, remote_out, pin)
                order_n, order_r = idx_n.sort(dim=-1), idx_r.sort(dim=-1)
                assert torch.equal(order_n.values, order_r.values)
                w_n = native_math.reroute(router, logits, logits, native_out, pin)[1]
                assert torch.equal(w_n.gather(1, order_n.indices), w_r.gather(1, order_r.indices))
    gate.topk_method = "greedy"
    with pytest.raises(ValueError, match="topk_method='greedy'"):
        remote_math.sizes(gate)


def test_kimi_layout_records_and_forces_like_the_native_model(tiny_path: Path, batch: Any,
                                                              baseline: BatchRouting) -> None:
    from transformers import AutoModelForCausalLM

    kimi = KimiLike(AutoModelForCausalLM.from_pretrained(tiny_path, dtype=torch.float32, use_kernels=False).eval())
    sites = find_router_sites(kimi)
    assert [s.module_path for s in sites] == [f"language_model.model.layers.{i}.mlp.gate" for i in range(1, 6)]
    assert {s.math for s in sites} == {"remote_moegate_sigmoid_group_bias_topk"}
    inputs = {"input_ids": batch["input_ids"], "attention_mask": batch["attention_mask"]}
    _, routing = record_forward(kimi, inputs)
    np.testing.assert_array_equal(routing.counts, baseline.counts)
    np.testing.assert_array_equal(routing.tokens, baseline.tokens)
    spec = InterventionSpec(experts=expert_set({i: (3, 11) for i in BAND}), mode="force")
    _, forced = record_forward(kimi, inputs, spec)
    real = forced.tokens[:, PROMPT_TEXT]
    for layer in BAND:
        np.testing.assert_array_equal(forced.counts[:, layer, PROMPT_TEXT][:, [3, 11]], np.stack([real, real], 1))
    np.testing.assert_array_equal(forced.counts[:, 0], baseline.counts[:, 0])
