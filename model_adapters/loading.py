"""lmms-eval's model constructors, made to load the way rd-eval's policy says (`rd_eval.models.checkpoints`).

lmms-eval's classes call `from_pretrained` themselves, with choices rd-eval must not inherit:
- the Qwen3-VL / Qwen3.5 and Aria classes pass `trust_remote_code=True`: a checkpoint's `auto_map` would run its
  own Python, with no way to refuse;
- none passes `use_kernels`, which transformers >= 5.25 then turns on (hub kernels can bypass the router hooks);
- the Qwen classes pick the MoE model class only when the checkpoint *name* matches `A<digits>B`, GLM4V picks
  the dense class for any name containing "Flash": a checkpoint folder such as `/ckpt/step_1000` loads wrongly.

`lmms_loading_policy` runs a base constructor with, in the lmms-eval modules defining the base class, every
transformers class that loads a model, config, tokenizer or processor (and the Qwen module's
`_resolve_model_class`) replaced by a loader that obeys the policy: models load as the class chosen from the
checkpoint's `config.json` `model_type`, with `use_kernels` and `trust_remote_code` as the user chose; the
rest load with `trust_remote_code` as the user chose. Everything is restored on exit, also on an exception; a
constructor that loaded no model through those loaders fails loudly (an lmms-eval that loads differently).
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from types import ModuleType
from typing import Any

import transformers
from transformers import PreTrainedModel, PreTrainedTokenizerBase, ProcessorMixin

from rd_eval.models.checkpoints import LoadPolicy, checkpoint_config_dict

# lmms-eval 0.7.3's Qwen3-VL module picks its model class through this function (pretrained, is_moe).
_RESOLVER_NAME = "_resolve_model_class"


def model_id_hint(model_type: str) -> str:
    """' (use --model rd_<family>)' when rd-eval has an adapter family for this model_type."""
    from rd_eval.routing.families import FAMILY_MODULES, UnsupportedModelError, family_routing

    if model_type not in FAMILY_MODULES:
        return ""
    try:
        return f" (use --model rd_{family_routing(model_type).family})"
    except UnsupportedModelError:
        return ""


@dataclass(frozen=True)
class CheckpointChoice:
    """The model class a checkpoint loads as (from its config.json), and the loading policy."""

    pretrained: str
    model_type: str
    model_class: type
    policy: LoadPolicy

    def describe(self) -> str:
        return f"{self.model_class.__name__} (model_type {self.model_type}; {self.policy.describe()})"


def choose_checkpoint(pretrained: str, model_classes: Mapping[str, str], *, model_id: str, policy: LoadPolicy,
                      revision: str | None = None, hints: Mapping[str, str] | None = None) -> CheckpointChoice:
    """The transformers class `model_classes` names for the checkpoint's `model_type`; any other type refused."""
    model_type = checkpoint_config_dict(pretrained, revision).get("model_type")
    if model_type not in model_classes:
        hint = (hints or {}).get(str(model_type), "") or model_id_hint(str(model_type))
        raise ValueError(
            f"pretrained={pretrained!r} has model_type {model_type!r} in its config.json; {model_id} runs model_type "
            f"{' / '.join(repr(t) for t in model_classes)} only{hint}"
        )
    model_class = getattr(transformers, model_classes[model_type], None)
    if model_class is None:
        raise ValueError(f"pretrained={pretrained!r}: model_type {model_type!r} needs transformers' "
                         f"{model_classes[model_type]}, which transformers {transformers.__version__} lacks")
    return CheckpointChoice(pretrained, model_type, model_class, policy)


def _is_model_loader(value: Any) -> bool:
    """A transformers model class or Auto model class."""
    from transformers.models.auto.auto_factory import _BaseAutoModelClass

    return isinstance(value, type) and issubclass(value, PreTrainedModel | _BaseAutoModelClass)


def _is_code_loader(value: Any) -> bool:
    """A transformers class whose `from_pretrained` can run a checkpoint's code: an Auto class (config,
    tokenizer, processor...), a processor or a tokenizer."""
    if not isinstance(value, type) or not hasattr(value, "from_pretrained") or _is_model_loader(value):
        return False
    if issubclass(value, ProcessorMixin | PreTrainedTokenizerBase):
        return True
    return value.__module__.startswith("transformers.") and value.__name__.startswith("Auto")


class _PolicyLoader:
    """Stands for a transformers class in an lmms-eval module while a constructor runs: `from_pretrained`
    goes through `load`; every other attribute is the class's."""

    def __init__(self, target: type, load: Callable[..., Any]) -> None:
        self._target = target
        self._load = load

    def from_pretrained(self, *args: Any, **kwargs: Any) -> Any:
        return self._load(*args, **kwargs)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._target, name)

    def __repr__(self) -> str:
        return f"<rd-eval loading policy for {self._target.__name__}>"


def lmms_modules(cls: type) -> list[ModuleType]:
    """The lmms-eval modules defining `cls`'s base classes, base-most last."""
    names = dict.fromkeys(base.__module__ for base in cls.__mro__ if base.__module__.startswith("lmms_eval."))
    return [sys.modules[name] for name in names]


@contextlib.contextmanager
def lmms_loading_policy(cls: type, choice: CheckpointChoice) -> Iterator[list[str]]:
    """Within the block, the lmms-eval modules defining `cls`'s bases load by `choice` (see the module
    docstring). Yields the log of models loaded; a block that loaded none raises on exit."""
    modules = lmms_modules(cls)
    if not modules:
        raise TypeError(f"{cls.__name__} has no lmms-eval base class whose loading could follow the policy")
    policy = choice.policy
    loaded: list[str] = []

    def load_model(*args: Any, **kwargs: Any) -> Any:
        model = choice.model_class.from_pretrained(*args, **{**kwargs, **policy.model_kwargs()})
        loaded.append(type(model).__name__)
        return model

    def code_loader(target: type) -> Callable[..., Any]:
        def load(*args: Any, **kwargs: Any) -> Any:
            return target.from_pretrained(*args, **{**kwargs, **policy.code_kwargs()})

        return load

    def resolve_model_class(pretrained: str, is_moe: bool) -> tuple[Any, str]:
        # lmms-eval's resolver reads the config with trust_remote_code=True and chooses by the name.
        return _PolicyLoader(choice.model_class, load_model), "dtype"

    substituted: list[tuple[ModuleType, str, Any]] = []
    for module in modules:
        for name, value in list(vars(module).items()):
            if _is_model_loader(value):
                substituted.append((module, name, value))
                setattr(module, name, _PolicyLoader(value, load_model))
            elif _is_code_loader(value):
                substituted.append((module, name, value))
                setattr(module, name, _PolicyLoader(value, code_loader(value)))
        if callable(getattr(module, _RESOLVER_NAME, None)):
            substituted.append((module, _RESOLVER_NAME, getattr(module, _RESOLVER_NAME)))
            setattr(module, _RESOLVER_NAME, resolve_model_class)
    try:
        yield loaded
        if not loaded:
            raise RuntimeError(
                f"{cls.__name__}: lmms-eval {', '.join(m.__name__ for m in modules)} loaded no model through "
                "rd-eval's loading policy (its loading code changed?); refusing a model loaded with unknown "
                "trust_remote_code / use_kernels / model class"
            )
    finally:
        for module, name, value in reversed(substituted):
            setattr(module, name, value)
