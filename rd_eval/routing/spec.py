"""Expert sets and intervention specs: frozen, validated on creation, exchanged as versioned JSON.

Layer numbers in both are MoE-layer indices (positions in the model's list of MoE layers), so a band of
fractions 0.25-0.75 means the middle half of the MoE layers whatever the dense/sparse interleaving.
"""

from __future__ import annotations

import math
import numbers
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rd_eval.fileio.jsonio import canonical_hash, read_json, write_json_atomic
from rd_eval.routing.site_table import SiteTable, SiteTableError
from rd_eval.vocabulary.scopes import TOKEN_SCOPES

EXPERT_SET_FORMAT = "rd-eval.expert-set"
INTERVENTION_FORMAT = "rd-eval.intervention"
FORMAT_VERSION = 1
# Intervention specs: version 2 records the std of the soft boost ("std_correction": 1, torch's default sample
# std as EasySteer computes it, or 0, the population std). A version 1 file meant the population std and still
# loads with that meaning; a population-std spec is still written as version 1, so its content hash is unchanged.
INTERVENTION_VERSION = 2
INTERVENTION_VERSIONS = (1, 2)
STD_CORRECTIONS = (0, 1)
# Expert sets: version 2 carries the model's site table ("sites"); version 1 (no table) still loads with its old
# meaning, a layer entry naming a MoE layer (and group) with no record of the model's sites. A set without a table
# is still written as version 1, so the hashes of interventions built from such sets do not change.
EXPERT_SET_VERSION = 2
EXPERT_SET_VERSIONS = (1, 2)

MODES = ("soft", "soft_topk", "random", "force", "suppress", "selection_only")
EXPERT_KINDS = ("domain", "visual")


class SpecError(ValueError):
    """An expert set or intervention spec is invalid; the message names the key and what is valid."""


BAND_SEPARATORS = (":", ",")  # ':' passes through lmms-eval's model_args parser (',' separates its keys)


def is_integer(value: Any) -> bool:
    """A true integer (numpy's too): bool (a JSON true) and integral floats (1.0) are not, so nothing is
    truncated."""
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def is_number(value: Any) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def json_int(value: Any, what: str) -> int:
    """An integer read from a JSON file; a float (1.7) or bool is refused, never truncated."""
    if not is_integer(value):
        raise SpecError(f"{what} {value!r} invalid; need an integer (not a float or bool)")
    return int(value)


def json_float(value: Any, what: str) -> float:
    """A number read from a JSON file; strings and bools are refused."""
    if not is_number(value):
        raise SpecError(f"{what} {value!r} invalid; need a number")
    return float(value)


def _json_list(value: Any, what: str) -> list[Any]:
    if not isinstance(value, list):
        raise SpecError(f"{what} {value!r} invalid; need a JSON list")
    return value


def _parse_index(text: str) -> int:
    piece = text.strip()
    if not piece.isascii() or not piece.isdigit():
        raise ValueError(piece)
    return int(piece)


@dataclass(frozen=True)
class LayerBand:
    """MoE layers an intervention applies to: fractions [lo, hi) of the MoE-layer list, or explicit indices."""

    fractions: tuple[float, float] | None = (0.25, 0.75)
    layers: tuple[int, ...] | None = None

    def __post_init__(self) -> None:
        if (self.fractions is None) == (self.layers is None):
            raise SpecError("band: give exactly one of 'fractions' [lo, hi] or 'layers' [indices]")
        if self.fractions is not None:
            lo, hi = self.fractions
            if not (is_number(lo) and is_number(hi) and 0.0 <= lo < hi <= 1.0):
                raise SpecError(f"band fractions {list(self.fractions)} invalid; need 0 <= lo < hi <= 1")
            object.__setattr__(self, "fractions", (float(lo), float(hi)))  # canonical, so hashes agree
        if self.layers is not None:
            if not all(is_integer(i) for i in self.layers):
                raise SpecError(f"band layers {list(self.layers)} invalid; MoE-layer indices are integers "
                                "(not floats or bools)")
            if not self.layers or any(i < 0 for i in self.layers) or len(set(self.layers)) != len(self.layers):
                raise SpecError(f"band layers {list(self.layers)} invalid; need distinct MoE-layer indices >= 0")
            object.__setattr__(self, "layers", tuple(int(i) for i in self.layers))

    def resolve(self, num_moe_layers: int) -> tuple[int, ...]:
        """The MoE-layer indices in the band for a model with `num_moe_layers` MoE layers."""
        if self.layers is not None:
            bad = [i for i in self.layers if i >= num_moe_layers]
            if bad:
                raise SpecError(
                    f"band layers {bad} out of range; this model has MoE layers 0..{num_moe_layers - 1}"
                )
            return tuple(sorted(self.layers))
        lo, hi = self.fractions  # type: ignore[misc]
        # Round to the nearest layer boundary, but never leave the model or return an empty band.
        start = min(math.floor(lo * num_moe_layers + 0.5), num_moe_layers - 1)
        stop = min(max(math.floor(hi * num_moe_layers + 0.5), start + 1), num_moe_layers)
        return tuple(range(start, stop))

    @classmethod
    def parse(cls, text: str) -> LayerBand:
        """'0.25-0.75' (fractions) or '12:13:14' (MoE-layer indices; '12,13,14' too where no lmms-eval
        model_args string carries it, e.g. `rd-eval demo --band`)."""
        value = str(text).strip()
        usage = "use fractions like '0.25-0.75' or MoE-layer indices like '12:13:14'"
        seps = [sep for sep in BAND_SEPARATORS if sep in value]
        if len(seps) > 1:
            raise SpecError(f"band {text!r} invalid: mixes ':' and ','; {usage}")
        try:
            if "-" in value and not seps:
                lo, hi = (float(v) for v in value.split("-", 1))
                return cls(fractions=(lo, hi))
            pieces = value.split(seps[0]) if seps else [value]
            return cls(fractions=None, layers=tuple(_parse_index(v) for v in pieces if v.strip()))
        except ValueError:
            raise SpecError(f"band {text!r} invalid; {usage}") from None

    def to_json(self) -> dict[str, Any]:
        return {"fractions": list(self.fractions)} if self.fractions is not None else {"layers": list(self.layers)}

    @classmethod
    def from_json(cls, data: Any) -> LayerBand:
        usage = "use {'fractions': [lo, hi]} or {'layers': [i, ...]}"
        if not isinstance(data, Mapping) or len(data) != 1 or set(data) - {"fractions", "layers"}:
            raise SpecError(f"band {data!r} invalid; {usage}")
        key, value = next(iter(data.items()))
        not_a_list = isinstance(value, (str, bytes)) or not isinstance(value, Sequence)
        if not_a_list or (key == "fractions" and len(value) != 2):
            raise SpecError(f"band {key} {value!r} invalid; {usage}")
        if key == "fractions":
            if not all(is_number(v) for v in value):
                raise SpecError(f"band fractions {value!r} invalid: not numbers; {usage}")
            return cls(fractions=(float(value[0]), float(value[1])))
        if not all(is_integer(i) for i in value):
            raise SpecError(f"band layers {value!r} invalid: MoE-layer indices are integers (not floats or bools)")
        return cls(fractions=None, layers=tuple(value))


@dataclass(frozen=True)
class LayerExperts:
    moe_index: int
    experts: tuple[int, ...]
    scores: tuple[float, ...] = ()
    group: str = ""  # expert group of modality-isolated families (ERNIE-4.5-VL: "text" / "vision")

    def __post_init__(self) -> None:
        if not is_integer(self.moe_index):
            raise SpecError(f"expert set layer {self.moe_index!r} invalid; MoE-layer indices are integers")
        if not all(is_integer(e) for e in self.experts):
            raise SpecError(f"layer {self.moe_index}: experts {list(self.experts)} invalid; expert ids are integers "
                            "(a float or bool would be truncated to another expert)")
        if self.moe_index < 0:
            raise SpecError(f"expert set layer {self.moe_index} invalid; MoE-layer indices are >= 0")
        if any(e < 0 for e in self.experts) or len(set(self.experts)) != len(self.experts):
            raise SpecError(f"layer {self.moe_index}: experts {list(self.experts)} must be distinct ids >= 0")
        if self.scores and len(self.scores) != len(self.experts):
            raise SpecError(f"layer {self.moe_index}: {len(self.scores)} scores for {len(self.experts)} experts")
        object.__setattr__(self, "moe_index", int(self.moe_index))
        object.__setattr__(self, "experts", tuple(int(e) for e in self.experts))


@dataclass(frozen=True)
class ExpertSet:
    """Experts per MoE layer (domain or visual), with how they were found, reusable across tasks and runs."""

    model: str
    kind: str
    layers: tuple[LayerExperts, ...]
    method: Mapping[str, Any] = field(default_factory=dict)
    # The site table of the model the set was identified on (None: a version 1 set, made before tables were
    # recorded). With a table, every layer entry names a (MoE layer, group) of it, and its experts exist there.
    sites: SiteTable | None = None

    def __post_init__(self) -> None:
        if self.kind not in EXPERT_KINDS:
            raise SpecError(f"expert set kind {self.kind!r} invalid; valid: {', '.join(EXPERT_KINDS)}")
        keys = [(layer.moe_index, layer.group) for layer in self.layers]
        if len(set(keys)) != len(keys):
            raise SpecError(f"expert set lists a layer twice: {[k[0] for k in keys]}")
        if self.sites is not None:
            for layer in self.layers:
                row = self.sites.row_of(layer.moe_index, layer.group)
                if row is None:
                    have = sorted({f"{r.moe_index}/{r.group}" if r.group else str(r.moe_index)
                                   for r in self.sites.rows}, key=lambda k: (int(k.split("/")[0]), k))
                    raise SpecError(f"expert set layer {layer.moe_index} group {layer.group!r} is not a site of its "
                                    f"site table; sites (MoE layer[/group]): {', '.join(have)}")
                bad = [e for e in layer.experts if row.num_experts and e >= row.num_experts]
                if bad:
                    raise SpecError(f"expert set layer {row.label()}: experts {bad} out of range; that site has "
                                    f"experts 0..{row.num_experts - 1}")

    def experts_by_site_key(self) -> dict[tuple[int, str], tuple[int, ...]]:
        """Experts per (MoE layer, expert group)."""
        return {(layer.moe_index, layer.group): layer.experts for layer in self.layers if layer.experts}

    @property
    def is_empty(self) -> bool:
        return not any(layer.experts for layer in self.layers)

    def content_hash(self, length: int = 12) -> str:
        """Identifies the set's content (experts, sites, method): the same set read back has the same hash."""
        return canonical_hash(self.to_json(), length)

    def to_json(self) -> dict[str, Any]:
        data = {
            "format": EXPERT_SET_FORMAT,
            "version": FORMAT_VERSION if self.sites is None else EXPERT_SET_VERSION,
            "model": self.model,
            "kind": self.kind,
            "method": dict(self.method),
            "layers": [
                {"moe_index": le.moe_index, "experts": list(le.experts), "scores": list(le.scores)}
                | ({"group": le.group} if le.group else {})
                for le in self.layers
            ],
        }
        return data if self.sites is None else data | {"sites": self.sites.to_json()}

    @classmethod
    def from_json(cls, data: Any, *, source: str = "expert set") -> ExpertSet:
        _check_format(data, EXPERT_SET_FORMAT, source, EXPERT_SET_VERSIONS)
        known = {"format", "version", "model", "kind", "method", "layers"}
        known |= {"sites"} if data["version"] >= 2 else set()
        unknown = sorted(set(data) - known)
        if unknown:
            raise SpecError(f"{source}: unknown keys {unknown}; valid keys: {sorted(known)}")
        try:
            layers = tuple(
                LayerExperts(
                    moe_index=json_int(item["moe_index"], "expert set layer"),
                    experts=tuple(_json_list(item["experts"], f"layer {item['moe_index']}: experts")),
                    scores=tuple(json_float(s, f"layer {item['moe_index']}: score") for s in item.get("scores", ())),
                    group=str(item.get("group", "")),
                )
                for item in data["layers"]
            )
            if data["version"] >= 2 and "sites" not in data:
                raise SpecError("version 2 needs 'sites' (the model's site table)")
            sites = SiteTable.from_json(data["sites"], source="sites") if "sites" in data else None
            return cls(model=str(data.get("model", "")), kind=str(data["kind"]), layers=layers,
                       method=dict(data.get("method", {})), sites=sites)
        except (SpecError, SiteTableError) as exc:
            raise SpecError(f"{source}: {exc}") from None
        except (KeyError, TypeError, ValueError) as exc:
            raise SpecError(f"{source}: malformed expert set ({exc!r}); need 'kind' and 'layers' "
                            "[{moe_index, experts, scores}]") from None

    def save(self, path: str | os.PathLike[str]) -> Path:
        return write_json_atomic(path, self.to_json())

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> ExpertSet:
        return cls.from_json(read_json(path), source=str(path))


@dataclass(frozen=True)
class InterventionSpec:
    """docs/design.md §3.5: which experts to steer, how, where (band), on which tokens."""

    experts: ExpertSet
    mode: str = "soft"
    # λ: the boost in units of the per-token std of the layer's router logits. Any finite λ: docs/design.md §3.5's
    # z + λ·std(z) holds for either sign, and a negative λ is a graded soft suppression (its sign is in the hash).
    strength: float = 1.0
    band: LayerBand = field(default_factory=LayerBand)
    token_scope: str = "all"
    seed: int = 0  # only the `random` control uses it
    std_correction: int = 1  # the std of the soft boost: 1 sample std (torch's default, EasySteer's), 0 population

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise SpecError(f"intervention mode {self.mode!r} invalid; valid: {', '.join(MODES)}")
        if isinstance(self.strength, bool) or not isinstance(self.strength, (int, float)) \
                or not math.isfinite(self.strength):
            raise SpecError(f"intervention strength (lambda) {self.strength!r} invalid; need a finite number")
        # Canonical float, so equal specs serialise, and hash, identically (1 and 1.0 alike).
        object.__setattr__(self, "strength", float(self.strength))
        if self.token_scope not in TOKEN_SCOPES:
            raise SpecError(f"token scope {self.token_scope!r} invalid; valid: {', '.join(TOKEN_SCOPES)}")
        if not is_integer(self.seed) or self.seed < 0:
            raise SpecError(f"intervention seed {self.seed!r} invalid; need an integer >= 0 (not a float or bool)")
        object.__setattr__(self, "seed", int(self.seed))
        if not is_integer(self.std_correction) or self.std_correction not in STD_CORRECTIONS:
            raise SpecError(f"intervention std_correction {self.std_correction!r} invalid; valid: 1 (sample std, "
                            "the default) or 0 (population std)")
        object.__setattr__(self, "std_correction", int(self.std_correction))

    @property
    def is_noop(self) -> bool:
        """True when the spec cannot change any routing decision or weight."""
        scaled = self.mode in ("soft", "soft_topk", "random", "selection_only")
        return self.experts.is_empty or (scaled and self.strength == 0.0)

    def to_json(self) -> dict[str, Any]:
        population = self.std_correction == 0  # exactly what a version 1 file means
        data: dict[str, Any] = {
            "format": INTERVENTION_FORMAT,
            "version": FORMAT_VERSION if population else INTERVENTION_VERSION,
            "mode": self.mode,
            "lambda": self.strength,
            "band": self.band.to_json(),
            "token_scope": self.token_scope,
            "seed": self.seed,
            "experts": self.experts.to_json(),
        }
        return data if population else data | {"std_correction": self.std_correction}

    def content_hash(self) -> str:
        """Identifies the intervention in routing records, run matching and lmms-eval's response cache."""
        return canonical_hash(self.to_json())

    @classmethod
    def from_json(cls, data: Any, *, source: str = "intervention spec") -> InterventionSpec:
        _check_format(data, INTERVENTION_FORMAT, source, INTERVENTION_VERSIONS)
        known = {"format", "version", "mode", "lambda", "band", "token_scope", "seed", "experts"}
        known |= {"std_correction"} if data["version"] >= 2 else set()
        unknown = sorted(set(data) - known)
        if unknown:
            raise SpecError(f"{source}: unknown keys {unknown}; valid keys: {sorted(known)}")
        if "experts" not in data:
            raise SpecError(f"{source}: missing 'experts' (an expert set object)")
        try:
            return cls(
                experts=ExpertSet.from_json(data["experts"], source=f"{source}: experts"),
                mode=str(data.get("mode", "soft")),
                strength=json_float(data.get("lambda", 1.0), "lambda"),
                band=LayerBand.from_json(data.get("band", {"fractions": [0.25, 0.75]})),
                token_scope=str(data.get("token_scope", "all")),
                seed=json_int(data.get("seed", 0), "seed"),
                # Version 1 files were written when the boost used the population std: they keep that meaning.
                std_correction=json_int(data.get("std_correction", 1), "std_correction") if data["version"] >= 2
                else 0,
            )
        except SpecError as exc:
            msg = str(exc)
            raise SpecError(msg if msg.startswith(source) else f"{source}: {msg}") from None
        except (TypeError, ValueError) as exc:
            raise SpecError(f"{source}: malformed intervention spec ({exc})") from None

    def save(self, path: str | os.PathLike[str]) -> Path:
        return write_json_atomic(path, self.to_json())

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> InterventionSpec:
        return cls.from_json(read_json(path), source=str(path))


def _check_format(data: Any, expected: str, source: str, versions: Sequence[int] = (FORMAT_VERSION,)) -> None:
    if not isinstance(data, Mapping):
        raise SpecError(f"{source}: expected a JSON object with \"format\": \"{expected}\"")
    if data.get("format") != expected:
        raise SpecError(f"{source}: format {data.get('format')!r} is not {expected!r}")
    version = data.get("version")
    if not is_integer(version) or version not in versions:
        raise SpecError(f"{source}: version {version!r} unsupported; this rd-eval reads "
                        f"{', '.join(str(v) for v in versions)}")
