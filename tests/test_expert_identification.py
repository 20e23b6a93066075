"""`rd-eval experts` and probe sets: planted ground-truth recovery on the tiny model, probe files, CLI errors.

The planted model: in the band MoE layers 2..5 of the tiny Qwen3-VL-MoE checkpoint, the router rows of a
known expert set D_l get a component along (mean domain-probe hidden state − mean general-probe hidden
state), so domain text prefers D_l, minus one along (mean image-token − mean text-token hidden state), so
image tokens avoid D_l. Identification must find D_l; image/text routing divergence must peak there; the
soft intervention with the recovered set must bring D_l back on the image forms.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from conftest import load_tiny_model, load_tiny_processor
from routing_contract import encode, record_forward

from rd_eval.analysis.divergence import jsd_base2
from rd_eval.commands.experts import ExpertsConfig, ExpertsInputError, identify, run_experts
from rd_eval.experts.pipeline import probe_routing
from rd_eval.experts.probes import (
    PROBE_DIR_ENV,
    ProbeError,
    load_image_probes,
    load_probe_set,
)
from rd_eval.routing.recording import BatchRouting
from rd_eval.routing.sites import find_router_sites
from rd_eval.routing.spec import ExpertSet, InterventionSpec, LayerBand
from rd_eval.twins.demo_bench import generate_problems, question_block, render_problem

SHARED_DATA = Path("/work/shared/data")
PLANT_LAYERS = (2, 3, 4, 5)  # the default band 0.25-0.75 of 8 MoE layers
N_PROBES = 12
PLANT_GAIN = 3.0  # logits added to D_l per unit of the probe score (+1 domain text, -1 general text / image)


# -- probe sets -------------------------------------------------------------------------------------------
def write_jsonl(path: Path, records: list[dict[str, Any]]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
    return path


def test_builtin_probe_sets_are_deterministic() -> None:
    assert list(load_probe_set("general", 5, seed=3).texts) == list(load_probe_set("general", 5, seed=3).texts)
    assert list(load_probe_set("general", 5, seed=3).texts) != list(load_probe_set("general", 5, seed=4).texts)
    demo = load_probe_set("rd_demo", 4, seed=0)
    assert demo.n == 4 and all(isinstance(t, str) and t for t in demo.texts)
    assert demo.texts == load_probe_set("rd_demo", 4, seed=0).texts
    images = load_image_probes("rd_demo", 2, seed=0)
    assert len(images) == 2 and images[0][0].size[0] > 0 and images[0][1]


def test_synthetic_files_both_schemas(tmp_path: Path) -> None:
    gsm = write_jsonl(tmp_path / "gsm8k_test.jsonl", [{"question": f"q{i}?", "answer": "#### 1"} for i in range(10)])
    alpaca = tmp_path / "alpaca_data.json"
    alpaca.write_text(json.dumps([{"instruction": "Sum these.", "input": "1, 2", "output": "3"},
                                  {"instruction": "Say hi.", "input": "", "output": "hi"},
                                  {"instruction": "", "input": "x", "output": "skipped: empty instruction"}]))
    texts = list(load_probe_set("gsm8k", 4, seed=1, file=gsm).texts)
    assert len(texts) == 4 and set(texts) <= {f"q{i}?" for i in range(10)}
    assert sorted(load_probe_set("alpaca", 2, seed=0, file=alpaca).texts) == ["Say hi.", "Sum these.\n\n1, 2"]
    # A path in place of a name: the schema is recognised from the fields.
    by_path = load_probe_set(str(gsm), 4, seed=1)
    assert by_path.name == "gsm8k" and list(by_path.texts) == texts
    # The probe folder from the environment.
    os.environ[PROBE_DIR_ENV] = str(tmp_path)
    try:
        assert list(load_probe_set("gsm8k", 4, seed=1).texts) == texts
        assert len(load_probe_set("alpaca", 2, seed=0).texts) == 2
    finally:
        del os.environ[PROBE_DIR_ENV]


@pytest.mark.parametrize(
    ("name", "kwargs", "message"),
    [
        ("gsm8k", {}, "--domain-file PATH"),
        ("alpaca", {"file_flag": "--general-file"}, "--general-file PATH"),
        ("mmlu", {}, "valid: gsm8k, alpaca, rd_demo, general"),
        ("general", {"n": 999}, "has only 24 texts"),
        ("general", {"n": 0}, "need an integer >= 1"),
        ("gsm8k", {"file": "/nonexistent/gsm8k.jsonl"}, "does not exist"),
    ],
)
def test_probe_errors_name_what_is_valid(name: str, kwargs: dict[str, Any], message: str,
                                         monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(PROBE_DIR_ENV, raising=False)
    n = kwargs.pop("n", 3)
    with pytest.raises(ProbeError, match=message.replace("(", r"\(")):
        load_probe_set(name, n, 0, **kwargs)


def test_probe_file_with_unknown_schema(tmp_path: Path) -> None:
    bad = write_jsonl(tmp_path / "x.jsonl", [{"prompt": "p"}])
    with pytest.raises(ProbeError, match=r"keys \['prompt'\] match no known schema"):
        load_probe_set(str(bad), 1, 0)
    broken = tmp_path / "y.jsonl"
    broken.write_text("{not json\n")
    with pytest.raises(ProbeError, match="line 1 is not valid JSON"):
        load_probe_set("gsm8k", 1, 0, file=broken)


def test_shared_data_schemas() -> None:
    gsm, alpaca = SHARED_DATA / "gsm8k" / "test.jsonl", SHARED_DATA / "alpaca" / "alpaca_data.jsonl"
    if not (gsm.is_file() and alpaca.is_file()):
        pytest.skip(f"real GSM8K / Alpaca samples not present under {SHARED_DATA}")
    questions = load_probe_set("gsm8k", 20, seed=0, file=gsm)
    assert questions.n == 20 and all(t.endswith("?") or len(t) > 20 for t in questions.texts)
    instructions = load_probe_set("alpaca", 20, seed=0, file=alpaca)
    assert instructions.n == 20 and len(set(instructions.texts)) == 20
    assert load_probe_set(str(alpaca), 20, seed=0).texts == instructions.texts


# -- the planted model ------------------------------------------------------------------------------------
def capture_router_inputs(model: torch.nn.Module, run: Callable[[], None]) -> dict[int, list[torch.Tensor]]:
    """Router inputs [tokens, hidden] per MoE layer during `run()`, via forward pre-hooks on the routers."""
    modules = dict(model.named_modules())
    seen: dict[int, list[torch.Tensor]] = {}
    handles = []
    for site in find_router_sites(model):
        def hook(_: torch.nn.Module, args: tuple, index: int = site.moe_index) -> None:
            seen.setdefault(index, []).append(args[0].reshape(-1, args[0].shape[-1]).detach().clone())
        handles.append(modules[site.module_path].register_forward_pre_hook(hook))
    try:
        with torch.inference_mode():
            run()
    finally:
        for handle in handles:
            handle.remove()
    return seen


def image_forms(problems: list[Any]) -> list[tuple[Any, str]]:
    return [(render_problem(p), question_block(p.question, p.choices)) for p in problems]


def plant(model: torch.nn.Module, processor: Any, domain: list[str], general: list[str],
          images: list[tuple[Any, str]]) -> dict[int, tuple[int, ...]]:
    """Modify the band routers so domain text prefers D_l and image tokens avoid it; returns D_l."""
    dom = capture_router_inputs(model, lambda: probe_routing(model, processor, domain, batch_size=1))
    gen = capture_router_inputs(model, lambda: probe_routing(model, processor, general, batch_size=1))
    masks: list[torch.Tensor] = []

    def run_images() -> None:
        for image, text in images:
            inputs = encode(processor, [(text, image)])
            masks.append((inputs["input_ids"] == model.config.image_token_id).reshape(-1))
            model(**inputs)

    img = capture_router_inputs(model, run_images)
    rng = np.random.default_rng(7)
    modules = dict(model.named_modules())
    planted = {}
    for site in find_router_sites(model):
        if site.moe_index not in PLANT_LAYERS:
            continue
        layer = site.moe_index
        hidden = torch.cat(img[layer])
        mask = torch.cat(masks)
        # A bias-free linear probe (ridge least squares) scoring domain text +1, general text and image
        # tokens -1: routers have no bias, so the probe direction carries the threshold.
        feats = torch.cat([*dom[layer], *gen[layer], hidden])
        n_dom, n_gen = sum(len(x) for x in dom[layer]), sum(len(x) for x in gen[layer])
        target = torch.cat([torch.ones(n_dom), -torch.ones(n_gen), torch.where(mask, -1.0, 1.0)])
        gram = feats.T @ feats + 1e-2 * torch.eye(feats.shape[1])
        direction = torch.linalg.solve(gram, feats.T @ target)
        experts = tuple(sorted(int(e) for e in rng.choice(site.num_experts, size=site.top_k, replace=False)))
        weight = modules[site.module_path].weight
        with torch.no_grad():
            weight[list(experts)] += PLANT_GAIN * direction
        planted[layer] = experts
    return planted


@pytest.fixture(scope="module")
def planted(tiny_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    model, processor = load_tiny_model(tiny_dir), load_tiny_processor(tiny_dir)
    # Planting probes are disjoint from the identification probes (other seeds), like a real domain.
    domain = [p.text_twin for p in generate_problems(N_PROBES, seed=555)]
    general = list(load_probe_set("general", N_PROBES, seed=555).texts)
    sets = plant(model, processor, domain, general, image_forms(generate_problems(N_PROBES, seed=556)))
    folder = tmp_path_factory.mktemp("planted") / "rd-tiny-planted"
    shutil.copytree(tiny_dir, folder, ignore=shutil.ignore_patterns("*.safetensors*"))
    model.save_pretrained(folder)
    return {"model": model, "processor": processor, "sets": sets, "dir": folder}


def precision_recall(found: ExpertSet, truth: dict[int, tuple[int, ...]]) -> tuple[float, float]:
    got = {(layer, e) for (layer, _), experts in found.experts_by_site_key().items() for e in experts}
    want = {(layer, e) for layer, experts in truth.items() for e in experts}
    hits = len(got & want)
    return hits / max(len(got), 1), hits / len(want)


@pytest.fixture(scope="module")
def recovered(planted: dict[str, Any]) -> ExpertSet:
    """Domain experts of the planted model, identified from held-out rd_demo vs general probes."""
    cfg = ExpertsConfig(pretrained=planted["dir"], out=Path("unused.json"), domain="rd_demo", general="general",
                        n=N_PROBES, seed=0)
    return identify(planted["model"], planted["processor"], cfg, "planted")


def test_identify_recovers_planted_domain_experts(planted: dict[str, Any], recovered: ExpertSet) -> None:
    found = recovered
    precision, recall = precision_recall(found, planted["sets"])
    print(f"planted {planted['sets']} found {found.experts_by_site_key()} P={precision:.2f} R={recall:.2f}")
    assert precision >= 0.9 and recall >= 0.9
    assert found.kind == "domain" and [layer.moe_index for layer in found.layers] == list(PLANT_LAYERS)
    assert found.method["domain_probe"]["name"] == "rd_demo" and found.method["n"] == N_PROBES
    assert found.method["band"] == {"fractions": [0.25, 0.75]} and "delta_phi" in found.method["statistic"]


def test_cli_recovers_planted_experts(planted: dict[str, Any], tmp_path: Path) -> None:
    out = tmp_path / "experts.json"
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "CUDA_VISIBLE_DEVICES": ""}
    done = subprocess.run(
        # The interface: the lmms-eval model id and its model_args name the checkpoint.
        [sys.executable, "-m", "rd_eval", "experts", "--model", "rd_qwen3_vl_moe", "--model_args",
         f"pretrained={planted['dir']},device=cpu", "--domain", "rd_demo",
         "--general", "general", "--n", str(N_PROBES), "--out", str(out)],
        capture_output=True, text=True, env=env, check=False, timeout=120,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    found = ExpertSet.load(out)
    assert found.model == str(planted["dir"].absolute())
    precision, recall = precision_recall(found, planted["sets"])
    assert precision >= 0.9 and recall >= 0.9, (found.experts_by_site_key(), planted["sets"])


def paired_routing(model: torch.nn.Module, processor: Any, problems: list[Any],
                   spec: InterventionSpec | None = None) -> tuple[BatchRouting, BatchRouting]:
    """(image-form, text-form) routing of the same problems, batched per form."""
    _, img = record_forward(model, encode(processor, [(q, im) for im, q in image_forms(problems)]), spec)
    _, txt = record_forward(model, encode(processor, [(p.text_twin, None) for p in problems]), spec)
    return img, txt


def mean_frequency(routing: BatchRouting, sets: dict[int, tuple[int, ...]]) -> dict[int, float]:
    """Per planted layer: the mean selection frequency of its experts over the forms' prompt tokens."""
    counts, _, tokens = routing.scoped("prompt")
    phi = counts.sum(axis=0) / tokens.sum()
    return {layer: float(phi[layer, list(experts)].mean()) for layer, experts in sets.items()}


def test_divergence_peaks_in_planted_layers_and_intervention_restores(planted: dict[str, Any],
                                                                     recovered: ExpertSet) -> None:
    model, processor, sets = planted["model"], planted["processor"], planted["sets"]
    problems = generate_problems(8, seed=2024)  # evaluation items: neither planting nor identification probes
    img, txt = paired_routing(model, processor, problems)
    jsd = np.stack([jsd_base2(img.scoped("prompt")[0][i], txt.scoped("prompt")[0][i])
                    for i in range(len(problems))]).mean(axis=0)
    print("JSD per MoE layer:", np.round(jsd, 3).tolist())
    assert set(np.argsort(-jsd)[: len(PLANT_LAYERS)].tolist()) == set(PLANT_LAYERS)

    spec = InterventionSpec(experts=recovered, mode="soft", strength=3.0, band=LayerBand())
    text_freq = mean_frequency(txt, sets)
    before = mean_frequency(img, sets)
    after = mean_frequency(paired_routing(model, processor, problems, spec)[0], sets)
    print("text", text_freq, "image before", before, "image after", after)
    for layer in PLANT_LAYERS:
        assert before[layer] < 0.5 * text_freq[layer]
        assert after[layer] >= 0.8 * text_freq[layer]


def test_visual_experts_avoid_planted_sets(planted: dict[str, Any]) -> None:
    cfg = ExpertsConfig(pretrained=planted["dir"], out=Path("unused.json"), n=6, visual=True)
    found = identify(planted["model"], planted["processor"], cfg, "planted")
    assert found.kind == "visual" and found.method["image_probe"] == "rd_demo"
    for (layer, _), experts in found.experts_by_site_key().items():
        assert not set(experts) & set(planted["sets"][layer])  # image tokens were pushed off D_l


# -- CLI errors -------------------------------------------------------------------------------------------
def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", PROBE_DIR_ENV: ""}
    return subprocess.run([sys.executable, "-m", "rd_eval", "experts", *args], capture_output=True, text=True,
                          env=env, check=False, timeout=120)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--pretrained", "/nonexistent/ckpt"], "no config.json"),
        (["--domain", "mmlu"], "unknown probe set 'mmlu'; valid: gsm8k, alpaca, rd_demo, general"),
        (["--domain", "gsm8k"], "pass --domain-file PATH"),
        (["--domain", "rd_demo", "--general", "alpaca"], "pass --general-file PATH"),
        (["--domain", "rd_demo", "--general", "general", "--band", "0.8-0.2"], "band '0.8-0.2' invalid"),
        (["--domain", "rd_demo", "--general", "general", "--band", "two"], "band 'two' invalid"),
        (["--domain", "rd_demo", "--general", "general", "--band", "9"], "band layers [9] out of range"),
        (["--visual", "--image-probe", "gsm8k"], "unknown --image-probe 'gsm8k'; valid: rd_demo"),
        (["--n", "0"], "--n 0 invalid"),
        (["--model", "rd_qwen3_vl_moe", "--model_args", "device=cpu"], "give the checkpoint"),
    ],
)
def test_cli_errors_exit_2_one_line(tiny_dir: Path, args: list[str], message: str) -> None:
    full = args if "--pretrained" in args or "--model_args" in args else ["--pretrained", str(tiny_dir), *args]
    done = run_cli(*full, "--out", os.devnull + ".json")
    assert done.returncode == 2, done.stderr[-1500:]
    lines = done.stderr.strip().splitlines()
    # One error line, last; only transformers' weight-loading progress (a band checked against the loaded
    # model) may come before it, never a traceback.
    errors = [line for line in lines if line.startswith("rd-eval experts: error:")]
    assert len(errors) == 1 and lines[-1] == errors[0] and message in errors[0], lines
    assert "Traceback" not in done.stderr


def test_run_experts_rejects_missing_probe_file_before_loading(tmp_path: Path, tiny_dir: Path) -> None:
    cfg = ExpertsConfig(pretrained=tiny_dir, out=tmp_path / "e.json", domain="gsm8k",
                        domain_file=tmp_path / "missing.jsonl")
    with pytest.raises(ExpertsInputError, match="missing.jsonl' does not exist"):
        run_experts(cfg)


def test_the_organism_probe_set_is_its_validation_text_prompts_never_a_held_out_one() -> None:
    from rd_eval.organism.benchmark import split_problems
    from rd_eval.organism.prompts import user_text

    probes = load_probe_set("organism", 20, seed=0)
    assert probes.n == 20 and probes.texts == load_probe_set("organism", 20, seed=0).texts
    validation = {user_text(p, "txt") for p in split_problems("validation")}
    heldout = {user_text(p, "txt") for p in split_problems("heldout")}
    assert set(probes.texts) <= validation and not set(probes.texts) & heldout
    assert load_probe_set("organism", 20, seed=1).texts != probes.texts
    with pytest.raises(ProbeError, match="'organism' has only 200 texts"):
        load_probe_set("organism", 201)
