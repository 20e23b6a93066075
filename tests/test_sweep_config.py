"""The sweep YAML (rd_eval.sweep.config) and its settings grid (rd_eval.sweep.grid): what a valid file gives, every
way a file can be wrong (each message names the file and the key path), the config hash, and the model_args each
setting's run gets, read back by the adapter's own parser."""

from __future__ import annotations

import copy
import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from rd_eval.organism.shipped import SHIPPED_DIR
from rd_eval.routing.settings import pop_routing_settings
from rd_eval.routing.spec import ExpertSet, InterventionSpec, LayerBand, LayerExperts
from rd_eval.sweep.config import SweepConfigError, load_sweep_config
from rd_eval.sweep.grid import expand_settings, setting_model_args
from rd_eval.vocabulary.model_args import parse_model_args

DOMAIN = ExpertSet(model="m", kind="domain", layers=(LayerExperts(1, (3, 5)), LayerExperts(2, (2, 7))))
VISUAL = ExpertSet(model="m", kind="visual", layers=(LayerExperts(0, (1,)),))

BASE: dict[str, Any] = {
    "model": "rd_qwen3_vl_moe",
    "model_args": "pretrained=/models/ckpt,max_pixels=65536",
    "tasks": ["rd_organism", "rd_organism_see"],
    "experts": {"file": "experts.json"},
    "settings": {"plain": True, "soft": {"lambda": [0.5, 1, 2]}, "random": {"seeds": [0]}, "suppress": True},
    "lmms": {"batch_size": 64, "limit": 16},
    "output_path": "out",
}


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    DOMAIN.save(tmp_path / "experts.json")
    VISUAL.save(tmp_path / "visual.json")
    return tmp_path


def write(folder: Path, data: Any, name: str = "sweep.yaml") -> Path:
    path = folder / name
    path.write_text(data if isinstance(data, str) else yaml.safe_dump(data, allow_unicode=True), encoding="utf-8")
    return path


def changed(**changes: Any) -> dict[str, Any]:
    """BASE with dotted keys replaced ("settings.soft.lambda": [...]); the value DELETE removes the key."""
    data = copy.deepcopy(BASE)
    for dotted, value in changes.items():
        *parents, last = dotted.split("__")
        target = data
        for key in parents:
            target = target[key]
        if value is DELETE:
            del target[last]
        else:
            target[last] = value
    return data


DELETE = object()


def test_a_valid_config_reads_into_its_values(folder: Path) -> None:
    config = load_sweep_config(write(folder, BASE))
    assert config.source == folder / "sweep.yaml"
    assert config.model == "rd_qwen3_vl_moe"
    assert config.model_args == "pretrained=/models/ckpt,max_pixels=65536"
    assert config.tasks == ("rd_organism", "rd_organism_see")
    assert config.experts.file == folder / "experts.json"  # relative to the YAML's folder
    assert config.experts.identify is None
    assert config.out_dir == folder / "out"
    assert (config.lmms.batch_size, config.lmms.limit, config.lmms.seed) == (64, 16, 0)
    assert config.lmms.include_path is None  # rd-eval's installed tasks
    assert any(config.include_path.rglob("rd_organism*.yaml")), config.include_path
    soft = config.settings.grid("soft")
    assert soft is not None and soft.lambdas == (0.5, 1.0, 2.0)
    assert soft.bands == (LayerBand((0.25, 0.75)),) and soft.token_scopes == ("all",) and soft.experts == ("domain",)
    random = config.settings.grid("random")
    assert random is not None and random.seeds == (0,) and random.lambdas == (1.0,)
    suppress = config.settings.grid("suppress")
    assert suppress is not None and suppress.lambdas == () and suppress.seeds == ()
    assert config.settings.grid("soft_topk") is None
    assert re.fullmatch(r"[0-9a-f]{16}", config.config_hash)


def test_out_overrides_output_path_and_relative_paths_follow_the_yaml(folder: Path, tmp_path: Path,
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    sub = folder / "configs"
    sub.mkdir()
    DOMAIN.save(sub / "experts.json")
    monkeypatch.chdir(tmp_path)
    config = load_sweep_config(write(sub, BASE))
    assert config.out_dir == sub / "out" and config.experts.file == sub / "experts.json"
    other = load_sweep_config(write(sub, BASE), out=Path("elsewhere"))
    assert other.out_dir == tmp_path / "elsewhere"  # --out is a command-line path: relative to the working folder
    assert other.config_hash == config.config_hash
    assert load_sweep_config(write(sub, changed(output_path=DELETE))).out_dir is None


def test_organism_stands_for_the_shipped_model(folder: Path) -> None:
    config = load_sweep_config(write(folder, changed(model_args="pretrained=@organism,min_pixels=4096")))
    assert config.model_args == f"pretrained={SHIPPED_DIR},min_pixels=4096"
    assert parse_model_args(config.model_args)["pretrained"] == str(SHIPPED_DIR)


def test_identify_step_defaults_and_probe_file(folder: Path) -> None:
    (folder / "probes.jsonl").write_text('{"question": "What is 2+2?"}\n', encoding="utf-8")
    config = load_sweep_config(write(folder, changed(experts={"identify": {"domain": "rd_demo"}})))
    step = config.experts.identify
    assert step is not None and config.experts.file is None
    assert (step.domain, step.general, step.n, step.seed, step.token_scope) == ("rd_demo", "general", 20, 0, "prompt")
    assert step.band == LayerBand((0.25, 0.75))
    by_file = load_sweep_config(write(folder, changed(experts={"identify": {"domain": "probes.jsonl", "n": 1}})))
    assert by_file.experts.identify is not None and by_file.experts.identify.domain == str(folder / "probes.jsonl")


# (changes to BASE or raw YAML text, key path the message names, what it says)
BAD: list[tuple[Any, str, str]] = [
    (changed(modle="x"), "top level", r"unknown key\(s\) modle; valid: model, model_args"),
    (changed(tasks=DELETE), "top level", r"missing required key\(s\) tasks"),
    ("- model\n- tasks\n", "top level", r"need a mapping"),
    ("model: [unclosed\n", "", r"not valid YAML"),
    (changed(model=3), "model", r"3 invalid; need a non-empty string"),
    (changed(tasks=[]), "tasks", r"an empty list"),
    (changed(tasks=["rd_organism", 7]), r"tasks\[1\]", r"7 invalid; need a non-empty string"),
    (changed(tasks=["rd_organism,rd_demo"]), r"tasks\[0\]", r"one per entry"),
    (changed(lmms__batch_size="big"), "lmms.batch_size", r"'big' invalid; need a whole number >= 1"),
    (changed(lmms__batch_size=0), "lmms.batch_size", r"need a whole number >= 1"),
    (changed(lmms__limit=1.5), "lmms.limit", r"a fraction 0 < f < 1"),
    (changed(lmms__limit=True), "lmms.limit", r"True invalid"),
    (changed(lmms__output_path="x"), "lmms", r"unknown key\(s\) output_path"),
    (changed(lmms__include_path="nowhere"), "lmms.include_path", r"not a folder"),
    (changed(settings={"plain": False}), "settings", r"the grid is empty"),
    (changed(settings="all"), "settings", r"need a mapping"),
    (changed(settings__plain="yes please"), "settings.plain", r"need true or false"),
    (changed(settings__sofft={"lambda": [1]}), "settings", r"unknown key\(s\) sofft; valid: plain, soft, soft_topk"),
    (changed(settings__soft={"lambda": []}), "settings.soft.lambda", r"an empty list"),
    (changed(settings__soft={"lambda": [0.5, 1, "big"]}), r"settings\.soft\.lambda\[2\]", r"'big' is not a number"),
    (changed(settings__soft={"lambda": [1, True]}), r"settings\.soft\.lambda\[1\]", r"True is not a number"),
    (changed(settings__soft={"lambda": [float("inf")]}), r"settings\.soft\.lambda\[0\]", r"need a finite number"),
    (changed(settings__soft={"lambda": [1, 1.0]}), r"settings\.soft\.lambda\[1\]", r"repeats an earlier value"),
    (changed(settings__soft={"bands": ["0.8-0.2"]}), r"settings\.soft\.bands\[0\]", r"band '0.8-0.2' invalid"),
    (changed(settings__soft={"bands": ["middle"]}), r"settings\.soft\.bands\[0\]", r"'middle' invalid; use fractions"),
    (changed(settings__soft={"bands": [[0.2, 0.8]]}), r"settings\.soft\.bands\[0\]", r"give a band as quoted text"),
    ("model: m\nmodel_args: pretrained=/m\ntasks: [t]\nexperts: {file: experts.json}\n"
     "settings: {suppress: {bands: [12:13]}}\n",
     r"settings\.suppress\.bands\[0\]", r"733 invalid; give a band as quoted text.*reads 12:13 as the number 733"),
    (changed(settings__soft={"token_scope": ["imag"]}), r"settings\.soft\.token_scope\[0\]",
     r"token scope 'imag' invalid; valid: all, prompt"),
    (changed(settings__soft={"experts": ["both"]}), r"settings\.soft\.experts\[0\]", r"valid expert kinds: domain"),
    (changed(settings__soft={"seeds": [1]}), "settings.soft", r"unknown key\(s\) seeds; valid: lambda, bands"),
    (changed(settings__suppress={"lambda": [1]}), "settings.suppress", r"unknown key\(s\) lambda; valid: bands"),
    (changed(settings__random={"seeds": [-1]}), r"settings\.random\.seeds\[0\]", r"need an integer >= 0"),
    (changed(settings__random={"seeds": [0.5]}), r"settings\.random\.seeds\[0\]", r"need a whole number >= 0"),
    (changed(experts=DELETE), "settings.soft", r"needs domain experts, and the config has no expert step"),
    (changed(settings__soft={"experts": ["domain", "visual"]}), r"settings\.soft\.experts\[1\]",
     r"needs visual experts: add experts.visual_file"),
    (changed(experts={"file": "missing.json"}), "experts.file", r"missing.json: file not found"),
    (changed(experts={"file": "visual.json"}), "experts.file", r"holds visual experts; this key takes a domain"),
    (changed(experts={"file": "experts.json", "identify": {"domain": "rd_demo"}}), "experts", r"not both"),
    (changed(experts={"identify": {"n": 5}}), "experts.identify", r"missing required key\(s\) domain"),
    (changed(experts={"identify": {"domain": "gsm9k"}}), "experts.identify.domain",
     r"'gsm9k' is no probe set; valid: gsm8k"),
    (changed(experts={"identify": {"domain": "probes/none.jsonl"}}), "experts.identify.domain",
     r"probe file .*probes/none.jsonl does not exist"),
    (changed(experts={"identify": {"domain": "rd_demo", "general": "wiki"}}), "experts.identify.general",
     r"'wiki' is no probe set"),
    (changed(experts={"identify": {"domain": "rd_demo", "n": 0}}), "experts.identify.n", r"need a whole number >= 1"),
    (changed(experts={"identify": {"domain": "rd_demo", "band": "1-2"}}), "experts.identify.band",
     r"band '1-2' invalid"),
    (changed(experts={"identify": {"domain": "rd_demo", "token_scope": "x"}}), "experts.identify.token_scope",
     r"valid: all"),
    (changed(experts={"url": "x"}), "experts", r"unknown key\(s\) url; valid: file, identify, visual_file"),
    (changed(model_args="pretrained=/m,intervention_lambda=2"), "model_args",
     r"routing key\(s\) intervention_lambda belong in settings"),
    (changed(model_args="pretrained=/m,routing_dir=/r,record_routing=false"), "model_args",
     r"routing key\(s\) record_routing, routing_dir"),
    (changed(model_args="pretrained=@organism/sub"), "model_args", r"must be a whole value"),
    (changed(model_args=""), "model_args", r"need a non-empty string"),
]


@pytest.mark.parametrize(("data", "key", "message"), BAD, ids=[f"{i}-{b[1]}" for i, b in enumerate(BAD)])
def test_bad_config_names_file_and_key(folder: Path, data: Any, key: str, message: str) -> None:
    path = write(folder, data)
    with pytest.raises(SweepConfigError) as caught:
        load_sweep_config(path)
    text = str(caught.value)
    assert text.startswith(f"{path}: "), text
    assert re.search(f"{path}: {key}" if key else str(path), text), text
    assert re.search(message, text), text


def test_missing_or_unreadable_file(tmp_path: Path) -> None:
    with pytest.raises(SweepConfigError, match=r"nope.yaml: file not found"):
        load_sweep_config(tmp_path / "nope.yaml")
    with pytest.raises(SweepConfigError, match=r"is a folder, not a sweep YAML file"):
        load_sweep_config(tmp_path)
    (tmp_path / "latin1.yaml").write_bytes(b"model: caf\xe9\n")
    with pytest.raises(SweepConfigError, match=r"latin1.yaml: not UTF-8 text"):
        load_sweep_config(tmp_path / "latin1.yaml")


OUTPUT_RELEVANT = {
    "model": "rd_other", "model_args": "pretrained=/models/other", "tasks": ["rd_organism"],
    "experts": {"file": "experts2.json"}, "settings__soft__lambda": [0.5, 1], "settings__soft__bands": ["0.3-0.7"],
    "settings__soft__token_scope": ["image"], "settings__random__seeds": [1], "settings__plain": False,
    "settings__soft_topk": True, "lmms__batch_size": 8, "lmms__limit": 17, "lmms__seed": 1,
    "lmms__gen_kwargs": "max_new_tokens=64", "lmms__include_path": ".",
}


def test_config_hash_follows_every_output_relevant_field_and_not_the_out_dir(folder: Path) -> None:
    ExpertSet(model="m", kind="domain", layers=(LayerExperts(1, (4,)),)).save(folder / "experts2.json")
    base = load_sweep_config(write(folder, BASE)).config_hash
    hashes = {name: load_sweep_config(write(folder, changed(**{name: value}))).config_hash
              for name, value in OUTPUT_RELEVANT.items()}
    assert all(h != base for h in hashes.values()), [n for n, h in hashes.items() if h == base]
    assert len(set(hashes.values())) == len(hashes)
    assert load_sweep_config(write(folder, changed(output_path="another"))).config_hash == base
    assert load_sweep_config(write(folder, BASE), out=folder / "x").config_hash == base
    # The same expert file path with other content is another config.
    ExpertSet(model="m", kind="domain", layers=(LayerExperts(1, (4,)),)).save(folder / "experts.json")
    assert load_sweep_config(write(folder, BASE)).config_hash != base
    # So is an edited probe file of the identification.
    (folder / "probes.jsonl").write_text('{"question": "1+1?"}\n', encoding="utf-8")
    by_probes = changed(experts={"identify": {"domain": "probes.jsonl", "n": 1}})
    first = load_sweep_config(write(folder, by_probes)).config_hash
    (folder / "probes.jsonl").write_text('{"question": "2+2?"}\n', encoding="utf-8")
    assert load_sweep_config(write(folder, by_probes)).config_hash != first


GRID = {"plain": True,
        "soft": {"lambda": [0.5, 1, 2], "bands": ["0.25-0.75", "12:13"], "token_scope": ["all", "image"]},
        "soft_topk": {"lambda": [1]}, "random": {"seeds": [0, 1], "lambda": 2},
        "suppress": {"bands": ["0.25-0.75", "0.5-1"], "experts": ["domain", "visual"]}, "force": True}


def test_grid_order_keys_and_labels(folder: Path) -> None:
    config = load_sweep_config(write(folder, changed(settings=GRID, experts={"file": "experts.json",
                                                                            "visual_file": "visual.json"})))
    settings = expand_settings(config.settings, DOMAIN, VISUAL)
    keys = [s.key for s in settings]
    assert keys == [
        "plain",
        "soft_l0.5_b0.25-0.75", "soft_l1_b0.25-0.75", "soft_l2_b0.25-0.75",
        "soft_l0.5_b0.25-0.75_scope-image", "soft_l1_b0.25-0.75_scope-image", "soft_l2_b0.25-0.75_scope-image",
        "soft_l0.5_bL12.13", "soft_l1_bL12.13", "soft_l2_bL12.13",
        "soft_l0.5_bL12.13_scope-image", "soft_l1_bL12.13_scope-image", "soft_l2_bL12.13_scope-image",
        "soft_topk_l1_b0.25-0.75",
        "random_s0_l2", "random_s1_l2",
        "force",
        "suppress", "suppress_b0.5-1", "suppress_visual", "suppress_b0.5-1_visual",
    ]
    assert len(set(keys)) == len(keys)
    assert all(re.fullmatch(r"[A-Za-z0-9._-]+", k) for k in keys)
    assert [s.key for s in expand_settings(config.settings, DOMAIN, VISUAL)] == keys  # deterministic
    labels = {s.key: s.label for s in settings}
    assert labels["plain"] == "plain"
    assert labels["soft_l1_b0.25-0.75"] == "soft λ=1, domain experts, band 0.25–0.75"
    assert labels["soft_l2_bL12.13_scope-image"] == "soft λ=2, domain experts, layers 12, 13, image tokens"
    assert labels["random_s1_l2"] == "random control, seed 1, λ=2, band 0.25–0.75"
    assert labels["suppress_b0.5-1_visual"] == "suppress visual experts, band 0.5–1"
    assert len(set(labels.values())) == len(labels)
    by_key = {s.key: s for s in settings}
    assert by_key["plain"].spec is None and by_key["plain"].kind == "plain" and by_key["plain"].strength is None
    assert by_key["soft_l0.5_b0.25-0.75"].spec.strength == 0.5 and by_key["soft_l0.5_b0.25-0.75"].strength == 0.5
    assert by_key["suppress_visual"].spec.experts == VISUAL and by_key["suppress_visual"].strength is None
    assert by_key["random_s1_l2"].spec.seed == 1 and by_key["random_s1_l2"].kind == "random"


def test_grid_without_experts_is_refused() -> None:
    from rd_eval.sweep.config import ModeGrid, SettingsGrid

    grid = SettingsGrid(plain=True, modes=(ModeGrid("soft", lambdas=(1.0,), bands=(LayerBand(),),
                                                    token_scopes=("all",), experts=("domain",)),))
    with pytest.raises(ValueError, match=r"settings.soft needs domain experts"):
        expand_settings(grid, None)
    assert [s.key for s in expand_settings(SettingsGrid(plain=True), None)] == ["plain"]


def test_model_args_parse_back_to_the_same_spec(folder: Path) -> None:
    config = load_sweep_config(write(folder, changed(settings=GRID, experts={"file": "experts.json",
                                                                            "visual_file": "visual.json"})))
    for setting in expand_settings(config.settings, DOMAIN, VISUAL):
        spec_path = None
        if setting.spec is not None:
            spec_path = setting.spec.save(folder / "specs" / f"{setting.key}.json")
        routing = folder / "runs" / setting.key / "rd_routing"
        text = setting_model_args(config.model_args, setting, spec_path, routing)
        kwargs = parse_model_args(text)
        settings = pop_routing_settings(kwargs, response_cache=True)  # the hash pins the file, as --use_cache needs
        assert kwargs == {"pretrained": "/models/ckpt", "max_pixels": 65536}  # the base is left for the model
        assert settings.intervention == setting.spec
        assert settings.intervention_hash == setting.intervention_hash
        assert settings.routing_dir == routing and settings.record_routing


def test_model_args_refuse_commas_and_a_missing_spec_path(folder: Path) -> None:
    config = load_sweep_config(write(folder, BASE))
    soft = expand_settings(config.settings, DOMAIN)[1]
    with pytest.raises(ValueError, match=r"routing folder /a,b/r contains a comma"):
        setting_model_args(config.model_args, soft, folder / "s.json", Path("/a,b/r"))
    with pytest.raises(ValueError, match=r"setting soft_l0.5_b0.25-0.75 has an intervention and needs its spec"):
        setting_model_args(config.model_args, soft, None, folder)
    assert isinstance(soft.spec, InterventionSpec)


def test_the_shipped_example_sweeps_the_organism() -> None:
    example = Path(__file__).resolve().parents[1] / "examples" / "demo_sweep.yaml"
    config = load_sweep_config(example, out=Path("/tmp/demo_sweep"))
    assert parse_model_args(config.model_args)["pretrained"] == str(SHIPPED_DIR)
    assert config.model == "rd_qwen3_vl_moe" and "rd_organism" in config.tasks
    assert config.experts.identify is not None and config.out_dir == Path("/tmp/demo_sweep")
    settings = expand_settings(config.settings, DOMAIN)
    assert len(settings) >= 4 and settings[0].key == "plain"
    assert {s.kind for s in settings} >= {"plain", "soft", "random", "suppress"}
