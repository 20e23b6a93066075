"""`rd-eval experts`: identify a checkpoint's domain (or visual) experts from probe sets (docs/design.md §3.4).

Domain experts: ΔΦ = Φ(domain texts) − Φ(general texts) over prompt tokens, top-N per band layer with ΔΦ > 0.
Visual experts: ΔΦ = Φ(image tokens) − Φ(text tokens) within image-form probes (rendered rd_demo problems).
The band selects MoE layers of the model's site table; each site of a band layer (ERNIE: its text and its vision
router) is ranked on its own row, and the set records the table.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rd_eval.experts.probes import IMAGE_PROBE_SETS, ProbeError, load_image_probes, load_probe_set
from rd_eval.models.loading import load_model  # the CLI imports this module for its error class: no torch here
from rd_eval.routing.spec import ExpertSet, LayerBand


class ExpertsInputError(ValueError):
    """Bad `rd-eval experts` input (checkpoint, probe set, sizes): one line, exit code 2."""


@dataclass(frozen=True)
class ExpertsConfig:
    pretrained: Path
    out: Path
    domain: str = "gsm8k"
    general: str = "alpaca"
    domain_file: Path | None = None
    general_file: Path | None = None
    n: int = 20
    seed: int = 0
    band: LayerBand = field(default_factory=LayerBand)
    top: int | None = None  # default: the model's top-k
    visual: bool = False
    image_probe: str = "rd_demo"
    batch_size: int = 8

    def __post_init__(self) -> None:
        if self.n < 1:
            raise ExpertsInputError(f"--n {self.n} invalid; need at least 1 probe text per set")
        if self.top is not None and self.top < 1:
            raise ExpertsInputError(f"--top {self.top} invalid; need at least 1 expert per layer")
        if self.batch_size < 1:
            raise ExpertsInputError(f"--batch-size {self.batch_size} invalid; need >= 1")


def check_pretrained(path: Path) -> Path:
    folder = Path(path).expanduser().absolute()
    if not (folder / "config.json").is_file():
        raise ExpertsInputError(f"--pretrained {str(path)!r} is not a checkpoint folder (no config.json there)")
    return folder


def identify(model: Any, processor: Any, cfg: ExpertsConfig, model_name: str) -> ExpertSet:
    """The domain (or, with cfg.visual, visual) expert set of a loaded model, from the probe sets `cfg` names."""
    from rd_eval.experts.pipeline import identify_domain_experts, identify_visual_experts

    common = {"seed": cfg.seed, "band": cfg.band.to_json(), "token_scope": "prompt", "n": cfg.n}
    if cfg.visual:
        try:
            probes = load_image_probes(cfg.image_probe, cfg.n, cfg.seed)
        except ProbeError as exc:
            raise ExpertsInputError(str(exc)) from None
        return identify_visual_experts(model, processor, probes, band=cfg.band, top=cfg.top, model_name=model_name,
                                       method={"image_probe": cfg.image_probe, **common,
                                               "token_scope": "image vs text (prompt)"},
                                       batch_size=cfg.batch_size)
    try:
        domain = load_probe_set(cfg.domain, cfg.n, cfg.seed, file=cfg.domain_file, file_flag="--domain-file")
        general = load_probe_set(cfg.general, cfg.n, cfg.seed, file=cfg.general_file, file_flag="--general-file")
    except ProbeError as exc:
        raise ExpertsInputError(str(exc)) from None
    return identify_domain_experts(model, processor, domain.texts, general.texts, band=cfg.band, top=cfg.top,
                                   model_name=model_name, batch_size=cfg.batch_size,
                                   method={**common, "domain_probe": domain.describe(),
                                           "general_probe": general.describe()})


def run_experts(cfg: ExpertsConfig) -> tuple[ExpertSet, Path]:
    """Check inputs before loading anything, load the checkpoint, identify, write the expert set."""
    checkpoint = check_pretrained(cfg.pretrained)
    if not cfg.visual:  # probe sets fail fast, before the model loads
        try:
            load_probe_set(cfg.domain, cfg.n, cfg.seed, file=cfg.domain_file, file_flag="--domain-file")
            load_probe_set(cfg.general, cfg.n, cfg.seed, file=cfg.general_file, file_flag="--general-file")
        except ProbeError as exc:
            raise ExpertsInputError(str(exc)) from None
    elif cfg.image_probe not in IMAGE_PROBE_SETS:
        raise ExpertsInputError(f"unknown --image-probe {cfg.image_probe!r}; valid: {', '.join(IMAGE_PROBE_SETS)}")
    model, processor = load_model(checkpoint)
    experts = identify(model, processor, cfg, str(checkpoint))
    return experts, experts.save(cfg.out)


def summary(experts: ExpertSet) -> str:
    lines = [f"{experts.kind} experts ({experts.method.get('statistic', '')}):"]
    for layer in experts.layers:
        scores = ", ".join(f"{e}:{s:+.3f}" for e, s in zip(layer.experts, layer.scores, strict=True))
        where = f"MoE layer {layer.moe_index}" + (f" ({layer.group})" if layer.group else "")
        row = experts.sites.row_of(layer.moe_index, layer.group) if experts.sites is not None else None
        where += f", decoder layer {row.layer}" if row is not None and row.layer != row.moe_index else ""
        lines.append(f"  {where}: {scores or '(none with delta > 0)'}")
    return "\n".join(lines)

