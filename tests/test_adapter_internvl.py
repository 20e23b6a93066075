"""rd_internvl_moe: lmms-eval's InternVLHf (a chat model) answering simple requests, plus routing records and
the intervention, on a tiny random InternVL checkpoint with a Qwen3-MoE language model."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from adapter_requests import DOCS, N_DOCS, RD_DEMO_GEN, UTILS, GenerateCalls, rd_demo_requests, records_of, run
from lmms_eval.api.instance import Instance

from rd_eval.routing.spec import ExpertSet, LayerExperts
from rd_eval.scoring.doc_errors import error_reason, is_error_response

GEN = {**RD_DEMO_GEN, "max_new_tokens": 4}


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from rd_eval.models.tiny import make_tiny

    return make_tiny("internvl_moe", tmp_path_factory.mktemp("tiny") / "rd-tiny-internvl_moe", seed=0)


@pytest.fixture(scope="module")
def adapter(checkpoint: Path, tmp_path_factory: pytest.TempPathFactory) -> Any:
    from rd_eval_adapters.internvl_moe import RDInternVLMoe

    return RDInternVLMoe(pretrained=str(checkpoint), batch_size=4, routing_dir=str(tmp_path_factory.mktemp("r")))


def chat_requests(form: str) -> tuple[list[Instance], dict]:
    """The chat requests lmms-eval makes for InternVLHf: messages of the document's images, then its text."""
    task = f"rd_demo_{form}"
    doc_to_text, doc_to_visual = getattr(UTILS, f"doc_to_text_{form}"), getattr(UTILS, f"doc_to_visual_{form}")

    def doc_to_messages(doc: dict[str, Any]) -> list[dict[str, Any]]:
        content = [{"type": "image", "url": image} for image in doc_to_visual(doc)]
        content.append({"type": "text", "text": doc_to_text(doc, {"pre_prompt": "", "post_prompt": ""})})
        return [{"role": "user", "content": content}]

    requests = [Instance(request_type="generate_until", idx=0, arguments=("", doc_to_messages, dict(GEN), i, task,
                                                                          "test"),
                         metadata={"task": task, "doc_id": i, "repeats": 1}) for i in range(N_DOCS)]
    return requests, {task: {"test": DOCS[:N_DOCS]}}


def test_same_model_inputs_and_answers_as_lmms_eval_internvl_hf(checkpoint: Path,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    from lmms_eval.models.chat.internvl_hf import InternVLHf
    from rd_eval_adapters.internvl_moe import RDInternVLMoe

    stock = InternVLHf(pretrained=str(checkpoint), device="cpu", device_map="cpu")
    ours = RDInternVLMoe(pretrained=str(checkpoint), batch_size=1, record_routing="false")
    stock_calls, our_calls = GenerateCalls(stock.model), GenerateCalls(ours.model)
    monkeypatch.setattr(stock.model, "generate", stock_calls)
    monkeypatch.setattr(ours.model, "generate", our_calls)
    for form in ("img", "txt"):
        requests, task_dict = chat_requests(form)
        stock.task_dict.update(task_dict)
        expected = [result.text for result in stock.generate_until(requests)]
        assert run(ours, rd_demo_requests(form, GEN)) == expected
    assert len(stock_calls.calls) == len(our_calls.calls) == 2 * N_DOCS
    # The stock loop goes in doc order, ours longest prompt first: match the calls by document.
    ours_by_prompt = {tuple(call["input_ids"][0].tolist()): call for call in our_calls.calls}
    for theirs in stock_calls.calls:
        mine = ours_by_prompt[tuple(theirs["input_ids"][0].tolist())]
        for key in ("attention_mask", "pixel_values"):
            if key in theirs:
                assert theirs[key].dtype == mine[key].dtype and torch.equal(theirs[key], mine[key]), key
        for key in ("max_new_tokens", "do_sample", "num_beams", "pad_token_id", "eos_token_id", "use_cache"):
            assert theirs[key] == mine[key], key


def test_batches_record_routing_and_lambda_zero_changes_nothing(checkpoint: Path, adapter: Any,
                                                                tmp_path: Path) -> None:
    from rd_eval_adapters.internvl_moe import RDInternVLMoe

    img, txt = rd_demo_requests("img", GEN), rd_demo_requests("txt", GEN)
    answers = run(adapter, img, txt)
    assert not any(is_error_response(a) for a in answers)
    img_records = records_of(adapter.rd_routing_dir, "rd_demo_img")
    txt_records = records_of(adapter.rd_routing_dir, "rd_demo_txt")
    assert sorted(img_records) == sorted(txt_records) == list(range(N_DOCS))
    assert all(r["tokens"]["prompt_image"] > 0 for r in img_records.values())
    assert all(r["tokens"]["prompt_image"] == 0 for r in txt_records.values())
    assert {r["model"] for r in img_records.values()} == {"rd_internvl_moe"}

    experts = ExpertSet(model="tiny", kind="domain", layers=(LayerExperts(1, (0, 3)),))
    zero = RDInternVLMoe(pretrained=str(checkpoint), batch_size=4, routing_dir=str(tmp_path / "zero"),
                         expert_set=str(experts.save(tmp_path / "experts.json")), intervention_lambda="0",
                         intervention_band="1")
    assert run(zero, img, txt) == answers
    for doc_id, record in records_of(tmp_path / "zero", "rd_demo_img").items():
        for scope, counts in record["counts"].items():
            np.testing.assert_array_equal(counts, img_records[doc_id]["counts"][scope])


def test_errors(checkpoint: Path, adapter: Any, tmp_path: Path) -> None:
    from rd_eval_adapters.internvl_moe import RDInternVLMoe

    with pytest.raises(ValueError, match="no such checkpoint folder"):
        RDInternVLMoe(pretrained=str(tmp_path / "missing"))
    with pytest.raises(ValueError, match="batch_size=0 invalid"):
        RDInternVLMoe(pretrained=str(checkpoint), batch_size=0, record_routing="false")

    def a_path_for_doc_one(doc: dict[str, Any]) -> list[Any]:
        return ["/data/figure.png"] if doc is DOCS[1] else UTILS.doc_to_visual_img(doc)

    answers = run(adapter, rd_demo_requests("img", GEN, task="odd_img", doc_to_visual=a_path_for_doc_one))
    assert is_error_response(answers[1]) and "not supported" in error_reason(answers[1])
    assert not any(is_error_response(a) for i, a in enumerate(answers) if i != 1)
