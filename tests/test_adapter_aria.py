"""rd_aria: lmms-eval's Aria class plus routing records and the intervention, on a tiny random checkpoint."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from adapter_requests import N_DOCS, RD_DEMO_GEN, GenerateCalls, rd_demo_requests, records_of, run

from rd_eval.routing.spec import ExpertSet, LayerExperts
from rd_eval.scoring.doc_errors import error_reason, is_error_response

SHORT = 6  # tokens per answer in these tests (lmms-eval's Aria always asks for 1024)


class ShortGenerate(GenerateCalls):
    """Records each generate call, then generates at most SHORT tokens (greedy: a prefix of the full answer)."""

    def __call__(self, **kwargs: Any) -> Any:
        self.calls.append(dict(kwargs))
        return self._generate(**{**kwargs, "max_new_tokens": SHORT})


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from rd_eval.models.tiny import make_tiny

    return make_tiny("aria", tmp_path_factory.mktemp("tiny") / "rd-tiny-aria", seed=0)


@pytest.fixture(scope="module")
def adapter(checkpoint: Path, tmp_path_factory: pytest.TempPathFactory) -> Any:
    from rd_eval_adapters.aria import RDAria

    return RDAria(pretrained=str(checkpoint), batch_size=4, routing_dir=str(tmp_path_factory.mktemp("routing")))


def test_image_prompts_reach_the_model_as_lmms_eval_aria_sends_them(checkpoint: Path, adapter: Any,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    from lmms_eval.models.simple.aria import Aria
    from rd_eval_adapters.aria import RDAria

    stock = Aria(pretrained=str(checkpoint), device="cpu", device_map="cpu")
    one_by_one = RDAria(pretrained=str(checkpoint), batch_size=1, record_routing="false")
    stock_calls, our_calls = ShortGenerate(stock.model), ShortGenerate(one_by_one.model)
    monkeypatch.setattr(stock.model, "generate", stock_calls)
    monkeypatch.setattr(one_by_one.model, "generate", our_calls)
    requests = rd_demo_requests("img", {**RD_DEMO_GEN, "max_new_tokens": 1024})
    expected = run(stock, requests)
    assert run(one_by_one, requests) == expected
    assert len(stock_calls.calls) == len(our_calls.calls) == N_DOCS
    for theirs, ours in zip(stock_calls.calls, our_calls.calls, strict=True):
        for key in ("input_ids", "attention_mask", "pixel_values", "pixel_mask"):
            assert theirs[key].dtype == ours[key].dtype and torch.equal(theirs[key], ours[key]), key
        assert ours["max_new_tokens"] == theirs["max_new_tokens"] == 1024
        assert ours["do_sample"] is theirs["do_sample"] is False
    # lmms-eval's Aria cannot answer a text-only prompt (its processor call fails on an empty image list).
    text_requests, task_dict = rd_demo_requests("txt")
    stock.task_dict.update(task_dict)
    with pytest.raises(RuntimeError):
        stock.generate_until(text_requests)


def test_batches_are_left_padded_single_requests_and_record_routing(checkpoint: Path, adapter: Any,
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    from rd_eval_adapters.aria import RDAria

    one_by_one = RDAria(pretrained=str(checkpoint), batch_size=1, record_routing="false")
    batched_calls, single_calls = GenerateCalls(adapter.model), GenerateCalls(one_by_one.model)
    monkeypatch.setattr(adapter.model, "generate", batched_calls)
    monkeypatch.setattr(one_by_one.model, "generate", single_calls)
    gen = {**RD_DEMO_GEN, "max_new_tokens": 3}
    img, txt = rd_demo_requests("img", gen), rd_demo_requests("txt", gen)
    answers = run(adapter, img, txt)
    assert not any(is_error_response(a) for a in answers)
    run(one_by_one, img, txt)
    # Each batch row is its single request's prompt, padded on the left. (Answers themselves may differ in the
    # last bits: bfloat16 matmuls are not batch-invariant.)
    singles = iter(single_calls.calls)
    for batch in batched_calls.calls:
        for ids, mask in zip(batch["input_ids"], batch["attention_mask"], strict=True):
            single = next(singles)
            n = int(mask.sum())
            assert torch.equal(ids[-n:], single["input_ids"][0]) and not mask[-n:].eq(0).any()
            assert mask[: len(mask) - n].eq(0).all()
    routing_dir = adapter.rd_routing_dir
    img_records, txt_records = records_of(routing_dir, "rd_demo_img"), records_of(routing_dir, "rd_demo_txt")
    assert sorted(img_records) == sorted(txt_records) == list(range(N_DOCS))
    assert all(r["tokens"]["prompt_image"] > 0 for r in img_records.values())
    assert all(r["tokens"]["prompt_image"] == 0 for r in txt_records.values())
    assert all(r["model"] == "rd_aria" and r["intervention"] == "none" for r in img_records.values())


def test_lambda_zero_is_identical_and_force_fills_the_band(checkpoint: Path, adapter: Any, tmp_path: Path) -> None:
    from rd_eval_adapters.aria import RDAria

    experts = ExpertSet(model="tiny", kind="domain", layers=(LayerExperts(2, (1, 6)), LayerExperts(3, (1, 6))))
    path = experts.save(tmp_path / "experts.json")
    requests = rd_demo_requests("img", {**RD_DEMO_GEN, "max_new_tokens": 4}, task="short_img")
    plain = run(adapter, requests)
    base = records_of(adapter.rd_routing_dir, "short_img")
    common = {"pretrained": str(checkpoint), "batch_size": 4, "expert_set": str(path), "intervention_band": "2,3"}
    zero = RDAria(**common, routing_dir=str(tmp_path / "zero"), intervention_lambda="0")
    assert run(zero, requests) == plain
    for doc_id, record in records_of(tmp_path / "zero", "short_img").items():
        for scope, counts in record["counts"].items():
            np.testing.assert_array_equal(counts, base[doc_id]["counts"][scope])
    forced = RDAria(**common, routing_dir=str(tmp_path / "force"), intervention_mode="force")
    run(forced, requests)
    for doc_id, record in records_of(tmp_path / "force", "short_img").items():
        tokens = record["tokens"]["prompt_text"] + record["tokens"]["prompt_image"]
        for layer in (2, 3):
            selected = np.asarray(record["counts"]["prompt_text"])[layer] + np.asarray(
                record["counts"]["prompt_image"])[layer]
            assert selected[1] == selected[6] == tokens  # both forced experts take every prompt token
        np.testing.assert_array_equal(np.asarray(record["counts"]["prompt_text"])[:2],
                                      np.asarray(base[doc_id]["counts"]["prompt_text"])[:2])


def test_errors(checkpoint: Path, adapter: Any, tmp_path: Path) -> None:
    from rd_eval_adapters.aria import RDAria, aria_content

    with pytest.raises(ValueError, match="no such checkpoint folder"):
        RDAria(pretrained=str(tmp_path / "missing"))
    with pytest.raises(ValueError, match=r"2 <image> marks for 1 image"):
        aria_content("<image> and <image>", 1)

    def video_for_doc_one(doc: dict[str, Any]) -> list[Any]:
        from adapter_requests import UTILS

        return ["/data/clip.mp4"] if doc["pair_id"] == rd_demo_doc_one_pair() else UTILS.doc_to_visual_img(doc)

    requests = rd_demo_requests("img", {**RD_DEMO_GEN, "max_new_tokens": 3}, task="bad_img",
                                doc_to_visual=video_for_doc_one)
    answers = run(adapter, requests)
    assert is_error_response(answers[1]) and "video inputs are not supported" in error_reason(answers[1])
    assert not any(is_error_response(a) for i, a in enumerate(answers) if i != 1)
    record = records_of(adapter.rd_routing_dir, "bad_img")[1]
    assert record["error"] and "video" in record["error"]


def rd_demo_doc_one_pair() -> Any:
    from adapter_requests import DOCS

    return DOCS[1]["pair_id"]
