"""Training the organism (issue 16 item 2) on a toy-sized architecture so it runs in seconds:

- the batches are exactly what the Qwen3-VL processor gives (ids, image-token marks, pixel rows);
- a run interrupted after two steps and resumed ends with the same weights (bytes) as an uninterrupted run;
- the saved folder loads with transformers' Auto class and Qwen3VLMoeForConditionalGeneration (no hub kernels)
  and generates; a checkpoint of another spec is refused; `rd-eval organism` is registered.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from rd_eval.organism.assets import build_processor, build_tokenizer
from rd_eval.organism.batches import Encoder, Example
from rd_eval.organism.evaluate import score_forms
from rd_eval.organism.problems import Problem, make_splits, problem_image
from rd_eval.organism.prompts import messages
from rd_eval.organism.spec import Architecture, OrganismSpec
from rd_eval.organism.train import CARD_FILE, OrganismTrainingError, form_counts, train, weights_sha256

TOY = OrganismSpec(steps=4, batch_size=6, checkpoint_every=1, n_heldout=20, n_validation=10,
                   architecture=Architecture(hidden_size=32, num_layers=2, num_heads=4, num_kv_heads=2, num_experts=4,
                                             experts_per_token=2, moe_intermediate_size=16, vision_depth=1,
                                             vision_hidden_size=32))


def quiet(_: str) -> None:
    pass


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("organism") / "straight"
    train(TOY, out, progress=False, log=quiet)
    return out


def test_batches_match_the_qwen3_vl_processor() -> None:
    processor = build_processor(build_tokenizer(TOY))
    encoder = Encoder(processor)
    examples = [Example(Problem("add", 37, 52), form) for form in ("img", "txt", "transcribe")]
    batch = encoder.batch(examples, with_targets=False)
    for row, example in enumerate(examples):
        text = processor.apply_chat_template(messages(example.problem, example.form), tokenize=False,
                                             add_generation_prompt=True)
        images = None if example.form == "txt" else [problem_image(example.problem)]
        ref = processor(text=[text], images=images, return_tensors="pt")
        n = ref["input_ids"].shape[1]
        assert torch.equal(batch["input_ids"][row, -n:], ref["input_ids"][0])  # left-padded for generation
        assert torch.equal(batch["mm_token_type_ids"][row, -n:], ref["mm_token_type_ids"][0])
        if images:
            ours = encoder.pixel_inputs([example.problem])
            assert torch.allclose(ours["pixel_values"], ref["pixel_values"], atol=1e-5)
            assert torch.equal(ours["image_grid_thw"], ref["image_grid_thw"])


def test_a_step_holds_the_mix_of_forms() -> None:
    assert form_counts(OrganismSpec(batch_size=64)) == {"txt": 29, "transcribe": 29, "img": 6}
    assert sum(form_counts(TOY).values()) == TOY.batch_size


def test_an_interrupted_run_resumes_to_the_same_weights(trained: Path, tmp_path: Path) -> None:
    resumed = tmp_path / "resumed"
    first = train(TOY, resumed, progress=False, stop_after=2, log=quiet)
    assert first.steps == 2 and not (resumed / "config.json").exists()
    lines: list[str] = []
    second = train(TOY, resumed, progress=False, log=lines.append)
    assert second.resumed_from == 2 and second.steps == TOY.steps and "resuming from step 2" in lines[0]
    assert weights_sha256(resumed) == weights_sha256(trained)
    card = json.loads((resumed / CARD_FILE).read_text())
    assert card["threads"] == TOY.threads and card["steps"] == TOY.steps and card["spec"] == TOY.to_json()


def test_a_checkpoint_of_another_spec_is_refused(trained: Path) -> None:
    with pytest.raises(OrganismTrainingError, match="another spec"):
        train(OrganismSpec(**{**TOY.__dict__, "seed": 1}), trained, progress=False, log=quiet)


def test_the_saved_folder_loads_with_transformers_and_generates(trained: Path) -> None:
    from transformers import AutoModelForImageTextToText, AutoProcessor, Qwen3VLMoeForConditionalGeneration

    auto = AutoModelForImageTextToText.from_pretrained(trained, use_kernels=False)
    assert type(auto) is Qwen3VLMoeForConditionalGeneration
    direct = Qwen3VLMoeForConditionalGeneration.from_pretrained(trained, use_kernels=False).eval()
    processor = AutoProcessor.from_pretrained(trained)
    assert processor.tokenizer.eos_token == "<|im_end|>"
    assert list(processor.image_processor.image_mean) == [1.0, 1.0, 1.0]  # white paper is 0 (assets.PAPER_WHITE)
    problems = make_splits(TOY.kinds, TOY.seed, n_heldout=TOY.n_heldout, n_validation=TOY.n_validation).heldout[:3]
    scores = score_forms(direct, processor, problems)
    assert set(scores) == {"txt", "transcribe", "img"} and all(s.total == 3 for s in scores.values())


def test_the_command_is_registered_and_refuses_a_folder_without_an_organism(tmp_path: Path,
                                                                             capsys: pytest.CaptureFixture) -> None:
    from rd_eval.commands.main import main

    assert main(["organism", "eval", "--model", str(tmp_path)]) == 2
    assert "holds no trained organism" in capsys.readouterr().err
