"""Training the organism: seeded, resumable from its last checkpoint, and saved as a model folder.

Determinism: the weights start from `torch.manual_seed(spec.seed)`; the examples of step s are drawn from a
generator seeded with (seed, s) alone, so a resumed run sees the same examples as an uninterrupted one; torch
runs on `spec.threads` threads (recorded), because a different thread count may sum in a different order.
A step is one micro-batch per form (each padded only to its own form's length), gradients summed, the loss the
mean over all reply tokens of the step plus `aux_loss_coef` times the router load-balancing loss.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rd_eval.organism.assets import build_processor, build_tokenizer, initial_model
from rd_eval.organism.batches import IGNORE_INDEX, Encoder, Example
from rd_eval.organism.problems import Problem, make_splits
from rd_eval.organism.spec import FORMS, OrganismSpec

STATE_FILE = Path("training") / "state.pt"
CARD_FILE = "organism.json"
WEIGHTS_FILE = "model.safetensors"
GRAD_CLIP = 1.0


class OrganismTrainingError(ValueError):
    """A training folder that cannot be (re)used as asked."""


def form_counts(spec: OrganismSpec) -> dict[str, int]:
    """Examples of each form in one step: the mix's shares of the batch, largest remainders rounded up."""
    total = sum(spec.mix)
    exact = [spec.batch_size * share / total for share in spec.mix]
    counts = [int(x) for x in exact]
    by_remainder = sorted(range(len(FORMS)), key=lambda i: (-(exact[i] - counts[i]), i))
    for i in by_remainder[: spec.batch_size - sum(counts)]:
        counts[i] += 1
    return dict(zip(FORMS, counts, strict=True))


def step_examples(spec: OrganismSpec, train: tuple[Problem, ...], step: int) -> dict[str, list[Example]]:
    """The examples of training step `step`, by form: a pure function of the spec's example seed and the step."""
    import numpy as np

    rng = np.random.default_rng([spec.seed if spec.example_seed is None else spec.example_seed, step])
    if not spec.kind_weights:
        return {form: [Example(train[int(i)], form) for i in rng.integers(0, len(train), size=n)]
                for form, n in form_counts(spec).items() if n}
    by_kind = [[p for p in train if p.kind == kind] for kind in spec.kinds]
    weights = np.asarray(spec.kind_weights, dtype=np.float64) / sum(spec.kind_weights)
    drawn: dict[str, list[Example]] = {}
    for form, n in form_counts(spec).items():
        if n:
            kinds, where = rng.choice(len(by_kind), size=n, p=weights), rng.random(n)
            drawn[form] = [Example(by_kind[k][int(u * len(by_kind[k]))], form) for k, u in zip(kinds, where,
                                                                                                strict=True)]
    return drawn


def step_loss(model: Any, encoder: Encoder, batches: dict[str, list[Example]], coef: float) -> tuple[float, float]:
    """Backpropagate one step's loss (gradients accumulate in the model); return (reply loss, router loss)."""
    import torch

    encoded = {form: encoder.batch(examples, with_targets=True) for form, examples in batches.items()}
    n_tokens = sum(int((b["labels"][:, 1:] != IGNORE_INDEX).sum()) for b in encoded.values())
    n_examples = sum(len(examples) for examples in batches.values())
    reply_total = aux_total = 0.0
    for form, inputs in encoded.items():
        labels = inputs.pop("labels")
        out = model(**inputs, output_router_logits=coef > 0)
        logits = out.logits[:, :-1].float()
        reply = torch.nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]), labels[:, 1:].reshape(-1),
                                                  ignore_index=IGNORE_INDEX, reduction="sum") / n_tokens
        loss = reply
        if coef > 0:
            aux = out.aux_loss * (len(batches[form]) / n_examples)
            loss = loss + coef * aux
            aux_total += float(aux.detach())
        loss.backward()
        reply_total += float(reply.detach())
    return reply_total, aux_total


def parameter_groups(model: Any, spec: OrganismSpec) -> list[dict[str, Any]]:
    """The language model at the spec's learning rate, the vision tower at `vision_lr_scale` times it."""
    named = list(model.named_parameters())
    vision = [p for name, p in named if ".visual." in name]
    rest = [p for name, p in named if ".visual." not in name]
    return [{"params": rest}, {"params": vision, "lr": spec.learning_rate * spec.vision_lr_scale}]


@dataclass(frozen=True)
class StopRule:
    """Stop before the spec's steps once every form works: from `min_steps` on, every `every` steps, greedy
    accuracy of each form on the first `n_pairs` validation problems is at least `threshold`."""

    min_steps: int
    every: int
    n_pairs: int = 100
    threshold: float = 0.9

    def __post_init__(self) -> None:
        for name in ("min_steps", "every", "n_pairs"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise OrganismTrainingError(f"stop rule {name} must be a positive int, got {value!r}")
        if not 0.0 <= self.threshold <= 1.0:
            raise OrganismTrainingError(f"stop rule threshold must lie in [0, 1], got {self.threshold!r}")

    def due(self, step: int) -> bool:
        return step >= self.min_steps and step % self.every == 0


@dataclass(frozen=True)
class TrainResult:
    out_dir: Path
    steps: int
    resumed_from: int
    wall_s: float
    validation: dict[str, float] | None = None  # the stop rule's last check, when there is one


def _save_state(path: Path, spec: OrganismSpec, step: int, model: Any, optimizer: Any,
                checks: list[dict[str, Any]]) -> None:
    import torch

    path.parent.mkdir(parents=True, exist_ok=True)
    staging = path.with_suffix(".tmp")
    torch.save({"spec": spec.to_json(), "step": step, "model": model.state_dict(),
                "optimizer": optimizer.state_dict(), "checks": checks}, staging)
    os.replace(staging, path)  # a run killed mid-write leaves the previous checkpoint whole


def _load_state(path: Path, spec: OrganismSpec) -> dict[str, Any] | None:
    import torch

    if not path.is_file():
        return None
    state = torch.load(path, map_location="cpu", weights_only=True)
    if OrganismSpec.from_json(state["spec"]) != spec:
        raise OrganismTrainingError(f"{path} is a checkpoint of another spec ({state['spec']}); "
                                    "resume with the same settings or name a new --out folder")
    return state


def weights_sha256(out_dir: Path) -> str:
    return hashlib.sha256((out_dir / WEIGHTS_FILE).read_bytes()).hexdigest()


def save_organism(out_dir: Path, spec: OrganismSpec, model: Any, processor: Any, record: dict[str, Any]) -> None:
    """The loadable model folder: config, safetensors weights, processor and tokenizer files, organism card."""
    model.save_pretrained(out_dir)
    processor.save_pretrained(out_dir)
    card = {"spec": spec.to_json(), **record, "weights_sha256": weights_sha256(out_dir)}
    (out_dir / CARD_FILE).write_text(json.dumps(card, indent=2) + "\n", encoding="utf-8")


def validation_check(model: Any, processor: Any, spec: OrganismSpec, rule: StopRule) -> dict[str, float]:
    """Greedy accuracy of each form on the first `rule.n_pairs` validation problems (the model is left in eval)."""
    from rd_eval.organism.evaluate import score_forms

    problems = make_splits(spec.kinds, spec.seed, n_heldout=spec.n_heldout,
                           n_validation=spec.n_validation).validation[: rule.n_pairs]
    model.eval()
    return {form: round(score.accuracy, 4) for form, score in score_forms(model, processor, problems).items()}


def load_weights(model: Any, folder: Path) -> None:
    """Start from the final weights of a finished training folder (a later phase of the recipe): its last
    checkpoint holds them in the model's own parameter names, exactly as trained."""
    import torch

    if not (folder / CARD_FILE).is_file() or not (folder / STATE_FILE).is_file():
        raise OrganismTrainingError(f"{folder} is not a finished training folder ({CARD_FILE} and {STATE_FILE} "
                                    "are needed): finish its training first")
    model.load_state_dict(torch.load(folder / STATE_FILE, map_location="cpu", weights_only=True)["model"])


def train(spec: OrganismSpec, out_dir: Path, *, progress: bool = True, stop_after: int | None = None,
          start_from: Path | None = None, stop: StopRule | None = None,
          log: Callable[[str], None] = print) -> TrainResult:
    """Train (or resume training) the organism of `spec` in `out_dir`; save the model folder when done.

    `start_from`: a trained organism folder whose weights replace the seeded initial ones (fresh optimizer).
    `stop`: end before `spec.steps` once the rule's validation check passes (checked at checkpoints it names).
    `stop_after` ends the run after that many steps of this call without saving the folder (a checkpoint is
    written), as an interrupted run would; the next call resumes."""
    import torch
    import transformers
    from tqdm import tqdm

    if stop is not None and stop.every % spec.checkpoint_every:
        raise OrganismTrainingError(f"stop rule every {stop.every} must be a multiple of checkpoint_every "
                                    f"{spec.checkpoint_every} (a check happens at a checkpoint)")
    torch.set_num_threads(spec.threads)
    started = time.perf_counter()
    out_dir.mkdir(parents=True, exist_ok=True)
    processor = build_processor(build_tokenizer(spec))
    encoder = Encoder(processor)
    model = initial_model(spec, processor.tokenizer)
    if start_from is not None:
        load_weights(model, start_from)
    optimizer = torch.optim.AdamW(parameter_groups(model, spec), lr=spec.learning_rate)
    state = _load_state(out_dir / STATE_FILE, spec)
    first = 0
    checks: list[dict[str, Any]] = []
    if state is not None:
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        first = int(state["step"])
        checks = list(state.get("checks", []))
        log(f"resuming from step {first} of {spec.steps} ({out_dir / STATE_FILE})")
    passed = bool(checks) and checks[-1]["passed"]
    train_set = make_splits(spec.kinds, spec.seed, n_heldout=spec.n_heldout, n_validation=spec.n_validation).train
    last = first if passed else spec.steps if stop_after is None else min(spec.steps, first + stop_after)
    model.train()
    bar = tqdm(total=spec.steps, initial=first, disable=not progress, desc="organism", unit="step")
    since: list[float] = []
    for step in range(first, last):
        reply, aux = step_loss(model, encoder, step_examples(spec, train_set, step), spec.aux_loss_coef)
        torch.nn.utils.clip_grad_norm_(model.parameters(), GRAD_CLIP)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        since.append(reply)
        bar.update(1)
        bar.set_postfix(loss=f"{reply:.3f}", aux=f"{aux:.3f}")
        if (step + 1) % spec.checkpoint_every == 0 or step + 1 == last:
            if stop is not None and stop.due(step + 1):
                figures = validation_check(model, processor, spec, stop)
                passed = min(figures.values()) >= stop.threshold
                checks.append({"step": step + 1, **figures, "passed": passed})
                log(f"step {step + 1}: validation {figures} ({'passed' if passed else 'not yet'})")
                model.train()
            _save_state(out_dir / STATE_FILE, spec, step + 1, model, optimizer, checks)
            log(f"step {step + 1}: mean reply loss {sum(since) / len(since):.4f} since the last checkpoint "
                f"({time.perf_counter() - started:.0f} s)")
            since = []
            if passed:
                last = step + 1
                break
    bar.close()
    wall = time.perf_counter() - started
    finished_before = first == last and (out_dir / CARD_FILE).is_file()  # keep that run's record (its wall)
    if (last == spec.steps or passed) and not finished_before:
        save_organism(out_dir, spec, model.eval(), processor, {
            "steps": last, "threads": spec.threads, "torch": torch.__version__,
            "transformers": transformers.__version__, "last_run_wall_s": round(wall, 1), "resumed_from": first,
            "parameters": sum(p.numel() for p in model.parameters()), "validation_checks": checks,
        })
    return TrainResult(out_dir=out_dir, steps=last, resumed_from=first, wall_s=wall,
                       validation=({k: v for k, v in checks[-1].items() if k not in ("step", "passed")}
                                   if checks else None))
