"""Expert identification on a loaded model: probes in, an expert set out (`rd-eval experts` and `rd-eval demo`).

Each probe set goes through the model prefill-only, under a recording routing session
(`rd_eval.routing.session`); the statistics of `rd_eval.experts.identify` turn the recorded selection
frequencies into the expert set: domain experts from domain vs general texts, visual experts from the image vs
the text tokens of image-form probes. The band selects MoE layers of the model's site table, and the number of
experts per site defaults to the model's top-k.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from rd_eval.experts.identify import domain_expert_set, selection_frequency, visual_expert_set
from rd_eval.routing.site_table import SiteTable
from rd_eval.routing.spec import ExpertSet, LayerBand

if TYPE_CHECKING:  # torch is imported where a model runs
    from rd_eval.routing.recording import BatchRouting


def _prefill_routing(model: Any, batches: Iterator[tuple[int, Any]]) -> list[BatchRouting]:
    """Routing statistics of each (batch size, processor output) run through `model` once (no generation)."""
    import torch

    from rd_eval.routing.session import routing_session

    param = next(model.parameters())
    recorded: list[BatchRouting] = []
    with routing_session(model, record=True) as session, torch.inference_mode():
        for size, inputs in batches:
            inputs = inputs.to(param.device)
            if "pixel_values" in inputs and inputs["pixel_values"].is_floating_point():
                inputs["pixel_values"] = inputs["pixel_values"].to(param.dtype)
            session.begin(size)
            model(**inputs)
            routing = session.finish_batch().routing
            assert routing is not None  # a recording session
            recorded.append(routing)
    return recorded


def probe_routing(model: Any, processor: Any, texts: Sequence[str], *, batch_size: int = 8,
                  system_prompt: str | None = "You are a helpful assistant.") -> list[BatchRouting]:
    """Prefill-only routing statistics of `texts`, each formatted with the model's chat template."""

    def batches() -> Iterator[tuple[int, Any]]:
        for start in range(0, len(texts), batch_size):
            chunk = texts[start : start + batch_size]
            prompts = []
            for text in chunk:
                messages = [{"role": "user", "content": [{"type": "text", "text": text}]}]
                if system_prompt:
                    messages.insert(0, {"role": "system", "content": system_prompt})
                prompts.append(processor.apply_chat_template(messages, tokenize=False, add_generation_prompt=True))
            yield len(chunk), processor(text=prompts, padding=True, padding_side="left", return_tensors="pt")

    return _prefill_routing(model, batches())


def image_probe_routing(model: Any, processor: Any, probes: Sequence[tuple[Any, str]], *,
                        batch_size: int = 8) -> list[BatchRouting]:
    """Prefill-only routing statistics of image-form probes: (image, question) in one user turn."""

    def batches() -> Iterator[tuple[int, Any]]:
        for start in range(0, len(probes), batch_size):
            chunk = probes[start : start + batch_size]
            prompts = []
            for _, text in chunk:
                messages = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": text}]}]
                prompts.append(processor.apply_chat_template(messages, tokenize=False, add_generation_prompt=True))
            yield len(chunk), processor(text=prompts, images=[image for image, _ in chunk], padding=True,
                                        padding_side="left", return_tensors="pt")

    return _prefill_routing(model, batches())


def model_site_table(model: Any) -> SiteTable:
    from rd_eval.routing.sites import find_router_sites

    return SiteTable.of_sites(find_router_sites(model))


def default_top_n(sites: SiteTable, top: int | None) -> int | None:
    """`top`, else the model's top-k (one number when every site has the same k; None: each site's own)."""
    if top is not None:
        return top
    ks = {row.top_k for row in sites.rows}
    return ks.pop() if len(ks) == 1 else None


def identify_domain_experts(model: Any, processor: Any, domain: Sequence[str], general: Sequence[str], *,
                            band: LayerBand, top: int | None, model_name: str, method: Mapping[str, Any],
                            batch_size: int = 8) -> ExpertSet:
    """Domain experts of a loaded model: ΔΦ = Φ(domain texts) − Φ(general texts) over prompt tokens. `method`
    says where the probes came from (recorded in the set)."""
    sites = model_site_table(model)  # rows of Φ: the band and the set name (MoE layer, group), never a row index
    phi_domain = selection_frequency(probe_routing(model, processor, domain, batch_size=batch_size), "prompt")
    phi_general = selection_frequency(probe_routing(model, processor, general, batch_size=batch_size), "prompt")
    return domain_expert_set(phi_domain, phi_general, band=band.resolve(sites.num_moe_layers),
                             top_n=default_top_n(sites, top), model=model_name, sites=sites, method=dict(method))


def identify_visual_experts(model: Any, processor: Any, probes: Sequence[tuple[Any, str]], *, band: LayerBand,
                            top: int | None, model_name: str, method: Mapping[str, Any],
                            batch_size: int = 8) -> ExpertSet:
    """Visual experts of a loaded model: ΔΦ = Φ(image tokens) − Φ(text tokens) within image-form probes."""
    sites = model_site_table(model)
    batches = image_probe_routing(model, processor, probes, batch_size=batch_size)
    return visual_expert_set(selection_frequency(batches, "image"), selection_frequency(batches, "text"),
                             band=band.resolve(sites.num_moe_layers), top_n=default_top_n(sites, top),
                             model=model_name, sites=sites, method=dict(method))
