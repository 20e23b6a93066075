"""`rd-eval experts`: identify a checkpoint's domain (or visual) experts from probe sets (DESIGN §3.4).

Domain experts: ΔΦ = Φ(domain texts) − Φ(general texts) over prompt tokens, top-N per band layer with ΔΦ > 0.
Visual experts: ΔΦ = Φ(image tokens) − Φ(text tokens) within image-form probes (rendered rd_demo problems).
The band selects MoE layers of the model's site table; each site of a band layer (ERNIE: its text and its vision
router) is ranked on its own row, and the set records the table.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rd_eval.experts.probes import IMAGE_PROBE_SETS, ProbeError, load_image_probes, load_probe_set
from rd_eval.routing.site_table import SiteTable
from rd_eval.routing.spec import ExpertSet, LayerBand

if TYPE_CHECKING:  # the CLI imports this module for its error class: keep torch out of module import
    from rd_eval.routing.recording import BatchRouting


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


def load_model(checkpoint: Path) -> tuple[Any, Any]:
    """Model (float32 on CPU, bfloat16 on a GPU) and processor, with transformers' Auto classes; no hub kernels
    (they may bypass the router hooks), no checkpoint code."""
    import torch
    from transformers import AutoModelForImageTextToText, AutoProcessor

    from rd_eval.models.checkpoints import ROUTING_LOAD

    policy = ROUTING_LOAD.model_kwargs()
    if torch.cuda.is_available():
        model = AutoModelForImageTextToText.from_pretrained(checkpoint, dtype=torch.bfloat16, device_map="cuda",
                                                            **policy)
    else:
        model = AutoModelForImageTextToText.from_pretrained(checkpoint, dtype=torch.float32, **policy)
    return model.eval(), AutoProcessor.from_pretrained(checkpoint, **ROUTING_LOAD.code_kwargs())


def image_probe_routing(model: Any, processor: Any, probes: Sequence[tuple[Any, str]], *,
                        batch_size: int = 8) -> list[BatchRouting]:
    """Prefill-only routing statistics of image-form probes: (image, question) in one user turn."""
    import torch

    from rd_eval.routing.session import routing_session

    param = next(model.parameters())
    batches: list[BatchRouting] = []
    with routing_session(model, record=True) as session, torch.inference_mode():
        for start in range(0, len(probes), batch_size):
            chunk = probes[start : start + batch_size]
            prompts = []
            for _, text in chunk:
                messages = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": text}]}]
                prompts.append(processor.apply_chat_template(messages, tokenize=False, add_generation_prompt=True))
            inputs = processor(text=prompts, images=[image for image, _ in chunk], padding=True,
                               padding_side="left", return_tensors="pt").to(param.device)
            if "pixel_values" in inputs and inputs["pixel_values"].is_floating_point():
                inputs["pixel_values"] = inputs["pixel_values"].to(param.dtype)
            session.begin(len(chunk))
            model(**inputs)
            batches.append(session.recorder.finish_batch())
    return batches


def model_site_table(model: Any) -> SiteTable:
    from rd_eval.routing.sites import find_router_sites

    return SiteTable.of_sites(find_router_sites(model))


def default_top_n(sites: SiteTable, top: int | None) -> int | None:
    """--top, else the model's top-k (one number when every site has the same k; None: each site's own)."""
    if top is not None:
        return top
    ks = {row.top_k for row in sites.rows}
    return ks.pop() if len(ks) == 1 else None


def identify(model: Any, processor: Any, cfg: ExpertsConfig, model_name: str) -> ExpertSet:
    """The domain (or, with cfg.visual, visual) expert set of a loaded model."""
    from rd_eval.experts.identify import domain_expert_set, probe_routing, selection_frequency, visual_expert_set

    sites = model_site_table(model)
    band = cfg.band.resolve(sites.num_moe_layers)
    top_n = default_top_n(sites, cfg.top)
    common = {"seed": cfg.seed, "band": cfg.band.to_json(), "token_scope": "prompt", "n": cfg.n}
    if cfg.visual:
        try:
            probes = load_image_probes(cfg.image_probe, cfg.n, cfg.seed)
        except ProbeError as exc:
            raise ExpertsInputError(str(exc)) from None
        batches = image_probe_routing(model, processor, probes, batch_size=cfg.batch_size)
        return visual_expert_set(selection_frequency(batches, "image"), selection_frequency(batches, "text"),
                                 band=band, top_n=top_n, model=model_name, sites=sites,
                                 method={"image_probe": cfg.image_probe, **common,
                                         "token_scope": "image vs text (prompt)"})
    try:
        domain = load_probe_set(cfg.domain, cfg.n, cfg.seed, file=cfg.domain_file, file_flag="--domain-file")
        general = load_probe_set(cfg.general, cfg.n, cfg.seed, file=cfg.general_file, file_flag="--general-file")
    except ProbeError as exc:
        raise ExpertsInputError(str(exc)) from None
    phi_domain = selection_frequency(probe_routing(model, processor, domain.texts, batch_size=cfg.batch_size))
    phi_general = selection_frequency(probe_routing(model, processor, general.texts, batch_size=cfg.batch_size))
    return domain_expert_set(phi_domain, phi_general, band=band, top_n=top_n, model=model_name, sites=sites,
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

