"""Fidelity of the steering to the authors' method (issue 13 items 1-3), checked against rules written out by hand.

1. The soft boost is z + λ·std(z) with torch's default std (sample, correction = 1: EasySteer's
   `logits.std(dim=-1, keepdim=True)`), on every family's tiny checkpoint: selection and weights match exactly.
2. `soft_topk` boosts only where the expert is not already selected by the family's OWN rule (sigmoid + bias
   within the best groups, ERNIE's prob + bias), with random non-zero correction biases.
3. force / suppress fill the free slots in the family's own order of the unshifted logits (ERNIE's prob + bias
   re-ranked the others when the shift went through its softmax).

Each check runs the real session hooks on a text-only prefill and reads each router's final output (a hook
registered after the session's); the by-hand rules below use torch only, not rd-eval's routing code.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from rd_eval.routing.session import routing_session
from rd_eval.routing.sites import RouterSite, find_router_sites, image_token_ids
from rd_eval.routing.spec import ExpertSet, InterventionSpec, LayerBand, LayerExperts, SpecError
from rd_eval.routing.steering import logit_std, steer_logits

MODEL_CLASSES = {
    "qwen3_vl_moe": "AutoModelForImageTextToText",
    "qwen3_5_moe": "Qwen3_5MoeForConditionalGeneration",
    "internvl_moe": "InternVLForConditionalGeneration",
    "glm4v_moe": "Glm4vMoeForConditionalGeneration",
    "deepseek_v3": "DeepseekV3ForCausalLM",
    "ernie4_5_vl_moe": "Ernie4_5_VLMoeForConditionalGeneration",
    "llama4": "Llama4ForConditionalGeneration",
    "aria": "AriaForConditionalGeneration",
}
BIASED = ("glm4v_moe", "deepseek_v3", "ernie4_5_vl_moe")
LAMBDA = 2.5

_models: dict[str, nn.Module] = {}


@pytest.fixture(autouse=True)
def _no_grad() -> Iterator[None]:
    with torch.no_grad():
        yield


@pytest.fixture(scope="module")
def load(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Callable[[str], nn.Module]]:
    """One float32 tiny model per family, built and loaded on first use in this module."""
    import transformers

    from rd_eval.models.tiny import make_tiny

    def get(family: str) -> nn.Module:
        if family not in _models:
            path = make_tiny(family, tmp_path_factory.mktemp(family) / f"rd-tiny-{family}", seed=0)
            cls = getattr(transformers, MODEL_CLASSES[family])
            _models[family] = cls.from_pretrained(path, dtype=torch.float32, use_kernels=False).eval()
        return _models[family]

    yield get
    _models.clear()


def with_random_bias(model: nn.Module, seed: int) -> nn.Module:
    """A copy whose every router has random non-zero correction biases (scale ~ the scores they are added to)."""
    model = copy.deepcopy(model)
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for router in routers_of(model).values():
            bias = router.moe_statics.e_score_correction_bias if hasattr(router, "moe_statics") \
                else router.e_score_correction_bias
            bias.copy_(torch.randn(bias.shape, generator=generator) * 0.08)
            assert torch.all(bias != 0)
    return model


def routers_of(model: nn.Module) -> dict[int, nn.Module]:
    modules = dict(model.named_modules())
    return {site.site_index: modules[site.module_path] for site in find_router_sites(model)}


def prompt_ids(model: nn.Module, batch: int = 2, length: int = 23, seed: int = 3) -> torch.Tensor:
    """Random text ids (no image / video placeholders), so every family routes them through its text path."""
    config = model.config.get_text_config() if hasattr(model.config, "get_text_config") else model.config
    generator = torch.Generator().manual_seed(seed)
    ids = torch.randint(3, min(int(config.vocab_size), 400), (batch, length), generator=generator)
    for special in image_token_ids(model):
        ids[ids == special] = 5
    return ids


def steered_sites(model: nn.Module) -> list[RouterSite]:
    """The sites an intervention over every MoE layer addresses: text routers only where groups exist."""
    return [s for s in find_router_sites(model) if s.group in ("", "text")]


def spec_on(model: nn.Module, mode: str, experts: dict[int, tuple[int, ...]], **kwargs: Any) -> InterventionSpec:
    sites = steered_sites(model)
    layers = tuple(LayerExperts(s.moe_index, experts[s.site_index], group=s.group) for s in sites)
    band = LayerBand(fractions=None, layers=tuple(s.moe_index for s in sites))
    return InterventionSpec(experts=ExpertSet(model="tiny", kind="domain", layers=layers), mode=mode,
                            band=band, **kwargs)


def run(model: nn.Module, spec: InterventionSpec | None) -> dict[int, dict[str, torch.Tensor]]:
    """Each router's input and final output by site index, under `spec`."""
    got: dict[int, dict[str, torch.Tensor]] = {}
    ids = prompt_ids(model)
    with routing_session(model, record=False, intervention=spec) as session, torch.no_grad():
        handles = []
        for index, router in routers_of(model).items():
            def hook(module: nn.Module, args: tuple, output: Any, index: int = index) -> None:
                got[index] = {"hidden": args[0].reshape(-1, args[0].shape[-1]).clone(),
                              "output": tuple(o.clone() if isinstance(o, torch.Tensor) else o for o in output)}
            handles.append(router.register_forward_hook(hook))
        try:
            session.begin(ids.shape[0])
            model(input_ids=ids, attention_mask=torch.ones_like(ids))
        finally:
            for handle in handles:
                handle.remove()
    return got


# -- the families' rules, written out from transformers' modeling code --------------------------------------
def hand_logits(family: str, router: nn.Module, hidden: torch.Tensor) -> torch.Tensor:
    bias = getattr(router, "bias", None) if family == "llama4" else None
    return F.linear(hidden.float(), router.weight.float(), bias).float()


def hand_choice(family: str, router: nn.Module, z: torch.Tensor) -> torch.Tensor:
    """What each family ranks experts by (before groups)."""
    if family in ("glm4v_moe", "deepseek_v3"):
        return z.sigmoid() + router.e_score_correction_bias
    if family == "ernie4_5_vl_moe":
        return torch.softmax(z, dim=-1) + router.moe_statics.e_score_correction_bias.reshape(-1)
    if family in ("llama4", "aria"):
        return z
    return torch.softmax(z, dim=-1)


def hand_select(family: str, router: nn.Module, z: torch.Tensor) -> torch.Tensor:
    """Sorted expert ids [N, k] the family's own rule selects from logits z."""
    k = int(router.top_k)
    choice = hand_choice(family, router, z)
    if family in ("glm4v_moe", "deepseek_v3"):
        n, e = choice.shape
        n_group = int(router.num_group)
        groups = choice.view(n, n_group, e // n_group)
        best = groups.topk(2, dim=-1).values.sum(dim=-1).topk(int(router.topk_group), dim=-1).indices
        keep = torch.zeros(n, n_group, dtype=torch.bool).scatter_(1, best, True)
        keep = keep.unsqueeze(-1).expand_as(groups).reshape(n, e)
        choice = choice.masked_fill(~keep, float("-inf"))
    return choice.topk(k, dim=-1).indices.sort(dim=-1).values


def hand_weights(family: str, router: nn.Module, z: torch.Tensor, selected: torch.Tensor) -> torch.Tensor:
    """Routing weights [N, k] at the (sorted) selected experts."""
    if family in ("glm4v_moe", "deepseek_v3"):
        w = z.sigmoid().gather(1, selected)
        if router.norm_topk_prob:
            w = w / (w.sum(dim=-1, keepdim=True) + 1e-20)
        return w * router.routed_scaling_factor
    if family == "llama4":  # sigmoid over the -inf-filled [N, E] scores, as Llama4Router does
        scores = torch.full_like(z, float("-inf")).scatter_(1, selected, z.gather(1, selected))
        return scores.sigmoid().gather(1, selected)
    if family == "aria":
        return torch.softmax(z.gather(1, selected), dim=-1)
    w = torch.softmax(z, dim=-1).gather(1, selected)
    if family == "ernie4_5_vl_moe":
        return w / w.sum(dim=-1, keepdim=True).clamp(min=router.norm_min)
    return w / w.sum(dim=-1, keepdim=True) if getattr(router, "norm_topk_prob", True) else w


def read_output(family: str, router: nn.Module, output: tuple) -> tuple[torch.Tensor, torch.Tensor]:
    """(selected ids [N, k], their weights [N, k]) from a router's final output, in the output's own order (the
    order a normalising sum runs in, so the by-hand weights below can match bit for bit)."""
    if family == "llama4":
        selected = output[0].topk(int(router.top_k), dim=-1).indices
        return selected, output[0].gather(1, selected)
    return output[2], output[1]


def check(family: str, router: nn.Module, output: tuple, steered: torch.Tensor, what: str) -> torch.Tensor:
    """The router's final output equals the family's rule applied by hand to `steered`: the same expert set and
    exactly the same weights. Returns the sorted selection."""
    selected, weights = read_output(family, router, output)
    want = hand_select(family, router, steered)
    assert torch.equal(selected.sort(dim=-1).values, want), f"{what}: selection"
    assert torch.equal(weights, hand_weights(family, router, steered, selected)), f"{what}: weights"
    return want


def set_of(site_index: int, num_experts: int) -> tuple[int, ...]:
    return tuple(sorted({(3 * site_index + 1) % num_experts, (5 * site_index + 6) % num_experts}))


def test_logit_std_is_torch_default_sample_std() -> None:
    z = torch.randn(7, 16, generator=torch.Generator().manual_seed(0))
    assert torch.equal(logit_std(z), z.std(dim=-1, keepdim=True))
    assert torch.equal(logit_std(z, 0), z.std(dim=-1, keepdim=True, correction=0))
    ratio = logit_std(z) / logit_std(z, 0)
    torch.testing.assert_close(ratio, torch.full_like(ratio, (16 / 15) ** 0.5))


@pytest.mark.parametrize("family", list(MODEL_CLASSES))
def test_soft_boost_matches_hand_rule_with_sample_std(load: Callable[[str], nn.Module], family: str) -> None:
    model = load(family)
    sites = steered_sites(model)
    experts = {s.site_index: set_of(s.site_index, s.num_experts) for s in sites}
    spec = spec_on(model, "soft", experts, strength=LAMBDA)
    assert spec.std_correction == 1
    got = run(model, spec)
    plain = run(model, None)
    routers = routers_of(model)
    changed = population_differs = 0
    for site in sites:
        router, seen = routers[site.site_index], got[site.site_index]
        z = hand_logits(family, router, seen["hidden"])
        mask = torch.zeros(site.num_experts)
        mask[list(experts[site.site_index])] = 1.0
        steered = z + LAMBDA * torch.std(z, dim=-1, keepdim=True) * mask
        want = check(family, router, seen["output"], steered, f"{family} site {site.site_index}")
        selected, weights = read_output(family, router, seen["output"])
        population = z + LAMBDA * z.std(dim=-1, keepdim=True, correction=0) * mask
        population_differs += int(not torch.equal(weights, hand_weights(family, router, population, selected)))
        before = read_output(family, router, plain[site.site_index]["output"])[0].sort(dim=-1).values
        changed += int(not torch.equal(want, before))
    assert changed > 0, "the boost changed no selection: the test would be vacuous"
    assert population_differs > 0, "sample and population std gave the same weights: vacuous"


@pytest.mark.parametrize("family", BIASED)
def test_soft_topk_uses_the_familys_own_selection(load: Callable[[str], nn.Module], family: str) -> None:
    model = with_random_bias(load(family), seed=17)
    sites = steered_sites(model)
    # Many experts per layer, so "already selected" matters on most tokens.
    experts = {s.site_index: tuple(range(0, s.num_experts, 2)) for s in sites}
    got = run(model, spec_on(model, "soft_topk", experts, strength=LAMBDA))
    routers = routers_of(model)
    disagree = 0
    for site in sites:
        router, seen = routers[site.site_index], got[site.site_index]
        z = hand_logits(family, router, seen["hidden"])
        own = torch.zeros_like(z).scatter_(1, hand_select(family, router, z), 1.0)
        raw = torch.zeros_like(z).scatter_(1, z.topk(int(router.top_k), dim=-1).indices, 1.0)
        mask = torch.zeros(site.num_experts)
        mask[list(experts[site.site_index])] = 1.0
        disagree += int(((own != raw) & (mask > 0)).sum())
        steered = z + LAMBDA * torch.std(z, dim=-1, keepdim=True) * (mask * (1.0 - own))
        check(family, router, seen["output"], steered, f"{family} site {site.site_index}")
        # The family's own mask, as the steering gets it.
        assert torch.equal(model_math(model).selection_mask(router, z), own)
    assert disagree > 0, "own selection equals top-k of raw logits here: the test would be vacuous"


def model_math(model: nn.Module) -> Any:
    from rd_eval.routing.sites import model_family

    return model_family(model).math


@pytest.mark.parametrize("family", list(MODEL_CLASSES))
def test_selection_mask_is_the_routers_own_selection(load: Callable[[str], nn.Module], family: str) -> None:
    model = with_random_bias(load(family), seed=5) if family in BIASED else load(family)
    math = model_math(model)
    routers = routers_of(model)
    for index, seen in run(model, None).items():
        router = routers[index]
        selected = math.selection(seen["output"], router)
        own = torch.zeros(selected.shape[0], math.sizes(router)[0]).scatter_(1, selected, 1.0)
        assert torch.equal(math.selection_mask(router, math.logits(router, seen["hidden"])), own)


def test_soft_topk_needs_the_selection() -> None:
    with pytest.raises(ValueError, match="soft_topk needs `selected`"):
        steer_logits(torch.zeros(2, 4), mode="soft_topk", strength=1.0, expert_mask=torch.ones(4), token_mask=None)


@pytest.mark.parametrize("mode", ["force", "suppress"])
@pytest.mark.parametrize("family", ["ernie4_5_vl_moe", "qwen3_vl_moe", "aria", "llama4"])
def test_force_suppress_fill_free_slots_in_the_familys_own_order(load: Callable[[str], nn.Module], family: str,
                                                                 mode: str) -> None:
    model = with_random_bias(load(family), seed=23) if family in BIASED else load(family)
    sites = steered_sites(model)
    experts = {s.site_index: set_of(s.site_index, s.num_experts)[: max(1, s.top_k - 1)] for s in sites}
    got = run(model, spec_on(model, mode, experts))
    routers = routers_of(model)
    old_rule_differs = 0
    for site in sites:
        router, seen = routers[site.site_index], got[site.site_index]
        k, chosen = site.top_k, list(experts[site.site_index])
        z = hand_logits(family, router, seen["hidden"])
        choice = hand_choice(family, router, z)  # the family's own order of the UNSHIFTED logits
        others = choice.clone()
        others[:, chosen] = float("-inf")
        free = k - len(chosen) if mode == "force" else k
        want = others.topk(free, dim=-1).indices
        if mode == "force":
            want = torch.cat([torch.tensor(chosen).expand(z.shape[0], -1), want], dim=-1)
        want = want.sort(dim=-1).values
        selected, weights = read_output(family, router, seen["output"])
        assert torch.equal(selected.sort(dim=-1).values, want), f"{family} site {site.site_index}: {mode}"
        span = z.amax(dim=-1, keepdim=True) - z.amin(dim=-1, keepdim=True) + 1.0
        mask = torch.zeros(site.num_experts)
        mask[chosen] = 1.0
        shifted = z + span * mask if mode == "force" else z - span * mask
        # Weights: the family's own formula on the shifted logits at the selected experts.
        assert torch.equal(weights, hand_weights(family, router, shifted, selected))
        # The old rule ranked the free slots by the choice of the SHIFTED logits.
        old = hand_choice(family, router, shifted)
        old[:, chosen] = float("-inf")
        old_free = old.topk(free, dim=-1).indices.sort(dim=-1).values
        new_free = others.topk(free, dim=-1).indices.sort(dim=-1).values
        old_rule_differs += int((old_free != new_free).any(dim=-1).sum())
    if family == "ernie4_5_vl_moe":
        assert old_rule_differs > 0, "the shift re-ranks nothing here: the ERNIE check would be vacuous"


def test_spec_records_the_std_and_old_files_keep_their_meaning(tmp_path: Any) -> None:
    experts = ExpertSet(model="m", kind="domain", layers=(LayerExperts(1, (2, 3)),))
    new = InterventionSpec(experts=experts)
    data = new.to_json()
    assert (data["version"], data["std_correction"]) == (2, 1)
    assert InterventionSpec.from_json(data) == new
    # A version 1 file (written before the std was recorded) meant the population std, and is written back as
    # version 1, byte for byte: its content hash is unchanged.
    v1 = {k: v for k, v in data.items() if k != "std_correction"} | {"version": 1}
    old = InterventionSpec.from_json(v1)
    assert old.std_correction == 0 and old.to_json() == v1
    assert old.content_hash() != new.content_hash()
    assert InterventionSpec.load(old.save(tmp_path / "old.json")) == old
    assert InterventionSpec.from_json(data | {"std_correction": 0}) == old
    with pytest.raises(SpecError, match=r"unknown keys \['std_correction'\]"):
        InterventionSpec.from_json(v1 | {"std_correction": 1})
    with pytest.raises(SpecError, match=r"std_correction 2 invalid; valid: 1 \(sample std"):
        InterventionSpec.from_json(data | {"std_correction": 2})
    with pytest.raises(SpecError, match=r"std_correction True invalid"):
        InterventionSpec(experts=experts, std_correction=True)
    with pytest.raises(SpecError, match=r"version 3 unsupported; this rd-eval reads 1, 2"):
        InterventionSpec.from_json(data | {"version": 3})


def test_population_spec_steers_with_population_std(load: Callable[[str], nn.Module]) -> None:
    model = load("qwen3_vl_moe")
    sites = steered_sites(model)
    experts = {s.site_index: set_of(s.site_index, s.num_experts) for s in sites}
    got = run(model, spec_on(model, "soft", experts, strength=LAMBDA, std_correction=0))
    routers = routers_of(model)
    for site in sites:
        router, seen = routers[site.site_index], got[site.site_index]
        z = hand_logits("qwen3_vl_moe", router, seen["hidden"])
        mask = torch.zeros(site.num_experts)
        mask[list(experts[site.site_index])] = 1.0
        steered = z + LAMBDA * z.std(dim=-1, keepdim=True, correction=0) * mask
        check("qwen3_vl_moe", router, seen["output"], steered, f"site {site.site_index}")
