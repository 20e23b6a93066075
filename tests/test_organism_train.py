"""Training the organism (issue 16 item 2) on a toy-sized architecture so it runs in seconds:

- the batches are exactly what the Qwen3-VL processor gives (ids, image-token marks, pixel rows);
- a run interrupted after two steps and resumed ends with the same weights (bytes) as an uninterrupted run;
- the saved folder loads with transformers' Auto class and Qwen3VLMoeForConditionalGeneration (no hub kernels)
  and generates; a checkpoint of another spec is refused; `rd-eval organism` is registered.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import pytest
import torch

from rd_eval.organism.assets import build_processor, build_tokenizer
from rd_eval.organism.batches import Encoder, Example
from rd_eval.organism.evaluate import score_forms
from rd_eval.organism.induce import InductionSpec, induce
from rd_eval.organism.problems import Problem, make_splits, problem_image
from rd_eval.organism.prompts import messages
from rd_eval.organism.recipe import PHASES, Recipe, phase_dir, run_recipe
from rd_eval.organism.spec import Architecture, OrganismSpec
from rd_eval.organism.train import CARD_FILE, OrganismTrainingError, StopRule, form_counts, train, weights_sha256

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
    examples = [Example(Problem(kind, 37, 52), form) for kind in ("add", "table", "bar")
                for form in ("img", "txt", "transcribe")]
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
    # a batch of images of two sizes (192 x 32 and 192 x 64): each image's rows in order, as the processor has them
    mixed = [Problem("table", 37, 52), Problem("add", 37, 52), Problem("bar", 99, 10), Problem("max", 11, 12)]
    ref = processor.image_processor(images=[problem_image(p) for p in mixed], return_tensors="pt")
    ours = encoder.pixel_inputs(mixed)
    assert torch.allclose(ours["pixel_values"], ref["pixel_values"], atol=1e-5)
    assert ours["image_grid_thw"].tolist() == ref["image_grid_thw"].tolist() == [[1, 4, 12], [1, 2, 12]] * 2


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


def test_the_command_trains_the_kinds_it_is_given_and_refuses_unknown_ones(tmp_path: Path,
                                                                             capsys: pytest.CaptureFixture) -> None:
    from rd_eval.commands.main import main

    out = tmp_path / "tables"
    assert main(["organism", "train", "--out", str(out), "--plain-only", "--steps", "1", "--no-progress",
                 "--kinds", "table,bar"]) == 0
    spec = json.loads((out / "organism.json").read_text())["spec"]
    assert (spec["kinds"], spec["kind_weights"], spec["steps"]) == (["table", "bar"], [], 1)  # other kinds: uniform
    assert main(["organism", "train", "--out", str(tmp_path / "w"), "--plain-only", "--steps", "1", "--no-progress",
                 "--kinds", "add,table", "--kind-weights", "2,1", "--mix", "0.6,0.3,0.1"]) == 0
    weighted = json.loads((tmp_path / "w" / "organism.json").read_text())["spec"]
    assert (weighted["kind_weights"], weighted["mix"]) == ([2.0, 1.0], [0.6, 0.3, 0.1])
    capsys.readouterr()
    assert main(["organism", "train", "--out", str(tmp_path / "x"), "--kinds", "add,chart"]) == 2
    assert "kinds must be distinct problem kinds of add, sub, max, table, bar, got ('add', 'chart')" in (
        capsys.readouterr().err)
    assert main(["organism", "train", "--out", str(tmp_path / "x"), "--kinds", "add,table",
                 "--kind-weights", "1"]) == 2
    assert "kind_weights must be empty or 2 non-negative weights" in capsys.readouterr().err
    assert main(["organism", "train", "--out", str(tmp_path / "x"), "--mix", "1,1"]) == 2
    assert "mix needs 3 non-negative shares" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exit_:
        main(["organism", "train", "--out", str(tmp_path / "x"), "--kind-weights", "a,b"])
    assert exit_.value.code == 2 and "not a comma-separated list of numbers" in capsys.readouterr().err
    assert not (tmp_path / "x").exists()


# -- the whole recipe (rd_eval.organism.recipe): phases (b) and (c) on the toy spec ----------------------------------

TOY_INDUCTION = InductionSpec(steps=4, checkpoint_every=1, n_probe_pairs=4, batch=(2, 2, 2), text_to_domain=1.0,
                              text_under_boost=1.0)
TOY_RECIPE = Recipe(plain=TOY, image_qa_steps=4,
                    image_qa_check=StopRule(min_steps=2, every=2, n_pairs=3, threshold=0.0), induction=TOY_INDUCTION)


@pytest.fixture(scope="module")
def recipe_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("recipe") / "whole"
    run_recipe(TOY_RECIPE, out, progress=False, log=quiet)
    return out


def test_the_recipe_runs_three_phases_and_records_them(recipe_run: Path) -> None:
    card = json.loads((recipe_run / CARD_FILE).read_text())
    assert list(card["phases"]) == list(PHASES)
    # threshold 0: stage b2's first check (step 2) passes, so it stops before its 4 steps and says so
    stage1, stage2 = card["phases"]["b1_image_qa"], card["phases"]["b2_image_qa"]
    assert stage1["steps"] == 4 and stage1["validation_checks"] == []
    assert stage2["steps"] == 2 and stage2["validation_checks"][0]["passed"]
    assert set(stage2["validation_checks"][0]) == {"step", "txt", "transcribe", "img", "passed"}
    assert stage1["spec"]["mix"] == stage2["spec"]["mix"] == [0.3, 0.2, 0.5]
    assert (stage1["spec"]["example_seed"], stage2["spec"]["example_seed"]) == (TOY.seed + 1, TOY.seed + 2)
    # the toy has 2 MoE layers: the band 0.25-0.75 is layer 1; the text form's 2 most used experts of 4
    experts = card["domain_experts"]
    assert list(experts) == ["1"] and len(experts["1"]) == 2 and set(experts["1"]) <= {0, 1, 2, 3}
    assert card["weights_sha256"] == weights_sha256(recipe_run)
    assert InductionSpec.from_json(card["recipe"]["induction"]) == TOY_INDUCTION


def test_induction_trains_only_the_band_routers(recipe_run: Path) -> None:
    from safetensors.torch import load_file

    before = load_file(phase_dir(recipe_run, "b2_image_qa") / "model.safetensors")
    after = load_file(recipe_run / "model.safetensors")
    changed = sorted(name for name in before if not torch.equal(before[name], after[name]))
    assert changed == ["model.language_model.layers.1.mlp.gate.weight"]


def test_the_recipe_is_deterministic_and_a_kill_in_any_phase_resumes_to_the_same_weights(
        recipe_run: Path, tmp_path: Path) -> None:
    out = tmp_path / "killed"
    plain, stage1, stage2, induced = (phase_dir(out, p) for p in PHASES)
    train(TOY, plain, progress=False, stop_after=3, log=quiet)  # killed in phase (a)
    train(TOY, plain, progress=False, log=quiet)
    train(TOY_RECIPE.image_qa(1), stage1, progress=False, start_from=plain, log=quiet)
    with pytest.raises(OrganismTrainingError, match="not a finished training folder"):
        induce(TOY, TOY_INDUCTION, induced, stage2, progress=False, log=quiet)  # (c) before (b) has finished
    train(TOY_RECIPE.image_qa(2), stage2, progress=False, start_from=stage1, stop=TOY_RECIPE.image_qa_check,
          stop_after=1, log=quiet)  # killed in phase (b), before its first check
    train(TOY_RECIPE.image_qa(2), stage2, progress=False, start_from=stage1, stop=TOY_RECIPE.image_qa_check,
          log=quiet)
    induce(TOY, TOY_INDUCTION, induced, stage2, progress=False, stop_after=2, log=quiet)  # killed in (c)
    lines: list[str] = []
    run_recipe(TOY_RECIPE, out, progress=False, log=lines.append)
    assert any(line.startswith("induction: resuming from step 2") for line in lines)
    assert weights_sha256(out) == weights_sha256(recipe_run)  # and equal to a run that was never killed


def test_an_induction_checkpoint_of_other_settings_is_refused(recipe_run: Path) -> None:
    other = replace(TOY_INDUCTION, penalty=1.0)
    with pytest.raises(OrganismTrainingError, match="another induction"):
        induce(TOY, other, phase_dir(recipe_run, "c_induction"), phase_dir(recipe_run, "b2_image_qa"),
               progress=False, log=quiet)


@pytest.mark.parametrize(("make", "match"), [
    (lambda: InductionSpec(steps=0), "induction steps"),
    (lambda: InductionSpec(penalty=float("nan")), "induction penalty"),
    (lambda: InductionSpec(batch=(1, 2)), "induction batch"),
    (lambda: InductionSpec(band=(0.8, 0.2)), "induction band"),
    (lambda: InductionSpec(routing_kl=(1.0,)), "routing_kl needs 2 weights"),
    (lambda: InductionSpec(boost_strength=-1.0), "induction boost_strength"),
    (lambda: InductionSpec(text_to_domain_tokens="words"), "text_to_domain_tokens 'words' invalid; valid: all"),
    (lambda: StopRule(min_steps=0, every=1), "stop rule min_steps"),
    (lambda: StopRule(min_steps=1, every=1, threshold=1.5), "stop rule threshold"),
    (lambda: InductionSpec.from_json({"strength": 1}), "not an induction spec"),
])
def test_bad_phase_settings_are_refused_by_name(make: Callable[[], object], match: str) -> None:
    with pytest.raises(OrganismTrainingError, match=match):
        make()


def test_an_induction_spec_recorded_before_a_term_existed_reads_with_that_term_off() -> None:
    recorded = {k: v for k, v in InductionSpec().to_json().items()
                if k not in ("general_off_domain", "text_ce", "text_to_domain_tokens")}
    older = InductionSpec.from_json(recorded)
    assert (older.general_off_domain, older.text_ce, older.text_to_domain_tokens) == (0.0, 0.5, "all")
    assert InductionSpec.from_json(InductionSpec().to_json()) == InductionSpec()


def test_the_number_tokens_are_the_digits_and_the_reply() -> None:
    from rd_eval.organism.assets import build_processor, build_tokenizer
    from rd_eval.organism.batches import Encoder, Example
    from rd_eval.organism.induce import number_tokens
    from rd_eval.organism.problems import Problem

    encoder = Encoder(build_processor(build_tokenizer(replace(TOY, kinds=("add", "max")))))
    batch = encoder.batch([Example(Problem("max", 37, 52), "txt"), Example(Problem("add", 37, 52), "txt")],
                          with_targets=True)
    mask = number_tokens(encoder, batch).reshape(batch["input_ids"].shape)
    picked = ["".join(encoder.tokenizer.convert_ids_to_tokens([int(i) for i in row[m]])) for row, m in
              zip(batch["input_ids"], mask, strict=True)]
    assert picked == ["3752" + "52" + "<|im_end|>", "3752" + "89" + "<|im_end|>"]


def test_a_stop_rule_must_fall_on_checkpoints(tmp_path: Path) -> None:
    with pytest.raises(OrganismTrainingError, match="multiple of checkpoint_every"):
        train(replace(TOY, checkpoint_every=2), tmp_path, progress=False, stop=StopRule(min_steps=1, every=3),
              log=quiet)


def test_the_command_refuses_figures_of_a_plain_organism_and_steps_of_the_whole_recipe(
        trained: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    from rd_eval.commands.main import main

    assert main(["organism", "eval", "--model", str(trained), "--figures", "--n", "2"]) == 2
    assert "names no domain_experts" in capsys.readouterr().err
    assert main(["organism", "train", "--out", str(tmp_path), "--steps", "5"]) == 2
    assert "--steps applies to --plain-only" in capsys.readouterr().err


def test_the_training_boost_steers_as_rd_evals_soft_intervention(trained: Path) -> None:
    from transformers import AutoModelForImageTextToText, AutoProcessor

    from rd_eval.organism.figures import expert_set
    from rd_eval.organism.induce import DomainBoost
    from rd_eval.routing.session import routing_session
    from rd_eval.routing.spec import InterventionSpec

    model = AutoModelForImageTextToText.from_pretrained(trained, use_kernels=False).eval()
    encoder = Encoder(AutoProcessor.from_pretrained(trained))
    problems = make_splits(TOY.kinds, TOY.seed, n_heldout=TOY.n_heldout, n_validation=TOY.n_validation).heldout[:4]
    batch = encoder.batch([Example(p, form) for p in problems for form in ("txt", "img")], with_targets=False)
    experts = {1: (0, 3)}
    with torch.no_grad():
        plain = model(**batch).logits
        boost = DomainBoost(model, experts, 2.0)
        ours = model(**batch).logits
        boost.remove()
        spec = InterventionSpec(experts=expert_set(experts), mode="soft", strength=2.0)
        with routing_session(model, record=False, intervention=spec) as session:
            session.begin(batch["input_ids"].shape[0])
            theirs = model(**batch).logits
            session.finish_batch()
    assert not torch.allclose(ours, plain, atol=1e-4)  # the boost changes the routing of this toy
    assert torch.allclose(ours, theirs, atol=1e-5)


# -- phase (c)'s general sentences ------------------------------------------------------------------------------------

def test_the_general_sentences_are_held_apart_from_rd_eval_s_general_probe_set() -> None:
    from rd_eval.experts.identify import general_probe_texts
    from rd_eval.organism.induce import general_texts

    sentences = general_texts()
    assert len(sentences) >= 40 and len(set(sentences)) == len(sentences)
    # identification must never be scored on a sentence the organism was trained to route away from D
    probes = {" ".join(t.lower().split()) for t in general_probe_texts()}
    assert not probes & {" ".join(t.lower().split()) for t in sentences}


def test_the_general_penalty_covers_each_sentence_and_not_the_shared_prefix() -> None:
    from rd_eval.organism.assets import build_processor, build_tokenizer
    from rd_eval.organism.batches import Encoder
    from rd_eval.organism.induce import general_batch, general_examples, general_texts

    encoder = Encoder(build_processor(build_tokenizer(TOY)))
    texts = general_examples(TOY, TOY_INDUCTION, general_texts(), step=3)
    assert texts == general_examples(TOY, TOY_INDUCTION, general_texts(), step=3)  # a pure function of the step
    assert len(texts) == TOY_INDUCTION.general_batch
    batch, own = general_batch(encoder, texts)
    width = batch["input_ids"].shape[1]
    for i, text in enumerate(texts):
        row = batch["input_ids"][i][own[i * width:(i + 1) * width]]
        decoded = encoder.tokenizer.decode(row.tolist())
        assert decoded.startswith(text) and decoded[len(text):].strip().startswith("<|im_end|>")
    assert not bool(own[batch["attention_mask"].reshape(-1) == 0].any())  # never a pad
