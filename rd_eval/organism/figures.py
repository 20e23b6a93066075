"""The organism's in-process figures (issue 16 item 3): text, seen and image accuracy on held-out pairs, and the
soft intervention on its domain experts and the seeded random control, steered by rd-eval's own routing hooks
(`rd_eval.routing.session`, the z + lambda * std(z) boost of docs/design.md §3.5), with paired bootstrap CIs.

Greedy decoding and the prompts lmms-eval sends (`rd_eval.organism.evaluate`); the issue's closing figures come
through `python -m lmms_eval`, these are the quick check of a training run.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from rd_eval.organism.batches import Encoder, Example
from rd_eval.organism.evaluate import is_correct, replies
from rd_eval.organism.problems import Problem

DEFAULT_BAND = (0.25, 0.75)


def expert_set(experts: Mapping[int, Sequence[int]]) -> Any:
    from rd_eval.routing.spec import ExpertSet, LayerExperts

    return ExpertSet(model="rd-organism", kind="domain", method={"source": "organism induction (text-form top)"},
                     layers=tuple(LayerExperts(moe_index=int(i), experts=tuple(int(e) for e in d))
                                  for i, d in sorted(experts.items())))


def marks(model: Any, encoder: Encoder, problems: Sequence[Problem], form: str, *, intervention: Any = None,
          batch_size: int = 64) -> list[float]:
    """1.0 / 0.0 per problem: greedy reply correct, under `intervention` (an InterventionSpec) when given."""
    from rd_eval.routing.session import routing_session

    examples = [Example(p, form) for p in problems]
    if intervention is None:
        texts = replies(model, encoder, examples, batch_size=batch_size)
    else:
        texts = []
        with routing_session(model, record=False, intervention=intervention) as session:
            for start in range(0, len(examples), batch_size):
                chunk = examples[start:start + batch_size]
                session.begin(len(chunk))
                texts.extend(replies(model, encoder, chunk, batch_size=batch_size))
                session.finish_batch()
    return [float(is_correct(p, form, t)) for p, t in zip(problems, texts, strict=True)]


def _diff(a: Sequence[float], b: Sequence[float]) -> dict[str, float]:
    import numpy as np

    from rd_eval.analysis.stats import paired_difference

    d = paired_difference(np.asarray(a), np.asarray(b))
    return {"diff": round(d.diff, 2), "ci_low": round(d.ci_low, 2), "ci_high": round(d.ci_high, 2)}


def _mean(values: Sequence[float]) -> float:
    return round(100.0 * sum(values) / len(values), 2)


def organism_figures(model: Any, processor: Any, problems: Sequence[Problem], experts: Mapping[int, Sequence[int]],
                     *, strength: float = 1.0, band: tuple[float, float] = DEFAULT_BAND,
                     control_seed: int = 0) -> dict[str, Any]:
    """Accuracies (percent) and paired differences (points, 95% bootstrap CI) of the organism on `problems`."""
    from rd_eval.routing.spec import InterventionSpec, LayerBand

    encoder = Encoder(processor)
    plain = {form: marks(model, encoder, problems, form) for form in ("txt", "transcribe", "img")}
    out: dict[str, Any] = {"n": len(problems), "plain": {form: _mean(m) for form, m in plain.items()},
                           "gap": _diff(plain["txt"], plain["img"]), "strength": strength, "band": list(band),
                           "experts": {str(i): list(d) for i, d in experts.items()}}
    for mode in ("soft", "random"):
        spec = InterventionSpec(experts=expert_set(experts), mode=mode, strength=strength,
                                band=LayerBand(fractions=band), seed=control_seed)
        steered = {form: marks(model, encoder, problems, form, intervention=spec) for form in ("img", "txt")}
        out[mode] = {"img": _mean(steered["img"]), "txt": _mean(steered["txt"]),
                     "gain": _diff(steered["img"], plain["img"]), "text_cost": _diff(steered["txt"], plain["txt"])}
    return out
