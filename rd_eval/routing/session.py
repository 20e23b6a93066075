"""One context manager installs the routing hooks on a model and always removes them.

A pre-hook on the top-level model reads each forward call's token layout (batch row, padding, image
placeholders, prompt vs generated); one forward hook per router recomputes the logits from the router's
input, optionally steers them and redoes the family's selection, and records the statistics.

Until every routing site has been seen firing (usually after the first forward call), a forward hook on the
top-level model checks that each router the call reached ran its hook (`rd_eval.routing.firing`), and sites
that neither record nor steer carry a witness hook; a router whose hook did not run stops the session with
`RoutingHooksNotFiredError`. Once all are proven, the check and witness hooks are removed.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from math import prod
from typing import Any

import numpy as np
import torch
from torch import nn

from rd_eval.routing.effect import EFFECT_FIELDS, EffectCounter
from rd_eval.routing.firing import FiringCheck, RoutingHooksNotFiredError
from rd_eval.routing.recording import (
    GENERATED,
    PROMPT_IMAGE,
    PROMPT_TEXT,
    BatchRouting,
    RoutingRecorder,
    TokenLayout,
)
from rd_eval.routing.records import CheckpointRef, DocIdentity, document_record
from rd_eval.routing.sites import RouterSite, find_router_sites, image_token_ids, model_family
from rd_eval.routing.spec import InterventionSpec
from rd_eval.routing.steering import steer_logits
from rd_eval.routing.validation import validate_intervention

__all__ = ["FinishedBatch", "LayerPlan", "RoutingHooksNotFiredError", "RoutingSession", "plan_intervention",
           "routing_session"]


@dataclass(frozen=True)
class FinishedBatch:
    """One batch's host results: its routing statistics (None when not recording) and, under an intervention,
    its effect sums [B, L, 3] over `EFFECT_FIELDS` (None without an intervention)."""

    routing: BatchRouting | None
    effect: np.ndarray | None


@dataclass(frozen=True)
class LayerPlan:
    """The resolved intervention at one routing site."""

    site_index: int
    moe_index: int
    experts: tuple[int, ...]
    group: str = ""


def plan_intervention(spec: InterventionSpec, sites: list[RouterSite]) -> tuple[LayerPlan, ...]:
    """Resolve band and expert ids against the model; an impossible spec raises SpecError naming it
    (`rd_eval.routing.validation`)."""
    validate_intervention(spec, sites)
    num_layers = 1 + max(site.moe_index for site in sites)
    band = set(spec.band.resolve(num_layers))
    by_key = spec.experts.experts_by_site_key()
    rng = np.random.default_rng(spec.seed)
    plans = []
    for site in sites:
        if site.moe_index not in band:
            continue
        experts = by_key.get((site.moe_index, site.group), ())
        if spec.mode == "random" and experts:
            # The control: as many experts as the real set, drawn from the others when there are enough.
            pool = [e for e in range(site.num_experts) if e not in experts]
            if len(pool) < len(experts):
                pool = list(range(site.num_experts))
            experts = tuple(sorted(int(e) for e in rng.choice(pool, size=len(experts), replace=False)))
        if experts:
            plans.append(LayerPlan(site_index=site.site_index, moe_index=site.moe_index,
                                   experts=tuple(experts), group=site.group))
    return tuple(plans)


class RoutingSession:
    """Live state of installed hooks. Call `begin(batch_size)` before each generate/forward of a batch."""

    def __init__(self, model: nn.Module, sites: list[RouterSite], recorder: RoutingRecorder | None,
                 spec: InterventionSpec | None) -> None:
        self.model = model
        self.sites = sites
        self.recorder = recorder
        self.spec = spec
        self.family = model_family(model)
        if spec is not None:
            validate_intervention(spec, sites)  # λ = 0 too: a spec impossible on this model is an error, not a no-op
        self.plans = plan_intervention(spec, sites) if spec is not None and not spec.is_noop else ()
        # A spec that cannot change routing (λ = 0) is still measured: its hooks steer and reselect to count the
        # selections that would change, but return the router's own output (bit-identical to no hooks).
        self._measure_only = spec is not None and spec.is_noop and not spec.experts.is_empty
        if self._measure_only:
            assert spec is not None
            self.plans = plan_intervention(spec, sites)
        # Under any intervention: flips and newly selected experts per site and document (see `finish_batch`),
        # and their totals over the batches finished so far, [site, EFFECT_FIELDS] on the host.
        self.effect = EffectCounter(len(sites), next(model.parameters()).device) if spec is not None else None
        self.effect_totals = np.zeros((len(sites), len(EFFECT_FIELDS)), dtype=np.float64)
        self._image_ids = image_token_ids(model)
        self._grouped = any(site.group for site in sites)
        self._layout: TokenLayout | None = None
        self._modality_order: torch.Tensor | None = None
        self._token_mask: torch.Tensor | None = None
        self._seen_forward = False
        self._stop_ids: tuple[int, ...] = ()
        self._finished: torch.Tensor | None = None
        self._handles: list[Any] = []
        # The proof that the hooks fire (see the module docstring); its hooks go once it is complete.
        self._firing = FiringCheck(sites, kernels=bool(getattr(model, "use_kernels", False)))
        self._proof_handles: list[Any] = []
        # Tensors that depend only on a forward call's shape, reused while the shape repeats (every decode step).
        self._shape_key: tuple[int, int, torch.device] | None = None
        self._shape_tensors: tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None = None
        self._id_tensors: dict[tuple[tuple[int, ...], torch.device], torch.Tensor] = {}

    # -- lifecycle -----------------------------------------------------------------------------------
    def begin(self, batch_size: int, stop_token_ids: Sequence[int] | None = None) -> None:
        """A new batch of sequences starts: the next forward call is its prefill (prompt tokens).

        `stop_token_ids`: the end-of-sequence ids `generate` stops on (default: the model's generation
        config). In a batch, rows that finished keep being fed tokens until the last row stops; from its
        end-of-sequence token on, a row's tokens are not counted.
        """
        self._seen_forward = False
        self._finished = None
        self._stop_ids = tuple(stop_token_ids) if stop_token_ids is not None else _generation_eos_ids(self.model)
        if self.recorder is not None:
            self.recorder.start_batch(batch_size)
        if self.effect is not None:
            self.effect.start_batch(batch_size)

    def finish_batch(self) -> FinishedBatch:
        """End the batch begun by `begin`: one device-to-host transfer of its routing statistics and
        intervention effect (`FinishedBatch`); the effect is added to `effect_totals`."""
        device_effect = self.effect.finish() if self.effect is not None else None
        routing = self.recorder.finish_batch(effect=device_effect) if self.recorder is not None else None
        if routing is not None:
            effect = routing.effect
        elif device_effect is not None:
            effect = np.ascontiguousarray(device_effect.cpu().numpy().transpose(1, 0, 2))
        else:
            effect = None
        if effect is not None:
            self.effect_totals += effect.sum(axis=0)
        return FinishedBatch(routing=routing, effect=effect)

    def finish_batch_records(self, identities: Sequence[DocIdentity], *, model: str, checkpoint: CheckpointRef,
                             intervention_hash: str) -> list[dict[str, Any]]:
        """End the batch begun by `begin` (as `finish_batch`) and return its documents' routing records, one per
        row in batch order (`identities[row]` names row `row`); none when the session does not record."""
        routing = self.finish_batch().routing
        if routing is None:
            return []
        if len(identities) != routing.batch_size:
            raise ValueError(f"{len(identities)} document identities for a batch of {routing.batch_size}")
        return [document_record(identity, routing, row, model=model, checkpoint=checkpoint,
                                intervention_hash=intervention_hash) for row, identity in enumerate(identities)]

    def install(self) -> None:
        if self.recorder is None and not self.plans:
            return  # nothing to record or steer: no hooks, no cost
        modules = dict(self.model.named_modules())
        self._handles.append(self.model.register_forward_pre_hook(self._read_layout, with_kwargs=True))
        if self._firing.pending:
            self._proof_handles.append(self.model.register_forward_hook(self._check_fired))
        plans = {p.site_index: p for p in self.plans}
        for site in self.sites:
            router = modules[site.module_path]
            plan = plans.get(site.site_index)
            if plan is None and self.recorder is None:
                # A site outside the band of an intervention that records nothing: only a witness, until proven.
                if self._firing.pending:
                    self._proof_handles.append(router.register_forward_hook(self._witness_hook(site)))
                continue
            mask = None
            if plan is not None:
                device = next(router.parameters()).device
                mask = torch.zeros(site.num_experts, dtype=torch.float32, device=device)
                mask[list(plan.experts)] = 1.0
            self._handles.append(router.register_forward_hook(self._router_hook(site, mask)))

    def remove(self) -> None:
        self._remove_proof_hooks()
        while self._handles:
            self._handles.pop().remove()
        self._layout = None
        self._token_mask = None
        self._modality_order = None

    def _remove_proof_hooks(self) -> None:
        while self._proof_handles:
            self._proof_handles.pop().remove()

    # -- hooks ---------------------------------------------------------------------------------------
    def _check_fired(self, module: nn.Module, args: tuple, output: Any) -> None:
        # After each forward call while unproven: Python ints only (token counts are shapes).
        self._firing.end_call()  # raises RoutingHooksNotFiredError naming the sites that did not fire
        if not self._firing.pending:
            self._remove_proof_hooks()  # safe inside a hook: torch iterates over a copy of the hook dicts

    def _witness_hook(self, site: RouterSite):
        firing = self._firing
        index = site.site_index

        def witness(router: nn.Module, args: tuple, output: Any) -> None:
            firing.fired(index, prod(args[0].shape[:-1]))

        return witness

    def _shape_layout(self, batch: int, length: int, device: torch.device) -> tuple[torch.Tensor, ...]:
        """(row, all-generated scope, all-text scope) of a [batch, length] call; cached while shapes repeat."""
        key = (batch, length, device)
        if key != self._shape_key or self._shape_tensors is None:
            row = torch.arange(batch, device=device).repeat_interleave(length)
            self._shape_tensors = (row, torch.full_like(row, GENERATED), torch.full_like(row, PROMPT_TEXT))
            self._shape_key = key
        return self._shape_tensors

    def _ids_tensor(self, ids: tuple[int, ...], device: torch.device) -> torch.Tensor:
        key = (ids, device)
        if key not in self._id_tensors:
            self._id_tensors[key] = torch.tensor(ids, dtype=torch.long, device=device)
        return self._id_tensors[key]

    def _matches(self, input_ids: torch.Tensor, ids: tuple[int, ...]) -> torch.Tensor:
        """Boolean mask of the positions of `input_ids` holding one of `ids`."""
        if len(ids) == 1:
            return input_ids == ids[0]
        return torch.isin(input_ids, self._ids_tensor(ids, input_ids.device))

    def _read_layout(self, module: nn.Module, args: tuple, kwargs: dict) -> None:
        # Runs once per forward call (every decode step): tensor ops only, shape-only tensors reused.
        input_ids = kwargs.get("input_ids", args[0] if args else None)
        embeds = kwargs.get("inputs_embeds")
        reference = input_ids if input_ids is not None else embeds
        if reference is None:
            raise ValueError("routing hooks need input_ids or inputs_embeds in the model call")
        batch, length = int(reference.shape[0]), int(reference.shape[1])
        device = reference.device
        if self._firing.pending:
            self._firing.start_call(batch * length)
        row, all_generated, all_text = self._shape_layout(batch, length, device)
        attention_mask = kwargs.get("attention_mask")
        if isinstance(attention_mask, torch.Tensor) and attention_mask.dim() == 2:
            weight = attention_mask[:, -length:].to(torch.float32).reshape(-1)
        else:
            weight = torch.ones(batch * length, dtype=torch.float32, device=device)
        if self._seen_forward:
            scope = all_generated
            if input_ids is not None and self._stop_ids and self._finished is not None:
                is_stop = self._matches(input_ids, self._stop_ids)
                # A row is done from its first stop token on (that token included); a decode step has one column.
                seen = is_stop if length == 1 else is_stop.cumsum(dim=1) > 0
                done = self._finished.unsqueeze(1) | seen  # [B, T]
                self._finished = done[:, -1]
                weight = weight.masked_fill(done.reshape(-1), 0.0)
        elif input_ids is not None and self._image_ids:
            is_image = self._matches(input_ids, self._image_ids)
            scope = torch.where(is_image.reshape(-1), PROMPT_IMAGE, PROMPT_TEXT)
        else:
            scope = all_text
        if not self._seen_forward:
            self._finished = torch.zeros(batch, dtype=torch.bool, device=device)
        self._seen_forward = True
        self._layout = TokenLayout(row=row, scope=scope, weight=weight)
        self._token_mask = self._layout.scope_mask(self.spec.token_scope) if self.plans else None
        if self._grouped:
            # Text tokens first, then image tokens, each in original order: a modality's router sees exactly
            # these positions, and its token count (a shape, known on the host) says where to cut. Where the
            # caller passes the model's own modality mask (ERNIE's moe_mm_token_type_ids), follow it.
            modality = kwargs.get("moe_mm_token_type_ids")
            is_vision = (modality.reshape(-1) != 0) if isinstance(modality, torch.Tensor) else scope == PROMPT_IMAGE
            self._modality_order = torch.argsort(is_vision.to(torch.int8), stable=True)
        if self.recorder is not None:
            self.recorder.add_tokens(self._layout)

    def _site_layout(self, site: RouterSite, num_tokens: int) -> TokenLayout:
        layout = self._layout
        if layout is None:
            raise RuntimeError(f"router {site.module_path} ran outside a model call; wrap the top-level model")
        if num_tokens == layout.num_tokens:
            return layout
        if site.group and self._modality_order is not None and num_tokens < layout.num_tokens:
            order = self._modality_order
            picked = order[:num_tokens] if site.group == "text" else order[layout.num_tokens - num_tokens:]
            return TokenLayout(row=layout.row[picked], scope=layout.scope[picked], weight=layout.weight[picked])
        raise RuntimeError(
            f"router {site.module_path} saw {num_tokens} tokens but the model call had {layout.num_tokens}; "
            "the hooks must wrap the top-level model"
        )

    def _router_hook(self, site: RouterSite, expert_mask: torch.Tensor | None):
        spec = self.spec
        math = self.family.math
        # The layers of a forward call are accumulated together once its last router has run (the recorder
        # also flushes when the next call starts and at the end of the batch).
        last = site.site_index == max(s.site_index for s in self.sites)
        firing = self._firing
        effect = self.effect
        measure_only = self._measure_only

        def hook(router: nn.Module, args: tuple, output: Any) -> Any:
            hidden = args[0].reshape(-1, args[0].shape[-1])
            if firing.pending:
                firing.fired(site.site_index, int(hidden.shape[0]))
            layout = self._site_layout(site, int(hidden.shape[0]))
            logits = math.logits(router, hidden)
            if expert_mask is None:
                if self.recorder is not None:
                    self.recorder.add_logits(site.site_index, layout, logits, math.selection(output, router))
                    if last:
                        self.recorder.flush()
                return output
            # The full-batch mask is built once per forward call; a modality router's subset gets its own.
            token_mask = self._token_mask if layout is self._layout else layout.scope_mask(spec.token_scope)
            # soft_topk: "already selected" by the family's own rule (biases, groups), not the top-k of the logits.
            selected = math.selection_mask(router, logits) if spec.mode == "soft_topk" else None
            steered = steer_logits(logits, mode=spec.mode, strength=spec.strength, expert_mask=expert_mask,
                                   token_mask=token_mask, selected=selected, std_correction=spec.std_correction)
            weight_source = logits if spec.mode == "selection_only" else steered
            pin = None
            if spec.mode in ("force", "suppress"):
                pin = expert_mask.unsqueeze(0) if token_mask is None else token_mask.unsqueeze(1) * expert_mask
                pin = pin if spec.mode == "force" else -pin
            # With a pin, the free slots follow the family's own order of the unsteered logits.
            rerouted = math.reroute(router, steered, weight_source, output, pin, unsteered=logits)
            own, after = math.selection(output, router), math.selection(rerouted, router)
            if effect is not None:
                effect.add(site.site_index, layout, token_mask, own, after, expert_mask)
            if measure_only:  # λ = 0: measured, never applied
                rerouted, steered, after = output, logits, own
            if self.recorder is not None:
                self.recorder.add_logits(site.site_index, layout, steered, after)
                if last:
                    self.recorder.flush()
            return rerouted

        return hook


def _generation_eos_ids(model: nn.Module) -> tuple[int, ...]:
    eos = getattr(getattr(model, "generation_config", None), "eos_token_id", None)
    if eos is None:
        return ()
    return tuple(int(e) for e in (eos if isinstance(eos, (list, tuple)) else [eos]))


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
        recorder = RoutingRecorder(len(sites), max(s.num_experts for s in sites), device,
                                   probabilities=model_family(model).math.probabilities)
    session = RoutingSession(model, sites, recorder, intervention)
    try:
        session.install()
        yield session
    finally:
        session.remove()
