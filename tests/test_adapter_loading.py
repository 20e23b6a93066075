"""Checkpoint loading in the adapters (issue 12 items 4 and 6, hub kernels off).

- Any checkpoint folder name: a tiny checkpoint in a folder named `step_1000` runs through `python -m lmms_eval`
  for every family, its model class chosen from config.json's model_type.
- Checkpoint code never runs without opt-in: an `auto_map` (config.json, tokenizer_config.json) pointing at a
  planted module that writes a marker file when imported is never imported, unless `trust_remote_code=true`.
- Hub kernels stay off on transformers >= 5.25 without any environment variable; `use_kernels=true` reaches
  `from_pretrained`.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import pytest
from lmms_cli import run, tasks_path
from test_family_cli import FAMILY_OF_MODEL as OTHER_FAMILIES

from rd_eval.lmms.runs import find_runs
from rd_eval.routing.spec import SpecError
from rd_eval.scoring.doc_errors import is_error_response

# model id -> `rd-eval make-tiny` family; rd_kimi_vl is remote code only (no offline checkpoint) and keeps
# requiring the opt-in (tests/test_adapter_ernie_kimi.py).
FAMILY_OF_MODEL = {"rd_qwen3_vl_moe": "qwen3_vl_moe", **OTHER_FAMILIES}
# The model ids run with an explicit trust_remote_code=false (lmms-eval's classes used to reject the key).
EXPLICIT_FALSE = {"rd_aria", "rd_qwen3_vl_moe"}
MARKER = "PLANTED_CODE_RAN"
PLANTED = """\
from pathlib import Path

Path({marker!r}).write_text("the checkpoint's own code ran")


def __getattr__(name):
    # The auto_map names real transformers classes: with the opt-in, loading goes on after the import.
    import transformers

    return getattr(transformers, name)
"""


def plant_auto_map(checkpoint: Path, marker: Path) -> None:
    """An auto_map in config.json and tokenizer_config.json sending every Auto class to `planted.py`, a module
    that writes `marker` when imported (and otherwise hands out transformers' own classes)."""
    from transformers.models.auto.configuration_auto import CONFIG_MAPPING

    (checkpoint / "planted.py").write_text(PLANTED.format(marker=str(marker)))
    config_path = checkpoint / "config.json"
    config = json.loads(config_path.read_text())
    tokenizer_path = checkpoint / "tokenizer_config.json"
    tokenizer = json.loads(tokenizer_path.read_text())
    model_class = config["architectures"][0]
    config["auto_map"] = {
        "AutoConfig": f"planted.{CONFIG_MAPPING[config['model_type']].__name__}",
        "AutoModelForImageTextToText": f"planted.{model_class}",
        "AutoModelForCausalLM": f"planted.{model_class}",
        "AutoProcessor": f"planted.{tokenizer['processor_class']}",
    }
    config_path.write_text(json.dumps(config, indent=2))
    tokenizer["auto_map"] = {"AutoTokenizer": [f"planted.{tokenizer['tokenizer_class']}", None],
                             "AutoProcessor": f"planted.{tokenizer['processor_class']}"}
    tokenizer_path.write_text(json.dumps(tokenizer, indent=2))


def test_every_family_but_kimi_is_covered() -> None:
    from rd_eval_adapters.manifests import ADAPTER_CLASSES

    assert set(FAMILY_OF_MODEL) | {"rd_kimi_vl"} == set(ADAPTER_CLASSES)


CASES = [pytest.param(model_id, False, id=model_id) for model_id in sorted(FAMILY_OF_MODEL)]
CASES.append(pytest.param("rd_qwen3_vl_moe", True, id="rd_qwen3_vl_moe-trust_remote_code"))


@pytest.mark.parametrize(("model_id", "trust"), CASES)
def test_step_1000_runs_through_lmms_eval_and_its_code_runs_only_with_opt_in(
        model_id: str, trust: bool, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from rd_eval.models.tiny import make_tiny

    checkpoint = make_tiny(FAMILY_OF_MODEL[model_id], tmp_path / "ckpt" / "step_1000", seed=0)
    marker = tmp_path / MARKER
    plant_auto_map(checkpoint, marker)
    model_args = f"pretrained={checkpoint}"
    if trust:
        model_args += ",trust_remote_code=true"
    elif model_id in EXPLICIT_FALSE:
        model_args += ",trust_remote_code=false"
    out = tmp_path / "out"
    command = [sys.executable, "-m", "lmms_eval", "--model", model_id, "--model_args", model_args,
               "--tasks", "rd_demo", "--include_path", tasks_path(), "--output_path", str(out), "--log_samples",
               "--limit", "2", "--batch_size", "2", "--gen_kwargs", "max_new_tokens=4", "--device", "cpu",
               "--verbosity", "INFO"]
    monkeypatch.delenv("USE_HUB_KERNELS", raising=False)  # transformers' default (kernels on) applies
    result = run(command, tmp_path, extra_env={"HF_MODULES_CACHE": str(tmp_path / "hf_modules")})
    log = result.stdout + result.stderr
    assert result.returncode == 0, log[-3000:]
    assert marker.exists() is trust, log[-3000:]
    runs = find_runs(out)
    assert len(runs) == 1, log[-3000:]
    answers = []
    for path in runs[0].samples.values():
        answers += [json.loads(line)["filtered_resps"] for line in Path(path).read_text().splitlines()]
    assert len(answers) == 4 and not any(is_error_response(str(a)) for a in answers), answers
    model_class = json.loads((checkpoint / "config.json").read_text())["architectures"][0]
    policy = f"trust_remote_code={str(trust).lower()}, use_kernels=false"
    assert f"[rd-eval] {model_id}: {model_class} (model_type " in log and policy in log, log[-3000:]


# -- hub kernels ------------------------------------------------------------------------------------------------
class _Stop(Exception):
    """Raised by a from_pretrained spy once it has seen its arguments."""


def _spy(seen: dict[str, Any]):
    def from_pretrained(*args: Any, **kwargs: Any) -> Any:
        seen.update(kwargs)
        raise _Stop

    return from_pretrained


@pytest.fixture(scope="module")
def ernie_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from rd_eval.models.tiny import make_tiny

    return make_tiny("ernie4_5_vl_moe", tmp_path_factory.mktemp("ernie") / "step_1000", seed=0)


def _adapter(model_id: str):
    import importlib

    from rd_eval_adapters.manifests import ADAPTER_CLASSES

    module, name = ADAPTER_CLASSES[model_id].rsplit(".", 1)
    return getattr(importlib.import_module(module), name)


def test_routing_loads_have_hub_kernels_off_without_any_environment_variable(
        tiny_dir: Path, ernie_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """transformers 5.25 turns hub kernels on by default; rd-eval's loads (an lmms-eval base class, our HF
    class, the demo's and `rd-eval experts`' probing loads) turn them off explicitly."""
    from transformers import AutoModelForImageTextToText

    from rd_eval.models.loading import load_model

    monkeypatch.delenv("USE_HUB_KERNELS", raising=False)
    assert AutoModelForImageTextToText.from_pretrained(tiny_dir).use_kernels  # what a plain load would do
    for model_id, checkpoint in (("rd_qwen3_vl_moe", tiny_dir), ("rd_ernie4_5_vl_moe", ernie_dir)):
        adapter = _adapter(model_id)(pretrained=str(checkpoint), record_routing="false")
        assert adapter.model.use_kernels is False, model_id
        assert adapter.load_policy.describe() == "trust_remote_code=false, use_kernels=false"
    assert load_model(tiny_dir, dtype="bfloat16", device="cpu")[0].use_kernels is False  # the demo's
    assert load_model(tiny_dir)[0].use_kernels is False  # `rd-eval experts`'


def test_use_kernels_true_in_model_args_reaches_from_pretrained(tiny_dir: Path, ernie_dir: Path,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    import lmms_eval.models.simple.qwen3_vl as lmms_qwen
    import transformers
    from transformers import AutoModelForImageTextToText, Qwen3VLMoeForConditionalGeneration

    before = dict(vars(lmms_qwen))
    seen: dict[str, Any] = {}
    monkeypatch.setattr(Qwen3VLMoeForConditionalGeneration, "from_pretrained", _spy(seen))
    with pytest.raises(_Stop):
        _adapter("rd_qwen3_vl_moe")(pretrained=str(tiny_dir), record_routing="false", use_kernels="true")
    assert seen["use_kernels"] is True and seen["trust_remote_code"] is False
    # Everything the loading policy replaced in lmms-eval's module is back, also after an exception.
    assert vars(lmms_qwen) == before and lmms_qwen.AutoProcessor is transformers.AutoProcessor

    seen.clear()
    monkeypatch.setattr(AutoModelForImageTextToText, "from_pretrained", _spy(seen))
    with pytest.raises(_Stop):
        _adapter("rd_ernie4_5_vl_moe")(pretrained=str(ernie_dir), record_routing="false", use_kernels=True)
    assert seen["use_kernels"] is True and seen["trust_remote_code"] is False


# -- the loading policy itself -------------------------------------------------------------------------------
def test_load_policy_reads_model_args_with_the_project_bool_parser() -> None:
    from rd_eval.models.checkpoints import LoadPolicy

    model_args: dict[str, Any] = {"trust_remote_code": "TRUE", "use_kernels": False, "batch_size": 2}
    assert LoadPolicy.pop_from(model_args) == LoadPolicy(trust_remote_code=True, use_kernels=False)
    assert model_args == {"batch_size": 2}
    assert LoadPolicy.pop_from({}) == LoadPolicy(trust_remote_code=False, use_kernels=False)
    with pytest.raises(SpecError, match=r"model_args use_kernels='maybe' invalid; use true or false"):
        LoadPolicy.pop_from({"use_kernels": "maybe"})


def test_a_constructor_that_loads_no_model_through_the_policy_fails_loudly() -> None:
    import lmms_eval.models.simple.qwen3_vl as lmms_qwen
    from rd_eval_adapters.loading import CheckpointChoice, lmms_loading_policy
    from rd_eval_adapters.qwen3_vl_moe import RDQwen3VLMoe
    from transformers import Qwen3VLMoeForConditionalGeneration

    from rd_eval.models.checkpoints import LoadPolicy

    before = dict(vars(lmms_qwen))
    choice = CheckpointChoice("/ckpt/step_1000", "qwen3_vl_moe", Qwen3VLMoeForConditionalGeneration, LoadPolicy())
    with pytest.raises(RuntimeError, match="loaded no model through rd-eval's loading policy"):
        with lmms_loading_policy(RDQwen3VLMoe, choice):
            assert lmms_qwen.AutoTokenizer is not before["AutoTokenizer"]  # replaced within the block
            assert lmms_qwen._resolve_model_class is not before["_resolve_model_class"]
    assert vars(lmms_qwen) == before
