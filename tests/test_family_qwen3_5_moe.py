"""Router hooks on the tiny random Qwen3.5-MoE: recording, steering, hook hygiene, no host syncs.

Qwen3.5-MoE (`Qwen3_5MoeTopKRouter`) routes like Qwen3-VL-MoE: softmax (fp32) over all experts, top-k,
weights always renormalised over the k. Its sigmoid-gated shared expert runs for every token and is not a
routing site. Decoder layers alternate Gated-DeltaNet linear attention and full attention; every layer is
MoE, so MoE index == layer index (4 layers).
"""

from __future__ import annotations

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
from rd_eval.routing.sites import find_router_sites, image_token_ids, model_family
from rd_eval.routing.spec import InterventionSpec, LayerBand
from rd_eval.routing.steering import steer_logits

FAMILY = "qwen3_5_moe"
TOP_K = 4
NUM_EXPERTS = 16
NUM_LAYERS = 4
BAND = (1, 2)  # LayerBand() (fractions 0.25-0.75) on 4 MoE layers

IMAGE_PROMPT = "What is the total cost?"
TEXT_PROMPT = "Mia has 7 apples and buys 5 more. How many apples does she have now?"
LONG_PROMPT = "The bar chart shows values per category. Which category has the largest value? Reply with a letter."


# -- fixtures -------------------------------------------------------------------------------------------
checkpoint_fixture, model_fixture, processor_fixture = tiny_checkpoint_fixtures(
    FAMILY, "rd-tiny-qwen3_5_moe", dir_fixture="tiny_dir"
)


batch_fixture, plain_fixture, baseline_fixture = mixed_batch_fixtures(IMAGE_PROMPT, TEXT_PROMPT)


# -- 7. the tiny checkpoint -----------------------------------------------------------------------------
def test_tiny_checkpoint_loads_with_auto_classes(tiny_dir: Path, model: nn.Module, processor: Any) -> None:
    from transformers import AutoConfig, AutoModelForImageTextToText, Qwen3_5MoeForConditionalGeneration

    config = AutoConfig.from_pretrained(tiny_dir)
    assert config.model_type == FAMILY and type(model) is Qwen3_5MoeForConditionalGeneration
    assert type(processor).__name__ == "Qwen3VLProcessor"
    _, info = AutoModelForImageTextToText.from_pretrained(tiny_dir, output_loading_info=True, use_kernels=False)
    assert not any(info.values()), info  # nothing missing, unexpected or randomly re-initialised
    # The saved weights are the seeded ones: rebuilding from the saved config gives the same tensors.
    torch.manual_seed(0)
    rebuilt = Qwen3_5MoeForConditionalGeneration(config).eval()
    loaded = model.state_dict()
    assert all(torch.equal(t, loaded[k]) for k, t in rebuilt.state_dict().items())
    text = config.text_config
    assert text.layer_types == ["linear_attention", "full_attention"] * 2
    assert (text.num_experts, text.num_experts_per_tok, text.num_hidden_layers) == (NUM_EXPERTS, TOP_K, NUM_LAYERS)
    tokenizer = processor.tokenizer
    assert config.image_token_id == tokenizer.convert_tokens_to_ids(processor.image_token)
    assert config.video_token_id == tokenizer.convert_tokens_to_ids(processor.video_token)
    assert config.vision_start_token_id == tokenizer.convert_tokens_to_ids("<|vision_start|>")
    assert text.vocab_size == len(tokenizer)


def test_sites_of_tiny_model(model: nn.Module) -> None:
    sites = find_router_sites(model)
    assert [s.moe_index for s in sites] == list(range(NUM_LAYERS))
    assert [s.layer_index for s in sites] == list(range(NUM_LAYERS))
    assert {(s.num_experts, s.top_k, s.family, s.math) for s in sites} == {(NUM_EXPERTS, TOP_K, FAMILY, "softmax_topk")}
    assert all(s.module_path.endswith(".mlp.gate") for s in sites)  # never the shared expert or its gate
    assert model_family(model) is family_routing(FAMILY)
    assert image_token_ids(model) == (model.config.image_token_id, model.config.video_token_id)
    assert LayerBand().resolve(NUM_LAYERS) == BAND


# -- 1. no-op hooks are bit-identical ---------------------------------------------------------------------
NOOP_CASES = {
    "record_only": (True, None),
    "lambda_0_soft": (True, InterventionSpec(experts=expert_set({i: (1, 5) for i in BAND}), strength=0.0)),
    "lambda_0_selection_only_no_record": (
        False, InterventionSpec(experts=expert_set({i: (1, 5) for i in BAND}), mode="selection_only", strength=0.0)),
    "empty_expert_set_force": (True, InterventionSpec(experts=expert_set({i: () for i in BAND}), mode="force")),
}


@pytest.mark.parametrize("mode", ["soft", "soft_topk", "random", "selection_only"])
def test_lambda_zero_reroute_reproduces_router(model: nn.Module, mode: str) -> None:
    router = routers(model)[1]
    generator = torch.Generator().manual_seed(7)
    hidden = torch.randn(53, router.weight.shape[-1], generator=generator) * 3.0
    expert_mask = torch.zeros(NUM_EXPERTS)
    expert_mask[[0, 5, 9, 14]] = 1.0
    token_mask = (torch.rand(53, generator=generator) > 0.5).float()
    math = family_routing(FAMILY).math
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


# -- 2. recorded counts equal an independent reference --------------------------------------------------
def test_recorded_counts_match_router_logits_reference(model: nn.Module, mixed_batch: Any) -> None:
    """Reference: the model's own `output_router_logits`, with the family's selection applied here."""
    outputs, routing = record_forward(model, mixed_batch, output_router_logits=True)
    input_ids = mixed_batch["input_ids"]
    batch, length = input_ids.shape
    weight = mixed_batch["attention_mask"].reshape(-1).double().numpy()
    is_image = (input_ids == model.config.image_token_id).reshape(-1).numpy()
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
    np.testing.assert_array_equal(routing.tokens, tokens)
    np.testing.assert_array_equal(routing.counts, counts)
    np.testing.assert_allclose(routing.prob_sums, prob_sums, rtol=1e-5, atol=1e-5)
    assert np.all(routing.counts[:, :, GENERATED] == 0)


# -- 3. force / suppress --------------------------------------------------------------------------------


# -- 4. a document's counts do not depend on its batch ---------------------------------------------------


# -- 5. hooks are always removed --------------------------------------------------------------------------


# -- 6. no host-device synchronisation inside the hooks ---------------------------------------------------


