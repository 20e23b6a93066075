"""Expert sets, layer bands and intervention specs: validation, JSON round trips, content hashes, planning."""

from __future__ import annotations

import copy
import json
import math
from dataclasses import replace
from typing import Any

import pytest

from rd_eval.routing.session import plan_intervention
from rd_eval.routing.sites import RouterSite
from rd_eval.routing.spec import (
    EXPERT_SET_FORMAT,
    FORMAT_VERSION,
    INTERVENTION_FORMAT,
    ExpertSet,
    InterventionSpec,
    LayerBand,
    LayerExperts,
    SpecError,
)


def sites(num_layers: int = 8, num_experts: int = 16) -> list[RouterSite]:
    return [RouterSite(moe_index=i, layer_index=2 * i + 1, module_path=f"model.layers.{2 * i + 1}.mlp.gate",
                       family="qwen3_vl_moe", num_experts=num_experts, top_k=4, math="softmax_topk", site_index=i)
            for i in range(num_layers)]


def make_set(**overrides: Any) -> ExpertSet:
    values: dict[str, Any] = {
        "model": "tiny/qwen3-vl-moe",
        "kind": "domain",
        "layers": (LayerExperts(2, (1, 5), (0.25, 0.125)), LayerExperts(3, (7,), (0.5,)),
                   LayerExperts(4, (0, 15), (0.3, 0.2)), LayerExperts(5, ())),
        "method": {"statistic": "delta_phi", "top_n": 2, "band_layers": [2, 3, 4, 5]},
    }
    values.update(overrides)
    return ExpertSet(**values)


def make_spec(**overrides: Any) -> InterventionSpec:
    values: dict[str, Any] = {"experts": make_set(), "mode": "soft", "strength": 1.5, "band": LayerBand(),
                              "token_scope": "prompt", "seed": 3}
    values.update(overrides)
    return InterventionSpec(**values)


# -- LayerBand --------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "fractions, num_layers, expected",
    [
        ((0.25, 0.75), 8, (2, 3, 4, 5)),
        ((0.25, 0.75), 48, tuple(range(12, 36))),
        ((0.0, 1.0), 8, tuple(range(8))),
        ((0.0, 1.0), 48, tuple(range(48))),
        ((0.3, 0.6), 48, tuple(range(14, 29))),  # round half up: 14.4 -> 14, 28.8 -> 29
        ((0.5, 0.55), 8, (4,)),  # 4.0 .. 4.4: an empty range still yields one layer
        ((0.9, 1.0), 8, (7,)),
        ((0.0, 0.01), 48, (0,)),
    ],
)
def test_band_fractions_resolve(fractions: tuple[float, float], num_layers: int, expected: tuple[int, ...]) -> None:
    assert LayerBand(fractions=fractions).resolve(num_layers) == expected


def test_default_band_is_the_middle_half() -> None:
    assert LayerBand() == LayerBand(fractions=(0.25, 0.75))
    assert LayerBand().resolve(8) == (2, 3, 4, 5)
    assert LayerBand().resolve(48) == tuple(range(12, 36))


@pytest.mark.parametrize("fractions, num_layers", [((0.95, 1.0), 8), ((0.995, 1.0), 48)])
def test_band_fractions_near_one_stay_in_range(fractions: tuple[float, float], num_layers: int) -> None:
    band = LayerBand(fractions=fractions).resolve(num_layers)
    assert band and all(0 <= i < num_layers for i in band), band


def test_explicit_band_layers_resolve_sorted() -> None:
    assert LayerBand(fractions=None, layers=(5, 1, 3)).resolve(8) == (1, 3, 5)
    assert LayerBand(fractions=None, layers=(47,)).resolve(48) == (47,)


def test_explicit_band_layers_out_of_range() -> None:
    band = LayerBand(fractions=None, layers=(2, 8, 9))
    with pytest.raises(SpecError, match=r"band layers \[8, 9\] out of range; this model has MoE layers 0\.\.7"):
        band.resolve(8)
    assert band.resolve(10) == (2, 8, 9)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"fractions": None, "layers": None},
        {"fractions": (0.25, 0.75), "layers": (1,)},
        {"fractions": (0.5, 0.5)},
        {"fractions": (0.75, 0.25)},
        {"fractions": (-0.1, 0.5)},
        {"fractions": (0.2, 1.1)},
        {"fractions": (math.nan, 0.5)},
        {"fractions": None, "layers": ()},
        {"fractions": None, "layers": (1, -1)},
        {"fractions": None, "layers": (3, 3)},
    ],
)
def test_band_validation(kwargs: dict[str, Any]) -> None:
    with pytest.raises(SpecError, match="band"):
        LayerBand(**kwargs)


@pytest.mark.parametrize(
    "text, expected",
    [
        ("0.25-0.75", LayerBand(fractions=(0.25, 0.75))),
        (" 0-1 ", LayerBand(fractions=(0.0, 1.0))),
        ("12,13,14", LayerBand(fractions=None, layers=(12, 13, 14))),
        ("3", LayerBand(fractions=None, layers=(3,))),
        ("4, 2,", LayerBand(fractions=None, layers=(4, 2))),
    ],
)
def test_band_parse(text: str, expected: LayerBand) -> None:
    assert LayerBand.parse(text) == expected


@pytest.mark.parametrize("text", ["", "abc", "0.25-", "-0.5", "0.75-0.25", "0.2-0.4-0.6", "1,x", "1,-2", "2,2",
                                  "0.1-1.5", "1.5"])
def test_band_parse_rejects(text: str) -> None:
    with pytest.raises(SpecError, match="band"):
        LayerBand.parse(text)


def test_band_json() -> None:
    for band in (LayerBand(), LayerBand(fractions=(0.1, 0.9)), LayerBand(fractions=None, layers=(4, 1))):
        assert band.to_json() in ({"fractions": list(band.fractions or ())}, {"layers": list(band.layers or ())})
        assert LayerBand.from_json(json.loads(json.dumps(band.to_json()))) == band
    for bad in ([0.25, 0.75], {"fractions": [0.1]}, {"fractions": 0.5}, {"layer": [1]}, {}, {"layers": []},
                {"fractions": [0.1, 0.5], "extra": 1}):
        with pytest.raises(SpecError, match="band"):
            LayerBand.from_json(bad)


# -- ExpertSet ----------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "make, message",
    [
        (lambda: LayerExperts(-1, (1,)), r"expert set layer -1 invalid"),
        (lambda: LayerExperts(2, (1, -3)), r"layer 2: experts \[1, -3\] must be distinct ids >= 0"),
        (lambda: LayerExperts(2, (4, 4)), r"layer 2: experts \[4, 4\] must be distinct ids >= 0"),
        (lambda: LayerExperts(2, (4, 5), (0.1,)), r"layer 2: 1 scores for 2 experts"),
        (lambda: make_set(kind="magic"), r"expert set kind 'magic' invalid; valid: domain, visual"),
        (lambda: make_set(layers=(LayerExperts(2, (1,)), LayerExperts(2, (3,)))),
         r"expert set lists a layer twice: \[2, 2\]"),
    ],
)
def test_expert_set_validation(make: Any, message: str) -> None:
    with pytest.raises(SpecError, match=message):
        make()


def test_expert_set_views() -> None:
    expert_set = make_set()
    assert expert_set.experts_by_site_key() == {(2, ""): (1, 5), (3, ""): (7,), (4, ""): (0, 15)}
    assert not expert_set.is_empty
    assert make_set(layers=(LayerExperts(1, ()), LayerExperts(2, ()))).is_empty
    assert make_set(layers=()).is_empty
    assert make_set(kind="visual").kind == "visual"


def test_expert_set_json_round_trip(tmp_path: Any) -> None:
    expert_set = make_set()
    data = expert_set.to_json()
    assert data["format"] == EXPERT_SET_FORMAT and data["version"] == FORMAT_VERSION
    assert data["layers"][0] == {"moe_index": 2, "experts": [1, 5], "scores": [0.25, 0.125]}
    assert ExpertSet.from_json(json.loads(json.dumps(data))) == expert_set
    path = expert_set.save(tmp_path / "sets" / "domain.json")
    assert json.loads(path.read_text()) == data
    assert ExpertSet.load(path) == expert_set


@pytest.mark.parametrize(
    "mutate, message",
    [
        (lambda d: d.update(format=INTERVENTION_FORMAT), r"format 'rd-eval.intervention' is not 'rd-eval.expert-set'"),
        (lambda d: d.pop("format"), r"format None is not"),
        (lambda d: d.update(version=3), r"version 3 unsupported; this rd-eval reads 1, 2"),
        (lambda d: d.update(version=2), r"version 2 needs .sites."),
        (lambda d: d.update(version="1"), r"version '1' unsupported"),
        (lambda d: d.pop("kind"), r"malformed expert set"),
        (lambda d: d.pop("layers"), r"malformed expert set"),
        (lambda d: d["layers"][0].pop("experts"), r"malformed expert set"),
        (lambda d: d["layers"][0].update(experts=["x"]), r"layer 2: experts \['x'\] invalid"),
        (lambda d: d.update(kind="other"), r"expert set kind 'other' invalid"),
        (lambda d: d["layers"][1].update(moe_index=2), r"lists a layer twice"),
        (lambda d: d["layers"][0].update(experts=[1, 1], scores=[]), r"layer 2: experts \[1, 1\]"),
        (lambda d: d["layers"][0].update(experts=[-1, 2]), r"must be distinct ids >= 0"),
    ],
)
def test_expert_set_from_json_errors(mutate: Any, message: str, tmp_path: Any) -> None:
    data = make_set().to_json()
    mutate(data)
    with pytest.raises(SpecError, match=message):
        ExpertSet.from_json(data)
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(data))
    with pytest.raises(SpecError, match=str(path)):
        ExpertSet.load(path)


def test_expert_set_from_json_not_an_object() -> None:
    with pytest.raises(SpecError, match="expected a JSON object"):
        ExpertSet.from_json([1, 2])


# -- InterventionSpec ---------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "overrides, message",
    [
        ({"mode": "boost"}, r"intervention mode 'boost' invalid; valid: soft, soft_topk, random, force, suppress"),
        ({"strength": math.nan}, r"strength \(lambda\) nan invalid"),
        ({"strength": math.inf}, r"strength \(lambda\) inf invalid"),
        ({"strength": -math.inf}, r"strength \(lambda\) -inf invalid"),
        ({"strength": "1.0"}, r"strength \(lambda\) '1.0' invalid"),
        ({"strength": None}, r"strength \(lambda\) None invalid"),
        ({"token_scope": "vision"}, r"token scope 'vision' invalid; valid: all, prompt, generated, text, image"),
    ],
)
def test_intervention_validation(overrides: dict[str, Any], message: str) -> None:
    with pytest.raises(SpecError, match=message):
        make_spec(**overrides)


@pytest.mark.parametrize("mode", ["soft", "soft_topk", "random", "force", "suppress", "selection_only"])
@pytest.mark.parametrize("scope", ["all", "prompt", "generated", "text", "image"])
def test_all_modes_and_scopes_accepted(mode: str, scope: str) -> None:
    spec = make_spec(mode=mode, token_scope=scope, strength=-0.5)
    assert InterventionSpec.from_json(spec.to_json()) == spec


def test_is_noop() -> None:
    assert not make_spec().is_noop
    for mode in ("soft", "soft_topk", "random", "selection_only"):
        assert make_spec(mode=mode, strength=0.0).is_noop
        assert not make_spec(mode=mode, strength=1e-9).is_noop
    for mode in ("force", "suppress"):  # they ignore lambda
        assert not make_spec(mode=mode, strength=0.0).is_noop
    empty = make_set(layers=(LayerExperts(2, ()),))
    for mode in ("soft", "force", "suppress"):
        assert make_spec(experts=empty, mode=mode, strength=5.0).is_noop


def test_intervention_json_round_trip(tmp_path: Any) -> None:
    spec = make_spec(band=LayerBand(fractions=None, layers=(6, 2)), mode="force", token_scope="image", seed=11)
    data = spec.to_json()
    assert data["format"] == INTERVENTION_FORMAT and data["version"] == 2  # records the std of the boost
    assert set(data) == {"format", "version", "mode", "lambda", "band", "token_scope", "seed", "experts",
                         "std_correction"}
    assert data["std_correction"] == 1
    assert data["lambda"] == 1.5 and data["band"] == {"layers": [6, 2]}
    assert InterventionSpec.from_json(json.loads(json.dumps(data))) == spec
    path = spec.save(tmp_path / "spec.json")
    loaded = InterventionSpec.load(path)
    assert loaded == spec
    assert loaded.content_hash() == spec.content_hash()


def test_intervention_from_json_defaults() -> None:
    data = {"format": INTERVENTION_FORMAT, "version": FORMAT_VERSION, "experts": make_set().to_json()}
    spec = InterventionSpec.from_json(data)
    # A version 1 file keeps its meaning: the population std.
    assert spec == InterventionSpec(experts=make_set(), std_correction=0)
    assert (spec.mode, spec.strength, spec.band, spec.token_scope, spec.seed) == ("soft", 1.0, LayerBand(), "all", 0)


@pytest.mark.parametrize(
    "mutate, message",
    [
        (lambda d: d.update(format=EXPERT_SET_FORMAT), r"intervention spec: format 'rd-eval.expert-set' is not"),
        (lambda d: d.update(version=0), r"intervention spec: version 0 unsupported"),
        (lambda d: d.pop("version"), r"version None unsupported"),
        (lambda d: d.update(strenght=2.0, colour=1),
         r"intervention spec: unknown keys \['colour', 'strenght'\]; valid keys: \["),
        (lambda d: d.pop("experts"), r"intervention spec: missing 'experts'"),
        (lambda d: d.update(mode="boost"), r"intervention spec: intervention mode 'boost' invalid"),
        (lambda d: d.update({"lambda": "NaN"}), r"intervention spec: lambda 'NaN' invalid; need a number"),
        (lambda d: d.update({"lambda": "much"}), r"intervention spec: lambda 'much' invalid"),
        (lambda d: d.update({"lambda": None}), r"intervention spec: lambda None invalid"),
        (lambda d: d.update(token_scope="pixels"), r"intervention spec: token scope 'pixels' invalid"),
        (lambda d: d.update(seed="x"), r"intervention spec: seed 'x' invalid; need an integer"),
        (lambda d: d.update(band={"fractions": [0.8, 0.2]}), r"intervention spec: band fractions \[0.8, 0.2\] invalid"),
        (lambda d: d.update(band={"slice": [1]}), r"intervention spec: band \{'slice': \[1\]\} invalid"),
        (lambda d: d.update(experts=[]), r"intervention spec: experts: expected a JSON object"),
        (lambda d: d["experts"].update(version=9), r"intervention spec: experts: version 9 unsupported"),
        (lambda d: d["experts"]["layers"][0].update(experts=[3, 3], scores=[]),
         r"intervention spec: experts: layer 2: experts \[3, 3\] must be distinct"),
        (lambda d: d["experts"]["layers"][1].update(moe_index=-4),
         r"intervention spec: experts: expert set layer -4 invalid"),
        (lambda d: d["experts"]["layers"].append({"moe_index": 3, "experts": [1]}),
         r"intervention spec: experts: expert set lists a layer twice"),
    ],
)
def test_intervention_from_json_errors(mutate: Any, message: str, tmp_path: Any) -> None:
    data = make_spec().to_json()
    mutate(data)
    with pytest.raises(SpecError, match=message):
        InterventionSpec.from_json(data)
    path = tmp_path / "bad-spec.json"
    path.write_text(json.dumps(data))
    with pytest.raises(SpecError, match=str(path)):
        InterventionSpec.load(path)


def test_intervention_from_json_not_an_object() -> None:
    with pytest.raises(SpecError, match="intervention spec: expected a JSON object"):
        InterventionSpec.from_json("soft")


# -- content hash -------------------------------------------------------------------------------------------
def test_content_hash_stable_for_same_content() -> None:
    spec = make_spec()
    digest = spec.content_hash()
    assert len(digest) == 12 and all(c in "0123456789abcdef" for c in digest)
    assert make_spec().content_hash() == digest
    assert InterventionSpec.from_json(copy.deepcopy(spec.to_json())).content_hash() == digest
    shuffled = {k: spec.to_json()[k] for k in reversed(list(spec.to_json()))}  # key order is irrelevant
    assert InterventionSpec.from_json(shuffled).content_hash() == digest
    method = dict(reversed(list(make_set().method.items())))
    assert make_spec(experts=make_set(method=method)).content_hash() == digest


@pytest.mark.parametrize(
    "change",
    [
        {"mode": "soft_topk"},
        {"strength": 1.25},
        {"strength": -1.5},
        {"band": LayerBand(fractions=(0.25, 0.5))},
        {"band": LayerBand(fractions=None, layers=(2, 3, 4, 5))},
        {"token_scope": "all"},
        {"seed": 4},
        {"experts": make_set(model="another/model")},
        {"experts": make_set(kind="visual")},
        {"experts": make_set(method={"statistic": "delta_phi"})},
        {"experts": make_set(layers=(LayerExperts(2, (1, 5), (0.25, 0.125)),))},
        {"experts": make_set(layers=(LayerExperts(2, (5, 1), (0.125, 0.25)), LayerExperts(3, (7,), (0.5,)),
                                     LayerExperts(4, (0, 15), (0.3, 0.2)), LayerExperts(5, ())))},
        {"experts": make_set(layers=(LayerExperts(2, (1, 5), (0.25, 0.5)), LayerExperts(3, (7,), (0.5,)),
                                     LayerExperts(4, (0, 15), (0.3, 0.2)), LayerExperts(5, ())))},
        {"experts": make_set(layers=(LayerExperts(2, (1, 6), (0.25, 0.125)), LayerExperts(3, (7,), (0.5,)),
                                     LayerExperts(4, (0, 15), (0.3, 0.2)), LayerExperts(5, ())))},
    ],
)
def test_content_hash_changes_with_any_change(change: dict[str, Any]) -> None:
    base = make_spec()
    changed = replace(base, **change)
    assert changed != base
    assert changed.content_hash() != base.content_hash()


def test_content_hash_same_for_int_and_float_lambda() -> None:
    as_int, as_float = make_spec(strength=2), make_spec(strength=2.0)
    assert as_int == as_float
    assert as_int.content_hash() == InterventionSpec.from_json(as_int.to_json()).content_hash()
    assert as_int.content_hash() == as_float.content_hash()


# -- plan_intervention --------------------------------------------------------------------------------------
def planned(spec: InterventionSpec, router_sites: list[RouterSite]) -> list[tuple[int, tuple[int, ...]]]:
    return [(p.moe_index, p.experts) for p in plan_intervention(spec, router_sites)]


def test_plan_intervention_resolves_band_and_skips_empty_layers() -> None:
    assert planned(make_spec(), sites()) == [(2, (1, 5)), (3, (7,)), (4, (0, 15))]
    narrow = LayerBand(fractions=None, layers=(3, 6))
    inside = make_set(layers=(LayerExperts(3, (7,)), LayerExperts(5, ())))  # an empty layer may lie outside
    assert planned(make_spec(experts=inside, band=narrow), sites()) == [(3, (7,))]
    with pytest.raises(SpecError, match=r"names MoE layers \[2, 4\] outside the band \{'layers': \[3, 6\]\}"):
        planned(make_spec(band=narrow), sites())


def test_plan_intervention_names_out_of_range_expert_ids() -> None:
    spec = make_spec(experts=make_set(layers=(LayerExperts(3, (2, 16, 40)),)))
    with pytest.raises(SpecError, match=r"layer 3: expert ids \[16, 40\] out of range; this model has experts 0\.\.15"):
        plan_intervention(spec, sites())
    assert planned(spec, sites(num_experts=64)) == [(3, (2, 16, 40))]


def test_plan_intervention_names_out_of_range_layers() -> None:
    spec = make_spec(experts=make_set(layers=(LayerExperts(3, (1,)), LayerExperts(8, (1,)), LayerExperts(11, (2,)))))
    with pytest.raises(SpecError, match=r"expert set names MoE layers \[8, 11\]; this model has MoE layers 0\.\.7"):
        plan_intervention(spec, sites())
    band = make_spec(band=LayerBand(fractions=None, layers=(1, 9)))
    with pytest.raises(SpecError, match=r"band layers \[9\] out of range; this model has MoE layers 0\.\.7"):
        plan_intervention(band, sites())


def test_plan_random_control() -> None:
    given = make_set(layers=tuple(LayerExperts(i, (0, 1, 2, 3)) for i in (2, 3, 4, 5)))
    first = plan_intervention(make_spec(experts=given, mode="random", seed=0), sites())
    assert first == plan_intervention(make_spec(experts=given, mode="random", seed=0), sites())
    assert first != plan_intervention(make_spec(experts=given, mode="random", seed=1), sites())
    assert [p.moe_index for p in first] == [2, 3, 4, 5]
    for plan in first:
        assert len(plan.experts) == 4 and list(plan.experts) == sorted(set(plan.experts))
        assert not set(plan.experts) & {0, 1, 2, 3}
        assert all(4 <= e < 16 for e in plan.experts)
    # Too few other experts: drawn from all of them, still distinct and in range.
    big = make_set(layers=(LayerExperts(2, tuple(range(10))),))
    (plan,) = plan_intervention(make_spec(experts=big, mode="random", band=LayerBand(fractions=None, layers=(2,))),
                                sites())
    assert len(set(plan.experts)) == 10 and all(0 <= e < 16 for e in plan.experts)


@pytest.mark.parametrize("data, fragment", [
    ({"fractions": [0.25, 0.75], "layers": [1]}, "invalid"),
    ({"layers": "12"}, "layers '12' invalid"),
    ({"fractions": ["a", 1]}, "not numbers"),
    ({"fractions": [0.1]}, "invalid"),
])
def test_band_json_rejects_ambiguous_or_malformed_bands(data: dict, fragment: str) -> None:
    with pytest.raises(SpecError, match=fragment):
        LayerBand.from_json(data)


def test_integer_band_fractions_hash_like_floats() -> None:
    expected = {"fractions": [0.0, 1.0]}
    assert LayerBand(fractions=(0, 1)).to_json() == LayerBand(fractions=(0.0, 1.0)).to_json() == expected


def test_expert_set_json_rejects_unknown_keys() -> None:
    data = ExpertSet(model="m", kind="domain", layers=(LayerExperts(0, (1,)),)).to_json() | {"expertz": []}
    with pytest.raises(SpecError, match="unknown keys \\['expertz'\\]"):
        ExpertSet.from_json(data)
