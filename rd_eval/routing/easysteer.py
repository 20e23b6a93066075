"""EasySteer interoperability: its `moe_router` files <-> rd-eval intervention specs and expert sets.

EasySteer (the authors' vLLM tooling) reads `{"layer_configs": {"<decoder layer>": {"mode": ..., "expert_ids":
[...], "lambda": ..., ...}}}`, keyed by *decoder-layer* id; rd-eval counts MoE layers. The checkpoint's
config.json maps one onto the other (`rd_eval.routing.layer_map`).

Modes, EasySteer -> rd-eval:
- soft (z + λ·std(z), sample std): rd-eval `soft`, exactly.
- soft_topk: rd-eval `soft_topk` where the family selects the top-k of the raw logits (Qwen3-VL, Qwen3.5,
  InternVL, Aria, Llama 4) and the file's `topk` is the model's k: EasySteer skips experts in the top-`topk` of
  the raw logits, rd-eval those the family's own rule selects, the same set there. Refused on bias / group
  routers (GLM-4.5V, DeepSeek-V3, Kimi-VL), where the two rules pick different experts.
- deactivate: rd-eval `suppress` where the router is blind to a per-token shift of all logits and renormalises
  the selected weights (Qwen3-VL, Qwen3.5, Aria, InternVL with norm_topk_prob): EasySteer hands the router
  log-softmax scores with the experts at the row minimum - epsilon; there the selection and weights are rd-eval's
  suppress exactly. Refused elsewhere (sigmoid routers see the log-softmax shift in every expert's score).
- activate, soft_random: refused, with the reason (`UNSUPPORTED`): no rd-eval mode is their exact twin.

Both directions refuse the same settings, so a converted file always means what it meant.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from rd_eval.fileio.jsonio import read_json, write_json_atomic
from rd_eval.routing.layer_map import LayerMap
from rd_eval.routing.spec import (
    INTERVENTION_FORMAT,
    ExpertSet,
    InterventionSpec,
    LayerBand,
    LayerExperts,
    SpecError,
    is_integer,
    is_number,
)

LAYER_CONFIGS = "layer_configs"
MODES = ("soft", "soft_topk", "soft_random", "activate", "deactivate")
ALIASES = {"boost": "activate", "soft_hard": "activate", "steermoe": "activate", "suppress": "deactivate"}
DEFAULT_MODE = "activate"  # EasySteer's default when a layer names no mode
DEFAULT_LAMBDA = 0.5  # EasySteer's default strength of the soft modes
DEFAULT_TOPK = 8  # EasySteer's default `topk` of soft_topk
LAYER_KEYS = ("mode", "expert_ids", "activate_ids", "deactivate_ids", "epsilon", "lambda", "topk")

# EasySteer mode -> rd-eval mode, for the modes with an rd-eval twin
TO_RD_EVAL = {"soft": "soft", "soft_topk": "soft_topk", "deactivate": "suppress"}
FROM_RD_EVAL = {rd: es for es, rd in TO_RD_EVAL.items()}

UNSUPPORTED = {
    "activate": "EasySteer's activate rewrites the layer's logits as log-softmax and sets the experts to the "
                "row maximum + epsilon (on sigmoid routers every expert's score moves), while rd-eval's force "
                "lifts them by the logits' span + 1: the same experts selected, other routing weights, so no "
                "twin; write an rd-eval spec with mode force if that is what you mean",
    "soft_random": "EasySteer's soft_random draws new random experts for every token on every call, unseeded "
                   "(torch.randperm), so no two runs steer alike and paired comparisons and lmms-eval's "
                   "response cache would mix different interventions; rd-eval's reproducible control is mode "
                   "random (the same number of random experts per layer, seeded): write an rd-eval spec",
    "random": "rd-eval's random control (seeded random experts per layer) has no EasySteer twin (its "
              "soft_random draws per token, unseeded)",
    "force": "rd-eval's force lifts the experts' logits by their span + 1; EasySteer's activate sets their "
             "log-softmax scores to the row maximum + epsilon: other routing weights, so no twin",
    "selection_only": "EasySteer has no mode that changes the selection but not the weights",
}


# Families whose selection is the top-k of the raw router logits (softmax is monotone; Llama 4 takes the top-1).
TOPK_OF_LOGITS = frozenset({"qwen3_vl_moe", "qwen3_5_moe", "internvl", "aria", "llama4"})
# Families whose selection and renormalised weights ignore a per-token shift of all logits (softmax families
# that renormalise the k selected weights; InternVL's qwen3_moe only with norm_topk_prob).
SHIFT_INVARIANT = frozenset({"qwen3_vl_moe", "qwen3_5_moe", "aria"})


def inexact_reason(rd_mode: str, layer_map: LayerMap) -> str | None:
    """Why rd-eval's `rd_mode` is not the exact twin of its EasySteer mode on this model; None when it is."""
    family = layer_map.model_type
    if rd_mode == "soft_topk" and family not in TOPK_OF_LOGITS:
        return (f"EasySteer's soft_topk skips the top-k of the raw logits, but a {family} router selects by "
                "sigmoid score + correction bias within expert groups, which rd-eval's soft_topk follows, so the "
                "two boost different experts; write an rd-eval spec with mode soft_topk (the router's own rule)")
    renormalised = family in SHIFT_INVARIANT or (family == "internvl" and layer_map.norm_topk_prob is True)
    if rd_mode == "suppress" and not renormalised:
        return (f"EasySteer's deactivate hands the {family} router log-softmax scores, which changes the kept "
                "experts' routing weights (and, on sigmoid routers, their scores), while rd-eval's suppress keeps "
                "the family's own weights; write an rd-eval spec with mode suppress")
    return None


def is_easysteer(data: Any) -> bool:
    """An EasySteer `moe_router` file: a `layer_configs` object and no rd-eval `format`."""
    return isinstance(data, Mapping) and LAYER_CONFIGS in data and "format" not in data


def _decoder_layer(key: Any, source: str) -> int:
    text = str(key).strip()
    if not text.isascii() or not text.isdigit():
        raise SpecError(f"{source}: layer_configs key {key!r} invalid; need a decoder-layer id like \"12\"")
    return int(text)


def _ids(value: Any, what: str) -> tuple[int, ...]:
    if not isinstance(value, list) or not all(is_integer(e) and e >= 0 for e in value):
        raise SpecError(f"{what} {value!r} invalid; need a list of expert ids (integers >= 0)")
    if len(set(value)) != len(value):
        raise SpecError(f"{what} {value!r} lists an expert twice")
    return tuple(int(e) for e in value)


def _layer_setting(layer: int, params: Any, source: str, layer_map: LayerMap) -> tuple[str, float, int | None,
                                                                                        tuple[int, ...]]:
    """(rd-eval mode, lambda, topk, experts) of one layer entry, or a one-line refusal."""
    where = f"{source}: layer_configs[\"{layer}\"]"
    if not isinstance(params, Mapping):
        raise SpecError(f"{where} is not a JSON object")
    unknown = sorted(set(params) - set(LAYER_KEYS))
    if unknown:
        raise SpecError(f"{where}: unknown keys {unknown}; EasySteer's keys: {', '.join(LAYER_KEYS)}")
    raw_mode = params.get("mode", DEFAULT_MODE)
    mode = ALIASES.get(raw_mode, raw_mode) if isinstance(raw_mode, str) else raw_mode
    if mode not in MODES:
        raise SpecError(f"{where}: mode {raw_mode!r} invalid; EasySteer's modes: {', '.join(MODES)}")
    if mode not in TO_RD_EVAL:
        shown = mode if raw_mode == mode else f"{raw_mode} (= {mode})"
        raise SpecError(f"{where}: mode {shown} is refused: {UNSUPPORTED[mode]}")
    reason = inexact_reason(TO_RD_EVAL[mode], layer_map)
    if reason is not None:
        raise SpecError(f"{where}: mode {mode} is refused on this model: {reason}")
    if "expert_ids" not in params:
        raise SpecError(f"{where}: missing expert_ids")
    experts = _ids(params["expert_ids"], f"{where}: expert_ids")
    if mode == "deactivate":
        experts += tuple(e for e in _ids(params.get("deactivate_ids") or [], f"{where}: deactivate_ids")
                         if e not in experts)
        if params.get("activate_ids"):
            raise SpecError(f"{where}: activate_ids with mode deactivate is refused: rd-eval steers one direction "
                            f"per spec, and {UNSUPPORTED['activate']}")
    elif params.get("activate_ids") or params.get("deactivate_ids"):
        raise SpecError(f"{where}: activate_ids/deactivate_ids belong to modes activate/deactivate, not {mode}")
    if not experts:
        raise SpecError(f"{where}: expert_ids is empty; the layer would steer nothing (leave the layer out)")
    if layer_map.num_experts is not None and max(experts) >= layer_map.num_experts:
        raise SpecError(f"{where}: expert ids {[e for e in experts if e >= layer_map.num_experts]} out of range; "
                        f"this model has experts 0..{layer_map.num_experts - 1}")
    lam = params.get("lambda", DEFAULT_LAMBDA)
    if not is_number(lam) or not math.isfinite(lam):
        raise SpecError(f"{where}: lambda {lam!r} invalid; need a finite number")
    topk = None
    if mode == "soft_topk":
        topk = params.get("topk", DEFAULT_TOPK)
        if not is_integer(topk) or topk < 1:
            raise SpecError(f"{where}: topk {topk!r} invalid; need an integer >= 1")
        if layer_map.top_k is not None and topk != layer_map.top_k:
            raise SpecError(
                f"{where}: soft_topk with topk={topk} is refused: this model selects {layer_map.top_k} experts per "
                f"token, and rd-eval's soft_topk skips the experts the router itself selects (its top-"
                f"{layer_map.top_k} by the family's own rule); set \"topk\": {layer_map.top_k}"
            )
    elif "topk" in params:
        raise SpecError(f"{where}: topk belongs to mode soft_topk, not {mode}")
    return TO_RD_EVAL[mode], float(lam) if mode != "deactivate" else 1.0, topk, experts


def from_easysteer(data: Any, layer_map: LayerMap, *, source: str = "EasySteer file") -> InterventionSpec:
    """The rd-eval intervention spec of an EasySteer `moe_router` file, on the model `layer_map` describes.

    The band is the file's layers (as MoE-layer indices); every layer must share one mode and lambda (an
    rd-eval spec has one of each); token scope all, as EasySteer steers every token.
    """
    if not is_easysteer(data):
        raise SpecError(f"{source}: not an EasySteer file; need {{\"layer_configs\": {{\"<decoder layer>\": ...}}}}")
    extra = sorted(set(data) - {LAYER_CONFIGS})
    if extra:
        raise SpecError(f"{source}: unknown top-level keys {extra}; an EasySteer file holds only {LAYER_CONFIGS!r}")
    configs = data[LAYER_CONFIGS]
    if not isinstance(configs, Mapping) or not configs:
        raise SpecError(f"{source}: layer_configs must be a non-empty object of decoder layer -> settings")
    if layer_map.grouped:
        raise SpecError(f"{source}: a {layer_map.model_type} model has a text and a vision router per layer, and "
                        "EasySteer's layer_configs name one router per decoder layer; write an rd-eval spec "
                        "(its layers carry the expert group)")
    settings: dict[int, tuple[str, float, int | None, tuple[int, ...]]] = {}
    for key, params in configs.items():
        layer = _decoder_layer(key, source)
        if layer in settings:
            raise SpecError(f"{source}: decoder layer {layer} is listed twice")
        settings[layer] = _layer_setting(layer, params, source, layer_map)
    modes = {(mode, lam) for mode, lam, _, _ in settings.values()}
    if len(modes) > 1:
        shown = ", ".join(f"layer {layer}: {m} lambda={lam:g}" for layer, (m, lam, _, _) in sorted(settings.items()))
        raise SpecError(f"{source}: layers differ in mode or lambda ({shown}); an rd-eval spec has one mode and "
                        "one lambda: split the file")
    mode, lam = next(iter(modes))
    layers = []
    for decoder_layer, (_, _, _, experts) in sorted(settings.items()):
        try:
            moe_index = layer_map.moe_index(decoder_layer)
        except SpecError as exc:
            raise SpecError(f"{source}: layer_configs[\"{decoder_layer}\"]: {exc}") from None
        layers.append(LayerExperts(moe_index=moe_index, experts=experts))
    experts_set = ExpertSet(model="", kind="domain", layers=tuple(layers),
                            method={"converted_from": "easysteer", "model_type": layer_map.model_type,
                                    "decoder_layers": sorted(settings)})
    return InterventionSpec(experts=experts_set, mode=mode, strength=lam,
                            band=LayerBand(fractions=None, layers=tuple(le.moe_index for le in layers)))


def to_easysteer(item: InterventionSpec | ExpertSet, layer_map: LayerMap, *, strength: float = 1.0,
                 source: str = "spec") -> dict[str, Any]:
    """The EasySteer `moe_router` file of an rd-eval spec (its band's layers) or expert set (every layer, mode
    soft at `strength`). Settings EasySteer cannot express are refused with the reason."""
    if isinstance(item, ExpertSet):
        item = InterventionSpec(experts=item, mode="soft", strength=strength,
                                band=LayerBand(fractions=None, layers=tuple(sorted({le.moe_index for le in
                                                                                    item.layers})) or (0,)))
    spec = item
    if spec.mode not in FROM_RD_EVAL:
        raise SpecError(f"{source}: mode {spec.mode} cannot be written for EasySteer: {UNSUPPORTED[spec.mode]}")
    reason = inexact_reason(spec.mode, layer_map)
    if reason is not None:
        raise SpecError(f"{source}: mode {spec.mode} cannot be written for EasySteer on this model: {reason}")
    if spec.token_scope != "all":
        raise SpecError(f"{source}: token scope {spec.token_scope!r} cannot be written for EasySteer, which steers "
                        "every token; use token_scope all")
    correction = getattr(spec, "std_correction", 1)
    if spec.mode != "suppress" and correction != 1:
        raise SpecError(f"{source}: the spec boosts by the population std (std_correction={correction}); EasySteer "
                        "uses torch's sample std (correction 1), so the file would steer differently")
    grouped = [le.moe_index for le in spec.experts.layers if le.group]
    if grouped or layer_map.grouped:
        raise SpecError(f"{source}: expert groups (a text and a vision router per layer, e.g. ERNIE-4.5-VL) "
                        "cannot be written for EasySteer, whose layer_configs name one router per decoder layer")
    _check_site_table(spec.experts, layer_map, source)
    band = set(spec.band.resolve(len(layer_map.moe_layers)))
    outside = sorted(le.moe_index for le in spec.experts.layers if le.experts and le.moe_index not in band)
    if outside:
        raise SpecError(f"{source}: MoE layers {outside} have experts but lie outside the band {sorted(band)}; "
                        "rd-eval would not steer them: fix the band or the expert set")
    if spec.is_noop:
        raise SpecError(f"{source}: the intervention steers nothing (no experts, or lambda 0); nothing to write")
    configs: dict[str, Any] = {}
    for le in sorted(spec.experts.layers, key=lambda le: le.moe_index):
        if not le.experts:
            continue
        entry: dict[str, Any] = {"mode": FROM_RD_EVAL[spec.mode], "expert_ids": list(le.experts)}
        if spec.mode != "suppress":
            entry["lambda"] = spec.strength
        if spec.mode == "soft_topk":
            if layer_map.top_k is None:
                raise SpecError(f"{source}: the model's config names no top-k, which EasySteer's soft_topk needs")
            entry["topk"] = layer_map.top_k
        configs[str(layer_map.decoder_layer(le.moe_index))] = entry
    return {LAYER_CONFIGS: configs}


def _check_site_table(experts: ExpertSet, layer_map: LayerMap, source: str) -> None:
    """An expert set that records its model's site table must place each MoE layer on the decoder layer the
    checkpoint's config does; otherwise it was made on another model and the file would steer other layers."""
    table = getattr(experts, "sites", None)
    if table is None or getattr(table, "legacy", False):
        return
    for row in table.rows:
        if row.moe_index < len(layer_map.moe_layers) and row.layer == layer_map.moe_layers[row.moe_index]:
            continue
        where = (f"decoder layer {layer_map.moe_layers[row.moe_index]}" if row.moe_index < len(layer_map.moe_layers)
                 else f"no layer (it has MoE layers 0..{len(layer_map.moe_layers) - 1})")
        raise SpecError(f"{source}: the expert set's site table puts MoE layer {row.moe_index} on decoder layer "
                        f"{row.layer}, this checkpoint's config on {where}: the set was made on another model")


def load_intervention(path: str | os.PathLike[str], pretrained: str | os.PathLike[str] | None) -> InterventionSpec:
    """An intervention file, rd-eval's or EasySteer's (detected); an EasySteer file is mapped onto the checkpoint
    `pretrained` names (its config.json), which it needs."""
    from rd_eval.routing.layer_map import load_layer_map

    data = read_json(path)
    if not is_easysteer(data):
        return InterventionSpec.from_json(data, source=str(path))
    if pretrained is None or not str(pretrained).strip():
        raise SpecError(f"{path}: an EasySteer file names decoder layers; mapping them needs the checkpoint "
                        "(pretrained=DIR)")
    return from_easysteer(data, load_layer_map(pretrained), source=str(path))


def load_expert_set(path: str | os.PathLike[str]) -> ExpertSet:
    """An rd-eval expert set file; an EasySteer file here is named as such (it belongs in `intervention=`)."""
    data = read_json(path)
    if is_easysteer(data):
        raise SpecError(f"{path} is an EasySteer file (layer_configs with modes and lambdas): pass it as "
                        "intervention=FILE, not expert_set=")
    return ExpertSet.from_json(data, source=str(path))


def convert_file(path: str | os.PathLike[str], to: str, out: str | os.PathLike[str],
                 pretrained: str | os.PathLike[str] | None) -> tuple[Path, str]:
    """`rd-eval experts convert`: write `path` in the other format; returns (written path, one-line summary)."""
    from rd_eval.routing.layer_map import format_layers, load_layer_map

    data = read_json(path)
    if pretrained is None or not str(pretrained).strip():
        raise SpecError(f"{path}: converting needs the checkpoint's config.json to map MoE layers to decoder "
                        "layers: add --model_args pretrained=DIR")
    layer_map = load_layer_map(pretrained)
    if to == "easysteer":
        if is_easysteer(data):
            raise SpecError(f"{path} is already an EasySteer file")
        is_spec = isinstance(data, Mapping) and data.get("format") == INTERVENTION_FORMAT
        item = InterventionSpec.from_json(data, source=str(path)) if is_spec else ExpertSet.from_json(data,
                                                                                                    source=str(path))
        result = to_easysteer(item, layer_map, source=str(path))
        layers = format_layers(tuple(int(k) for k in result[LAYER_CONFIGS]))
        return write_json_atomic(out, result), f"EasySteer layer_configs for decoder layers {layers}"
    if to == "rd-eval":
        if not is_easysteer(data):
            raise SpecError(f"{path} is not an EasySteer file (no layer_configs); it is already rd-eval's format")
        spec = from_easysteer(data, layer_map, source=str(path))
        moe = format_layers(tuple(le.moe_index for le in spec.experts.layers))
        return spec.save(out), (f"rd-eval intervention spec, mode {spec.mode}, lambda {spec.strength:g}, "
                                f"MoE layers {moe}, hash {spec.content_hash()}")
    raise SpecError(f"--to {to!r} invalid; use easysteer or rd-eval")
