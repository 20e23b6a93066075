"""Proof that a routing session's hooks fired: a run whose router hooks never ran must stop, not record zeros.

Hub kernels (transformers' `use_kernels`), a fused gate or a wrapped router can compute a MoE block's routing
without calling the router module; the module's hooks then never run, and a session would record nothing
and steer nothing while the run looks fine. So a session watches its forward calls until every routing site
has been seen firing: in each watched call, every site that the call's input reaches must fire, else
`RoutingHooksNotFiredError`. Usually the first call (the first batch's prefill) proves every site and the
watch ends there.

Which sites a call reaches, exactly:
- a site without an expert group, and a "text" site: every call. Each MoE layer routes every token, and
  ERNIE-4.5-VL's text router gets all tokens of a call without vision tokens, the text tokens otherwise.
- a "vision" site (ERNIE-4.5-VL's vision router): only a call holding vision tokens. A call holds some exactly
  when a text router of the call received fewer tokens than the call has (the block gives the rest to the
  vision router; every layer splits the same tokens) or a vision router fired. A text-only call, and every
  decode step, cannot reach a vision router and is not asked for it; a vision site not yet seen firing is
  asked for again in each later call until one holds vision tokens.

The bookkeeping is Python ints (token counts are tensor shapes, known on the host): no host-device
synchronisation.
"""

from __future__ import annotations

from collections.abc import Sequence

from rd_eval.routing.families import UnsupportedModelError
from rd_eval.routing.sites import RouterSite

CONDITIONAL_GROUP = "vision"  # sites of this expert group see only the vision tokens of a call
NAMED_SITES = 3  # sites named in the error; the rest are counted


class RoutingHooksNotFiredError(UnsupportedModelError):
    """Routers that a forward call reached did not run their hooks: routing would be neither recorded nor
    steered. The message names the sites, the likely cause and the fix."""


class FiringCheck:
    """Which routing sites fired in the current forward call, and which are still unproven.

    The session calls `start_call` from its pre-hook on the top-level model, `fired` from each router hook,
    and `end_call` from a forward hook on the top-level model, while `pending`.
    """

    def __init__(self, sites: Sequence[RouterSite], *, kernels: bool = False) -> None:
        self._sites = tuple(sites)
        self._kernels = kernels
        self._unproven = {site.site_index for site in self._sites}
        self.pending = bool(self._unproven)  # a plain attribute: read in every router hook
        self._fired: dict[int, int] = {}  # site index -> tokens its router received, in the current call
        self._tokens = 0  # tokens of the current call
        self._calls = 0

    def start_call(self, num_tokens: int) -> None:
        """A forward call of the top-level model starts with `num_tokens` (batch x length) tokens."""
        self._fired = {}
        self._tokens = num_tokens
        self._calls += 1

    def fired(self, site_index: int, num_tokens: int) -> None:
        """The router of `site_index` ran its hook on `num_tokens` tokens."""
        self._fired[site_index] = num_tokens

    def holds_vision_tokens(self) -> bool:
        """Whether the current call holds vision tokens, as its routers' token counts show."""
        for site in self._sites:
            count = self._fired.get(site.site_index)
            if count is None:
                continue
            if site.group == CONDITIONAL_GROUP or (site.group and count < self._tokens):
                return True
        return False

    def required(self) -> list[RouterSite]:
        """The sites the current call reached (see the module docstring)."""
        vision = any(site.group == CONDITIONAL_GROUP for site in self._sites) and self.holds_vision_tokens()
        return [site for site in self._sites if site.group != CONDITIONAL_GROUP or vision]

    def end_call(self) -> None:
        """The call ended: every site it reached must have fired, else RoutingHooksNotFiredError."""
        required = self.required()
        missing = [site for site in required if site.site_index not in self._fired]
        if missing:
            raise RoutingHooksNotFiredError(self._message(missing, len(required)))
        self._unproven.difference_update(self._fired)
        self.pending = bool(self._unproven)

    def _message(self, missing: list[RouterSite], reached: int) -> str:
        names = ", ".join(site.module_path for site in missing[:NAMED_SITES])
        if len(missing) > NAMED_SITES:
            names += f" and {len(missing) - NAMED_SITES} more"
        if self._kernels:
            cause = ("the model was loaded with hub kernels on (use_kernels=True), which replace the MoE forward "
                     "and compute the routing without calling the router modules")
        else:
            cause = ("the MoE blocks compute the routing without calling the router modules (hub kernels, a fused "
                     "gate or a wrapped router)")
        return (
            f"routing hooks did not fire at {len(missing)} of the {reached} routing sites that forward call "
            f"{self._calls} of this session reached ({names}): {cause}, so routing would be recorded as zeros and "
            "the intervention would steer nothing; load the model with use_kernels=false (model_args "
            "use_kernels=false) and without fused or wrapped routers"
        )
