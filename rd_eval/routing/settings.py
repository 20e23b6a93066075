"""Routing settings as they arrive in lmms-eval `model_args`, parsed and validated once.

All of them live in `model_args` on purpose: lmms-eval's response cache keys on that string, so two
intervention settings never share cached answers. A spec *file* can change while its path stays the same;
`intervention_hash=<content hash>` puts its content into the string too (and is checked against the file),
and with the response cache on it is required whenever the settings come from a file.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rd_eval.fileio.jsonio import JsonFileError
from rd_eval.routing.easysteer import load_expert_set, load_intervention
from rd_eval.routing.spec import ExpertSet, InterventionSpec, LayerBand, SpecError
from rd_eval.vocabulary.model_args import as_lmms_eval_parses

SETTING_KEYS = (
    "intervention",  # path of an intervention spec JSON (mode, lambda, band, scope, experts), or an EasySteer file
    "expert_set",  # path of an expert set JSON, with the inline settings below
    "intervention_mode",
    "intervention_lambda",
    "intervention_band",  # "0.25-0.75" (fractions of the MoE layers) or "12:13:14" (MoE-layer indices)
    "intervention_scope",
    "intervention_seed",
    "intervention_hash",  # the content hash the spec must have (required with --use_cache and a spec file)
    "record_routing",
    "routing_dir",
)


@dataclass(frozen=True)
class RoutingSettings:
    intervention: InterventionSpec | None
    record_routing: bool = True
    routing_dir: Path | None = None
    source: str = "intervention spec"  # where the intervention came from, for errors: "model_args expert_set=FILE"

    @property
    def intervention_hash(self) -> str:
        """'none' for plain runs, else the spec's content hash."""
        return "none" if self.intervention is None else self.intervention.content_hash()


def parse_bool(key: str, value: Any) -> bool:
    """A model_args flag: a bool, or true/false, 1/0, yes/no in any case; anything else names the key."""
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in ("true", "1", "yes"):
        return True
    if text in ("false", "0", "no"):
        return False
    raise SpecError(f"model_args {key}={value!r} invalid; use true or false")


def parse_int(key: str, value: Any) -> int:
    """A model_args integer: an int, or a string of decimal digits. lmms-eval's parser turns `1.7` into a
    float and `true` into a bool: both are refused, never truncated."""
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().isascii() and value.strip().isdigit():
        return int(value.strip())
    raise SpecError(f"model_args {key}={value!r} invalid; need a whole number >= 0 (not a float or bool)")


def parse_float(key: str, value: Any) -> float:
    """A model_args number: an int, a float or a numeric string; a bool (`true`) is refused."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            pass
    raise SpecError(f"model_args {key}={value!r} is not a number")


def parse_path(key: str, value: Any) -> Path:
    """A model_args path; an empty one is refused (it would silently mean the current folder)."""
    text = str(value).strip()
    if not text:
        raise SpecError(f"model_args {key}= is empty; give a path")
    return Path(text).expanduser()


def _load(key: str, path: Path, loader: Callable[[Path], InterventionSpec | ExpertSet]) -> Any:
    try:
        return loader(path)
    except JsonFileError as exc:
        raise SpecError(f"model_args {key}: {exc}") from None


def pop_routing_settings(kwargs: dict[str, Any], *, response_cache: bool = False,
                         pretrained: str | None = None) -> RoutingSettings:
    """Remove our keys from `kwargs` (the rest go to the family's base class) and validate them.

    `response_cache`: lmms-eval's --use_cache is on, so settings read from a file must be pinned by hash.
    `pretrained`: the checkpoint (default: kwargs' own `pretrained`, left in place); an EasySteer file given as
    `intervention=` is mapped onto its layers (`rd_eval.routing.easysteer`).
    """
    if pretrained is None and kwargs.get("pretrained") is not None:
        pretrained = str(kwargs["pretrained"])
    raw = {key: kwargs.pop(key) for key in SETTING_KEYS if key in kwargs}
    inline = {k: raw[k] for k in ("intervention_mode", "intervention_lambda", "intervention_band",
                                  "intervention_scope", "intervention_seed") if k in raw}
    spec: InterventionSpec | None = None
    if "intervention" in raw and "expert_set" in raw:
        raise SpecError("model_args: give either intervention=<spec.json> or expert_set=<experts.json>, not both")
    if "intervention" in raw:
        spec = _load("intervention", parse_path("intervention", raw["intervention"]),
                     lambda path: load_intervention(path, pretrained))
    elif "expert_set" in raw:
        spec = InterventionSpec(experts=_load("expert_set", parse_path("expert_set", raw["expert_set"]),
                                              load_expert_set))
    elif inline:
        raise SpecError(
            f"model_args {sorted(inline)} need an expert set: add expert_set=<experts.json> or intervention=<spec.json>"
        )
    if spec is not None and inline:
        changes: dict[str, Any] = {}
        if "intervention_mode" in inline:
            changes["mode"] = str(inline["intervention_mode"])
        if "intervention_lambda" in inline:
            changes["strength"] = parse_float("intervention_lambda", inline["intervention_lambda"])
        if "intervention_band" in inline:
            try:
                changes["band"] = LayerBand.parse(str(inline["intervention_band"]))
            except SpecError as exc:
                raise SpecError(f"model_args intervention_band: {exc}") from None
        if "intervention_scope" in inline:
            changes["token_scope"] = str(inline["intervention_scope"])
        if "intervention_seed" in inline:
            changes["seed"] = parse_int("intervention_seed", inline["intervention_seed"])
        try:
            spec = dataclasses.replace(spec, **changes)
        except SpecError as exc:
            raise SpecError(f"model_args: {exc}") from None
    routing_dir = parse_path("routing_dir", raw["routing_dir"]) if "routing_dir" in raw else None
    record = parse_bool("record_routing", raw.get("record_routing", True))
    source = next((f"model_args {key}={raw[key]}" for key in ("intervention", "expert_set") if key in raw),
                  "intervention spec")
    settings = RoutingSettings(intervention=spec, record_routing=record, routing_dir=routing_dir, source=source)
    _check_declared_hash(raw, settings, response_cache=response_cache)
    return settings


def _check_declared_hash(raw: dict[str, Any], settings: RoutingSettings, *, response_cache: bool) -> None:
    source = "intervention" if "intervention" in raw else "expert_set" if "expert_set" in raw else None
    actual = settings.intervention_hash
    if "intervention_hash" in raw:
        declared = str(raw["intervention_hash"]).strip()
        if not _same_hash(raw["intervention_hash"], actual):
            where = f" (from {source}={raw[source]})" if source else ""
            raise SpecError(
                f"model_args intervention_hash={declared!r} does not match the intervention's content hash "
                f"{actual!r}{where}; the file changed since the hash was taken: use intervention_hash={actual}"
            )
    elif response_cache and source is not None:
        raise SpecError(
            f"model_args {source}={raw[source]}: with lmms-eval's response cache (--use_cache) a settings file "
            f"must be pinned by its content, or an edited file would be served the old answers; add "
            f"intervention_hash={actual} to model_args"
        )


def _same_hash(declared: Any, actual: str) -> bool:
    """A hex hash such as '012345678901' or '1234e5678901' reaches us as a number (lmms-eval's parser):
    compare it with what that parser makes of the actual hash."""
    if isinstance(declared, str):
        return declared.strip() == actual
    parsed = as_lmms_eval_parses(actual)
    return type(parsed) is type(declared) and parsed == declared
