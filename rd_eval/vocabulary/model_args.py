"""lmms-eval's ``--model_args`` string, read exactly as lmms-eval reads it for the model class.

The report, the check and the commands read a run's model_args back from its results file; parsing with
lmms-eval's own function means they see what the adapter saw (quoted or braced commas, ``true``/``false`` and
numbers converted the same way).
"""

from __future__ import annotations

from typing import Any


class ModelArgsError(ValueError):
    """A model_args string lmms-eval itself could not parse; the message names the string and the rule."""


def parse_model_args(text: str | None) -> dict[str, Any]:
    """``k=v,k=v`` as lmms-eval's ``simple_parse_args_string`` gives it to the model class."""
    from lmms_eval.utils import simple_parse_args_string  # imported on use: it pulls in torch

    if not text or not str(text).strip():
        return {}
    try:
        return dict(simple_parse_args_string(str(text)))
    except ValueError as exc:
        raise ModelArgsError(f"model_args {text!r} cannot be parsed ({exc}); write key=value pairs separated by "
                             "commas") from None


def as_lmms_eval_parses(text: str) -> Any:
    """The value lmms-eval's parser makes of one model_args value (``true`` -> True, ``12`` -> 12, ``1e3`` ->
    1000.0): a hash or name written into model_args may reach the model class as a number."""
    from lmms_eval.utils import handle_arg_string

    return handle_arg_string(text)


def model_arg_text(value: Any) -> str:
    """A parsed model_args value as text (True -> "true"), for names and labels built from it."""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def pretrained_of(model_args: dict[str, Any]) -> str | None:
    """The checkpoint a parsed model_args names (``pretrained=``), as text; None when it names none."""
    value = model_args.get("pretrained")
    return None if value is None or value == "" else model_arg_text(value)
