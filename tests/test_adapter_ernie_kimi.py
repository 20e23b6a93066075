"""rd_ernie4_5_vl_moe and rd_kimi_vl: lmms-eval's CLI end to end, batch-size invariance (left padding), the
no-op and force interventions, and the refusals, on the tiny random ERNIE-4.5-VL (built once per module).

Kimi-VL runs only with its checkpoint's own remote code, which cannot be downloaded here; these tests cover
what does not need it (refusals, and which Auto class its real config.json selects). Its router math and
module layout are covered by tests/test_family_kimi_vl.py on a stand-in model.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from lmms_eval.api.instance import Instance
from PIL import Image, ImageDraw

from rd_eval.lmms.runs import find_runs, load_paired_samples
from rd_eval.routing.shards import merge_routing_records
from rd_eval.routing.spec import ExpertSet, LayerExperts
from rd_eval.scoring.doc_errors import error_reason, is_error_response

OFFLINE = {"HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
KIMI_CONFIG = Path(__file__).resolve().parents[2] / "shared/reference/configs/moonshotai__Kimi-VL-A3B-Instruct"
GEN_KWARGS = {"max_new_tokens": 4, "temperature": 0, "do_sample": False, "until": ["\n\n"]}
# Prompts of different lengths, so that a batch of four is left-padded.
QUESTIONS = ["What is 12 + 30?", "Which is larger, 7 or 9? Answer with the number only, please.", "Sum?",
             "Name the tallest bar in the chart and give its value."]
NUM_MOE = 5  # the tiny ERNIE: decoder layers 1..5 are MoE, each with a text and a vision router
TEXT_SITES = [2 * m for m in range(NUM_MOE)]
VISION_SITES = [2 * m + 1 for m in range(NUM_MOE)]
BAND = (1, 2, 3)  # the default band (fractions 0.25-0.75) of 5 MoE layers


pytestmark = pytest.mark.usefixtures("one_thread")




def picture(seed: int) -> Image.Image:
    img = Image.new("RGB", (64 + 8 * seed, 64), "white")
    ImageDraw.Draw(img).rectangle([8 + seed, 8, 40, 56 - seed], fill=(200, 30 * seed % 255, 40))
    return img


def with_image(doc: dict[str, Any]) -> list[Image.Image]:
    return [picture(doc["seed"])]


def without_image(doc: dict[str, Any]) -> list[Image.Image]:
    return []


def video_for_doc_one(doc: dict[str, Any]) -> list[Any]:
    # A video path: the generic class passes images only, so this image-form prompt gets no image tokens.
    return ["/data/clip_1.mp4"] if doc["seed"] == 1 else [picture(doc["seed"])]


def run(model, tasks: list[tuple[str, Any]]) -> list[str]:
    requests: list[Instance] = []
    for task, doc_to_visual in tasks:
        requests += [
            Instance(request_type="generate_until", idx=0,
                     arguments=(QUESTIONS[i], dict(GEN_KWARGS), doc_to_visual, i, task, "test"),
                     metadata={"task": task, "doc_id": i, "repeats": 1})
            for i in range(4)
        ]
        model.task_dict[task] = {"test": [{"seed": i} for i in range(4)]}
    return model.generate_until(requests)


def ernie(ernie_dir: Path, routing: Path | None = None, **kwargs: Any):
    from rd_eval_adapters.ernie4_5_vl_moe import RDErnie4_5VLMoe

    settings = {"routing_dir": str(routing)} if routing is not None else {"record_routing": "false"}
    return RDErnie4_5VLMoe(pretrained=str(ernie_dir), **settings, **kwargs)


def by_doc(routing: Path) -> dict[tuple[str, int], dict[str, Any]]:
    """Records by (task, doc_id), counts and prob_sums as {scope: array [site, expert]} (any record version)."""
    records = {}
    for record in merge_routing_records(routing):
        for name in ("counts", "prob_sums"):
            if record[name] is not None:
                record[name] = {scope: np.asarray(value) for scope, value in record[name].items()}
        records[(record["task"], record["doc_id"])] = record
    return records


def same_arrays(a: dict[str, np.ndarray], b: dict[str, np.ndarray]) -> bool:
    return sorted(a) == sorted(b) and all(np.array_equal(a[scope], b[scope]) for scope in a)


def text_experts(experts: tuple[int, ...]) -> ExpertSet:
    return ExpertSet(model="tiny", kind="domain", layers=tuple(LayerExperts(m, experts, group="text") for m in BAND))


# -- lmms-eval's own command line ------------------------------------------------------------------------
def test_python_m_lmms_eval_runs_rd_demo_with_routing_records(ernie_dir: Path, tmp_path: Path) -> None:
    tasks_path = subprocess.run([sys.executable, "-m", "rd_eval", "tasks-path"], capture_output=True, text=True,
                                check=True).stdout.strip()
    out = tmp_path / "out"
    command = [sys.executable, "-m", "lmms_eval", "--model", "rd_ernie4_5_vl_moe", "--model_args",
               f"pretrained={ernie_dir}", "--tasks", "rd_demo", "--include_path", tasks_path, "--limit", "4",
               "--batch_size", "4", "--log_samples", "--output_path", str(out)]
    env = {**os.environ, **OFFLINE, "LMMS_EVAL_DATASETS_CACHE": str(tmp_path / "datasets_cache")}
    result = subprocess.run(command, capture_output=True, text=True, env=env, timeout=600, check=False)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    runs = find_runs(out)
    assert len(runs) == 1
    results = json.loads(runs[0].results_path.read_text())
    assert results["config"]["model"] == "rd_ernie4_5_vl_moe"
    assert set(runs[0].samples) == {"rd_demo_img", "rd_demo_txt"}
    samples = load_paired_samples(runs[0])
    assert len(samples) == 8
    routing_dirs = list((out / "rd_routing").iterdir())
    assert [d.name for d in routing_dirs] == [f"{ernie_dir.parent.name}__{ernie_dir.name}__none"]
    records = list(by_doc(routing_dirs[0]).values())
    assert len(records) == 8 and {r["model"] for r in records} == {"rd_ernie4_5_vl_moe"}
    assert all(r["error"] is None and len(r["counts"]["prompt_text"]) == 2 * NUM_MOE for r in records)
    # Every record names the adapter's site table: which MoE layer and group (text / vision) each row is.
    assert all(r["site_table"] is not None and len(r["site_table"]) == 2 * NUM_MOE for r in records)
    assert [row.group for row in records[0]["site_table"].rows] == ["text", "vision"] * NUM_MOE
    img = [r for r in records if r["form"] == "img"]
    txt = [r for r in records if r["form"] == "txt"]
    assert len(img) == len(txt) == 4
    # Image forms carry image tokens, text twins none; ERNIE's vision experts see only the former.
    assert all(r["tokens"]["prompt_image"] > 0 for r in img)
    assert all(r["tokens"]["prompt_image"] == 0 for r in txt)
    for record in img:
        per_site = record["counts"]["prompt_image"][VISION_SITES].sum(axis=1)
        assert (per_site == 4 * record["tokens"]["prompt_image"]).all()
    for record in txt:
        assert all(counts[VISION_SITES].sum() == 0 for counts in record["counts"].values())


# -- in process --------------------------------------------------------------------------------------------
def test_batch_of_four_equals_one_by_one_and_the_plain_class(ernie_dir: Path, tmp_path: Path) -> None:
    from rd_eval_adapters.hf_image_text import HFImageTextModel

    one = ernie(ernie_dir, tmp_path / "bs1", batch_size=1)
    four = ernie(ernie_dir, tmp_path / "bs4", batch_size=4)
    plain = HFImageTextModel(pretrained=str(ernie_dir), batch_size=4)
    tasks = [("pad_img", with_image), ("pad_txt", without_image)]
    expected = run(one, tasks)
    assert not any(is_error_response(r) for r in expected)
    assert run(four, tasks) == expected
    assert run(plain, tasks) == expected
    # The batch really is left-padded, and every ERNIE input reaches generate.
    chunk = [(QUESTIONS[i], dict(GEN_KWARGS), with_image, i, "pad_img", "test") for i in range(4)]
    inputs = four._rd_prepare_batch(chunk).inputs
    assert {"mm_token_type_ids", "moe_mm_token_type_ids", "pixel_values", "image_grid_thw"} <= set(inputs)
    mask = inputs["attention_mask"]
    assert bool((mask[:, 0] == 0).any()) and bool((mask[:, -1] == 1).all())
    # Routing per document is the same alone and in a padded batch: padding is never counted.
    alone, batched = by_doc(tmp_path / "bs1"), by_doc(tmp_path / "bs4")
    assert sorted(alone) == sorted(batched) and len(alone) == 8
    for key, record in alone.items():
        assert record["tokens"] == batched[key]["tokens"]
        assert same_arrays(record["counts"], batched[key]["counts"]), key


def test_lambda_zero_is_bit_identical_and_force_reroutes_the_band(ernie_dir: Path, tmp_path: Path) -> None:
    experts = text_experts((3, 11)).save(tmp_path / "experts.json")
    base = ernie(ernie_dir, tmp_path / "none", batch_size=4)
    noop = ernie(ernie_dir, tmp_path / "noop", batch_size=4, expert_set=str(experts), intervention_mode="soft",
                 intervention_lambda=0.0)
    forced = ernie(ernie_dir, tmp_path / "force", batch_size=4, expert_set=str(experts), intervention_mode="force")
    tasks = [("iv_img", with_image)]
    answers = run(base, tasks)
    assert run(noop, tasks) == answers
    run(forced, tasks)
    plain, zero, force = by_doc(tmp_path / "none"), by_doc(tmp_path / "noop"), by_doc(tmp_path / "force")
    assert {r["intervention"] for r in zero.values()} == {noop.rd_settings.intervention_hash} != {"none"}
    for key, record in plain.items():
        assert same_arrays(zero[key]["counts"], record["counts"])
        assert same_arrays(zero[key]["prob_sums"], record["prob_sums"])
        assert zero[key]["tokens"] == record["tokens"]
    changed = False
    for key, record in force.items():
        for m in range(NUM_MOE):
            site = TEXT_SITES[m]
            for scope in ("prompt_text", "generated"):
                tokens = record["tokens"][scope]
                hits = [int(record["counts"][scope][site][e]) for e in (3, 11)]
                if m in BAND:
                    assert hits == [tokens, tokens], (key, m, scope)
                elif m < BAND[0] and scope == "prompt_text":  # generated tokens may differ
                    assert np.array_equal(record["counts"][scope][site], plain[key]["counts"][scope][site])
            prompt_text = record["counts"]["prompt_text"][site]
            changed |= not np.array_equal(prompt_text, plain[key]["counts"]["prompt_text"][site])
        # Vision routers are not steered: the band's first layer reads the same input, so it is unchanged.
        first_vision = VISION_SITES[BAND[0]]
        assert np.array_equal(record["counts"]["prompt_image"][first_vision],
                              plain[key]["counts"]["prompt_image"][first_vision])
    assert changed


def test_an_image_doc_without_image_tokens_fails_alone_and_the_run_goes_on(ernie_dir: Path, tmp_path: Path) -> None:
    model = ernie(ernie_dir, tmp_path / "routing", batch_size=4)
    responses = run(model, [("check_img", video_for_doc_one), ("check_txt", without_image)])
    assert [is_error_response(r) for r in responses] == [False, True, False, False] + [False] * 4
    assert "no image tokens" in error_reason(responses[1])
    records = by_doc(tmp_path / "routing")
    assert "image check failed" in records["check_img", 1]["error"] and records["check_img", 1]["counts"] is None
    assert all(records[key]["error"] is None for key in records if key != ("check_img", 1))


def test_vision_tokens_without_ernie_token_types_are_refused(ernie_dir: Path) -> None:
    model = ernie(ernie_dir, batch_size=4)

    class DropsTokenTypes:
        def __init__(self, processor: Any) -> None:
            self._processor = processor

        def __getattr__(self, name: str) -> Any:
            return getattr(self._processor, name)

        def __call__(self, **kwargs: Any) -> Any:
            inputs = self._processor(**kwargs)
            del inputs["moe_mm_token_type_ids"]
            return inputs

    model.processor = DropsTokenTypes(model.processor)
    responses = run(model, [("types_img", with_image), ("types_txt", without_image)])
    assert all(is_error_response(r) and "moe_mm_token_type_ids" in error_reason(r) for r in responses[:4])
    assert not any(is_error_response(r) for r in responses[4:])  # text prompts have no vision tokens to route


# -- refusals ----------------------------------------------------------------------------------------------
def config_folder(tmp_path: Path, name: str, config: dict[str, Any]) -> Path:
    folder = tmp_path / name
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps(config))
    return folder


def test_ernie_refuses_bad_folders_and_other_model_types(tmp_path: Path) -> None:
    from rd_eval_adapters.ernie4_5_vl_moe import RDErnie4_5VLMoe

    with pytest.raises(ValueError, match="no such checkpoint folder"):
        RDErnie4_5VLMoe(pretrained=str(tmp_path / "missing"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="no config.json"):
        RDErnie4_5VLMoe(pretrained=str(tmp_path / "empty"))
    qwen = config_folder(tmp_path, "qwen", {"model_type": "qwen3_vl_moe"})
    with pytest.raises(ValueError, match=r"model_type 'qwen3_vl_moe'; rd_ernie4_5_vl_moe runs model_type "
                                         r"'ernie4_5_vl_moe' only \(use --model rd_qwen3_vl_moe\)"):
        RDErnie4_5VLMoe(pretrained=str(qwen))
    remote = config_folder(tmp_path, "remote", {"model_type": "ernie4_5_moe_vl"})
    with pytest.raises(ValueError, match="remote-code layout of ERNIE-4.5-VL; load transformers-native weights"):
        RDErnie4_5VLMoe(pretrained=str(remote))
    with pytest.raises(TypeError, match=r"unknown model_args \['max_pixels'\]"):
        RDErnie4_5VLMoe(pretrained=str(qwen), max_pixels=5)
    with pytest.raises(ValueError, match="dtype='int8' invalid"):
        from rd_eval_adapters.hf_image_text import _parse_dtype

        _parse_dtype("int8")


def test_kimi_refuses_what_it_cannot_run(ernie_dir: Path, tmp_path: Path) -> None:
    from rd_eval_adapters.kimi_vl import RDKimiVL

    with pytest.raises(ValueError, match="no such checkpoint folder"):
        RDKimiVL(pretrained=str(tmp_path / "Kimi-VL-A3B-Instruct"))
    with pytest.raises(ValueError, match=r"model_type 'ernie4_5_vl_moe'; rd_kimi_vl runs model_type 'kimi_vl' only "
                                         r"\(use --model rd_ernie4_5_vl_moe\)"):
        RDKimiVL(pretrained=str(ernie_dir))


def test_kimi_real_config_needs_its_remote_code_and_picks_the_causal_lm_auto_class(tmp_path: Path) -> None:
    """Kimi-VL-A3B-Instruct's real config.json (from /work/shared/reference): no remote code may run unless
    asked, missing code files are named, and its auto map sends loading to AutoModelForCausalLM."""
    if not (KIMI_CONFIG / "config.json").is_file():
        pytest.skip(f"{KIMI_CONFIG} not present")
    from rd_eval_adapters.hf_image_text import auto_model_class
    from rd_eval_adapters.kimi_vl import RDKimiVL
    from transformers import AutoModelForCausalLM

    folder = tmp_path / "Kimi-VL-A3B-Instruct"
    shutil.copytree(KIMI_CONFIG, folder)
    with pytest.raises(ValueError, match="add trust_remote_code=true"):
        RDKimiVL(pretrained=str(folder))
    with pytest.raises(ValueError, match="missing from the folder: configuration_kimi_vl.py, modeling_kimi_vl.py"):
        RDKimiVL(pretrained=str(folder), trust_remote_code="true")
    config_dict = json.loads((folder / "config.json").read_text())
    assert auto_model_class(str(folder), None, config_dict, True) is AutoModelForCausalLM
    with pytest.raises(ValueError, match="neither AutoModelForImageTextToText nor AutoModelForCausalLM"):
        auto_model_class(str(folder), None, config_dict, False)
