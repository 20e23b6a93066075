"""A routing setting named by what it is: "plain", "soft λ=1, domain experts, band 0.25–0.75", "random control,
seed 0, λ=1, band 0.25–0.75", "suppress domain experts, layers 12, 13, 14, image tokens".

:func:`describe_setting` names one spec from its own fields: mode, λ (modes that scale by it), the experts' kind,
the band, the token scope, and the seed and std of the boost where they are not the defaults. Two specs that
differ only in their expert set (two domain sets of different identifications) get the same name from it: a
table of several settings names them with :func:`setting_names`, which adds the expert set's short content hash
to such names (and the spec's own hash where even that does not separate them), so no two specs share a name.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

from rd_eval.routing.spec import EXPERT_KINDS, InterventionSpec, LayerBand, SpecError

__all__ = ["PLAIN", "describe_band", "describe_family", "describe_setting", "setting_names"]

PLAIN = "plain"
DEFAULT_FRACTIONS = LayerBand().fractions
# Modes whose boost is λ·std(z) (docs/design.md §3.5); force and suppress shift by the row's span, λ unused.
SCALED_MODES = ("soft", "soft_topk", "random", "selection_only")
SCOPE_WORDS = {"prompt": "prompt tokens", "generated": "generated tokens", "text": "text tokens",
               "image": "image tokens"}  # "all" (the default) is left unsaid
MODE_WORDS = {"soft": "soft", "soft_topk": "soft_topk", "selection_only": "selection-only"}
HASH_LENGTH = 6


def number_text(value: float) -> str:
    """Shortest text that reads back as the same float (1.0 -> "1", 0.25 -> "0.25"): equal text, equal value."""
    text = repr(float(value))
    return text[:-2] if text.endswith(".0") else text


def describe_band(band: LayerBand) -> str:
    """ "band 0.25–0.75" (fractions of the MoE layers) or "layers 12, 13, 14" (MoE-layer indices)."""
    if band.layers is not None:
        return "layers " + ", ".join(str(i) for i in band.layers)
    lo, hi = band.fractions  # type: ignore[misc]
    return f"band {number_text(lo)}–{number_text(hi)}"


def describe_setting(spec: InterventionSpec | None, *, experts_kind: str | None = None) -> str:
    """What the setting is, in words; "plain" for no intervention.

    `experts_kind` names the experts' kind where the caller knows it better than the set does (an EasySteer file
    loads as a "domain" set whatever it holds); default: the set's own kind.
    """
    if spec is None:
        return PLAIN
    return _describe(spec, experts_kind, f"λ={number_text(spec.strength)}")


def describe_family(spec: InterventionSpec, *, experts_kind: str | None = None) -> str:
    """The name with λ left open ("soft λ=…, domain experts, band 0.25–0.75"): what settings of a λ sweep share."""
    return _describe(spec, experts_kind, "λ=…")


def _describe(spec: InterventionSpec, experts_kind: str | None, strength: str) -> str:
    kind = spec.experts.kind if experts_kind is None else experts_kind
    if kind not in EXPERT_KINDS:
        raise SpecError(f"experts_kind {kind!r} invalid; valid: {', '.join(EXPERT_KINDS)}")
    experts = "no experts (empty set)" if spec.experts.is_empty else f"{kind} experts"
    if spec.mode == "random":
        # The control draws random experts, as many per layer as the set has: the set's kind is what it mirrors.
        head = ["random control" if kind == "domain" else f"random control for {experts}", f"seed {spec.seed}",
                strength]
    elif spec.mode in SCALED_MODES:
        head = [f"{MODE_WORDS[spec.mode]} {strength}", experts]
    else:  # force / suppress
        head = [f"{spec.mode} {experts}"]
    parts = [*head, describe_band(spec.band)]
    if spec.token_scope != "all":
        parts.append(SCOPE_WORDS[spec.token_scope])
    if spec.mode != "random" and spec.seed != 0:
        parts.append(f"seed {spec.seed}")  # unused by the mode, but part of the spec (and of its hash)
    if spec.std_correction == 0 and spec.mode in SCALED_MODES:
        parts.append("population std")
    return ", ".join(parts)


def setting_names(specs: Mapping[str, InterventionSpec | None]) -> dict[str, str]:
    """Names for several settings, keyed as given (e.g. by content hash), no two alike for two different specs.

    A name :func:`describe_setting` gives to specs of different expert sets gets the set's short hash
    ("…, experts 1a2b3c"); names still shared (specs differing in a field the name leaves out, such as λ of
    suppress) get the spec's own ("…, spec 4e5144"). Equal specs under two keys keep one name."""
    names = {key: describe_setting(spec) for key, spec in specs.items()}
    names = _separate(names, specs, lambda spec: spec.experts.content_hash(), "experts")
    return _separate(names, specs, lambda spec: spec.content_hash(), "spec")


def _separate(names: dict[str, str], specs: Mapping[str, InterventionSpec | None],
              identity: Callable[[InterventionSpec], str], word: str) -> dict[str, str]:
    """`names` where settings sharing a name differ in `identity`: each gets ", <word> <identity[:6]>"."""
    by_name: dict[str, list[str]] = {}
    for key, name in names.items():
        by_name.setdefault(name, []).append(key)
    out = dict(names)
    for name, keys in by_name.items():
        ids = {key: identity(spec) for key in keys if (spec := specs[key]) is not None}
        if len(set(ids.values())) < 2:
            continue
        for key, found in ids.items():
            out[key] = f"{name}, {word} {found[:HASH_LENGTH]}"
    return out
