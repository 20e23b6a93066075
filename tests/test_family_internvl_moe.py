"""Router hooks on the tiny random InternVL with a Qwen3-MoE language model (the InternVL3.5 MoE "-HF"
layout): recording, steering, hook hygiene, no host syncs.

The routers (`Qwen3MoeTopKRouter`) sit in `model.language_model`: softmax (fp32) over all experts, top-k,
weights renormalised over the k only when `norm_topk_prob` (True in the tiny checkpoint, as in
InternVL3.5-30B-A3B; the False branch is checked on a copy of a router). Every one of the 6 decoder layers
is MoE. InternVL's wrapper drops the language model's router logits from its output, so the reference
counts are recomputed from the MoE blocks' inputs captured by hooks of this test.
"""

from __future__ import annotations

import copy
import types
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
    mixed_batch_fixtures,
    record_forward,
    routers,
    tiny_checkpoint_fixtures,
)
from torch import nn

from rd_eval.routing.families import family_routing
from rd_eval.routing.recording import GENERATED, PROMPT_IMAGE, PROMPT_TEXT
from rd_eval.routing.routers import SoftmaxTopK
from rd_eval.routing.session import routing_session
from rd_eval.routing.sites import UnsupportedModelError, find_router_sites, image_token_ids, model_family
from rd_eval.routing.spec import InterventionSpec, LayerBand
from rd_eval.routing.steering import steer_logits

FAMILY = "internvl_moe"
MODEL_TYPE = "internvl"
TOP_K = 4
NUM_EXPERTS = 16
NUM_LAYERS = 6
BAND = (2, 3, 4)  # LayerBand() (fractions 0.25-0.75) on 6 MoE layers

IMAGE_PROMPT = "What is the total cost?"
TEXT_PROMPT = "Mia has 7 apples and buys 5 more. How many apples does she have now?"
LONG_PROMPT = "The bar chart shows values per category. Which category has the largest value? Reply with a letter."


# -- fixtures -------------------------------------------------------------------------------------------
checkpoint_fixture, model_fixture, processor_fixture = tiny_checkpoint_fixtures(
    FAMILY, "rd-tiny-internvl_moe-A1B", dir_fixture="tiny_dir"
)


batch_fixture, plain_fixture, baseline_fixture = mixed_batch_fixtures(IMAGE_PROMPT, TEXT_PROMPT)


# -- 7. the tiny checkpoint -----------------------------------------------------------------------------
def test_tiny_checkpoint_loads_with_auto_classes(tiny_dir: Path, model: nn.Module, processor: Any) -> None:
    from transformers import AutoConfig, AutoModelForImageTextToText, InternVLForConditionalGeneration

    config = AutoConfig.from_pretrained(tiny_dir)
    assert (config.model_type, config.text_config.model_type) == (MODEL_TYPE, "qwen3_moe")
    assert type(model) is InternVLForConditionalGeneration
    assert type(processor).__name__ == "InternVLProcessor"
    _, info = AutoModelForImageTextToText.from_pretrained(tiny_dir, output_loading_info=True, use_kernels=False)
    assert not any(info.values()), info  # nothing missing, unexpected or randomly re-initialised
    # The saved weights are the seeded ones: rebuilding from the saved config gives the same tensors, and the
    # language model's head stays untied from its embeddings, as in the real checkpoints.
    torch.manual_seed(0)
    rebuilt = InternVLForConditionalGeneration(config).eval()
    loaded = model.state_dict()
    assert all(torch.equal(t, loaded[k]) for k, t in rebuilt.state_dict().items())
    assert not torch.equal(model.lm_head.weight, model.get_input_embeddings().weight)
    text = config.text_config
    assert (text.num_experts, text.num_experts_per_tok, text.num_hidden_layers) == (NUM_EXPERTS, TOP_K, NUM_LAYERS)
    assert text.norm_topk_prob is True
    tokenizer = processor.tokenizer
    assert config.image_token_id == tokenizer.convert_tokens_to_ids("<IMG_CONTEXT>") == processor.image_token_id
    assert "<IMG_CONTEXT>" in processor.apply_chat_template(
        [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "Hi"}]}], tokenize=False)
    assert text.vocab_size == len(tokenizer)


def test_image_tokens_follow_internvl_tiling(model: nn.Module, processor: Any, mixed_batch: Any) -> None:
    """Each tile (crops + thumbnail) becomes image_seq_length context tokens between <img> and </img>."""
    ids = mixed_batch["input_ids"]
    tiles = mixed_batch["pixel_values"].shape[0]
    assert tiles > 1  # dynamic tiling is on, as in InternVL
    n_image = (ids == model.config.image_token_id).sum(dim=1).tolist()
    assert n_image == [tiles * model.config.image_seq_length, 0]
    for marker in ("<img>", "</img>"):
        assert (ids == processor.tokenizer.convert_tokens_to_ids(marker)).sum(dim=1).tolist() == [1, 0]


def test_sites_of_tiny_model(model: nn.Module) -> None:
    sites = find_router_sites(model)
    assert [s.moe_index for s in sites] == list(range(NUM_LAYERS))
    assert [s.layer_index for s in sites] == list(range(NUM_LAYERS))
    assert {(s.num_experts, s.top_k, s.family, s.math) for s in sites} == {(NUM_EXPERTS, TOP_K, FAMILY, "softmax_topk")}
    assert all(s.module_path.startswith("model.language_model.layers.") for s in sites)
    assert model_family(model) is family_routing(MODEL_TYPE)
    assert image_token_ids(model) == (model.config.image_token_id,)
    assert LayerBand().resolve(NUM_LAYERS) == BAND


def test_internvl_with_a_dense_language_model_is_refused() -> None:
    model = nn.Linear(2, 2)
    model.config = types.SimpleNamespace(model_type=MODEL_TYPE, text_config=types.SimpleNamespace(model_type="qwen2"))
    with pytest.raises(UnsupportedModelError, match="'qwen2' language model") as info:
        find_router_sites(model)
    assert "qwen3_moe" in str(info.value)
    with pytest.raises(UnsupportedModelError), routing_session(model):
        pass


# -- 1. no-op hooks are bit-identical ---------------------------------------------------------------------
NOOP_CASES = {
    "record_only": (True, None),
    "lambda_0_soft": (True, InterventionSpec(experts=expert_set({i: (1, 5) for i in BAND}), strength=0.0)),
    "lambda_0_selection_only_no_record": (
        False, InterventionSpec(experts=expert_set({i: (1, 5) for i in BAND}), mode="selection_only", strength=0.0)),
    "empty_expert_set_force": (True, InterventionSpec(experts=expert_set({i: () for i in BAND}), mode="force")),
}


@pytest.mark.parametrize("norm_topk_prob", [True, False], ids=["renorm", "no_renorm"])
@pytest.mark.parametrize("mode", ["soft", "soft_topk", "random", "selection_only"])
def test_lambda_zero_reroute_reproduces_router(model: nn.Module, mode: str, norm_topk_prob: bool) -> None:
    router = copy.deepcopy(routers(model)[1])
    router.norm_topk_prob = norm_topk_prob  # a Qwen3-MoE config may turn renormalisation off
    generator = torch.Generator().manual_seed(7)
    hidden = torch.randn(53, router.weight.shape[-1], generator=generator) * 3.0
    expert_mask = torch.zeros(NUM_EXPERTS)
    expert_mask[[0, 5, 9, 14]] = 1.0
    token_mask = (torch.rand(53, generator=generator) > 0.5).float()
    math = family_routing(MODEL_TYPE).math
    assert isinstance(math, SoftmaxTopK)
    with torch.no_grad():
        output = router(hidden)
        logits = math.logits(router, hidden)
        steered = steer_logits(logits, mode=mode, strength=0.0, expert_mask=expert_mask, token_mask=token_mask,
                               selected=math.selection_mask(router, logits))
        weight_source = logits if mode == "selection_only" else steered
        rerouted = math.reroute(router, steered, weight_source, output)
    assert torch.equal(steered, output[0])
    assert all(torch.equal(mine, own) for mine, own in zip(rerouted, output, strict=True))
    assert all(mine.dtype == own.dtype for mine, own in zip(rerouted, output, strict=True))
    assert torch.equal(math.selection(output, router), output[2])
    sums = output[1].sum(dim=-1)
    assert torch.allclose(sums, torch.ones_like(sums)) == norm_topk_prob  # the two branches really differ


# -- 2. recorded counts equal an independent reference --------------------------------------------------
@contextmanager
def capture_moe_inputs(model: nn.Module) -> Iterator[dict[int, torch.Tensor]]:
    """The hidden states entering each decoder layer's MoE block (the router's input)."""
    captured: dict[int, torch.Tensor] = {}
    layers = model.model.language_model.layers
    handles = []
    for index, layer in enumerate(layers):
        def hook(module: nn.Module, args: tuple, index: int = index) -> None:
            captured[index] = args[0].reshape(-1, args[0].shape[-1]).clone()
        handles.append(layer.mlp.register_forward_pre_hook(hook))
    try:
        yield captured
    finally:
        for handle in handles:
            handle.remove()


def test_recorded_counts_match_recomputed_reference(model: nn.Module, mixed_batch: Any) -> None:
    """Reference: softmax top-k recomputed here from the MoE blocks' inputs (InternVL does not return the
    language model's router logits; where a transformers release does, they must agree too)."""
    with capture_moe_inputs(model) as hidden:
        try:
            outputs, routing = record_forward(model, mixed_batch, output_router_logits=True)
        except TypeError as exc:  # transformers 5.25: InternVL's output class rejects the router_logits it is given
            if "router_logits" not in str(exc):
                raise
            hidden.clear()
            outputs, routing = record_forward(model, mixed_batch)
    input_ids = mixed_batch["input_ids"]
    batch, length = input_ids.shape
    weight = mixed_batch["attention_mask"].reshape(-1).double().numpy()
    is_image = (input_ids == model.config.image_token_id).reshape(-1).numpy()
    scope = np.where(is_image, PROMPT_IMAGE, PROMPT_TEXT)
    row = np.repeat(np.arange(batch), length)
    assert sorted(hidden) == list(range(NUM_LAYERS))
    returned = getattr(outputs, "router_logits", None)

    counts = np.zeros((batch, NUM_LAYERS, 3, NUM_EXPERTS))
    prob_sums = np.zeros((batch, NUM_LAYERS, 3, NUM_EXPERTS))
    tokens = np.zeros((batch, 3))
    np.add.at(tokens, (row, scope), weight)
    gates = [layer.mlp.gate.weight for layer in model.model.language_model.layers]
    for layer in range(NUM_LAYERS):
        assert hidden[layer].shape == (batch * length, gates[layer].shape[1])
        logits = hidden[layer] @ gates[layer].detach().T
        if returned is not None:
            torch.testing.assert_close(returned[layer].float(), logits)
        probs = F.softmax(logits.float(), dim=-1)
        selected = probs.topk(TOP_K, dim=-1).indices.numpy()
        for k in range(TOP_K):
            np.add.at(counts, (row, layer, scope, selected[:, k]), weight)
        np.add.at(prob_sums, (row, layer, scope), probs.double().numpy() * weight[:, None])

    # The reference is not trivial: padding, image tokens in row 0 only, text tokens in both rows.
    assert tokens[0, PROMPT_IMAGE] == int(is_image.reshape(batch, length)[0].sum()) > 0
    assert tokens[1, PROMPT_IMAGE] == 0
    assert tokens[1].sum() < length
    np.testing.assert_array_equal(routing.tokens, tokens)
    np.testing.assert_array_equal(routing.counts, counts)
    np.testing.assert_allclose(routing.prob_sums, prob_sums, rtol=1e-5, atol=1e-5)
    assert np.all(routing.counts[:, :, GENERATED] == 0)


# -- 3. force / suppress --------------------------------------------------------------------------------


# -- 4. a document's counts do not depend on its batch ---------------------------------------------------


# -- 5. hooks are always removed --------------------------------------------------------------------------


# -- 6. no host-device synchronisation inside the hooks ---------------------------------------------------


