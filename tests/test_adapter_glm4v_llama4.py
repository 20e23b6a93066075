"""rd_glm4v_moe and rd_llama4: lmms-eval's GLM4V / Llama4Scout classes plus routing records and the intervention.

Each family runs on a tiny random checkpoint (bfloat16, as the stock classes load it) on rd_demo requests
built exactly as lmms-eval builds them from the task YAMLs.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from importlib import import_module
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from adapter_requests import (
    DOCS,
    N_DOCS,
    RD_DEMO_GEN,
    UTILS,
    GenerateCalls,
    assert_same_calls,
    rd_demo_requests,
    records_of,
    run,
)

from rd_eval.routing.spec import ExpertSet, LayerExperts
from rd_eval.scoring.doc_errors import error_reason, is_error_response

SHORT_GEN = {**RD_DEMO_GEN, "max_new_tokens": 3}
BAND = (1, 2)  # MoE-layer indices the force-mode intervention steers


@dataclass(frozen=True)
class Family:
    name: str
    stock_class: str
    adapter_class: str
    moe_layers: int
    forced: tuple[int, ...]  # experts forced in the band (within top-k; one expert group for GLM)

    def load(self, path: str) -> type:
        module, _, cls = path.rpartition(".")
        return getattr(import_module(module), cls)


FAMILIES = {
    "glm4v_moe": Family("glm4v_moe", "lmms_eval.models.simple.glm4v.GLM4V", "rd_eval_adapters.glm4v_moe.RDGlm4vMoe",
                        moe_layers=5, forced=(0, 5)),
    "llama4": Family("llama4", "lmms_eval.models.simple.llama4_scout.Llama4Scout",
                     "rd_eval_adapters.llama4.RDLlama4", moe_layers=4, forced=(3,)),
}


@pytest.fixture(scope="module", params=sorted(FAMILIES))
def family(request: pytest.FixtureRequest) -> Family:
    return FAMILIES[request.param]


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    from rd_eval.models.tiny import make_tiny

    root = tmp_path_factory.mktemp("tiny")
    return {name: make_tiny(name, root / f"rd-tiny-{name}", seed=0) for name in FAMILIES}


@pytest.fixture(scope="module")
def routing_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("routing")


@pytest.fixture(scope="module")
def adapter(family: Family, checkpoints: dict[str, Path], routing_root: Path) -> Any:
    """The plain adapter (no intervention) of the family; it records into routing_root/<family>."""
    return family.load(family.adapter_class)(pretrained=str(checkpoints[family.name]), batch_size=4,
                                             routing_dir=str(routing_root / family.name))


# -- (a) same answers as lmms-eval's own class; routing records per document --------------------------------
def test_answers_and_generate_calls_equal_lmms_eval_own_class(family: Family, adapter: Any,
                                                              checkpoints: dict[str, Path], routing_root: Path,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    stock = family.load(family.stock_class)(pretrained=str(checkpoints[family.name]), device="cpu",
                                            device_map="cpu", batch_size=4)
    # The one intended difference: the adapter pads batches on the left (the tiny tokenizers, like some real
    # ones, default to the right, where batched generation continues rows after their padding).
    stock.processor.tokenizer.padding_side = "left"
    stock_calls, our_calls = GenerateCalls(stock.model), GenerateCalls(adapter.model)
    monkeypatch.setattr(stock.model, "generate", stock_calls)
    monkeypatch.setattr(adapter.model, "generate", our_calls)
    img, txt = rd_demo_requests("img"), rd_demo_requests("txt")
    # The stock loop applies a batch's first doc_to_visual to all of its docs, so give it one task at a time.
    expected = run(stock, img) + run(stock, txt)
    answers = run(adapter, img, txt)  # ours batches per task by itself
    assert answers == expected
    assert not any(is_error_response(a) for a in answers)
    # Not only the answers: the very same inputs and generate settings reach the model.
    assert_same_calls(stock_calls.calls, our_calls.calls)
    assert len(our_calls.calls) == 2  # one batch per task

    routing_dir = routing_root / family.name
    img_records, txt_records = records_of(routing_dir, "rd_demo_img"), records_of(routing_dir, "rd_demo_txt")
    assert sorted(img_records) == sorted(txt_records) == list(range(N_DOCS))
    for record in [*img_records.values(), *txt_records.values()]:
        assert record["model"] == adapter.rd_model_id and record["intervention"] == "none"
        assert record["error"] is None and len(record["counts"]["prompt_text"]) == family.moe_layers
    assert all(r["form"] == "img" and r["tokens"]["prompt_image"] > 0 for r in img_records.values())
    assert all(r["form"] == "txt" and r["tokens"]["prompt_image"] == 0 for r in txt_records.values())


# -- (b) the intervention: lambda 0 changes nothing, force steers the band ----------------------------------
def test_soft_lambda_zero_is_bit_identical_and_force_steers_the_band(family: Family, adapter: Any,
                                                                    checkpoints: dict[str, Path],
                                                                    routing_root: Path, tmp_path: Path) -> None:
    experts = ExpertSet(model="tiny", kind="domain", layers=tuple(LayerExperts(i, family.forced) for i in BAND))
    experts_path = experts.save(tmp_path / "experts.json")
    adapter_cls, pretrained = type(adapter), str(checkpoints[family.name])
    requests = rd_demo_requests("img", SHORT_GEN, task="short_img")
    plain_answers = run(adapter, requests)
    assert not any(is_error_response(a) for a in plain_answers)

    zero = adapter_cls(pretrained=pretrained, batch_size=4, routing_dir=str(tmp_path / "zero"),
                       expert_set=str(experts_path), intervention_mode="soft", intervention_lambda="0",
                       intervention_band=",".join(map(str, BAND)))
    assert zero.rd_settings.intervention.strength == 0.0
    assert run(zero, requests) == plain_answers
    zero_hash = zero.rd_settings.intervention_hash
    del zero
    base = records_of(routing_root / family.name, "short_img")
    zero_records = records_of(tmp_path / "zero", "short_img")
    assert zero_hash != "none" and {r["intervention"] for r in zero_records.values()} == {zero_hash}
    for doc_id, record in zero_records.items():
        for stat in ("counts", "prob_sums"):
            for scope, values in record[stat].items():
                np.testing.assert_array_equal(values, base[doc_id][stat][scope])

    forced = adapter_cls(pretrained=pretrained, batch_size=4, routing_dir=str(tmp_path / "force"),
                         expert_set=str(experts_path), intervention_mode="force",
                         intervention_band=",".join(map(str, BAND)))
    run(forced, requests)
    force_hash = forced.rd_settings.intervention_hash
    del forced
    force_records = records_of(tmp_path / "force", "short_img")
    assert sorted(force_records) == list(range(N_DOCS))
    for doc_id, record in force_records.items():
        assert record["intervention"] == force_hash and record["error"] is None
        for scope in ("prompt_text", "prompt_image"):
            tokens = record["tokens"][scope]
            assert tokens == base[doc_id]["tokens"][scope] and tokens > 0
            counts, before = np.asarray(record["counts"][scope]), np.asarray(base[doc_id]["counts"][scope])
            band = list(BAND)
            assert (counts[band][:, list(family.forced)] == tokens).all()  # every token picks every forced expert
            assert not np.array_equal(counts[band], before[band])
            np.testing.assert_array_equal(counts[0], before[0])  # the layer before the band is untouched


# -- (c) error paths --------------------------------------------------------------------------------------------
def test_a_dense_glm_checkpoint_is_refused_by_its_model_type_not_its_name(tmp_path: Path) -> None:
    """lmms-eval's GLM4V loads any name containing "Flash" as the dense model; here config.json decides."""
    from rd_eval_adapters.glm4v_moe import RDGlm4vMoe

    dense = tmp_path / "glm-dense"
    dense.mkdir()
    (dense / "config.json").write_text(json.dumps({"model_type": "glm4v"}))
    with pytest.raises(ValueError, match=r"model_type 'glm4v' in its config.json; rd_glm4v_moe runs model_type "
                                         r"'glm4v_moe' only \(a dense GLM-4.xV such as GLM-4.6V-Flash"):
        RDGlm4vMoe(pretrained=str(dense))
    flash = tmp_path / "GLM-4.6V-Flash"
    flash.mkdir()
    with pytest.raises(ValueError, match="no config.json in the folder"):
        RDGlm4vMoe(pretrained=str(flash))


def test_a_moe_glm_checkpoint_named_flash_loads_the_moe_class(checkpoints: dict[str, Path], tmp_path: Path) -> None:
    from rd_eval_adapters.glm4v_moe import RDGlm4vMoe
    from transformers import Glm4vMoeForConditionalGeneration

    flash = tmp_path / "GLM-4.6V-Flash-finetune"
    shutil.copytree(checkpoints["glm4v_moe"], flash)
    model = RDGlm4vMoe(pretrained=str(flash), record_routing="false")
    assert type(model.model) is Glm4vMoeForConditionalGeneration


@pytest.mark.parametrize("name", sorted(FAMILIES))
def test_a_missing_checkpoint_folder_is_refused(name: str, tmp_path: Path) -> None:
    family = FAMILIES[name]
    with pytest.raises(ValueError, match="no such checkpoint folder"):
        family.load(family.adapter_class)(pretrained=str(tmp_path / "missing"))


def test_an_image_prompt_without_image_tokens_fails_only_its_document(family: Family, adapter: Any,
                                                                     routing_root: Path,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    # lmms-eval's GLM4V and Llama4Scout never drop an image (unlike its Qwen3-VL, which drops file paths), so
    # lose doc 1's image where the message is built: its prompt then reaches the model without image tokens.
    def visual_with_a_marker(doc: dict[str, Any]) -> list[Any]:
        images = UTILS.doc_to_visual_img(doc)
        images[0].info["rd_test_drop"] = doc is DOCS[1]
        return images

    def drop_marked(visual: Any) -> list[dict[str, Any]]:
        if visual.info.get("rd_test_drop"):
            return []
        return type(adapter)._rd_visual_parts(adapter, visual)

    monkeypatch.setattr(adapter, "_rd_visual_parts", drop_marked)
    # Two docs per task keep it short: the image batch fails its check, is rerun doc by doc, the text batch follows.
    responses = run(adapter, rd_demo_requests("img", SHORT_GEN, task="check_img", n=2,
                                              doc_to_visual=visual_with_a_marker),
                    rd_demo_requests("txt", SHORT_GEN, task="check_txt", n=2))
    assert [is_error_response(r) for r in responses] == [False, True, False, False]
    assert "no image tokens" in error_reason(responses[1])
    records = records_of(routing_root / family.name, "check_img")
    assert sorted(records) == [0, 1]
    assert "image check failed" in records[1]["error"] and records[1]["counts"] is None
    assert records[0]["error"] is None and records[0]["tokens"]["prompt_image"] > 0
    assert sorted(records_of(routing_root / family.name, "check_txt")) == [0, 1]
