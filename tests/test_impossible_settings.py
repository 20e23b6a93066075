"""Impossible interventions are refused before any generation, naming the spec, the layer, the count and k:
through the library (a routing session), through the adapter class (at construction) and through
`python -m lmms_eval` (its log carries our one line). Tiny checkpoints: Qwen3-VL-MoE (8 MoE layers, 16 experts,
top-4, default band = MoE layers 2..5) and ERNIE-4.5-VL (5 MoE layers, a text and a vision router each, 16
experts, top-4, default band 1..3).
"""

from __future__ import annotations

import re
import sys
from pathlib import Path
from typing import Any

import pytest
import torch
from lmms_cli import run, tasks_path

from rd_eval.lmms.runner import logged_error
from rd_eval.routing.session import routing_session
from rd_eval.routing.sites import RouterSite, find_router_sites
from rd_eval.routing.spec import ExpertSet, InterventionSpec, LayerBand, LayerExperts, SpecError
from rd_eval.routing.validation import validate_intervention

pytestmark = pytest.mark.usefixtures("one_thread")




@pytest.fixture(scope="module")
def ernie_model(ernie_dir: Path):
    from transformers import AutoModelForImageTextToText

    return AutoModelForImageTextToText.from_pretrained(ernie_dir, dtype=torch.float32, use_kernels=False).eval()


def experts(layers: dict[int, tuple[int, ...]], group: str = "") -> ExpertSet:
    return ExpertSet(model="tiny", kind="domain",
                     layers=tuple(LayerExperts(m, ids, group=group) for m, ids in layers.items()))


def spec(layers: dict[int, tuple[int, ...]], mode: str = "soft", group: str = "", band: tuple[int, ...] | None = None,
         strength: float = 1.0) -> InterventionSpec:
    chosen = LayerBand() if band is None else LayerBand(fractions=None, layers=band)
    return InterventionSpec(experts=experts(layers, group), mode=mode, band=chosen, strength=strength)


# name -> (spec, what the one line must say); each was accepted (or silently skipped) before validation existed,
# except the last three, which were already errors and keep their wording.
QWEN_CASES: dict[str, tuple[InterventionSpec, str]] = {
    "force_more_than_k": (spec({2: (0, 1, 2, 3, 4)}, "force"),
                          "layer 2: force names 5 experts [0, 1, 2, 3, 4] but the router selects top-4; "
                          "at most 4 can be forced"),
    "suppress_leaves_fewer_than_k": (spec({3: tuple(range(13))}, "suppress"),
                                     "layer 3: suppress names 13 of the 16 experts, leaving 3 for top-4; "
                                     "at most 12 can be suppressed"),
    "layer_outside_the_band": (spec({3: (1,), 7: (2,)}),
                               "expert set names MoE layers [7] outside the band {'fractions': [0.25, 0.75]} "
                               "(MoE layers [2, 3, 4, 5] of this model)"),
    "layer_outside_an_explicit_band": (spec({3: (1,), 4: (2,)}, band=(3,)),
                                       "expert set names MoE layers [4] outside the band {'layers': [3]}"),
    "group_the_model_lacks": (spec({3: (1,)}, group="vision"),
                              "layer 3: expert group 'vision', but this model's routers have no expert groups"),
    "expert_id_beyond_the_layer": (spec({3: (2, 16)}),
                                   "layer 3: expert ids [16] out of range; this model has experts 0..15"),
    "moe_layer_beyond_the_model": (spec({3: (1,), 8: (1,)}),
                                   "expert set names MoE layers [8]; this model has MoE layers 0..7"),
    "band_layer_beyond_the_model": (spec({3: (1,)}, band=(3, 9)),
                                    "band layers [9] out of range; this model has MoE layers 0..7"),
}
ERNIE_CASES: dict[str, tuple[InterventionSpec, str]] = {
    "no_group_on_a_grouped_layer": (spec({2: (1,)}),
                                    "layer 2: experts without a group, but this layer routes by expert group "
                                    "('text', 'vision')"),
    "group_the_layer_lacks": (spec({2: (1,)}, group="audio"),
                              "layer 2: expert group 'audio' not in this layer; its groups: 'text', 'vision'"),
    "force_more_than_k_in_a_group": (spec({2: (0, 1, 2, 3, 4)}, "force", group="vision"),
                                     "layer 2 (vision experts): force names 5 experts [0, 1, 2, 3, 4] but the "
                                     "router selects top-4"),
    "suppress_in_a_group": (spec({1: tuple(range(1, 14))}, "suppress", group="text"),
                            "layer 1 (text experts): suppress names 13 of the 16 experts, leaving 3 for top-4"),
    "outside_the_band_in_a_group": (spec({0: (1,)}, group="text"),
                                    "expert set names MoE layers [0] outside the band"),
}


def refused(call: Any, fragment: str, prefix: str) -> str:
    with pytest.raises(SpecError) as info:
        call()
    message = str(info.value)
    assert "\n" not in message
    assert message.startswith(prefix), message
    assert fragment in message, message
    return message


# -- the library ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("case", sorted(QWEN_CASES))
def test_the_session_refuses(case: str, tiny_model: Any) -> None:
    bad, fragment = QWEN_CASES[case]

    def enter() -> None:
        with routing_session(tiny_model, record=False, intervention=bad):
            pytest.fail("the session started")

    refused(enter, fragment, "intervention spec: ")
    assert not tiny_model._forward_hooks and not tiny_model._forward_pre_hooks  # nothing left installed


@pytest.mark.parametrize("case", sorted(ERNIE_CASES))
def test_the_session_refuses_on_ernie(case: str, ernie_model: Any) -> None:
    bad, fragment = ERNIE_CASES[case]

    def enter() -> None:
        with routing_session(ernie_model, record=False, intervention=bad):
            pytest.fail("the session started")

    refused(enter, fragment, "intervention spec: ")


def test_lambda_zero_is_checked_too(tiny_model: Any) -> None:
    """λ = 0 steers nothing, but an expert set that does not fit the model is still an error."""
    noop = spec({3: (16,)}, strength=0.0)
    assert noop.is_noop
    refused(lambda: routing_session(tiny_model, record=False, intervention=noop).__enter__(),
            "layer 3: expert ids [16] out of range", "intervention spec: ")


def test_the_limits_themselves_are_accepted(tiny_model: Any, ernie_model: Any) -> None:
    """Force exactly top-k, suppress all but top-k, every band layer: allowed (the checks are not off by one)."""
    sites = find_router_sites(tiny_model)
    for ok in (spec({2: (0, 1, 2, 3)}, "force"), spec({3: tuple(range(12))}, "suppress"),
               spec({m: (1,) for m in (2, 3, 4, 5)}), spec({0: (1,), 7: (2,)}, band=(0, 7)),
               spec({3: (15,)}, strength=0.0)):
        validate_intervention(ok, sites)
        with routing_session(tiny_model, record=False, intervention=ok):
            pass
    ernie_sites = find_router_sites(ernie_model)
    validate_intervention(spec({2: (0, 1, 2, 3)}, "force", group="vision"), ernie_sites)
    validate_intervention(spec({1: tuple(range(12))}, "suppress", group="text"), ernie_sites)


def test_a_group_one_layer_lacks() -> None:
    """A layer with only a text router (the others have both): a vision set there is refused, elsewhere not."""
    def site(moe: int, group: str, index: int) -> RouterSite:
        return RouterSite(moe_index=moe, layer_index=moe + 1, module_path=f"layers.{moe + 1}.{group}", family="f",
                          num_experts=8, top_k=2, math="m", group=group, site_index=index)

    sites = [site(0, "text", 0), site(1, "text", 1), site(1, "vision", 2), site(2, "text", 3), site(2, "vision", 4)]
    whole = LayerBand(fractions=(0.0, 1.0))
    ok = InterventionSpec(experts=experts({1: (1,), 2: (3,)}, "vision"), band=whole)
    validate_intervention(ok, sites)
    bad = InterventionSpec(experts=experts({0: (1,), 1: (1,)}, "vision"), band=whole)
    refused(lambda: validate_intervention(bad, sites, source="my.json"),
            "layer 0: expert group 'vision' not in this layer; its groups: 'text'", "my.json: ")


# -- the adapter class: refused at construction, so no generation can start --------------------------------
def adapter_args(bad: InterventionSpec, tmp_path: Path) -> tuple[Path, dict[str, str]]:
    path = bad.experts.save(tmp_path / "experts.json")
    args = {"expert_set": str(path), "intervention_mode": bad.mode, "intervention_lambda": str(bad.strength),
            "record_routing": "false"}
    if bad.band.layers is not None:
        args["intervention_band"] = ":".join(map(str, bad.band.layers))
    return path, args


@pytest.mark.parametrize("case", sorted(QWEN_CASES))
def test_the_adapter_refuses_at_construction(case: str, tiny_dir: Path, tmp_path: Path,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    from rd_eval_adapters.qwen3_vl_moe import RDQwen3VLMoe

    def no_generation(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("generation started")

    monkeypatch.setattr(RDQwen3VLMoe, "generate_until", no_generation)
    bad, fragment = QWEN_CASES[case]
    path, args = adapter_args(bad, tmp_path)
    refused(lambda: RDQwen3VLMoe(pretrained=str(tiny_dir), batch_size=1, **args), fragment,
            f"model_args expert_set={path}: ")


@pytest.mark.parametrize("case", ["no_group_on_a_grouped_layer", "force_more_than_k_in_a_group"])
def test_the_ernie_adapter_refuses_at_construction(case: str, ernie_dir: Path, tmp_path: Path) -> None:
    from rd_eval_adapters.ernie4_5_vl_moe import RDErnie4_5VLMoe

    bad, fragment = ERNIE_CASES[case]
    spec_path = bad.save(tmp_path / "spec.json")  # a whole intervention spec file this time
    refused(lambda: RDErnie4_5VLMoe(pretrained=str(ernie_dir), intervention=str(spec_path), record_routing="false"),
            fragment, f"model_args intervention={spec_path}: ")


# -- python -m lmms_eval: the run stops at model construction with our line in its log ------------------------
def lmms_eval_error(model: str, checkpoint: Path, model_args: str, tmp_path: Path) -> str:
    out = tmp_path / "out"
    command = [sys.executable, "-m", "lmms_eval", "--model", model, "--model_args",
               f"pretrained={checkpoint},{model_args}", "--tasks", "rd_demo", "--include_path", tasks_path(),
               "--limit", "1", "--output_path", str(out)]
    result = run(command, tmp_path, timeout=600, extra_env={"OMP_NUM_THREADS": "1"})
    log = tmp_path / "lmms_eval.log"
    log.write_text(result.stdout + result.stderr)
    message = logged_error(log)
    assert message is not None, (result.stdout + result.stderr)[-3000:]
    assert not list(out.rglob("*_results.json"))  # nothing was evaluated
    assert "Model Responding" not in result.stderr  # no generation started
    return message


def test_python_m_lmms_eval_refuses_force_of_more_than_k(tiny_dir: Path, tmp_path: Path) -> None:
    bad, fragment = QWEN_CASES["force_more_than_k"]
    path = bad.experts.save(tmp_path / "experts.json")
    message = lmms_eval_error("rd_qwen3_vl_moe", tiny_dir, f"expert_set={path},intervention_mode=force", tmp_path)
    assert message == f"model_args expert_set={path}: {fragment}"


def test_python_m_lmms_eval_refuses_a_group_the_layer_lacks(ernie_dir: Path, tmp_path: Path) -> None:
    bad, fragment = ERNIE_CASES["group_the_layer_lacks"]
    path = bad.save(tmp_path / "spec.json")
    message = lmms_eval_error("rd_ernie4_5_vl_moe", ernie_dir, f"intervention={path}", tmp_path)
    assert re.fullmatch(rf"model_args intervention={re.escape(str(path))}: {re.escape(fragment)}", message), message
