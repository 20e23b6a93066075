"""A routing session proves that its router hooks fired; a router skipped by its MoE block stops the run.

Simulated kernels (`skipped_routers`): one MoE block's forward computes the same output but never calls its
router module. That must stop recording, intervention and expert-identification probes with
RoutingHooksNotFiredError (one line from the CLI), for each router math: softmax top-k (Qwen3-VL),
sigmoid + bias (GLM-4.5V) and ERNIE's text / vision groups, where a call that cannot reach the vision router
(text-only, decode steps) must not be a false alarm. A model flagged `use_kernels` whose routers still run is
accepted. The adapter lets the error stop the run instead of answering each document with an error.
"""

from __future__ import annotations

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
    record_forward,
)
from skipped_routers import router_skipped, skip_routers_of_class
from torch import nn

from rd_eval.experts.pipeline import probe_routing
from rd_eval.routing.firing import FiringCheck, RoutingHooksNotFiredError
from rd_eval.routing.session import routing_session
from rd_eval.routing.sites import RouterSite, UnsupportedModelError, find_router_sites
from rd_eval.routing.spec import ExpertSet, InterventionSpec, LayerExperts

IMAGE_PROMPT = "What is the total cost?"
TEXT_PROMPT = "Mia has 7 apples and buys 5 more. How many apples does she have now?"
LONG_PROMPT = "The bar chart shows values per category. Which category has the largest value?"


def session_hooks(model: nn.Module) -> tuple[int, int]:
    """(forward hooks, forward pre-hooks) on the top-level model."""
    return len(model._forward_hooks), len(model._forward_pre_hooks)


def router_hooks(model: nn.Module) -> list[int]:
    modules = dict(model.named_modules())
    return [len(modules[site.module_path]._forward_hooks) for site in find_router_sites(model)]


def run_forward(model: nn.Module, inputs: Any, *, record: bool = True,
                intervention: InterventionSpec | None = None) -> None:
    with routing_session(model, record=record, intervention=intervention) as session, torch.inference_mode():
        session.begin(inputs["input_ids"].shape[0])
        model(**inputs)


def band_spec(layers: tuple[int, ...], experts: tuple[int, ...] = (1, 5)) -> InterventionSpec:
    return InterventionSpec(experts=expert_set({i: experts for i in layers}), mode="soft", strength=2.0)


def assert_names(exc: pytest.ExceptionInfo, *paths: str) -> None:
    message = str(exc.value)
    assert isinstance(exc.value, UnsupportedModelError)  # the CLI's one-line error
    assert "\n" not in message
    assert "routing hooks did not fire" in message and "use_kernels=false" in message
    for path in paths:
        assert path in message


# -- the rule, on its own ----------------------------------------------------------------------------------
def make_sites(groups: tuple[str, ...], layers: int = 2) -> list[RouterSite]:
    sites = []
    for moe in range(layers):
        for group in groups:
            sites.append(RouterSite(moe_index=moe, layer_index=moe, module_path=f"layers.{moe}.{group or 'mlp'}.gate",
                                    family="f", num_experts=4, top_k=2, math="m", group=group,
                                    site_index=len(sites)))
    return sites


def test_rule_plain_sites_are_all_required_every_call() -> None:
    check = FiringCheck(make_sites(("",)))
    check.start_call(10)
    check.fired(0, 10)
    with pytest.raises(RoutingHooksNotFiredError, match=r"1 of the 2 routing sites .*layers\.1\.mlp\.gate"):
        check.end_call()
    assert check.pending
    check.start_call(10)  # a new call starts from nothing
    check.fired(0, 10)
    check.fired(1, 10)
    check.end_call()
    assert not check.pending


def test_rule_vision_sites_are_required_only_in_calls_with_vision_tokens() -> None:
    check = FiringCheck(make_sites(("text", "vision")))
    check.start_call(10)  # text-only: every text router got all 10 tokens
    check.fired(0, 10)
    check.fired(2, 10)
    check.end_call()
    assert check.pending  # the vision sites are still unproven, not failed
    check.start_call(10)  # 3 vision tokens: text routers get 7, so both vision routers were reached
    check.fired(0, 7)
    check.fired(2, 7)
    check.fired(1, 3)
    with pytest.raises(RoutingHooksNotFiredError, match=r"1 of the 4 .*layers\.1\.vision\.gate"):
        check.end_call()
    check.start_call(10)
    for index, count in ((0, 7), (1, 3), (2, 7), (3, 3)):
        check.fired(index, count)
    check.end_call()
    assert not check.pending


def test_rule_a_fired_vision_router_proves_vision_tokens_and_the_message_names_the_cause() -> None:
    sites = make_sites(("text", "vision"), layers=5)
    check = FiringCheck(sites, kernels=True)
    check.start_call(10)
    check.fired(1, 10)  # all tokens are vision tokens and every text router was skipped
    with pytest.raises(RoutingHooksNotFiredError) as info:
        check.end_call()
    message = str(info.value)
    assert "9 of the 10 routing sites that forward call 1" in message and "and 6 more" in message
    assert "loaded with hub kernels on (use_kernels=True)" in message


# -- Qwen3-VL-MoE: softmax top-k ----------------------------------------------------------------------------
QWEN_BAND = (2, 3, 4, 5)


@pytest.fixture(scope="module")
def qwen_batch(tiny_processor: Any) -> Any:
    return encode(tiny_processor, [(IMAGE_PROMPT, drawn_image(1)), (TEXT_PROMPT, None)])


@pytest.mark.parametrize("skipped", [0, 3, 7])
def test_qwen_recording_stops_when_a_router_is_skipped(tiny_model: nn.Module, qwen_batch: Any, skipped: int) -> None:
    site = find_router_sites(tiny_model)[skipped]
    with router_skipped(tiny_model, site.module_path), pytest.raises(RoutingHooksNotFiredError) as info:
        run_forward(tiny_model, qwen_batch)
    assert_names(info, site.module_path, "1 of the 8 routing sites", "forward call 1", "fused gate")
    assert session_hooks(tiny_model) == (0, 0) and set(router_hooks(tiny_model)) == {0}
    run_forward(tiny_model, qwen_batch)  # the same model, its block restored, passes


@pytest.mark.parametrize("skipped", [3, 6], ids=["band_layer", "outside_band"])
def test_qwen_intervention_only_stops_when_a_router_is_skipped(tiny_model: nn.Module, qwen_batch: Any,
                                                               skipped: int) -> None:
    """Nothing recorded: band routers carry the steering hook, the others a witness, until proven."""
    site = find_router_sites(tiny_model)[skipped]
    with router_skipped(tiny_model, site.module_path), pytest.raises(RoutingHooksNotFiredError) as info:
        with routing_session(tiny_model, record=False, intervention=band_spec(QWEN_BAND)) as session:
            assert session.recorder is None
            session.begin(2)
            with torch.inference_mode():
                tiny_model.generate(**qwen_batch, max_new_tokens=3, do_sample=False)
    assert_names(info, site.module_path, "forward call 1")


def test_qwen_probes_stop_when_a_router_is_skipped(tiny_model: nn.Module, tiny_processor: Any) -> None:
    site = find_router_sites(tiny_model)[5]
    with router_skipped(tiny_model, site.module_path), pytest.raises(RoutingHooksNotFiredError) as info:
        probe_routing(tiny_model, tiny_processor, [TEXT_PROMPT, LONG_PROMPT], batch_size=2)
    assert_names(info, site.module_path)


def test_qwen_all_hooks_firing_pass_and_the_proof_hooks_go(fresh_tiny_model: nn.Module, qwen_batch: Any) -> None:
    model = fresh_tiny_model
    spec = band_spec(QWEN_BAND)
    with routing_session(model, record=False, intervention=spec) as session, torch.inference_mode():
        # The check after each call, steering hooks on the band, witnesses on the other routers.
        assert session_hooks(model) == (1, 1) and router_hooks(model) == [1] * 8
        session.begin(2)
        model.generate(**qwen_batch, max_new_tokens=3, do_sample=False)
        assert session_hooks(model) == (0, 1)  # proven at the first call: check and witnesses removed
        assert router_hooks(model) == [1 if i in QWEN_BAND else 0 for i in range(8)]
    assert session_hooks(model) == (0, 0) and set(router_hooks(model)) == {0}
    _, routing = record_forward(model, qwen_batch)  # recording-only passes too
    assert routing.tokens.sum() > 0


def test_qwen_use_kernels_flag_with_routers_running_is_accepted(tiny_model: nn.Module, qwen_batch: Any) -> None:
    """transformers 5.25 turns the flag on by default; what matters is whether the hooks fire."""
    _, expected = record_forward(tiny_model, qwen_batch)
    tiny_model._use_kernels = True
    try:
        assert tiny_model.use_kernels
        assert len(find_router_sites(tiny_model)) == 8
        _, routing = record_forward(tiny_model, qwen_batch)
        np.testing.assert_array_equal(routing.counts, expected.counts)
        run_forward(tiny_model, qwen_batch, record=False, intervention=band_spec(QWEN_BAND))
        site = find_router_sites(tiny_model)[4]
        with router_skipped(tiny_model, site.module_path), pytest.raises(RoutingHooksNotFiredError) as info:
            run_forward(tiny_model, qwen_batch)
        assert_names(info, site.module_path, "use_kernels=True")
    finally:
        del tiny_model._use_kernels
    assert not tiny_model.use_kernels


def test_qwen_proof_hook_makes_no_host_sync(tiny_model: nn.Module, qwen_batch: Any) -> None:
    guard = HostSyncGuard()
    with routing_session(tiny_model, record=False, intervention=band_spec(QWEN_BAND)) as session, \
            torch.inference_mode():

        def arm(*_: Any) -> None:
            guard.armed += 1

        def disarm(*_: Any) -> None:
            guard.armed -= 1

        # Around the session's pre-hook, steering and witness hooks, and its check after the call.
        handles = [*bracket_session_hooks(tiny_model, guard), tiny_model.register_forward_hook(arm, prepend=True),
                   tiny_model.register_forward_hook(disarm)]
        try:
            with guard:
                session.begin(2)
                tiny_model.generate(**qwen_batch, max_new_tokens=3, do_sample=False)
        finally:
            for handle in handles:
                handle.remove()
    assert guard.armed == 0
    assert not [name for name, armed in guard.seen if armed]
    assert guard.seen, "generate itself syncs; the guard saw none, so it was not active"


def test_rd_eval_experts_stops_with_one_line(tiny_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    from transformers.models.qwen3_vl_moe import modeling_qwen3_vl_moe

    from rd_eval.commands.main import main

    skip_routers_of_class(monkeypatch, modeling_qwen3_vl_moe.Qwen3VLMoeTextSparseMoeBlock)
    out = tmp_path / "experts.json"
    code = main(["experts", "--pretrained", str(tiny_dir), "--domain", "rd_demo", "--general", "general",
                 "--n", "2", "--out", str(out)])
    err = capsys.readouterr().err
    ours = [line for line in err.splitlines() if line.startswith("rd-eval")]  # besides transformers' progress bars
    assert code == 2 and "Traceback" not in err
    assert len(ours) == 1 and ours[0].startswith("rd-eval experts: error: routing hooks did not fire at 8 of the 8")
    assert not out.exists()


# -- the adapter: the error stops the run ------------------------------------------------------------------
def test_adapter_run_stops_instead_of_answering_each_document(tiny_dir: Path, tmp_path: Path) -> None:
    from adapter_requests import rd_demo_requests, run
    from rd_eval_adapters.qwen3_vl_moe import RDQwen3VLMoe

    from rd_eval.routing.shards import merge_routing_records

    routing_dir = tmp_path / "routing"
    adapter = RDQwen3VLMoe(pretrained=str(tiny_dir), batch_size=2, routing_dir=str(routing_dir))
    site = find_router_sites(adapter.model)[2]
    with router_skipped(adapter.model, site.module_path), pytest.raises(RoutingHooksNotFiredError) as info:
        run(adapter, rd_demo_requests("txt"))
    assert_names(info, site.module_path)
    assert not list(routing_dir.glob("routing_rank*"))  # not even error records: no document was answered
    assert session_hooks(adapter.model) == (0, 0)
    responses = run(adapter, rd_demo_requests("txt"))  # restored, the same adapter answers
    assert len(responses) == 4 and len(list(merge_routing_records(routing_dir))) == 4


# -- GLM-4.5V: sigmoid + correction bias -------------------------------------------------------------------
@pytest.fixture(scope="module")
def glm(tmp_path_factory: pytest.TempPathFactory) -> tuple[nn.Module, Any]:
    from transformers import AutoModelForImageTextToText, AutoProcessor

    from rd_eval.models.tiny import make_tiny

    path = make_tiny("glm4v_moe", tmp_path_factory.mktemp("glm") / "rd-tiny-glm4v_moe", seed=0)
    model = AutoModelForImageTextToText.from_pretrained(path, dtype=torch.float32, use_kernels=False).eval()
    processor = AutoProcessor.from_pretrained(path)
    return model, encode(processor, [(IMAGE_PROMPT, drawn_image(1)), (TEXT_PROMPT, None)])


@pytest.mark.parametrize("record", [True, False], ids=["recording", "intervention_only"])
def test_glm_stops_when_a_router_is_skipped(glm: tuple[nn.Module, Any], record: bool) -> None:
    model, batch = glm
    sites = find_router_sites(model)
    assert {s.math for s in sites} == {"sigmoid_group_bias_topk"}
    spec = None if record else band_spec((1, 2, 3))
    for skipped in (sites[0], sites[2]):  # outside and inside the band
        with router_skipped(model, skipped.module_path), pytest.raises(RoutingHooksNotFiredError) as info:
            run_forward(model, batch, record=record, intervention=spec)
        assert_names(info, skipped.module_path, f"1 of the {len(sites)}")
    run_forward(model, batch, record=record, intervention=spec)  # every hook fires: no error


# -- ERNIE-4.5-VL: text and vision routers -----------------------------------------------------------------
@pytest.fixture(scope="module")
def ernie(tmp_path_factory: pytest.TempPathFactory) -> tuple[nn.Module, Any]:
    from transformers import AutoModelForImageTextToText, AutoProcessor

    from rd_eval.models.tiny import make_tiny

    path = make_tiny("ernie4_5_vl_moe", tmp_path_factory.mktemp("ernie") / "rd-tiny-ernie4_5_vl_moe", seed=0)
    model = AutoModelForImageTextToText.from_pretrained(path, dtype=torch.float32, use_kernels=False).eval()
    return model, AutoProcessor.from_pretrained(path)


def ernie_batches(processor: Any) -> tuple[Any, Any]:
    mixed = encode(processor, [(IMAGE_PROMPT, drawn_image(1)), (TEXT_PROMPT, None)])
    text_only = encode(processor, [(TEXT_PROMPT, None), (LONG_PROMPT, None)])
    assert mixed["moe_mm_token_type_ids"].any() and not text_only["moe_mm_token_type_ids"].any()
    return mixed, text_only


def ernie_site(model: nn.Module, moe_index: int, group: str) -> RouterSite:
    return next(s for s in find_router_sites(model) if (s.moe_index, s.group) == (moe_index, group))


def vision_only_spec(layers: tuple[int, ...]) -> InterventionSpec:
    experts = ExpertSet(model="tiny", kind="domain", layers=tuple(LayerExperts(i, (1, 5), group="vision")
                                                                  for i in layers))
    return InterventionSpec(experts=experts, mode="soft", strength=2.0)


@pytest.mark.parametrize("record", [True, False], ids=["recording", "intervention_only"])
def test_ernie_a_skipped_vision_router_is_no_false_alarm_without_vision_tokens(ernie: tuple[nn.Module, Any],
                                                                               record: bool) -> None:
    """Text-only calls and decode steps cannot reach a vision router: no error, and no proof either; the
    first call with vision tokens is checked and stops."""
    model, processor = ernie
    mixed, text_only = ernie_batches(processor)
    skipped = ernie_site(model, 3, "vision")
    spec = None if record else vision_only_spec((1, 2))  # the skipped vision site only carries a witness
    with router_skipped(model, skipped.module_path):
        with routing_session(model, record=record, intervention=spec) as session, torch.inference_mode():
            session.begin(2)
            model.generate(**text_only, max_new_tokens=3, do_sample=False)
            assert session_hooks(model) == (1, 1)  # the vision sites are still to be proven
            session.begin(2)
            with pytest.raises(RoutingHooksNotFiredError) as info:
                model(**mixed)
    assert_names(info, skipped.module_path, "1 of the 10 routing sites", "forward call 4")


def test_ernie_a_skipped_text_router_stops_a_text_only_batch(ernie: tuple[nn.Module, Any]) -> None:
    model, processor = ernie
    _, text_only = ernie_batches(processor)
    skipped = ernie_site(model, 1, "text")
    with router_skipped(model, skipped.module_path), pytest.raises(RoutingHooksNotFiredError) as info:
        run_forward(model, text_only)
    assert_names(info, skipped.module_path, "1 of the 5 routing sites")  # the 5 text sites, not the vision ones


def test_ernie_vision_routers_are_proven_by_the_first_call_with_vision_tokens(ernie: tuple[nn.Module, Any]) -> None:
    model, processor = ernie
    mixed, text_only = ernie_batches(processor)
    with routing_session(model, record=False, intervention=vision_only_spec((1, 2))) as session, \
            torch.inference_mode():
        session.begin(2)
        model(**text_only)
        assert session_hooks(model) == (1, 1)
        assert router_hooks(model) == [1] * 10  # witnesses on every site outside the steered ones
        session.begin(2)
        model.generate(**mixed, max_new_tokens=2, do_sample=False)
        assert session_hooks(model) == (0, 1)
        steered = {ernie_site(model, i, "vision").site_index for i in (1, 2)}
        assert router_hooks(model) == [1 if i in steered else 0 for i in range(10)]
    with router_skipped(model, ernie_site(model, 4, "vision").module_path), \
            pytest.raises(RoutingHooksNotFiredError, match=r"vision_moe\.gate"):
        run_forward(model, mixed)  # a vision router skipped where the first call has vision tokens
