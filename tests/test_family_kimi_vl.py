"""Kimi-VL (remote code, opt-in): its DeepSeek-V3 `MoEGate` math, checked against transformers' native
DeepseekV3TopkRouter, and the whole routing path on a stand-in model with Kimi-VL's module layout.

Kimi-VL's real remote code cannot be downloaded here and is NOT exercised: `RemoteGate` below is written
from the DeepSeek-V3 remote-code convention (noaux_tc: sigmoid scores, correction bias, group-limited
top-k, input [batch, seq, hidden], output (topk_idx, topk_weight))."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from routing_contract import hook_counts
from torch import nn

from rd_eval.routing.families.deepseek_style import RemoteMoEGate
from rd_eval.routing.recording import PROMPT_IMAGE, PROMPT_TEXT
from rd_eval.routing.session import routing_session
from rd_eval.routing.sites import find_router_sites
from rd_eval.routing.spec import ExpertSet, InterventionSpec, LayerBand, LayerExperts

HIDDEN, EXPERTS, TOP_K, LAYERS, MEDIA_ID = 32, 16, 4, 6, 7


class MoEGate(nn.Module):
    """Stand-in for the remote-code gate, same attributes and contract."""

    def __init__(self, generator: torch.Generator, hidden: int = HIDDEN) -> None:
        super().__init__()
        self.top_k, self.n_routed_experts, self.routed_scaling_factor = TOP_K, EXPERTS, 2.446
        self.n_group, self.topk_group, self.norm_topk_prob = 2, 1, True
        self.weight = nn.Parameter(torch.randn(EXPERTS, hidden, generator=generator) * 0.3)
        self.e_score_correction_bias = nn.Parameter(torch.randn(EXPERTS, generator=generator) * 0.05)

    def forward(self, hidden_states: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        tokens = hidden_states.reshape(-1, hidden_states.shape[-1])
        scores = F.linear(tokens.float(), self.weight.float()).sigmoid()
        choice = scores + self.e_score_correction_bias.unsqueeze(0)
        grouped = choice.view(tokens.shape[0], self.n_group, -1).topk(2, dim=-1)[0].sum(dim=-1)
        keep = torch.zeros_like(grouped).scatter_(1, torch.topk(grouped, self.topk_group, dim=-1, sorted=False)[1], 1)
        size = self.n_routed_experts
        keep = keep.unsqueeze(-1).expand(-1, self.n_group, size // self.n_group).reshape(-1, size)
        topk_idx = torch.topk(choice.masked_fill(~keep.bool(), float("-inf")), self.top_k, dim=-1, sorted=False)[1]
        topk_weight = scores.gather(1, topk_idx)
        if self.top_k > 1 and self.norm_topk_prob:
            topk_weight = topk_weight / (topk_weight.sum(dim=-1, keepdim=True) + 1e-20)
        return topk_idx, topk_weight * self.routed_scaling_factor


class KimiLikeModel(nn.Module):
    """Kimi-VL's module layout (language_model.model.layers.<i>.mlp.gate) around stand-in gates."""

    def __init__(self) -> None:
        super().__init__()
        generator = torch.Generator().manual_seed(0)
        self.config = SimpleNamespace(model_type="kimi_vl", media_placeholder_token_id=MEDIA_ID)
        self.embed = nn.Embedding(64, HIDDEN)
        layers = nn.ModuleList()
        for _ in range(LAYERS):
            layer = nn.Module()
            layer.mlp = nn.Module()
            layer.mlp.gate = MoEGate(generator)
            layer.mlp.proj = nn.Linear(HIDDEN, HIDDEN)
            layers.append(layer)
        self.language_model = nn.Module()
        self.language_model.model = nn.Module()
        self.language_model.model.layers = layers

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None) -> torch.Tensor:
        hidden = self.embed(input_ids)
        for layer in self.language_model.model.layers:
            idx, weight = layer.mlp.gate(hidden)
            mix = (weight.unsqueeze(-1) * torch.tanh(layer.mlp.proj(hidden).reshape(-1, 1, HIDDEN))).sum(dim=1)
            spread = idx.float().mean(dim=-1).reshape(*hidden.shape[:2], 1) / EXPERTS
            hidden = hidden + mix.reshape(hidden.shape) * spread
        return hidden


@pytest.fixture(scope="module")
def model() -> KimiLikeModel:
    return KimiLikeModel().eval()


@pytest.fixture(scope="module")
def batch() -> dict[str, torch.Tensor]:
    ids = torch.tensor([[3, 9, MEDIA_ID, MEDIA_ID, MEDIA_ID, 11, 12, 13], [0, 0, 0, 21, MEDIA_ID, MEDIA_ID, 22, 23]])
    mask = torch.tensor([[1] * 8, [0, 0, 0, 1, 1, 1, 1, 1]])
    return {"input_ids": ids, "attention_mask": mask}


def test_remote_gate_math_matches_transformers_native_deepseek_v3_router(tmp_path: Path) -> None:
    from transformers import DeepseekV3ForCausalLM

    from rd_eval.models.tiny import make_tiny

    native_model = DeepseekV3ForCausalLM.from_pretrained(make_tiny("deepseek_v3", tmp_path / "ds", seed=0),
                                                   use_kernels=False).eval()
    native = dict(native_model.named_modules())[find_router_sites(native_model)[0].module_path]
    gate = MoEGate(torch.Generator().manual_seed(1), hidden=native.weight.shape[-1])
    gate.top_k, gate.n_routed_experts = native.top_k, native.num_experts
    gate.n_group, gate.topk_group = native.num_group, native.topk_group
    gate.routed_scaling_factor, gate.norm_topk_prob = native.routed_scaling_factor, native.norm_topk_prob
    with torch.no_grad():
        gate.weight.copy_(native.weight)
        gate.e_score_correction_bias.copy_(native.e_score_correction_bias)
        hidden = torch.randn(3, 11, native.weight.shape[-1], generator=torch.Generator().manual_seed(2))
        _, native_weights, native_idx = native(hidden)
        remote_idx, remote_weights = gate(hidden)
        math = RemoteMoEGate()
        logits = math.logits(gate, hidden.reshape(-1, hidden.shape[-1]))
        rerouted = math.reroute(gate, logits, logits, (remote_idx, remote_weights))
    assert torch.equal(remote_idx, native_idx) and torch.equal(remote_weights, native_weights)
    assert torch.equal(rerouted[0], remote_idx) and torch.equal(rerouted[1], remote_weights)
    assert math.sizes(gate) == (native.num_experts, native.top_k)


def test_sites_of_a_kimi_layout(model: KimiLikeModel) -> None:
    sites = find_router_sites(model)
    assert [s.module_path for s in sites] == [f"language_model.model.layers.{i}.mlp.gate" for i in range(LAYERS)]
    assert {(s.family, s.num_experts, s.top_k, s.math) for s in sites} == {
        ("kimi_vl", EXPERTS, TOP_K, "remote_moegate_sigmoid_group_bias_topk")}


def test_recording_matches_the_gates_own_selection(model: KimiLikeModel, batch: dict[str, torch.Tensor]) -> None:
    own: dict[int, torch.Tensor] = {}
    handles = [layer.mlp.gate.register_forward_hook(lambda m, a, out, i=i: own.__setitem__(i, out[0].clone()))
               for i, layer in enumerate(model.language_model.model.layers)]
    with routing_session(model) as session, torch.no_grad():
        session.begin(2)
        model(**batch)
        routing = session.finish_batch().routing
    for handle in handles:
        handle.remove()
    weight = batch["attention_mask"].reshape(-1).numpy()
    media = (batch["input_ids"] == MEDIA_ID).reshape(-1).numpy()
    for layer, selected in own.items():
        expected = np.zeros((2, 3, EXPERTS))
        for token, experts in enumerate(selected.numpy()):
            expected[token // 8, PROMPT_IMAGE if media[token] else PROMPT_TEXT, experts] += weight[token]
        np.testing.assert_array_equal(routing.counts[:, layer], expected)


def test_force_reaches_the_top_k_and_hooks_go_away(model: KimiLikeModel, batch: dict[str, torch.Tensor]) -> None:
    before = hook_counts(model)
    band = LayerBand().resolve(LAYERS)
    experts = ExpertSet(model="kimi", kind="domain", layers=tuple(LayerExperts(i, (0, 9)) for i in band))
    with routing_session(model, intervention=InterventionSpec(experts=experts, mode="force")) as session:
        session.begin(2)
        with torch.no_grad():
            model(**batch)
        routing = session.finish_batch().routing
    real_tokens = routing.tokens[:, :2].sum()
    for layer in band:
        assert (routing.counts[:, layer, :2][..., [0, 9]].sum(axis=(0, 1)) == real_tokens).all()
    assert hook_counts(model) == before
