"""MoE-layer index <-> decoder-layer id, from a checkpoint's config.json alone (no weights, no model class).

rd-eval's expert sets and bands count MoE layers (position in the model's list of MoE layers); tools that
address decoder layers (EasySteer's `layer_configs`) count every layer. The two differ wherever dense layers
come first or interleave. Each family's rule below restates how transformers 5.x (or, for Kimi-VL, the
checkpoint's own modeling code) decides which decoder layers get a MoE block, with the same config defaults.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rd_eval.routing.spec import SpecError, is_integer

CONFIG_FILE = "config.json"


@dataclass(frozen=True)
class LayerMap:
    """The decoder layers that hold a MoE block, in order: position i is MoE-layer index i."""

    model_type: str
    num_layers: int  # decoder layers
    moe_layers: tuple[int, ...]  # decoder-layer id of each MoE layer
    grouped: bool = False  # modality-isolated experts: a text and a vision router per MoE layer (ERNIE-4.5-VL)
    top_k: int | None = None  # experts selected per token, where the config says it plainly
    num_experts: int | None = None  # routed experts per MoE layer, likewise
    norm_topk_prob: bool | None = None  # the config's norm_topk_prob (None: the key is absent)

    def __post_init__(self) -> None:
        if not self.moe_layers:
            raise SpecError(f"{self.model_type}: the config declares no MoE layer among its {self.num_layers} "
                            "decoder layers")
        if list(self.moe_layers) != sorted(set(self.moe_layers)) or self.moe_layers[-1] >= self.num_layers \
                or self.moe_layers[0] < 0:
            raise SpecError(f"{self.model_type}: MoE layers {list(self.moe_layers)} invalid for "
                            f"{self.num_layers} decoder layers")

    def decoder_layer(self, moe_index: int) -> int:
        if not 0 <= moe_index < len(self.moe_layers):
            raise SpecError(f"MoE layer {moe_index} out of range; this {self.model_type} model has MoE layers "
                            f"0..{len(self.moe_layers) - 1}")
        return self.moe_layers[moe_index]

    def moe_index(self, decoder_layer: int) -> int:
        if decoder_layer not in self.moe_layers:
            kind = "a dense layer" if 0 <= decoder_layer < self.num_layers else "not a layer of this model"
            raise SpecError(f"decoder layer {decoder_layer} is {kind} of this {self.model_type} model; its MoE "
                            f"decoder layers are {format_layers(self.moe_layers)}")
        return self.moe_layers.index(decoder_layer)


def format_layers(layers: tuple[int, ...]) -> str:
    """'1-45' or '1, 3, 5' for messages."""
    if layers == tuple(range(layers[0], layers[-1] + 1)) and len(layers) > 2:
        return f"{layers[0]}-{layers[-1]}"
    return ", ".join(str(i) for i in layers)


def _int(config: Mapping[str, Any], key: str, default: int | None, model_type: str) -> int:
    value = config.get(key, default)
    if value is None:
        value = default
    if not is_integer(value) or value < 0:
        raise SpecError(f"{model_type} config {key}={value!r} invalid; need an integer >= 0")
    return int(value)


def _int_list(config: Mapping[str, Any], key: str, model_type: str) -> list[int] | None:
    value = config.get(key)
    if value is None:
        return None
    if not isinstance(value, list) or not all(is_integer(v) for v in value):
        raise SpecError(f"{model_type} config {key}={value!r} invalid; need a list of layer indices")
    return [int(v) for v in value]


def _num_layers(text: Mapping[str, Any], model_type: str) -> int:
    n = _int(text, "num_hidden_layers", None, model_type) if "num_hidden_layers" in text else None
    if not n:
        raise SpecError(f"{model_type} config has no num_hidden_layers >= 1")
    return n


def _first_k_dense(default: int, *, freq: bool = False) -> Callable[[Mapping[str, Any], str, int], list[int]]:
    """DeepSeek-V3 style: layers >= first_k_dense_replace are MoE (GLM-4.5V default 1, DeepSeek-V3 default 3).
    With `freq` (Kimi-VL's own modeling code), also only every moe_layer_freq-th layer."""

    def rule(text: Mapping[str, Any], model_type: str, n: int) -> list[int]:
        first = _int(text, "first_k_dense_replace", default, model_type)
        step = _int(text, "moe_layer_freq", 1, model_type) if freq else 1
        if step < 1:
            raise SpecError(f"{model_type} config moe_layer_freq=0 invalid; need >= 1")
        return [i for i in range(first, n) if i % step == 0]

    return rule


def _qwen_sparse(text: Mapping[str, Any], model_type: str, n: int) -> list[int]:
    """Qwen3-MoE / Qwen3-VL-MoE: not in mlp_only_layers and (i + 1) % decoder_sparse_step == 0."""
    dense = set(_int_list(text, "mlp_only_layers", model_type) or [])
    step = _int(text, "decoder_sparse_step", 1, model_type)
    if step < 1:
        raise SpecError(f"{model_type} config decoder_sparse_step=0 invalid; need >= 1")
    if "num_experts" in text and _int(text, "num_experts", None, model_type) == 0:
        return []
    return [i for i in range(n) if i not in dense and (i + 1) % step == 0]


def _llama4(text: Mapping[str, Any], model_type: str, n: int) -> list[int]:
    """Llama 4: moe_layers when given, else every interleave_moe_layer_step-th layer (from step - 1)."""
    listed = _int_list(text, "moe_layers", model_type)
    if listed is not None:
        return sorted(set(listed))
    step = _int(text, "interleave_moe_layer_step", 1, model_type)
    if step < 1:
        raise SpecError(f"{model_type} config interleave_moe_layer_step=0 invalid; need >= 1")
    return list(range(step - 1, n, step))


def _ernie(text: Mapping[str, Any], model_type: str, n: int) -> list[int]:
    """ERNIE-4.5-VL: mlp_layer_types[i] == 'sparse' (default: the first layer dense, the rest sparse)."""
    types = text.get("mlp_layer_types")
    if types is None:
        types = ["dense"] + ["sparse"] * (n - 1)
    if not isinstance(types, list) or len(types) != n or set(types) - {"dense", "sparse"}:
        raise SpecError(f"{model_type} config mlp_layer_types={types!r} invalid; need {n} of 'dense'/'sparse'")
    return [i for i, kind in enumerate(types) if kind == "sparse"]


def _every_layer(text: Mapping[str, Any], model_type: str, n: int) -> list[int]:
    """Qwen3.5-MoE and Aria build a MoE block in every decoder layer."""
    return list(range(n))


# model_type (top level of config.json) -> rule over the language model's config
RULES: Mapping[str, Callable[[Mapping[str, Any], str, int], list[int]]] = {
    "glm4v_moe": _first_k_dense(1),
    "deepseek_v3": _first_k_dense(3),
    "kimi_vl": _first_k_dense(0, freq=True),
    "qwen3_vl_moe": _qwen_sparse,
    "internvl": _qwen_sparse,  # InternVL3.5 MoE: a qwen3_moe language model
    "qwen3_5_moe": _every_layer,
    "aria": _every_layer,
    "llama4": _llama4,
    "ernie4_5_vl_moe": _ernie,
}
GROUPED = frozenset({"ernie4_5_vl_moe"})
TOP_K_KEYS = ("num_experts_per_tok", "moe_topk", "moe_k")
NUM_EXPERTS_KEYS = ("n_routed_experts", "num_experts", "num_local_experts", "moe_num_experts")


def _first_int(text: Mapping[str, Any], keys: tuple[str, ...]) -> int | None:
    """The first of `keys` holding a positive integer (ERNIE's per-modality lists are left out)."""
    for key in keys:
        value = text.get(key)
        if is_integer(value) and value > 0:
            return int(value)
    return None


def layer_map_from_config(config: Mapping[str, Any], *, source: str = "config.json") -> LayerMap:
    """The layer map of a parsed config.json (the language model's keys sit under text_config in VLMs)."""
    if not isinstance(config, Mapping):
        raise SpecError(f"{source}: not a JSON object")
    model_type = config.get("model_type")
    rule = RULES.get(model_type) if isinstance(model_type, str) else None
    if rule is None:
        raise SpecError(f"{source}: model_type {model_type!r} has no MoE layer map; supported: "
                        f"{', '.join(sorted(RULES))}")
    text = config.get("text_config") or config
    if not isinstance(text, Mapping):
        raise SpecError(f"{source}: text_config is not a JSON object")
    try:
        n = _num_layers(text, model_type)
        return LayerMap(model_type=model_type, num_layers=n, moe_layers=tuple(rule(text, model_type, n)),
                        grouped=model_type in GROUPED, top_k=_first_int(text, TOP_K_KEYS),
                        num_experts=_first_int(text, NUM_EXPERTS_KEYS),
                        norm_topk_prob=text.get("norm_topk_prob") if isinstance(text.get("norm_topk_prob"), bool)
                        else None)
    except SpecError as exc:
        raise SpecError(f"{source}: {exc}") from None


def load_layer_map(pretrained: str | Path) -> LayerMap:
    """The layer map of a local checkpoint folder, read from its config.json (no weights are loaded)."""
    folder = Path(str(pretrained)).expanduser()
    path = folder / CONFIG_FILE
    if not path.is_file():
        raise SpecError(f"pretrained={pretrained}: no {CONFIG_FILE} there; mapping MoE layers to decoder layers "
                        "needs a local checkpoint folder")
    try:
        config = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise SpecError(f"{path}: unreadable config ({exc})") from None
    return layer_map_from_config(config, source=str(path))
