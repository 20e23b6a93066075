"""One context manager installs the routing hooks on a model and always removes them.

A pre-hook on the top-level model reads each forward call's token layout (batch row, padding, image
placeholders, prompt vs generated); one forward hook per router recomputes the logits from the router's
input, optionally steers them and redoes the family's selection, and records the statistics.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from rd_eval.routing.recording import GENERATED, PROMPT_IMAGE, PROMPT_TEXT, RoutingRecorder, TokenLayout
from rd_eval.routing.sites import RouterSite, find_router_sites, image_token_ids
from rd_eval.routing.spec import InterventionSpec, SpecError
from rd_eval.routing.steering import select_softmax_topk_renorm, steer_logits


@dataclass(frozen=True)
class LayerPlan:
    """The resolved intervention at one MoE layer."""

    moe_index: int
    experts: tuple[int, ...]


def plan_intervention(spec: InterventionSpec, sites: list[RouterSite]) -> tuple[LayerPlan, ...]:
    """Resolve band and expert ids against the model; bad ids or layers raise SpecError naming them."""
    num_layers = len(sites)
    band = spec.band.resolve(num_layers)
    by_layer = spec.experts.experts_by_layer()
    outside = sorted(i for i in by_layer if i >= num_layers)
    if outside:
        raise SpecError(f"expert set names MoE layers {outside}; this model has MoE layers 0..{num_layers - 1}")
    rng = np.random.default_rng(spec.seed)
    plans = []
    for moe_index in band:
        experts = by_layer.get(moe_index, ())
        num_experts = sites[moe_index].num_experts
        bad = [e for e in experts if e >= num_experts]
        if bad:
            raise SpecError(
                f"layer {moe_index}: expert ids {bad} out of range; this model has experts 0..{num_experts - 1}"
            )
        if spec.mode == "random" and experts:
            # The control: as many experts as the real set, drawn from the others when there are enough.
            pool = [e for e in range(num_experts) if e not in experts]
            if len(pool) < len(experts):
                pool = list(range(num_experts))
            experts = tuple(sorted(int(e) for e in rng.choice(pool, size=len(experts), replace=False)))
        if experts:
            plans.append(LayerPlan(moe_index=moe_index, experts=tuple(experts)))
    return tuple(plans)


class RoutingSession:
    """Live state of installed hooks. Call `begin(batch_size)` before each generate/forward of a batch."""

    def __init__(self, model: nn.Module, sites: list[RouterSite], recorder: RoutingRecorder | None,
                 spec: InterventionSpec | None) -> None:
        self.model = model
        self.sites = sites
        self.recorder = recorder
        self.spec = spec
        self.plans = plan_intervention(spec, sites) if spec is not None and not spec.is_noop else ()
        self._image_ids = image_token_ids(model)
        self._layout: TokenLayout | None = None
        self._token_mask: torch.Tensor | None = None
        self._seen_forward = False
        self._handles: list[Any] = []

    # -- lifecycle -----------------------------------------------------------------------------------
    def begin(self, batch_size: int) -> None:
        """A new batch of sequences starts: the next forward call is its prefill (prompt tokens)."""
        self._seen_forward = False
        if self.recorder is not None:
            self.recorder.start_batch(batch_size)

    def install(self) -> None:
        modules = dict(self.model.named_modules())
        self._handles.append(self.model.register_forward_pre_hook(self._read_layout, with_kwargs=True))
        plans = {p.moe_index: p for p in self.plans}
        for site in self.sites:
            router = modules[site.module_path]
            plan = plans.get(site.moe_index)
            mask = None
            if plan is not None:
                mask = torch.zeros(site.num_experts, dtype=torch.float32, device=router.weight.device)
                mask[list(plan.experts)] = 1.0
            self._handles.append(router.register_forward_hook(self._router_hook(site, mask)))

    def remove(self) -> None:
        while self._handles:
            self._handles.pop().remove()
        self._layout = None
        self._token_mask = None

    # -- hooks ---------------------------------------------------------------------------------------
    def _read_layout(self, module: nn.Module, args: tuple, kwargs: dict) -> None:
        input_ids = kwargs.get("input_ids", args[0] if args else None)
        embeds = kwargs.get("inputs_embeds")
        reference = input_ids if input_ids is not None else embeds
        if reference is None:
            raise ValueError("routing hooks need input_ids or inputs_embeds in the model call")
        batch, length = int(reference.shape[0]), int(reference.shape[1])
        device = reference.device
        row = torch.arange(batch, device=device).unsqueeze(1).expand(batch, length).reshape(-1)
        attention_mask = kwargs.get("attention_mask")
        if isinstance(attention_mask, torch.Tensor) and attention_mask.dim() == 2:
            weight = attention_mask[:, -length:].reshape(-1).to(torch.float32)
        else:
            weight = torch.ones(batch * length, dtype=torch.float32, device=device)
        if self._seen_forward:
            scope = torch.full((batch * length,), GENERATED, dtype=torch.long, device=device)
        elif input_ids is not None and self._image_ids:
            is_image = torch.zeros_like(input_ids, dtype=torch.bool)
            for token_id in self._image_ids:
                is_image = is_image | (input_ids == token_id)
            scope = torch.where(is_image.reshape(-1), PROMPT_IMAGE, PROMPT_TEXT)
        else:
            scope = torch.full((batch * length,), PROMPT_TEXT, dtype=torch.long, device=device)
        self._seen_forward = True
        layout = TokenLayout(row=row, scope=scope, weight=weight)
        self._layout = layout
        self._token_mask = layout.scope_mask(self.spec.token_scope) if self.plans else None
        if self.recorder is not None:
            self.recorder.add_tokens(layout)

    def _router_hook(self, site: RouterSite, expert_mask: torch.Tensor | None):
        spec = self.spec

        def hook(router: nn.Module, args: tuple, output: Any) -> Any:
            layout = self._layout
            hidden = args[0].reshape(-1, router.weight.shape[-1])
            if layout is None or layout.num_tokens != hidden.shape[0]:
                raise RuntimeError(
                    f"router {site.module_path} saw {hidden.shape[0]} tokens but the model call had "
                    f"{None if layout is None else layout.num_tokens}; the hooks must wrap the top-level model"
                )
            # Recompute logits from the router input: some transformers 5.x releases returned probabilities.
            logits = F.linear(hidden, router.weight)
            if expert_mask is None:
                if self.recorder is not None:
                    self.recorder.add_layer(site.moe_index, layout, F.softmax(logits, dim=-1, dtype=torch.float),
                                            output[2])
                return output
            base = logits.float()
            steered = steer_logits(base, mode=spec.mode, strength=spec.strength, expert_mask=expert_mask,
                                   token_mask=self._token_mask, top_k=site.top_k)
            weight_source = base if spec.mode == "selection_only" else steered
            weights, selected = select_softmax_topk_renorm(steered, weight_source, site.top_k)
            if self.recorder is not None:
                self.recorder.add_layer(site.moe_index, layout, F.softmax(steered, dim=-1), selected)
            return steered.to(logits.dtype), weights.to(output[1].dtype), selected

        return hook


@contextmanager
def routing_session(
    model: nn.Module,
    *,
    record: bool = True,
    intervention: InterventionSpec | None = None,
    sites: list[RouterSite] | None = None,
) -> Iterator[RoutingSession]:
    """Install recording and/or steering hooks on `model` for the duration of the block."""
    sites = find_router_sites(model) if sites is None else sites
    recorder = None
    if record:
        device = next(model.parameters()).device
        recorder = RoutingRecorder(len(sites), max(s.num_experts for s in sites), device)
    session = RoutingSession(model, sites, recorder, intervention)
    try:
        session.install()
        yield session
    finally:
        session.remove()
