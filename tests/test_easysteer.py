"""EasySteer interoperability: the MoE-layer <-> decoder-layer map from config.json, conversion both ways,
`rd-eval experts convert`, and an EasySteer file given to the adapters as `intervention=FILE`."""

from __future__ import annotations

import dataclasses
import json
import sys
from pathlib import Path
from typing import Any

import pytest
import torch
import transformers
from lmms_cli import run, tasks_path

from rd_eval.commands.main import main
from rd_eval.models.tiny import make_tiny
from rd_eval.routing.easysteer import from_easysteer, to_easysteer
from rd_eval.routing.layer_map import layer_map_from_config, load_layer_map
from rd_eval.routing.settings import pop_routing_settings
from rd_eval.routing.sites import find_router_sites
from rd_eval.routing.spec import ExpertSet, InterventionSpec, LayerBand, LayerExperts, SpecError

REFERENCE = Path("/work/shared/reference/configs")
GLM_REAL = REFERENCE / "zai-org__GLM-4.5V"
MODEL_CLASSES = {
    "qwen3_vl_moe": "Qwen3VLMoeForConditionalGeneration", "qwen3_5_moe": "Qwen3_5MoeForConditionalGeneration",
    "internvl_moe": "InternVLForConditionalGeneration", "glm4v_moe": "Glm4vMoeForConditionalGeneration",
    "deepseek_v3": "DeepseekV3ForCausalLM", "ernie4_5_vl_moe": "Ernie4_5_VLMoeForConditionalGeneration",
    "aria": "AriaForConditionalGeneration", "llama4": "Llama4ForConditionalGeneration",
}
# family -> (edit of the language model's config, what it tests): dense layers placed by each family's own keys,
# and a deleted key (the map must use the same default as transformers)
VARIANTS: dict[str, list[dict[str, Any]]] = {
    "qwen3_vl_moe": [{"mlp_only_layers": [1], "decoder_sparse_step": 2}, {"mlp_only_layers": None}],
    "internvl_moe": [{"mlp_only_layers": [0, 4]}, {"decoder_sparse_step": 3}],
    "glm4v_moe": [{"first_k_dense_replace": 3}, {"first_k_dense_replace": None}],
    "deepseek_v3": [{"first_k_dense_replace": None}, {"first_k_dense_replace": 0}],
    "llama4": [{"moe_layers": None}, {"moe_layers": [0, 5], "interleave_moe_layer_step": 2}],
    "ernie4_5_vl_moe": [{"mlp_layer_types": ["dense", "sparse", "dense", "sparse", "sparse", "dense"]},
                        {"mlp_layer_types": None}],
    "qwen3_5_moe": [{}],
    "aria": [{}],
}


@pytest.fixture(scope="module")
def tiny_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("tiny_all")
    for family in MODEL_CLASSES:
        make_tiny(family, root / family)
    return root


def _edited(folder: Path, out: Path, edit: dict[str, Any]) -> Path:
    """A copy of the checkpoint's config.json with keys of its language model set (None: deleted)."""
    config = json.loads((folder / "config.json").read_text())
    text = config.get("text_config", config)
    for key, value in edit.items():
        if value is None:
            text.pop(key, None)
        else:
            text[key] = value
    out.mkdir(parents=True, exist_ok=True)
    (out / "config.json").write_text(json.dumps(config))
    return out


def _site_layers(folder: Path, model_class: str) -> list[tuple[int, int]]:
    """(MoE-layer index, decoder layer) of every router site of the model the config builds (no weights)."""
    config = transformers.AutoConfig.from_pretrained(folder)
    with torch.device("meta"):
        model = getattr(transformers, model_class)(config)
    return sorted({(s.moe_index, s.layer_index) for s in find_router_sites(model)})


@pytest.mark.parametrize("family", sorted(MODEL_CLASSES))
def test_layer_map_matches_the_router_sites_of_every_tiny_family(family: str, tiny_root: Path,
                                                                 tmp_path: Path) -> None:
    for i, edit in enumerate(VARIANTS[family]):
        folder = _edited(tiny_root / family, tmp_path / str(i), edit)
        layer_map = load_layer_map(folder)
        sites = _site_layers(folder, MODEL_CLASSES[family])
        assert sites == [(m, layer_map.decoder_layer(m)) for m in range(len(layer_map.moe_layers))], edit
        assert all(layer_map.moe_index(layer) == m for m, layer in sites)
    if family in ("glm4v_moe", "llama4", "deepseek_v3", "ernie4_5_vl_moe"):
        assert load_layer_map(tiny_root / family).moe_layers[0] > 0  # a dense layer comes first


REAL = [("zai-org__GLM-4.5V", "Glm4vMoeForConditionalGeneration", 46, tuple(range(1, 46))),
        ("Qwen__Qwen3-VL-30B-A3B-Instruct", "Qwen3VLMoeForConditionalGeneration", 48, tuple(range(48))),
        ("Qwen__Qwen3-VL-235B-A22B-Instruct", "Qwen3VLMoeForConditionalGeneration", 94, tuple(range(94))),
        ("Qwen__Qwen3.5-35B-A3B", "Qwen3_5MoeForConditionalGeneration", 40, tuple(range(40))),
        ("meta-llama__Llama-4-Scout-17B-16E-Instruct", "Llama4ForConditionalGeneration", 48, tuple(range(48)))]


@pytest.mark.parametrize(("name", "model_class", "n_layers", "moe_layers"), REAL, ids=[r[0] for r in REAL])
def test_layer_map_of_the_real_configs_matches_transformers(name: str, model_class: str, n_layers: int,
                                                            moe_layers: tuple[int, ...]) -> None:
    layer_map = load_layer_map(REFERENCE / name)
    assert (layer_map.num_layers, layer_map.moe_layers) == (n_layers, moe_layers)
    assert _site_layers(REFERENCE / name, model_class) == list(enumerate(moe_layers))  # built on the meta device


def test_layer_map_of_kimi_vl_follows_its_deepseek_v3_rule() -> None:
    layer_map = load_layer_map(REFERENCE / "moonshotai__Kimi-VL-A3B-Instruct")  # remote code: the rule, not a model
    assert (layer_map.num_layers, layer_map.moe_layers, layer_map.top_k) == (27, tuple(range(1, 27)), 6)
    config = json.loads((REFERENCE / "moonshotai__Kimi-VL-A3B-Instruct" / "config.json").read_text())
    config["text_config"]["moe_layer_freq"] = 2
    assert layer_map_from_config(config).moe_layers == tuple(range(2, 27, 2))


# -- conversion ---------------------------------------------------------------------------------------------
def _glm_set() -> ExpertSet:
    """An expert set over every MoE layer of GLM-4.5V (45 MoE layers after one dense layer)."""
    return ExpertSet(model="zai-org/GLM-4.5V", kind="domain",
                     layers=tuple(LayerExperts(m, ((5 * m) % 128, (11 * m + 3) % 128), (0.4, 0.2)) for m in range(45)))


def test_round_trip_keeps_every_expert_on_its_decoder_layer_for_glm_4_5v(tmp_path: Path, capsys) -> None:
    experts = _glm_set()
    set_path = experts.save(tmp_path / "experts.json")
    es_path, back_path = tmp_path / "easysteer.json", tmp_path / "back.json"
    args = ["--model_args", f"pretrained={GLM_REAL}"]
    assert main(["experts", "convert", str(set_path), "--to", "easysteer", "--out", str(es_path), *args]) == 0
    assert main(["experts", "convert", str(es_path), "--to", "rd-eval", "--out", str(back_path), *args]) == 0
    layer_configs = json.loads(es_path.read_text())["layer_configs"]
    # first_k_dense_replace = 1: decoder layer = MoE-layer index + 1
    assert {int(k): v["expert_ids"] for k, v in layer_configs.items()} == {
        le.moe_index + 1: list(le.experts) for le in experts.layers}
    assert all(v["mode"] == "soft" and v["lambda"] == 1.0 for v in layer_configs.values())
    back = InterventionSpec.load(back_path)
    layer_map = load_layer_map(GLM_REAL)
    decoder = {layer_map.decoder_layer(le.moe_index): le.experts for le in back.experts.layers}
    assert decoder == {layer_map.decoder_layer(le.moe_index): le.experts for le in experts.layers}
    assert back.mode == "soft" and back.strength == 1.0 and back.band.layers == tuple(range(45))
    assert getattr(back, "std_correction", 1) == 1  # EasySteer's torch.std: the sample std
    assert f"hash {back.content_hash()}" in capsys.readouterr().out


def _es(**layers: dict[str, Any]) -> dict[str, Any]:
    return {"layer_configs": {k.lstrip("L"): v for k, v in layers.items()}}


def test_easysteer_modes_and_defaults_map_to_rd_eval() -> None:
    glm = load_layer_map(GLM_REAL)
    soft = from_easysteer(_es(L2={"mode": "soft", "expert_ids": [4, 1]}, L40={"mode": "soft", "expert_ids": [9]}), glm)
    assert (soft.mode, soft.strength, soft.token_scope) == ("soft", 0.5, "all")  # EasySteer's default lambda
    assert soft.experts.experts_by_site_key() == {(1, ""): (4, 1), (39, ""): (9,)} and soft.band.layers == (1, 39)
    qwen = load_layer_map(REFERENCE / "Qwen__Qwen3-VL-30B-A3B-Instruct")  # top-8 of a softmax: EasySteer's topk 8
    topk = from_easysteer(_es(L5={"mode": "soft_topk", "expert_ids": [3], "lambda": 2}), qwen)
    assert (topk.mode, topk.strength) == ("soft_topk", 2.0)
    assert to_easysteer(topk, qwen)["layer_configs"] == {"5": {"mode": "soft_topk", "expert_ids": [3], "lambda": 2.0,
                                                                "topk": 8}}
    off = from_easysteer(_es(L7={"mode": "suppress", "expert_ids": [3], "deactivate_ids": [6]}), qwen)  # an alias
    assert off.mode == "suppress" and off.experts.experts_by_site_key() == {(7, ""): (3, 6)}
    assert to_easysteer(off, qwen)["layer_configs"] == {"7": {"mode": "deactivate", "expert_ids": [3, 6]}}


def test_deactivate_is_exact_only_where_internvl_renormalises(tiny_root: Path, tmp_path: Path) -> None:
    es = _es(L2={"mode": "deactivate", "expert_ids": [1]})
    on = load_layer_map(_edited(tiny_root / "internvl_moe", tmp_path / "on", {"norm_topk_prob": True}))
    assert from_easysteer(es, on).mode == "suppress"
    off = load_layer_map(_edited(tiny_root / "internvl_moe", tmp_path / "off", {"norm_topk_prob": None}))
    with pytest.raises(SpecError, match="mode deactivate is refused on this model: EasySteer's deactivate hands"):
        from_easysteer(es, off)  # qwen3_moe's default: no renormalisation


def _easysteer_by_hand(logits: torch.Tensor, params: dict[str, Any]) -> torch.Tensor:
    """EasySteer's moe_router transform of one layer's logits [N, E], restated from its documentation."""
    z = logits.clone()
    ids = params["expert_ids"]
    if params["mode"] == "soft":
        z[:, ids] += params["lambda"] * z.std(dim=-1, keepdim=True)  # torch's default: the sample std
        return z
    z = torch.log_softmax(z, dim=-1)
    z[:, ids] = z.min(dim=-1, keepdim=True).values - 0.01
    return z


@pytest.mark.parametrize("params", [{"mode": "soft", "expert_ids": [0, 5, 9], "lambda": 2.0},
                                    {"mode": "deactivate", "expert_ids": [0, 5, 9]}], ids=["soft", "deactivate"])
def test_a_converted_file_routes_as_easysteer_does_on_qwen3_vl_moe(params: dict[str, Any], tiny_dir: Path,
                                                                  tiny_model: Any) -> None:
    """The router's selection and weights under the converted spec equal the Qwen router's own math applied
    to EasySteer's transformed logits, on the steered layers (decoder layers 2 and 5)."""
    from rd_eval.routing.session import routing_session

    layer_map = load_layer_map(tiny_dir)
    spec = from_easysteer(_es(L2=params, L5=params), layer_map)
    sites = find_router_sites(tiny_model)
    modules = dict(tiny_model.named_modules())
    seen: dict[int, tuple[torch.Tensor, Any]] = {}
    ids = torch.randint(10, 200, (2, 12), generator=torch.Generator().manual_seed(0))
    with routing_session(tiny_model, record=False, intervention=spec) as session, torch.inference_mode():
        session.begin(2)
        handles = [modules[s.module_path].register_forward_hook(
            lambda mod, args, out, layer=s.layer_index: seen.__setitem__(layer, (args[0], out))) for s in sites]
        tiny_model(input_ids=ids)
        for handle in handles:
            handle.remove()
    for layer in (2, 5):
        hidden, out = seen[layer]
        hidden, out = hidden.clone(), [o.clone() for o in out]
        router = modules[sites[layer_map.moe_index(layer)].module_path]
        hidden = hidden.reshape(-1, hidden.shape[-1])
        with torch.no_grad():
            z = _easysteer_by_hand(torch.nn.functional.linear(hidden, router.weight).float(), params)
        probs = torch.softmax(z, dim=-1)
        weights, chosen = torch.topk(probs, router.top_k, dim=-1)
        weights = weights / weights.sum(dim=-1, keepdim=True)
        order, got_order = chosen.argsort(dim=-1), out[2].argsort(dim=-1)
        assert torch.equal(chosen.gather(1, order), out[2].gather(1, got_order))
        torch.testing.assert_close(weights.gather(1, order), out[1].float().gather(1, got_order))
        if params["mode"] == "deactivate":
            assert not torch.isin(out[2], torch.tensor(params["expert_ids"])).any()


BAD_EASYSTEER = {
    "default_mode_activate": (_es(L3={"expert_ids": [1]}), "mode activate is refused: EasySteer's activate"),
    "soft_random": (_es(L3={"mode": "soft_random", "expert_ids": [1]}), "mode soft_random is refused: "),
    "dense_layer": (_es(L0={"mode": "soft", "expert_ids": [1]}), "decoder layer 0 is a dense layer of this glm4v_moe "
                    "model; its MoE decoder layers are 1-45"),
    "beyond_model": (_es(L46={"mode": "soft", "expert_ids": [1]}), "decoder layer 46 is not a layer of this"),
    "soft_topk_bias_router": (_es(L3={"mode": "soft_topk", "expert_ids": [1]}), "mode soft_topk is refused on this "
                              "model: EasySteer's soft_topk skips the top-k of the raw logits, but a glm4v_moe router"),
    "deactivate_sigmoid": (_es(L3={"mode": "deactivate", "expert_ids": [1]}), "mode deactivate is refused on this "
                           "model: EasySteer's deactivate hands the glm4v_moe router log-softmax scores"),
    "mixed": (_es(L3={"mode": "soft", "expert_ids": [1]}, L4={"mode": "soft", "expert_ids": [1], "lambda": 2}),
              "layers differ in mode or lambda (layer 3: soft lambda=0.5, layer 4: soft lambda=2)"),
    "typo": (_es(L3={"mode": "soft", "expert_ids": [1], "lamda": 2}), "unknown keys ['lamda']"),
    "expert_range": (_es(L3={"mode": "soft", "expert_ids": [1, 128]}), "expert ids [128] out of range; this model "
                     "has experts 0..127"),
    "key": (_es(Lthree={"mode": "soft", "expert_ids": [1]}), "layer_configs key 'three' invalid"),
    "empty": ({"layer_configs": {}}, "layer_configs must be a non-empty object"),
}


@pytest.mark.parametrize("case", sorted(BAD_EASYSTEER))
def test_bad_easysteer_files_get_one_clear_line(case: str, tmp_path: Path, capsys) -> None:
    data, fragment = BAD_EASYSTEER[case]
    path = tmp_path / "es.json"
    path.write_text(json.dumps(data))
    code = main(["experts", "convert", str(path), "--to", "rd-eval", "--out", str(tmp_path / "out.json"),
                 "--model_args", f"pretrained={GLM_REAL}"])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and err.startswith(f"rd-eval experts: error: {path}: ")
    assert fragment in err, err
    assert not (tmp_path / "out.json").exists()


def _spec(**changes: Any) -> InterventionSpec:
    experts = ExpertSet(model="m", kind="domain", layers=(LayerExperts(20, (1, 2)),))
    return InterventionSpec(experts=experts, **changes)


HAS_STD_FIELD = "std_correction" in {f.name for f in dataclasses.fields(InterventionSpec)}


BAD_RD_EVAL: dict[str, tuple[dict[str, Any], str]] = {
    "force": (dict(mode="force"), "mode force cannot be written for EasySteer"),
    "random": (dict(mode="random"), "mode random cannot be written for EasySteer"),
    "selection_only": (dict(mode="selection_only"), "EasySteer has no mode that changes the selection"),
    "scope": (dict(token_scope="image"), "token scope 'image' cannot be written for EasySteer"),
    "population_std": (dict(std_correction=0), "population std (std_correction=0)"),
    "outside_band": (dict(band=LayerBand.parse("0.0-0.25")), "MoE layers [20] have experts but lie outside the band"),
    "noop": (dict(strength=0.0), "the intervention steers nothing"),
    "soft_topk_bias_router": (dict(mode="soft_topk"), "mode soft_topk cannot be written for EasySteer on this model"),
    "suppress_sigmoid": (dict(mode="suppress"), "mode suppress cannot be written for EasySteer on this model"),
}


@pytest.mark.parametrize("case", sorted(BAD_RD_EVAL))
def test_rd_eval_settings_without_an_easysteer_twin_are_refused(case: str, tmp_path: Path, capsys) -> None:
    changes, fragment = BAD_RD_EVAL[case]
    if "std_correction" in changes and not HAS_STD_FIELD:
        pytest.skip("specs record no std choice yet")
    path = _spec(**changes).save(tmp_path / "spec.json")
    code = main(["experts", "convert", str(path), "--to", "easysteer", "--out", str(tmp_path / "out.json"),
                 "--model_args", f"pretrained={GLM_REAL}"])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and fragment in err, err


def test_an_expert_set_made_on_another_model_is_refused(tiny_root: Path, tmp_path: Path) -> None:
    if "sites" not in {f.name for f in dataclasses.fields(ExpertSet)}:
        pytest.skip("expert sets carry no site table yet")
    from rd_eval.routing.site_table import SiteTable

    glm = tiny_root / "glm4v_moe"
    config = transformers.AutoConfig.from_pretrained(glm)
    with torch.device("meta"):
        model = transformers.Glm4vMoeForConditionalGeneration(config)
    table = SiteTable.of_sites(find_router_sites(model))
    made_here = ExpertSet(model="m", kind="domain", layers=(LayerExperts(1, (2, 3)),), sites=table)
    assert to_easysteer(made_here, load_layer_map(glm))["layer_configs"] == {
        "2": {"mode": "soft", "expert_ids": [2, 3], "lambda": 1.0}}
    other = load_layer_map(_edited(glm, tmp_path / "glm_first_k_2", {"first_k_dense_replace": 2}))
    with pytest.raises(SpecError, match="site table puts MoE layer 0 on decoder layer 1, this checkpoint's config "
                                        "on decoder layer 2: the set was made on another model"):
        to_easysteer(made_here, other)


def test_soft_topk_needs_the_models_k(capsys, tmp_path: Path) -> None:
    scout = load_layer_map(REFERENCE / "meta-llama__Llama-4-Scout-17B-16E-Instruct")  # top-1
    with pytest.raises(SpecError, match=r"soft_topk with topk=8 is refused: this model selects 1 experts per token.*"
                                        r"set \"topk\": 1"):
        from_easysteer(_es(L3={"mode": "soft_topk", "expert_ids": [1]}), scout)
    assert from_easysteer(_es(L3={"mode": "soft_topk", "expert_ids": [1], "topk": 1}), scout).mode == "soft_topk"


def test_convert_needs_the_checkpoint_and_refuses_grouped_families(tiny_root: Path, tmp_path: Path, capsys) -> None:
    path = tmp_path / "es.json"
    path.write_text(json.dumps(_es(L3={"mode": "soft", "expert_ids": [1]})))
    assert main(["experts", "convert", str(path), "--to", "rd-eval", "--out", str(tmp_path / "o.json")]) == 2
    assert "add --model_args pretrained=DIR" in capsys.readouterr().err
    assert main(["experts", "convert", str(path), "--to", "rd-eval", "--out", str(tmp_path / "o.json"),
                 "--model_args", f"pretrained={tiny_root / 'ernie4_5_vl_moe'}"]) == 2
    assert "a text and a vision router per layer" in capsys.readouterr().err


# -- the adapters' intervention=FILE ----------------------------------------------------------------------------
def test_intervention_file_in_easysteer_format_is_detected_and_mapped(tiny_root: Path, tmp_path: Path) -> None:
    glm = tiny_root / "glm4v_moe"  # 6 decoder layers, layer 0 dense, top-4 of 16
    path = tmp_path / "es.json"
    path.write_text(json.dumps(_es(L2={"mode": "soft", "expert_ids": [0, 5], "lambda": 3})))
    kwargs = {"pretrained": str(glm), "intervention": str(path)}
    spec = pop_routing_settings(kwargs).intervention
    assert kwargs == {"pretrained": str(glm)}  # the checkpoint stays for the base class
    assert spec is not None and spec.experts.experts_by_site_key() == {(1, ""): (0, 5)} and spec.strength == 3.0
    assert pop_routing_settings({"intervention": str(path)}, pretrained=str(glm)).intervention == spec
    with pytest.raises(SpecError, match=r"mapping them needs the checkpoint \(pretrained=DIR\)"):
        pop_routing_settings({"intervention": str(path)})
    with pytest.raises(SpecError, match="no config.json there"):
        pop_routing_settings({"intervention": str(path), "pretrained": "zai-org/GLM-4.6V"})
    with pytest.raises(SpecError, match="is an EasySteer file .*: pass it as intervention=FILE, not expert_set="):
        pop_routing_settings({"expert_set": str(path), "pretrained": str(glm)})


def test_python_m_lmms_eval_runs_a_hand_written_easysteer_file(tiny_root: Path, tmp_path: Path) -> None:
    glm = tiny_root / "glm4v_moe"
    path = tmp_path / "easysteer.json"
    path.write_text('{"layer_configs": {"2": {"mode": "soft", "expert_ids": [0, 5], "lambda": 3.0},\n'
                    '                   "4": {"mode": "soft", "expert_ids": [7], "lambda": 3.0}}}\n')
    expected = pop_routing_settings({"intervention": str(path)}, pretrained=str(glm)).intervention_hash
    out = tmp_path / "out"
    command = [sys.executable, "-m", "lmms_eval", "--model", "rd_glm4v_moe", "--model_args",
               f"pretrained={glm},intervention={path}", "--tasks", "rd_demo", "--include_path", tasks_path(),
               "--limit", "2", "--batch_size", "2", "--output_path", str(out)]
    result = run(command, tmp_path, timeout=600, extra_env={"OMP_NUM_THREADS": "1"})
    assert result.returncode == 0, (result.stdout + result.stderr)[-3000:]
    routing_dirs = list((out / "rd_routing").iterdir())
    assert [d.name.rsplit("__", 1)[1] for d in routing_dirs] == [expected]
    from rd_eval.routing.shards import merge_routing_records

    records = merge_routing_records(routing_dirs[0])
    assert len(records) == 4 and {r["intervention"] for r in records} == {expected}
