"""The shared words: token scopes, the task-name grammar, model_args read as lmms-eval reads them."""

from __future__ import annotations

import pytest

from rd_eval.vocabulary.model_args import (
    ModelArgsError,
    as_lmms_eval_parses,
    model_arg_text,
    parse_model_args,
    pretrained_of,
)
from rd_eval.vocabulary.scopes import BASE_SCOPES, SCOPE_INDICES, SCOPE_MEMBERS, SCOPES_DEFAULT_FIRST, TOKEN_SCOPES
from rd_eval.vocabulary.task_names import (
    benchmark_of,
    form_of_task,
    image_task_name,
    is_auxiliary,
    parse_task,
    task_of,
)


def test_scope_indices_name_the_same_base_scopes() -> None:
    assert {name: tuple(BASE_SCOPES[i] for i in idx) for name, idx in SCOPE_INDICES.items()} == SCOPE_MEMBERS
    assert SCOPES_DEFAULT_FIRST[0] == "prompt" and sorted(SCOPES_DEFAULT_FIRST) == sorted(TOKEN_SCOPES)


@pytest.mark.parametrize(("task", "benchmark", "form"), [
    ("rd_mathvista_img", "rd_mathvista", "img"),
    ("rd_mathvista_txt", "rd_mathvista", "txt"),
    ("rd_gsm8k_see", "rd_gsm8k", "see"),
    ("rd_mathvista_transcribe", "rd_mathvista", "transcribe"),
    ("rd_mathverse_vd_img", "rd_mathverse_vd", "img"),
    ("mathvista_rd", "mathvista_rd", ""),
    ("_img", "_img", ""),  # a suffix alone names no benchmark
])
def test_parse_task(task: str, benchmark: str, form: str) -> None:
    name = parse_task(task)
    assert (name.benchmark, name.form) == (benchmark, form)
    if form:
        assert task_of(name.benchmark, name.form) == task


def test_grammar_readers() -> None:
    # Only paired forms share a benchmark; auxiliary tasks are their own rows, and carry no answers.
    assert benchmark_of("rd_demo_img") == benchmark_of("rd_demo_txt") == "rd_demo"
    assert benchmark_of("rd_demo_see") == "rd_demo_see"
    assert is_auxiliary("rd_demo_see") and is_auxiliary("rd_demo_transcribe") and not is_auxiliary("rd_demo_img")
    # Routing records name img, txt and see; transcription is not a recorded form.
    assert [form_of_task(t) for t in ("rd_a_img", "rd_a_txt", "rd_a_see", "rd_a_transcribe", "other")] == \
        ["img", "txt", "see", "", ""]
    assert image_task_name("rd_mathvista_img") == "mathvista"
    assert image_task_name("rd_mathvista_txt") is None and image_task_name("mathvista_img") is None


def test_model_args_as_lmms_eval_parses_them() -> None:
    args = parse_model_args('pretrained=/m/ckpt,intervention_lambda=1.0,record_routing=true,batch=2,'
                            'intervention_band=3:4:5,gen={"a":1,"b":2}')
    assert args == {"pretrained": "/m/ckpt", "intervention_lambda": 1.0, "record_routing": True, "batch": 2,
                    "intervention_band": "3:4:5", "gen": '{"a":1,"b":2}'}
    assert parse_model_args("") == {} and parse_model_args(None) == {}
    with pytest.raises(ModelArgsError, match="model_args 'pretrained' cannot be parsed"):
        parse_model_args("pretrained")
    # A hex hash of digits and one 'e' reaches the model class as a number.
    assert as_lmms_eval_parses("1234e5678901") == float("1234e5678901")
    assert as_lmms_eval_parses("012345678901") == 12345678901
    assert model_arg_text(True) == "true" and model_arg_text(1.5) == "1.5"
    assert pretrained_of({"pretrained": "x"}) == "x" and pretrained_of({"pretrained": ""}) is None
    assert pretrained_of({}) is None
