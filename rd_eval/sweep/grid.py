"""The sweep's settings: the YAML grid expanded into named routing settings, in a fixed order, and the model_args
string each setting's own `python -m lmms_eval` run would use."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from rd_eval.routing.describe import PLAIN, SCALED_MODES, describe_setting, number_text
from rd_eval.routing.spec import ExpertSet, InterventionSpec, LayerBand
from rd_eval.sweep.config import DEFAULT_BAND, DEFAULT_SCOPE, SettingsGrid

PLAIN_KEY = "plain"
_DEFAULT_BAND = LayerBand.parse(DEFAULT_BAND)
# Modes whose key always names the band (the λ grid's usual neighbours differ in it); the others name it only
# when it is not the default band.
BAND_IN_KEY = ("soft", "soft_topk", "selection_only")


@dataclass(frozen=True)
class SweepSetting:
    """One routing setting of the sweep: its folder name, its name in words and its spec (None: plain)."""

    key: str  # folder name under OUT/runs/ and OUT/specs/: filesystem-safe, stable, unique in a sweep
    label: str  # what it is, e.g. "soft λ=1, domain experts, band 0.25–0.75"
    spec: InterventionSpec | None
    kind: str  # "plain" or the intervention mode, for grouping in plots
    strength: float | None  # λ of the modes that scale by it

    @property
    def intervention_hash(self) -> str:
        """What routing records and the adapter call this setting ("none" for plain)."""
        return "none" if self.spec is None else self.spec.content_hash()


def band_text(band: LayerBand) -> str:
    """A band in a folder name: "0.25-0.75" (fractions) or "L12.13.14" (MoE-layer indices)."""
    if band.layers is not None:
        return "L" + ".".join(str(i) for i in band.layers)
    lo, hi = band.fractions  # type: ignore[misc]
    return f"{number_text(lo)}-{number_text(hi)}"


def setting_key(spec: InterventionSpec) -> str:
    """The folder name of a setting: mode, then seed (random), λ (scaled modes), band, non-default token scope,
    and the experts' kind when they are not the domain experts."""
    parts = [spec.mode]
    if spec.mode == "random":
        parts.append(f"s{spec.seed}")
    if spec.mode in SCALED_MODES:
        parts.append(f"l{number_text(spec.strength)}")
    if spec.mode in BAND_IN_KEY or spec.band != _DEFAULT_BAND:
        parts.append(f"b{band_text(spec.band)}")
    if spec.token_scope != DEFAULT_SCOPE:
        parts.append(f"scope-{spec.token_scope}")
    if spec.experts.kind != "domain":
        parts.append(spec.experts.kind)
    return "_".join(parts)


def expand_settings(grid: SettingsGrid, experts: ExpertSet | None,
                    visual_experts: ExpertSet | None = None) -> tuple[SweepSetting, ...]:
    """Every setting of the grid: plain first, then each mode (in rd_eval.routing.spec.MODES order) over its
    expert kinds, bands, token scopes, seeds and λ, each in the order the YAML lists them."""
    sets = {"domain": experts, "visual": visual_experts}
    settings: list[SweepSetting] = []
    if grid.plain:
        settings.append(SweepSetting(key=PLAIN_KEY, label=PLAIN, spec=None, kind=PLAIN_KEY, strength=None))
    for mode_grid in grid.modes:
        for kind in mode_grid.experts:
            expert_set = sets[kind]
            if expert_set is None:
                raise ValueError(f"settings.{mode_grid.mode} needs {kind} experts, and none were given")
            for band in mode_grid.bands:
                for scope in mode_grid.token_scopes:
                    for seed in mode_grid.seeds or (0,):
                        for strength in mode_grid.lambdas or (1.0,):
                            spec = InterventionSpec(experts=expert_set, mode=mode_grid.mode, strength=strength,
                                                    band=band, token_scope=scope, seed=seed)
                            settings.append(SweepSetting(
                                key=setting_key(spec), label=describe_setting(spec, experts_kind=kind), spec=spec,
                                kind=mode_grid.mode,
                                strength=spec.strength if mode_grid.mode in SCALED_MODES else None))
    keys = [s.key for s in settings]
    repeated = sorted({k for k in keys if keys.count(k) > 1})
    if repeated:
        raise ValueError(f"settings grid gives the folder name(s) {', '.join(repeated)} to two settings; list "
                         "each band and value once")
    return tuple(settings)


def setting_model_args(base: str, setting: SweepSetting, spec_path: Path | None, routing_dir: Path) -> str:
    """The model_args of the setting's run: the base, the spec file pinned by its content hash (non-plain), and
    where its routing shards go. Paths with commas are refused: lmms-eval's parser would split them."""
    for what, path in (("spec file", spec_path), ("routing folder", routing_dir)):
        if path is not None and "," in str(path):
            raise ValueError(f"{what} {path} contains a comma, which lmms-eval's model_args cannot carry; use a "
                             "sweep folder without commas")
    parts = [base.strip().rstrip(",")] if base.strip() else []
    if setting.spec is not None:
        if spec_path is None:
            raise ValueError(f"setting {setting.key} has an intervention and needs its spec file's path")
        parts += [f"intervention={spec_path}", f"intervention_hash={setting.spec.content_hash()}"]
    parts.append(f"routing_dir={routing_dir}")
    return ",".join(parts)
