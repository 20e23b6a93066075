"""The rd_qwen3_vl_moe adapter: same answers as lmms-eval's class, per-task batching, image check,
per-document failure isolation, and routing shards that survive a crash."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest
from lmms_eval.api.instance import Instance
from PIL import Image, ImageDraw

from rd_eval.routing.settings import pop_routing_settings
from rd_eval.routing.shards import merge_routing_records, read_routing_records
from rd_eval.routing.spec import ExpertSet, InterventionSpec, LayerExperts, SpecError
from rd_eval.scoring.doc_errors import error_reason, is_error_response

GEN_KWARGS = {"max_new_tokens": 5, "temperature": 0, "do_sample": False, "until": ["\n\n"]}
QUESTIONS = ["What is 12 + 30?", "Which is larger, 7 or 9?", "Total of 3 and 4?", "Name the tallest bar."]


def picture(seed: int) -> Image.Image:
    img = Image.new("RGB", (96, 96), "white")
    ImageDraw.Draw(img).rectangle([10 + seed, 10, 60, 80 - seed], fill=(200, 30 * seed % 255, 40))
    return img


def with_image(doc: dict[str, Any]) -> list[Image.Image]:
    return [picture(doc["seed"])]


def without_image(doc: dict[str, Any]) -> list[Image.Image]:
    return []


def image_as_path(doc: dict[str, Any]) -> list[str]:
    # A dataset that yields file paths: lmms-eval's Qwen3-VL class silently drops non-PIL, non-video visuals.
    return [f"/data/figure_{doc['seed']}.png"]


def unreadable_for_doc_one(doc: dict[str, Any]) -> list[Image.Image]:
    if doc["seed"] == 1:
        return [Image.open(io.BytesIO(b"this is not a png"))]
    return [picture(doc["seed"])]


def make_requests(task: str, doc_to_visual, n: int = 4) -> tuple[list[Instance], dict]:
    docs = [{"seed": i} for i in range(n)]
    requests = [
        Instance(request_type="generate_until", idx=0,
                 arguments=(QUESTIONS[i % len(QUESTIONS)], dict(GEN_KWARGS), doc_to_visual, i, task, "test"),
                 metadata={"task": task, "doc_id": i, "repeats": 1})
        for i in range(n)
    ]
    return requests, {task: {"test": docs}}


@pytest.fixture(scope="module")
def routing_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("routing")


@pytest.fixture(scope="module")
def adapter(tiny_dir: Path, routing_dir: Path):
    from rd_eval_adapters.qwen3_vl_moe import RDQwen3VLMoe

    return RDQwen3VLMoe(pretrained=str(tiny_dir), batch_size=4, routing_dir=str(routing_dir))


def run(adapter, tasks: list[tuple[str, Any]]) -> list[str]:
    requests: list[Instance] = []
    for task, doc_to_visual in tasks:
        task_requests, task_dict = make_requests(task, doc_to_visual)
        requests += task_requests
        adapter.task_dict.update(task_dict)
    return adapter.generate_until(requests)


def records_of(routing_dir: Path, task: str) -> dict[int, dict[str, Any]]:
    return {r["doc_id"]: r for r in merge_routing_records(routing_dir) if r["task"] == task}


def test_answers_equal_lmms_eval_own_class(adapter, tiny_dir: Path) -> None:
    from lmms_eval.models.simple.qwen3_vl import Qwen3_VL

    stock = Qwen3_VL(pretrained=str(tiny_dir), device="cpu", device_map="cpu", batch_size=4)
    requests, task_dict = make_requests("same_img", with_image)
    stock.task_dict.update(task_dict)
    adapter.task_dict.update(task_dict)
    expected = stock.generate_until(requests)
    assert adapter.generate_until(requests) == expected
    assert not any(is_error_response(r) for r in expected)


def test_batches_never_mix_tasks_so_a_text_twin_gets_no_image(adapter, routing_dir: Path) -> None:
    responses = run(adapter, [("mix_img", with_image), ("mix_txt", without_image)])
    assert len(responses) == 8 and not any(is_error_response(r) for r in responses)
    img, txt = records_of(routing_dir, "mix_img"), records_of(routing_dir, "mix_txt")
    assert sorted(img) == sorted(txt) == [0, 1, 2, 3]
    assert all(r["tokens"]["prompt_image"] > 0 and r["form"] == "img" for r in img.values())
    assert all(r["tokens"]["prompt_image"] == 0 and r["form"] == "txt" for r in txt.values())
    # Every selection is counted once per token and layer: counts sum to top_k x tokens.
    for record in img.values():
        for scope, layers in record["counts"].items():
            assert all(sum(layer) == 4 * record["tokens"][scope] for layer in layers)


def test_image_check_fires_on_a_prompt_without_image_tokens_and_the_run_goes_on(adapter, routing_dir: Path) -> None:
    responses = run(adapter, [("check_img", image_as_path), ("check_ok_img", with_image)])
    check, ok = responses[:4], responses[4:]
    assert all(is_error_response(r) and "no image tokens" in error_reason(r) for r in check)
    assert not any(is_error_response(r) for r in ok)
    failed = records_of(routing_dir, "check_img")
    assert sorted(failed) == [0, 1, 2, 3]
    assert all("image check failed" in r["error"] and r["counts"] is None for r in failed.values())


def test_an_unreadable_image_fails_only_its_own_document(adapter, routing_dir: Path) -> None:
    responses = run(adapter, [("broken_img", unreadable_for_doc_one)])
    assert [is_error_response(r) for r in responses] == [False, True, False, False]
    assert "UnidentifiedImageError" in error_reason(responses[1])
    records = records_of(routing_dir, "broken_img")
    assert records[1]["error"] and all(records[i]["error"] is None for i in (0, 2, 3))


def test_intervened_adapter_tags_records_with_the_spec_hash(tiny_dir: Path, tmp_path: Path) -> None:
    from rd_eval_adapters.qwen3_vl_moe import RDQwen3VLMoe

    experts = ExpertSet(model="tiny", kind="domain", layers=(LayerExperts(3, (0, 5)), LayerExperts(4, (1,))))
    experts_path = experts.save(tmp_path / "experts.json")
    model = RDQwen3VLMoe(pretrained=str(tiny_dir), batch_size=4, routing_dir=str(tmp_path / "routing"),
                         expert_set=str(experts_path), intervention_mode="force", intervention_band="3,4")
    spec = model.rd_settings.intervention
    assert spec == InterventionSpec(experts=experts, mode="force", band=spec.band)
    run(model, [("force_img", with_image)])
    records = records_of(tmp_path / "routing", "force_img")
    assert {r["intervention"] for r in records.values()} == {spec.content_hash()}
    for record in records.values():
        for scope in ("prompt_text", "prompt_image", "generated"):
            tokens = record["tokens"][scope]
            assert record["counts"][scope][3][0] == tokens and record["counts"][scope][3][5] == tokens
            assert record["counts"][scope][4][1] == tokens


def test_routing_settings_parse_and_reject(tmp_path: Path) -> None:
    experts = ExpertSet(model="m", kind="domain", layers=(LayerExperts(1, (2,)),))
    spec_path = InterventionSpec(experts=experts, strength=0.5).save(tmp_path / "spec.json")
    kwargs: dict[str, Any] = {"intervention": str(spec_path), "intervention_lambda": "2.0", "max_pixels": 5,
                              "record_routing": "false"}
    settings = pop_routing_settings(kwargs)
    assert kwargs == {"max_pixels": 5}  # the rest goes to lmms-eval's class untouched
    assert settings.intervention.strength == 2.0 and settings.record_routing is False
    assert pop_routing_settings({}).intervention_hash == "none"
    with pytest.raises(SpecError, match="need an expert set"):
        pop_routing_settings({"intervention_lambda": 1.0})
    with pytest.raises(SpecError, match="not both"):
        pop_routing_settings({"intervention": str(spec_path), "expert_set": str(spec_path)})
    with pytest.raises(SpecError, match="intervention_lambda='x' is not a number"):
        pop_routing_settings({"intervention": str(spec_path), "intervention_lambda": "x"})
    with pytest.raises(SpecError, match="record_routing='maybe'"):
        pop_routing_settings({"record_routing": "maybe"})
    with pytest.raises(SpecError, match="mode 'boost' invalid"):
        pop_routing_settings({"intervention": str(spec_path), "intervention_mode": "boost"})


def test_a_run_killed_midway_leaves_readable_shards_of_every_finished_batch(tiny_dir: Path, tmp_path: Path) -> None:
    routing = tmp_path / "routing"
    script = textwrap.dedent(f"""
        import os
        from PIL import Image
        from lmms_eval.api.instance import Instance
        from rd_eval_adapters.qwen3_vl_moe import RDQwen3VLMoe

        def visual(doc):
            if doc["i"] == 9:
                os._exit(9)  # killed in the middle of the third batch, no clean-up of any kind
            return [Image.new("RGB", (64, 64), "white")]

        model = RDQwen3VLMoe(pretrained={str(tiny_dir)!r}, batch_size=4, routing_dir={str(routing)!r})
        model.task_dict["kill_img"] = {{"test": [{{"i": i}} for i in range(12)]}}
        gen = {{"max_new_tokens": 3, "temperature": 0, "until": ["\\n\\n"]}}
        # Same prompt length everywhere keeps lmms-eval's length-sorted batches in doc order.
        reqs = [Instance("generate_until", ("Q", dict(gen), visual, i, "kill_img", "test"), 0,
                         {{"task": "kill_img", "doc_id": i, "repeats": 1}}) for i in range(12)]
        model.generate_until(reqs)
    """)
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=600,
                            env={**os.environ, "HF_HUB_OFFLINE": "1"}, check=False)
    assert result.returncode == 9, result.stderr[-2000:]
    records = list(read_routing_records(routing))
    assert sorted(r["doc_id"] for r in records) == list(range(8))  # two finished batches of four
    assert all(r["error"] is None and r["tokens"]["prompt_image"] > 0 for r in records)
    json.loads((routing / "routing_rank000.jsonl").read_text().splitlines()[-1])  # last line intact


def test_rd_qwen3_5_moe_records_routing_through_lmms_eval_class(tmp_path: Path) -> None:
    from lmms_eval.models.simple.qwen3_5 import Qwen3_5
    from rd_eval_adapters.qwen3_vl_moe import RDQwen3_5Moe

    from rd_eval.models.tiny import make_tiny

    checkpoint = make_tiny("qwen3_5_moe", tmp_path / "rd-tiny-qwen3_5_moe-A1B", seed=0)
    model = RDQwen3_5Moe(pretrained=str(checkpoint), batch_size=4, routing_dir=str(tmp_path / "routing"))
    assert isinstance(model, Qwen3_5) and type(model.model).__name__ == "Qwen3_5MoeForConditionalGeneration"
    responses = run(model, [("q35_img", with_image), ("q35_txt", without_image)])
    assert len(responses) == 8 and not any(is_error_response(r) for r in responses)
    records = merge_routing_records(tmp_path / "routing")
    assert {r["model"] for r in records} == {"rd_qwen3_5_moe"} and len(records) == 8
    assert all(len(r["counts"]["prompt_text"]) == 4 for r in records)  # four MoE layers


def test_the_model_class_comes_from_config_json_not_the_checkpoint_name(tmp_path: Path) -> None:
    """lmms-eval's Qwen classes choose the MoE class by the name (A<digits>B); any folder name loads here, and
    a checkpoint of another model_type is refused by what its config.json says."""
    from rd_eval_adapters.qwen3_vl_moe import RDQwen3_5Moe, RDQwen3VLMoe

    def folder(name: str, model_type: str) -> str:
        path = tmp_path / name
        path.mkdir()
        (path / "config.json").write_text(json.dumps({"model_type": model_type}))
        return str(path)

    with pytest.raises(ValueError, match=r"model_type 'qwen3_vl' in its config.json; rd_qwen3_vl_moe runs "
                                         r"model_type 'qwen3_vl_moe' only \(a dense checkpoint"):
        RDQwen3VLMoe(pretrained=folder("Qwen3-VL-30B-A3B-dense", "qwen3_vl"))
    with pytest.raises(ValueError, match=r"model_type 'qwen3_5_moe' .* \(use --model rd_qwen3_5_moe\)"):
        RDQwen3VLMoe(pretrained=folder("step_1000", "qwen3_5_moe"))
    with pytest.raises(ValueError, match=r"rd_qwen3_5_moe runs model_type 'qwen3_5_moe' only \(a dense"):
        RDQwen3_5Moe(pretrained=folder("step_2000", "qwen3_5"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="no config.json in the folder"):
        RDQwen3VLMoe(pretrained=str(tmp_path / "empty"))
    with pytest.raises(ValueError, match="no such checkpoint folder"):
        RDQwen3VLMoe(pretrained=str(tmp_path / "missing-A3B"))


def test_error_responses_are_not_cached(adapter) -> None:
    cached: list[str] = []

    class Recorder:
        def add_partial(self, kind: str, key: tuple, value: str) -> None:
            cached.append(value)

    original = adapter.cache_hook
    adapter.cache_hook = Recorder()
    try:
        responses = run(adapter, [("cache_img", unreadable_for_doc_one)])
    finally:
        adapter.cache_hook = original
    assert sum(is_error_response(r) for r in responses) == 1
    assert len(cached) == 3 and not any(is_error_response(v) for v in cached)


def test_lmms_eval_options_are_read_without_ever_exiting() -> None:
    from rd_eval_adapters.routing_adapter import output_path_from_argv, response_cache_from_argv

    argv = ["--model", "rd_aria", "--output_path", "out", "--use_cache", "cache", "--log_samples"]
    assert output_path_from_argv(argv) == "out" and response_cache_from_argv(argv)
    assert response_cache_from_argv(["-c", "cache"])  # lmms-eval's short form
    # `python -c ...` leaves "-c" in argv without a value: not lmms-eval's CLI, so no options, no exit.
    assert output_path_from_argv(["-c"]) is None and not response_cache_from_argv(["-c"])
    assert output_path_from_argv([]) is None
