"""The routing contract (issue: bit-identical no-ops, counts against an independent reference, force and
suppress, batch invariance, hook hygiene, no host syncs) on the tiny checkpoint of every further family.

tests/test_routing.py covers qwen3_vl_moe in depth; here each family runs the same checks through a small
table that says how to build its inputs and how to read its router's own output.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from routing_contract import (
    HostSyncGuard,
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

from rd_eval.routing.recording import GENERATED, PROMPT_IMAGE, PROMPT_TEXT
from rd_eval.routing.sites import find_router_sites, image_token_ids, model_family
from rd_eval.routing.spec import ExpertSet, InterventionSpec, LayerBand, LayerExperts


@dataclass(frozen=True)
class FamilyCase:
    family: str
    folder: str
    model_class: str  # transformers class that loads the tiny checkpoint
    selected: Callable[[Any, nn.Module], torch.Tensor]  # the router's own selection [N, k], from its output
    weights: Callable[[Any, nn.Module], torch.Tensor]  # the routing weights [N, k] the experts receive
    weights_sum: Callable[[nn.Module], float] | None  # what they sum to per token; None when not normalised
    with_image: bool = True
    group: str = ""  # expert group the interventions address (modality-isolated families)


def _three_tuple_selected(output: Any, router: nn.Module) -> torch.Tensor:
    return output[2]


def _three_tuple_weights(output: Any, router: nn.Module) -> torch.Tensor:
    return output[1]


def _llama4_selected(output: Any, router: nn.Module) -> torch.Tensor:
    # (scores [N, E], logits): unselected experts score exactly sigmoid(-inf) = 0
    return torch.topk(output[0], int(router.top_k), dim=-1).indices


def _llama4_weights(output: Any, router: nn.Module) -> torch.Tensor:
    return output[0].gather(1, _llama4_selected(output, router))


CASES = {
    "qwen3_5_moe": FamilyCase("qwen3_5_moe", "rd-tiny-qwen3_5_moe-A1B", "Qwen3_5MoeForConditionalGeneration",
                              _three_tuple_selected, _three_tuple_weights, lambda router: 1.0),
    "internvl_moe": FamilyCase("internvl_moe", "rd-tiny-internvl_moe-A1B", "InternVLForConditionalGeneration",
                               _three_tuple_selected, _three_tuple_weights, lambda router: 1.0),
    "glm4v_moe": FamilyCase("glm4v_moe", "rd-tiny-glm4v_moe-A1B", "Glm4vMoeForConditionalGeneration",
                            _three_tuple_selected, _three_tuple_weights, lambda router: router.routed_scaling_factor),
    "deepseek_v3": FamilyCase("deepseek_v3", "rd-tiny-deepseek_v3", "DeepseekV3ForCausalLM", _three_tuple_selected,
                              _three_tuple_weights, lambda router: router.routed_scaling_factor, with_image=False),
    "ernie4_5_vl_moe": FamilyCase("ernie4_5_vl_moe", "rd-tiny-ernie4_5_vl_moe-A1B",
                                  "Ernie4_5_VLMoeForConditionalGeneration", _three_tuple_selected,
                                  _three_tuple_weights, lambda router: 1.0, group="text"),
    "aria": FamilyCase("aria", "rd-tiny-aria", "AriaForConditionalGeneration", _three_tuple_selected,
                       _three_tuple_weights, lambda router: 1.0),
    # Llama 4's gates are not normalised: each selected expert gets its own sigmoid.
    "llama4": FamilyCase("llama4", "rd-tiny-llama4", "Llama4ForConditionalGeneration", _llama4_selected,
                         _llama4_weights, None),
}


def experts_on(case: FamilyCase, by_layer: dict[int, tuple[int, ...]]) -> ExpertSet:
    return ExpertSet(model="tiny", kind="domain",
                     layers=tuple(LayerExperts(i, tuple(e), group=case.group) for i, e in sorted(by_layer.items())))


@pytest.fixture(scope="module", params=sorted(CASES))
def case(request: pytest.FixtureRequest) -> FamilyCase:
    return CASES[request.param]


@pytest.fixture(scope="module")
def family_dir(case: FamilyCase, tmp_path_factory: pytest.TempPathFactory) -> Path:
    from rd_eval.models.tiny import make_tiny

    return make_tiny(case.family, tmp_path_factory.mktemp(case.family) / case.folder, seed=0)


@pytest.fixture(scope="module")
def model(case: FamilyCase, family_dir: Path) -> nn.Module:
    import transformers

    model_class = getattr(transformers, case.model_class)
    return model_class.from_pretrained(family_dir, dtype=torch.float32, use_kernels=False).eval()


@pytest.fixture(scope="module")
def processor(family_dir: Path) -> Any:
    from transformers import AutoProcessor

    return AutoProcessor.from_pretrained(family_dir)


DOC_A = ("What is the total cost of the two items?", 3)
DOC_B = ("The bar chart shows values per category. Which category has the largest value? Reply with a letter. "
         "Explain how you read the chart, then give the answer.", 5)


def docs(case: FamilyCase, *items: tuple[str, int | None]) -> list[tuple[str, Any]]:
    return [(text, drawn_image(seed) if (seed is not None and case.with_image) else None) for text, seed in items]


@pytest.fixture(scope="module")
def batch(case: FamilyCase, processor: Any) -> Any:
    return encode(processor, docs(case, DOC_B, DOC_A))


def band(model: nn.Module) -> tuple[int, ...]:
    sites = find_router_sites(model)
    return LayerBand().resolve(1 + max(s.moe_index for s in sites))


@contextmanager
def capture_outputs(model: nn.Module) -> Iterator[dict[int, Any]]:
    """Each router's final output (registered after any session hook, so it sees what the experts get)."""
    captured: dict[int, Any] = {}
    handles = []
    for index, router in enumerate(routers(model)):
        def hook(module: nn.Module, args: tuple, output: Any, index: int = index) -> None:
            captured[index] = output
        handles.append(router.register_forward_hook(hook))
    try:
        yield captured
    finally:
        for handle in handles:
            handle.remove()


# -- 1. no-ops are bit-identical -----------------------------------------------------------------------
def test_noop_hooks_are_bit_identical(case: FamilyCase, model: nn.Module, batch: Any) -> None:
    with torch.inference_mode():
        plain_logits = model(**batch).logits
        plain_ids = model.generate(**batch, max_new_tokens=4, do_sample=False)
    all_band = {layer: (0, 1, 2) for layer in band(model)}
    for spec in (None, InterventionSpec(experts=experts_on(case, all_band), strength=0.0),
                 InterventionSpec(experts=expert_set({}), mode="force")):
        outputs, _ = record_forward(model, batch, spec)
        assert torch.equal(outputs.logits, plain_logits), spec
        ids, _ = record_generate(model, batch, spec, max_new_tokens=4)
        assert torch.equal(ids, plain_ids), spec


def test_reroute_at_lambda_zero_reproduces_the_router(model: nn.Module) -> None:
    math = model_family(model).math
    router = routers(model)[0]
    hidden = torch.randn(37, router.weight.shape[-1], generator=torch.Generator().manual_seed(3)) * 2.0
    with torch.no_grad():
        own = router(hidden)
        logits = math.logits(router, hidden)
        again = math.reroute(router, logits, logits, own)
    for mine, theirs in zip(again, own, strict=True):
        assert torch.equal(mine, theirs)


# -- 2. counts equal an independent reference ----------------------------------------------------------
def test_recorded_counts_match_the_routers_own_selection(case: FamilyCase, model: nn.Module, batch: Any) -> None:
    with capture_outputs(model) as captured, torch.inference_mode():
        model(**batch)
        all_routers = routers(model)
        reference_selection = {i: case.selected(out, all_routers[i]).clone() for i, out in captured.items()}
    _, routing = record_forward(model, batch)
    input_ids = batch["input_ids"]
    rows, length = input_ids.shape
    weight = batch["attention_mask"].reshape(-1).numpy()
    image = np.isin(input_ids.reshape(-1).numpy(), image_token_ids(model))
    assert image.any() == case.with_image
    num_experts = routing.counts.shape[-1]
    sites = find_router_sites(model)
    # A modality-isolated router sees only its modality's tokens, in order.
    positions = {"": np.arange(rows * length), "text": np.flatnonzero(~image), "vision": np.flatnonzero(image)}
    assert set(reference_selection) == {s.site_index for s in sites}
    for site_index, selection in reference_selection.items():
        where = positions[sites[site_index].group]
        assert len(where) == selection.shape[0]
        expected = np.zeros((rows, 3, num_experts))
        for token, experts in zip(where, selection.numpy(), strict=True):
            scope = PROMPT_IMAGE if image[token] else PROMPT_TEXT
            for expert in experts:
                expected[token // length, scope, expert] += weight[token]
        np.testing.assert_array_equal(routing.counts[:, site_index], expected)
    assert routing.tokens[:, GENERATED].sum() == 0
    assert routing.tokens[:, PROMPT_TEXT].sum() + routing.tokens[:, PROMPT_IMAGE].sum() == weight.sum()


# -- 3. force / suppress ---------------------------------------------------------------------------------
@pytest.mark.parametrize("mode", ["force", "suppress"])
def test_force_and_suppress_within_the_band_only(case: FamilyCase, model: nn.Module, batch: Any, mode: str) -> None:
    layers = band(model)
    site = find_router_sites(model)[0]
    chosen = (0, site.num_experts - 1)[: site.top_k]  # first and last: different expert groups where there are any
    spec = InterventionSpec(experts=experts_on(case, {layer: chosen for layer in layers}), mode=mode)
    _, plain = record_forward(model, batch)
    with capture_outputs(model) as captured:
        _, steered = record_forward(model, batch, spec)
    sites = find_router_sites(model)
    # Tokens the steered routers see: all of them, or only the text tokens for a text expert group.
    scopes = [PROMPT_TEXT] if case.group == "text" else [PROMPT_TEXT, PROMPT_IMAGE]
    tokens = steered.tokens[:, scopes].sum()
    for site in sites:
        counts = steered.counts[:, site.site_index][:, scopes][..., list(chosen)].sum(axis=(0, 1))
        if site.moe_index in layers and site.group == case.group:
            assert (counts == tokens).all() if mode == "force" else (counts == 0).all(), site
        elif site.moe_index < layers[0]:
            np.testing.assert_array_equal(steered.counts[:, site.site_index], plain.counts[:, site.site_index])
        output = captured[site.site_index]
        if case.weights_sum is not None:
            sums = case.weights(output, routers(model)[site.site_index]).float().sum(dim=-1)
            target = case.weights_sum(routers(model)[site.site_index])
            torch.testing.assert_close(sums, torch.full_like(sums, target), rtol=1e-3, atol=1e-3)


# -- 4. a document alone and inside a left-padded batch --------------------------------------------------
def test_counts_alone_equal_counts_in_a_padded_batch(case: FamilyCase, model: nn.Module, processor: Any) -> None:
    alone = encode(processor, docs(case, DOC_A))
    together = encode(processor, docs(case, DOC_B, DOC_A))
    assert together["input_ids"].shape[1] > alone["input_ids"].shape[1]
    _, r_alone = record_generate(model, alone, max_new_tokens=3)
    _, r_batch = record_generate(model, together, max_new_tokens=3)
    np.testing.assert_array_equal(r_batch.tokens[1:2], r_alone.tokens)
    np.testing.assert_array_equal(r_batch.counts[1:2], r_alone.counts)


# -- 5. hook hygiene, 6. no host syncs -------------------------------------------------------------------
def test_hooks_are_removed_also_after_an_exception(case: FamilyCase, model: nn.Module, batch: Any) -> None:
    before = hook_counts(model)
    spec = InterventionSpec(experts=experts_on(case, {layer: (1,) for layer in band(model)}), mode="soft")
    with pytest.raises(RuntimeError, match="boom"), routing_guarded(model, spec) as session:
        session.begin(2)
        raise RuntimeError("boom")
    assert hook_counts(model) == before


@contextmanager
def routing_guarded(model: nn.Module, spec: InterventionSpec) -> Iterator[Any]:
    from rd_eval.routing.session import routing_session

    with routing_session(model, intervention=spec) as session, torch.inference_mode():
        yield session


def test_no_host_sync_inside_the_hooks(case: FamilyCase, model: nn.Module, batch: Any) -> None:
    spec = InterventionSpec(experts=experts_on(case, {layer: (1, 2) for layer in band(model)}), strength=1.5)
    guard = HostSyncGuard()
    with routing_guarded(model, spec) as session:
        handles = bracket_session_hooks(model, guard)
        try:
            with guard:
                session.begin(2)
                model.generate(**batch, max_new_tokens=3, do_sample=False)
        finally:
            for handle in handles:
                handle.remove()
        session.finish_batch()
    assert guard.seen and not [name for name, armed in guard.seen if armed]
