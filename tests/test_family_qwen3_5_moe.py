"""Router hooks on the tiny random Qwen3.5-MoE: recording, steering, hook hygiene, no host syncs.

Qwen3.5-MoE (`Qwen3_5MoeTopKRouter`) routes like Qwen3-VL-MoE: softmax (fp32) over all experts, top-k,
weights always renormalised over the k. Its sigmoid-gated shared expert runs for every token and is not a
routing site. Decoder layers alternate Gated-DeltaNet linear attention and full attention; every layer is
MoE, so MoE index == layer index (4 layers).
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
    HostSyncGuard,
    HostSyncViolation,
    bracket_session_hooks,
    drawn_image,
    encode,
    expert_set,
    hook_counts,
    record_forward,
    record_generate,
    routers,
)
from torch import nn

from rd_eval.routing.families import family_routing
from rd_eval.routing.recording import GENERATED, PROMPT_IMAGE, PROMPT_TEXT, BatchRouting
from rd_eval.routing.routers import SoftmaxTopK
from rd_eval.routing.session import routing_session
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
@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from rd_eval.tiny import make_tiny

    return make_tiny(FAMILY, tmp_path_factory.mktemp(FAMILY) / "rd-tiny-qwen3_5_moe", seed=0)


def load_model(path: Path) -> nn.Module:
    from transformers import AutoModelForImageTextToText

    return AutoModelForImageTextToText.from_pretrained(path, dtype=torch.float32).eval()


@pytest.fixture(scope="module")
def model(tiny_dir: Path) -> nn.Module:
    return load_model(tiny_dir)


@pytest.fixture(scope="module")
def processor(tiny_dir: Path) -> Any:
    from transformers import AutoProcessor

    return AutoProcessor.from_pretrained(tiny_dir)


@pytest.fixture(scope="module")
def mixed_batch(processor: Any) -> Any:
    """Row 0: image + text; row 1: text only, left-padded."""
    inputs = encode(processor, [(IMAGE_PROMPT, drawn_image(1)), (TEXT_PROMPT, None)])
    assert (inputs["attention_mask"] == 0).any(), "row 1 must be left-padded"
    return inputs


@pytest.fixture(scope="module")
def plain_outputs(model: nn.Module, mixed_batch: Any) -> dict[str, torch.Tensor]:
    """The model with no hooks at all: prefill logits and greedy ids."""
    with torch.inference_mode():
        logits = model(**mixed_batch).logits.clone()
        ids = model.generate(**mixed_batch, max_new_tokens=4, do_sample=False)
    return {"logits": logits, "ids": ids}


@pytest.fixture(scope="module")
def baseline_routing(model: nn.Module, mixed_batch: Any) -> BatchRouting:
    return record_forward(model, mixed_batch)[1]


@contextmanager
def capture_routers(model: nn.Module) -> Iterator[dict[int, dict[str, torch.Tensor]]]:
    """Each router's input and final output (registered after the session's hooks: what the experts get)."""
    captured: dict[int, dict[str, torch.Tensor]] = {}
    handles = []
    for layer, router in enumerate(routers(model)):
        def hook(module: nn.Module, args: tuple, output: Any, layer: int = layer) -> None:
            captured[layer] = {"hidden": args[0].reshape(-1, module.weight.shape[-1]).clone(),
                               "logits": output[0].clone(), "weights": output[1].clone(),
                               "selected": output[2].clone()}
        handles.append(router.register_forward_hook(hook))
    try:
        yield captured
    finally:
        for handle in handles:
            handle.remove()


def own_selection(router: nn.Module, hidden: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(probabilities [N, E], top-k ids [N, k]) of the unsteered router on `hidden`, computed here."""
    with torch.no_grad():
        probs = F.softmax(F.linear(hidden, router.weight), dim=-1, dtype=torch.float)
    return probs, probs.topk(TOP_K, dim=-1).indices


def least_and_most_selected(routing: BatchRouting, n: int) -> tuple[dict[int, tuple[int, ...]], dict]:
    least, most = {}, {}
    for layer in BAND:
        per_expert = routing.counts[:, layer].sum(axis=(0, 1))
        order = sorted(range(NUM_EXPERTS), key=lambda e: (per_expert[e], e))
        least[layer], most[layer] = tuple(sorted(order[:n])), tuple(sorted(order[-n:]))
    return least, most


# -- 7. the tiny checkpoint -----------------------------------------------------------------------------
def test_tiny_checkpoint_loads_with_auto_classes(tiny_dir: Path, model: nn.Module, processor: Any) -> None:
    from transformers import AutoConfig, AutoModelForImageTextToText, Qwen3_5MoeForConditionalGeneration

    config = AutoConfig.from_pretrained(tiny_dir)
    assert config.model_type == FAMILY and type(model) is Qwen3_5MoeForConditionalGeneration
    assert type(processor).__name__ == "Qwen3VLProcessor"
    _, info = AutoModelForImageTextToText.from_pretrained(tiny_dir, output_loading_info=True)
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


@pytest.mark.parametrize("case", sorted(NOOP_CASES))
def test_noop_hooks_are_bit_identical(model: nn.Module, mixed_batch: Any, plain_outputs: dict[str, torch.Tensor],
                                      case: str) -> None:
    record, spec = NOOP_CASES[case]
    with routing_session(model, record=record, intervention=spec) as session, torch.inference_mode():
        session.begin(2)
        logits = model(**mixed_batch).logits
        session.begin(2)
        ids = model.generate(**mixed_batch, max_new_tokens=4, do_sample=False)
    assert torch.equal(logits, plain_outputs["logits"])
    assert torch.equal(ids, plain_outputs["ids"])


def test_nonzero_lambda_changes_outputs(model: nn.Module, mixed_batch: Any,
                                        plain_outputs: dict[str, torch.Tensor]) -> None:
    """The bit-identity above is not vacuous: the same spec with lambda != 0 changes the logits."""
    spec = InterventionSpec(experts=expert_set({i: (1, 5) for i in BAND}), strength=2.0)
    outputs, _ = record_forward(model, mixed_batch, spec)
    assert not torch.equal(outputs.logits, plain_outputs["logits"])


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
                               top_k=TOP_K)
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
@pytest.mark.parametrize("forced", [(3, 11), (0, 2, 4, 6, 8, 10)], ids=["two", "more_than_k"])
def test_force_puts_experts_in_topk(model: nn.Module, mixed_batch: Any, baseline_routing: BatchRouting,
                                    forced: tuple[int, ...]) -> None:
    spec = InterventionSpec(experts=expert_set({i: forced for i in range(NUM_LAYERS)}), mode="force")
    all_routers = routers(model)
    with routing_session(model, intervention=spec) as session, torch.inference_mode():
        with capture_routers(model) as captured:
            session.begin(2)
            model(**mixed_batch)
        routing = session.recorder.finish_batch()
    per_token = min(len(forced), TOP_K)
    for layer in BAND:
        np.testing.assert_array_equal(routing.counts[:, layer][:, :, list(forced)].sum(axis=2),
                                      per_token * routing.tokens)
        got = captured[layer]
        assert torch.all(torch.isin(got["selected"], torch.tensor(forced)).sum(dim=-1) == per_token)  # padding too
        # Qwen3.5 always renormalises over the selected k: the weights sum to 1, and are the softmax of the
        # router logits it returned, gathered at the forced selection.
        assert torch.all(got["weights"] >= 0)
        torch.testing.assert_close(got["weights"].sum(dim=-1), torch.ones(got["weights"].shape[0]))
        expected = F.softmax(got["logits"].float(), dim=-1).gather(1, got["selected"])
        torch.testing.assert_close(got["weights"], expected / expected.sum(dim=-1, keepdim=True))
        assert not np.array_equal(routing.counts[:, layer], baseline_routing.counts[:, layer])
    # Layers before the band are untouched; the layer after it picks by its own rule from its (changed) input.
    np.testing.assert_array_equal(routing.counts[:, : BAND[0]], baseline_routing.counts[:, : BAND[0]])
    np.testing.assert_array_equal(routing.prob_sums[:, : BAND[0]], baseline_routing.prob_sums[:, : BAND[0]])
    np.testing.assert_array_equal(routing.tokens, baseline_routing.tokens)
    for layer in (0, NUM_LAYERS - 1):
        assert torch.equal(captured[layer]["selected"], own_selection(all_routers[layer], captured[layer]["hidden"])[1])


def test_suppress_never_selects_experts(model: nn.Module, mixed_batch: Any, baseline_routing: BatchRouting) -> None:
    _, most = least_and_most_selected(baseline_routing, 3)
    for layer in BAND:
        assert baseline_routing.counts[:, layer][:, :, list(most[layer])].sum() > 0
    spec = InterventionSpec(experts=expert_set(most), mode="suppress")
    with routing_session(model, intervention=spec) as session, torch.inference_mode():
        with capture_routers(model) as captured:
            session.begin(2)
            model(**mixed_batch)
        routing = session.recorder.finish_batch()
    for layer in BAND:
        assert routing.counts[:, layer][:, :, list(most[layer])].sum() == 0
        assert not torch.isin(captured[layer]["selected"], torch.tensor(most[layer])).any()
        torch.testing.assert_close(captured[layer]["weights"].sum(dim=-1), torch.ones(mixed_batch["input_ids"].numel()))
    np.testing.assert_array_equal(routing.counts[:, : BAND[0]], baseline_routing.counts[:, : BAND[0]])


def test_soft_raises_selection_frequency(model: nn.Module, mixed_batch: Any, baseline_routing: BatchRouting) -> None:
    least, _ = least_and_most_selected(baseline_routing, 2)
    _, routing = record_forward(model, mixed_batch, InterventionSpec(experts=expert_set(least), strength=2.0))
    for layer in BAND:
        boosted = list(least[layer])
        assert routing.counts[:, layer][..., boosted].sum() > baseline_routing.counts[:, layer][..., boosted].sum()
    first = BAND[0]  # its input is unchanged, so no boosted expert can lose a token
    boosted = list(least[first])
    assert np.all(routing.counts[:, first][..., boosted] >= baseline_routing.counts[:, first][..., boosted])
    np.testing.assert_array_equal(routing.counts[:, :first], baseline_routing.counts[:, :first])


def test_force_on_image_scope_leaves_text_tokens(model: nn.Module, mixed_batch: Any,
                                                 baseline_routing: BatchRouting) -> None:
    forced = (3, 11)
    spec = InterventionSpec(experts=expert_set({i: forced for i in BAND}), mode="force", token_scope="image")
    all_routers = routers(model)
    is_image = (mixed_batch["input_ids"] == model.config.image_token_id).reshape(-1)
    with routing_session(model, intervention=spec) as session, torch.inference_mode():
        with capture_routers(model) as captured:
            session.begin(2)
            model(**mixed_batch)
        routing = session.recorder.finish_batch()
    for layer in BAND:
        for expert in forced:
            np.testing.assert_array_equal(routing.counts[:, layer, PROMPT_IMAGE, expert],
                                          routing.tokens[:, PROMPT_IMAGE])
        _, own = own_selection(all_routers[layer], captured[layer]["hidden"])
        assert torch.equal(captured[layer]["selected"][~is_image], own[~is_image])
        assert not torch.equal(captured[layer]["selected"][is_image], own[is_image])
    first = BAND[0]
    np.testing.assert_array_equal(routing.counts[:, first, PROMPT_TEXT], baseline_routing.counts[:, first, PROMPT_TEXT])


# -- 4. a document's counts do not depend on its batch ---------------------------------------------------
@pytest.mark.parametrize("a_has_image", [True, False], ids=["A_image", "A_text"])
def test_counts_alone_equal_counts_in_padded_batch(model: nn.Module, processor: Any, a_has_image: bool) -> None:
    doc_a = (IMAGE_PROMPT if a_has_image else TEXT_PROMPT, drawn_image(2) if a_has_image else None)
    alone = encode(processor, [doc_a])
    batched = encode(processor, [(LONG_PROMPT, drawn_image(3)), doc_a])
    real_a = int(alone["attention_mask"].sum())
    assert int(batched["attention_mask"][1].sum()) == real_a
    assert batched["input_ids"].shape[1] > real_a, "A must be left-padded in the batch"

    ids_alone, r_alone = record_generate(model, alone, max_new_tokens=4)
    ids_batch, r_batch = record_generate(model, batched, max_new_tokens=4)
    new_alone = ids_alone[0, alone["input_ids"].shape[1]:]
    assert torch.equal(new_alone, ids_batch[1, batched["input_ids"].shape[1]:])
    assert new_alone.shape[0] == 4  # the random model does not stop early here

    n_image = int((alone["input_ids"] == model.config.image_token_id).sum())
    expected_tokens = np.array([[real_a - n_image, n_image, 3]], dtype=np.float32)  # last new token: no forward
    np.testing.assert_array_equal(r_alone.tokens, expected_tokens)
    a_in_batch = r_batch.row(1)
    np.testing.assert_array_equal(a_in_batch.tokens, expected_tokens)
    np.testing.assert_array_equal(a_in_batch.counts, r_alone.counts)
    np.testing.assert_allclose(a_in_batch.prob_sums, r_alone.prob_sums, rtol=1e-5, atol=1e-4)


# -- 5. hooks are always removed --------------------------------------------------------------------------
def test_hooks_removed_after_exit_and_exceptions(tiny_dir: Path, mixed_batch: Any) -> None:
    fresh = load_model(tiny_dir)
    assert hook_counts(fresh) == [(0, 0)] * (NUM_LAYERS + 1)
    spec = InterventionSpec(experts=expert_set({i: (1,) for i in BAND}), mode="force")
    with routing_session(fresh, intervention=spec):
        assert hook_counts(fresh) == [(0, 1)] + [(1, 0)] * NUM_LAYERS
    assert hook_counts(fresh) == [(0, 0)] * (NUM_LAYERS + 1)
    with pytest.raises(KeyError, match="boom"), routing_session(fresh, intervention=spec) as session:
        session.begin(1)
        raise KeyError("boom")
    assert hook_counts(fresh) == [(0, 0)] * (NUM_LAYERS + 1)

    def explode(module: nn.Module, args: tuple, output: Any) -> None:
        raise RuntimeError("router exploded")

    with pytest.raises(RuntimeError, match="router exploded"):
        with routing_session(fresh, intervention=spec) as session, torch.inference_mode():
            handle = routers(fresh)[2].register_forward_hook(explode)
            try:
                session.begin(2)
                fresh(**mixed_batch)
            finally:
                handle.remove()
    assert hook_counts(fresh) == [(0, 0)] * (NUM_LAYERS + 1)


# -- 6. no host-device synchronisation inside the hooks ---------------------------------------------------
@pytest.mark.parametrize("mode", ["soft", "force"])
def test_no_host_sync_inside_hooks(model: nn.Module, mixed_batch: Any, mode: str) -> None:
    spec = InterventionSpec(experts=expert_set({i: (1, 5, 9) for i in BAND}), mode=mode, strength=1.5,
                            token_scope="prompt")
    guard = HostSyncGuard()
    with routing_session(model, intervention=spec) as session, torch.inference_mode():
        handles = bracket_session_hooks(model, guard)
        try:
            with guard:
                session.begin(2)
                model.generate(**mixed_batch, max_new_tokens=3, do_sample=False)
        finally:
            for handle in handles:
                handle.remove()
        routing = session.recorder.finish_batch()  # the one transfer per batch, by design outside the guard
    assert guard.armed == 0
    assert not [name for name, armed in guard.seen if armed]
    assert guard.seen, "generate itself syncs; the guard saw none, so it was not active"
    assert routing.tokens[:, GENERATED].tolist() == [2.0, 2.0]


def test_host_sync_guard_catches_a_leaky_hook(model: nn.Module, mixed_batch: Any) -> None:
    """The check above can fail: a router hook that syncs, bracketed like the session's, is caught."""
    guard = HostSyncGuard()
    fresh = copy.deepcopy(model)
    with routing_session(fresh) as session, torch.inference_mode():
        leak = routers(fresh)[1].register_forward_hook(lambda module, args, output: output[1].sum().item())
        handles = [leak, *bracket_session_hooks(fresh, guard)]
        try:
            with guard, pytest.raises(HostSyncViolation, match="'item'"):
                session.begin(2)
                fresh(**mixed_batch)
        finally:
            for handle in handles:
                handle.remove()
