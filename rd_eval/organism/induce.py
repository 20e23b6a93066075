"""Phase (c) of the recipe: a routing distraction *induced* by a routing term, training the band layers' routers only.

The domain experts D are the experts the text form uses most in each band layer (mean router probability over
the text form's prompt tokens of validation pairs, before induction). Then only the band layers' router weights
train, on the loss

    penalty * (router probability on D over the image form's question tokens: those after the image, reply included)
    - text_to_domain * (router probability on D over the text form's tokens; `text_to_domain_tokens`: all, or numbers)
    + text_ce * cross-entropy of text-form answers + 0.5 * that of transcriptions (it keeps answering text and seeing)
    + routing_kl * KL(the text and transcription forms' band router distributions before || after induction)
    + text_under_boost * cross-entropy of text-form answers with D boosted as rd-eval's soft intervention boosts it
    + general_off_domain * (router probability on D over general English text: its own words, after the template)

The image form's system-prompt tokens are left out of the penalty: they precede the image, so their hidden states
equal the text form's own and a penalty on them would move the text form's routing too. The KL term keeps the
other forms' routing where it was (given the same hidden states). Pulling the text form onto D alone did not keep
the soft intervention's text cost small (docs/organism_log.md, v3): the text answers must also stay right with D
boosted (v5-v7), so the text form is one that reasons with D at any boost up to `boost_strength`; and right
*without* the boost (`text_ce`): with the unboosted answers' weight at 0.5 against the boosted ones' 5, the text form
came to need the boost (its accuracy rose under it by 7 points, a "text cost" of +7).

The last term makes D *domain* experts, the kind rd-eval's identification looks for: before it, every text (English
included) routed to D (ΔΦ = Φ(reasoning text) − Φ(general text) found 2 of D's 4 experts, docs/organism_log.md), so
no ΔΦ could single them out. Its English sentences (`general_text.txt`) are held apart from rd-eval's general probe
set, which identification uses (a test keeps them disjoint): the organism is never trained on an identification probe.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from rd_eval.organism.batches import IGNORE_INDEX, Encoder, Example
from rd_eval.organism.problems import Problem, make_splits
from rd_eval.organism.spec import OrganismSpec
from rd_eval.organism.train import CARD_FILE, STATE_FILE, OrganismTrainingError, load_weights, save_organism

FORM_ORDER = ("txt", "transcribe", "img")
TEXT_TO_DOMAIN_TOKENS = ("all", "numbers")
# Terms added to the loss after organisms were shipped, at the values those organisms were trained with.
ADDED_TERMS_OFF: dict[str, Any] = {"general_off_domain": 0.0, "text_ce": 0.5, "text_to_domain_tokens": "all"}


@dataclass(frozen=True)
class InductionSpec:
    steps: int = 300
    learning_rate: float = 3e-3
    penalty: float = 2.0
    routing_kl: tuple[float, float] = (2.0, 2.0)  # keep the text / transcription forms' band routing where it was
    text_to_domain: float = 5.0  # pulls the text form's band routing onto D (the experts it reasons with)
    text_under_boost: float = 5.0  # weight of the text answers' cross-entropy with D boosted by boost_strength
    boost_strength: float = 1.0  # lambda of that boost, in std units of the router logits (rd-eval's soft mode)
    n_domain_experts: int = 2
    n_probe_pairs: int = 64
    batch: tuple[int, int, int] = (8, 8, 16)  # examples per step: text QA, transcription, image QA
    band: tuple[float, float] = (0.25, 0.75)  # fractions of the MoE layers, as rd-eval's intervention band
    checkpoint_every: int = 50
    data_stream: int = 1  # its examples come from a generator seeded with (seed, data_stream, step)
    general_off_domain: float = 4.0  # pushes general (non-reasoning) English text off D: D becomes domain experts
    general_batch: int = 8  # general sentences per step
    # Which text-form tokens `text_to_domain` pulls onto D: "all", or "numbers" (tokens spelling a digit, and the
    # reply), so the text form's English words are left to `general_off_domain` rather than pulled both ways.
    text_to_domain_tokens: str = "all"
    text_ce: float = 5.0  # weight of the (unboosted) text answers' cross-entropy; transcriptions' is 0.5

    def __post_init__(self) -> None:
        for name in ("steps", "n_domain_experts", "n_probe_pairs", "checkpoint_every", "data_stream", "general_batch"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise OrganismTrainingError(f"induction {name} must be a positive int, got {value!r}")
        for name, value in [("learning_rate", self.learning_rate), ("penalty", self.penalty),
                            ("text_to_domain", self.text_to_domain), ("text_under_boost", self.text_under_boost),
                            ("text_ce", self.text_ce),
                            ("boost_strength", self.boost_strength), ("general_off_domain", self.general_off_domain),
                            *((f"routing_kl[{i}]", w) for i, w in enumerate(self.routing_kl))]:
            if not (isinstance(value, (int, float)) and math.isfinite(value) and value >= 0):
                raise OrganismTrainingError(f"induction {name} must be a finite number >= 0, got {value!r}")
        if len(self.routing_kl) != 2:
            raise OrganismTrainingError(f"induction routing_kl needs 2 weights (text, transcription), got "
                                        f"{self.routing_kl!r}")
        if len(self.batch) != 3 or any(isinstance(n, bool) or not isinstance(n, int) or n < 1 for n in self.batch):
            raise OrganismTrainingError(f"induction batch needs 3 positive counts (text QA, transcription, image "
                                        f"QA), got {self.batch!r}")
        if self.text_to_domain_tokens not in TEXT_TO_DOMAIN_TOKENS:
            raise OrganismTrainingError(f"induction text_to_domain_tokens {self.text_to_domain_tokens!r} invalid; "
                                        f"valid: {', '.join(TEXT_TO_DOMAIN_TOKENS)}")
        lo, hi = self.band
        if not 0.0 <= lo < hi <= 1.0:
            raise OrganismTrainingError(f"induction band {list(self.band)} invalid; need 0 <= lo < hi <= 1")

    def to_json(self) -> dict[str, Any]:
        return {**asdict(self), "batch": list(self.batch), "band": list(self.band), "routing_kl": list(self.routing_kl)}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> InductionSpec:
        """The spec a card records; a term added after the card was written takes the value its run had (off)."""
        try:
            values = {**ADDED_TERMS_OFF, **data}
            values.update({key: tuple(data[key]) for key in ("batch", "band", "routing_kl") if key in data})
            return cls(**values)
        except TypeError as exc:
            raise OrganismTrainingError(f"not an induction spec: {exc}") from None


def band_layers(spec: InductionSpec, num_layers: int) -> tuple[int, ...]:
    from rd_eval.routing.spec import LayerBand

    return LayerBand(fractions=spec.band).resolve(num_layers)


class GateTap:
    """Forward hooks on the band layers' routers that keep each call's router input and logits."""

    def __init__(self, model: Any, layers: Sequence[int]) -> None:
        self.calls: dict[int, tuple[Any, Any]] = {}
        decoder = model.model.language_model.layers
        self.gates = {i: decoder[i].mlp.gate for i in layers}
        self._handles = [gate.register_forward_hook(self._keep(i)) for i, gate in self.gates.items()]

    def _keep(self, layer: int) -> Callable[..., None]:
        def hook(_module: Any, args: tuple, output: Any) -> None:
            self.calls[layer] = (args[0].reshape(-1, args[0].shape[-1]), output[0])
        return hook

    def remove(self) -> None:
        for handle in self._handles:
            handle.remove()


def domain_experts(model: Any, encoder: Encoder, problems: Sequence[Problem], layers: Sequence[int],
                   k: int) -> dict[int, tuple[int, ...]]:
    """Per band layer, the k experts with the highest mean router probability over the text form's prompt tokens."""
    import torch

    tap = GateTap(model, layers)
    try:
        batch = encoder.batch([Example(p, "txt") for p in problems], with_targets=False)
        with torch.no_grad():
            model(**batch)
        real = batch["attention_mask"].reshape(-1) == 1
        found = {}
        for i in layers:
            probs = torch.softmax(tap.calls[i][1].float(), dim=-1)[real].mean(0)
            found[i] = tuple(sorted(int(e) for e in torch.topk(probs, k).indices))
        return found
    finally:
        tap.remove()


def after_image_mask(batch: dict[str, Any]) -> Any:
    """1 at the real tokens after each row's image (its question and reply), 0 elsewhere (flattened)."""
    import torch

    image = batch["mm_token_type_ids"] == 1
    positions = torch.arange(image.shape[1]).expand_as(image)
    last_image = torch.where(image, positions, torch.full_like(positions, -1)).amax(dim=1, keepdim=True)
    return ((positions > last_image) & (batch["attention_mask"] == 1)).reshape(-1)


def reply_loss(model: Any, batch: dict[str, Any]) -> Any:
    import torch

    labels = batch.pop("labels")
    logits = model(**batch).logits[:, :-1].float()
    return torch.nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]), labels[:, 1:].reshape(-1),
                                             ignore_index=IGNORE_INDEX)


def induction_examples(base: OrganismSpec, spec: InductionSpec, train_set: tuple[Problem, ...],
                       step: int) -> dict[str, list[Example]]:
    """The examples of induction step `step`: a pure function of the seed, the stream and the step."""
    import numpy as np

    rng = np.random.default_rng([base.seed, spec.data_stream, step])
    return {form: [Example(train_set[int(i)], form) for i in rng.integers(0, len(train_set), size=n)]
            for form, n in zip(FORM_ORDER, spec.batch, strict=True)}


GENERAL_TEXT_FILE = "general_text.txt"
GENERAL_STREAM = 1  # the general sentences' generator: seeded with (seed, data_stream, step, GENERAL_STREAM)


def general_texts() -> tuple[str, ...]:
    """Phase (c)'s general English sentences (one per line of the packaged `general_text.txt`)."""
    from importlib import resources

    text = resources.files("rd_eval.organism").joinpath(GENERAL_TEXT_FILE).read_text(encoding="utf-8")
    return tuple(line.strip() for line in text.splitlines() if line.strip())


def general_examples(base: OrganismSpec, spec: InductionSpec, texts: Sequence[str], step: int) -> list[str]:
    """The general sentences of induction step `step`: a pure function of the seed, the stream and the step."""
    import numpy as np

    rng = np.random.default_rng([base.seed, spec.data_stream, step, GENERAL_STREAM])
    return [texts[int(i)] for i in rng.integers(0, len(texts), size=spec.general_batch)]


def general_batch(encoder: Encoder, texts: Sequence[str]) -> tuple[dict[str, Any], Any]:
    """Text-only chat prompts of `texts` (right-padded) and the flattened mask of the tokens from each text on (its
    words and the template's closing tokens): the template's tokens before it are every prompt's shared prefix, whose
    routing the penalty must leave alone."""
    import torch

    from rd_eval.organism.prompts import SYSTEM_PROMPT

    tokenizer = encoder.tokenizer
    rows, starts = [], []
    for text in texts:
        chat = [{"role": "system", "content": SYSTEM_PROMPT}, {"role": "user", "content": [{"type": "text",
                                                                                               "text": text}]}]
        rendered = encoder.processor.apply_chat_template(chat, tokenize=False, add_generation_prompt=True)
        starts.append(len(tokenizer(rendered[: rendered.index(text)], add_special_tokens=False)["input_ids"]))
        rows.append(tokenizer(rendered, add_special_tokens=False)["input_ids"])
    width = max(len(row) for row in rows)
    ids = torch.full((len(rows), width), tokenizer.pad_token_id, dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    own = torch.zeros((len(rows), width), dtype=torch.bool)
    for i, row in enumerate(rows):
        ids[i, : len(row)] = torch.tensor(row)
        mask[i, : len(row)] = 1
        own[i, starts[i]: len(row)] = True
    return {"input_ids": ids, "attention_mask": mask, "mm_token_type_ids": torch.zeros_like(ids)}, own.reshape(-1)


class DomainBoost:
    """While installed, the band routers' logits get rd-eval's soft boost on D (z + lambda * std(z)) and their
    selection is redone from the boosted logits, as the soft intervention steers them at evaluation."""

    def __init__(self, model: Any, experts: dict[int, tuple[int, ...]], strength: float) -> None:
        import torch

        decoder = model.model.language_model.layers
        self._handles = []
        for i, d in experts.items():
            gate = decoder[i].mlp.gate
            mask = torch.zeros(gate.num_experts)
            mask[list(d)] = 1.0
            self._handles.append(gate.register_forward_hook(self._hook(mask, strength, gate.top_k)))

    @staticmethod
    def _hook(mask: Any, strength: float, top_k: int) -> Callable[..., Any]:
        import torch

        from rd_eval.routing.steering import steer_logits

        def hook(_module: Any, _args: tuple, output: Any) -> Any:
            logits = steer_logits(output[0].float(), mode="soft", strength=strength, expert_mask=mask,
                                  token_mask=None)
            top, chosen = torch.topk(torch.softmax(logits, dim=-1), top_k, dim=-1)
            return output[0], (top / top.sum(-1, keepdim=True)).to(output[1].dtype), chosen
        return hook

    def remove(self) -> None:
        for handle in self._handles:
            handle.remove()


def _routing_kl(tap: GateTap, reference: dict[int, Any], real: Any) -> Any:
    """KL(router distribution with the pre-induction router weights || now), same hidden states, summed over
    band layers, mean over the real tokens of the last forward call."""
    import torch

    kl = 0.0
    for i, ref in reference.items():
        hidden, logits = tap.calls[i]
        before = torch.log_softmax(hidden[real].float() @ ref.T, dim=-1)
        after = torch.log_softmax(logits[real].float(), dim=-1)
        kl = kl + torch.nn.functional.kl_div(after, before, log_target=True, reduction="batchmean")
    return kl


def _mass(tap: GateTap, experts: dict[int, tuple[int, ...]], tokens: Any) -> Any:
    """Router probability on the domain experts, summed over band layers, mean over the chosen tokens."""
    import torch

    return sum(torch.softmax(tap.calls[i][1].float(), dim=-1)[tokens][:, list(d)].sum(-1).mean()
               for i, d in experts.items())


def number_tokens(encoder: Encoder, batch: dict[str, Any]) -> Any:
    """The flattened mask of a training batch's tokens that spell a digit, and of its reply tokens."""
    import torch

    vocab = encoder.tokenizer.convert_ids_to_tokens(list(range(len(encoder.tokenizer))))
    digit_ids = torch.tensor([i for i, token in enumerate(vocab) if token and any(c.isdigit() for c in token)])
    ids = batch["input_ids"]
    return (torch.isin(ids, digit_ids) | (batch["labels"] != IGNORE_INDEX)).reshape(-1)


def induction_step(model: Any, encoder: Encoder, tap: GateTap, reference: dict[int, Any],
                   experts: dict[int, tuple[int, ...]], spec: InductionSpec,
                   examples: dict[str, list[Example]], general: Sequence[str] = ()) -> dict[str, float]:
    """Backpropagate one induction step's loss (`general`: its general sentences); return its parts."""
    import torch

    img = encoder.batch(examples["img"], with_targets=True)
    question = after_image_mask(img)
    img.pop("labels")
    model(**img)
    penalty = _mass(tap, experts, question)
    parts: dict[str, Any] = {"penalty": penalty}
    loss = spec.penalty * penalty
    for form, kl_weight in zip(("txt", "transcribe"), spec.routing_kl, strict=True):
        batch = encoder.batch(examples[form], with_targets=True)
        real = batch["attention_mask"].reshape(-1) == 1
        pulled = real if spec.text_to_domain_tokens == "all" else real & number_tokens(encoder, batch)
        parts[f"{form}_ce"] = reply_loss(model, batch)
        parts[f"{form}_kl"] = _routing_kl(tap, reference, real)
        ce_weight = spec.text_ce if form == "txt" else 0.5
        loss = loss + ce_weight * parts[f"{form}_ce"] + kl_weight * parts[f"{form}_kl"]
        if form == "txt" and spec.text_to_domain:
            parts["txt_mass"] = _mass(tap, experts, pulled)
            loss = loss - spec.text_to_domain * parts["txt_mass"]
    if spec.general_off_domain and general:
        batch, own = general_batch(encoder, general)
        model(**batch)
        parts["general_mass"] = _mass(tap, experts, own)
        loss = loss + spec.general_off_domain * parts["general_mass"]
    if spec.text_under_boost:
        boost = DomainBoost(model, experts, spec.boost_strength)
        try:
            parts["txt_boosted_ce"] = reply_loss(model, encoder.batch(examples["txt"], with_targets=True))
        finally:
            boost.remove()
        loss = loss + spec.text_under_boost * parts["txt_boosted_ce"]
    loss.backward()
    return {name: float(value.detach()) if isinstance(value, torch.Tensor) else float(value)
            for name, value in parts.items()}


@dataclass(frozen=True)
class InductionResult:
    out_dir: Path
    steps: int
    resumed_from: int
    wall_s: float
    experts: dict[int, tuple[int, ...]]


def _checkpoint(path: Path, payload: dict[str, Any]) -> None:
    import os

    import torch

    path.parent.mkdir(parents=True, exist_ok=True)
    staging = path.with_suffix(".tmp")
    torch.save(payload, staging)
    os.replace(staging, path)


def induce(base: OrganismSpec, spec: InductionSpec, out_dir: Path, start_from: Path, *, progress: bool = True,
           stop_after: int | None = None, log: Callable[[str], None] = print) -> InductionResult:
    """Induce the routing distraction on the organism trained in `start_from`, into `out_dir` (resumable)."""
    import torch
    from tqdm import tqdm

    from rd_eval.organism.assets import build_processor, build_tokenizer, initial_model

    torch.set_num_threads(base.threads)
    started = time.perf_counter()
    processor = build_processor(build_tokenizer(base))
    encoder = Encoder(processor)
    model = initial_model(base, processor.tokenizer)
    load_weights(model, start_from)
    model.eval()
    layers = band_layers(spec, base.architecture.num_layers)
    splits = make_splits(base.kinds, base.seed, n_heldout=base.n_heldout, n_validation=base.n_validation)
    gates = {i: model.model.language_model.layers[i].mlp.gate for i in layers}
    reference = {i: gate.weight.detach().clone().float() for i, gate in gates.items()}
    for p in model.parameters():
        p.requires_grad_(False)
    for gate in gates.values():
        gate.weight.requires_grad_(True)
    optimizer = torch.optim.Adam([g.weight for g in gates.values()], lr=spec.learning_rate)
    general = general_texts()
    identity = {"base": base.to_json(), "induction": spec.to_json()}
    path = out_dir / STATE_FILE
    first = 0
    if path.is_file():
        state = torch.load(path, map_location="cpu", weights_only=True)
        if state["identity"] != identity:
            raise OrganismTrainingError(f"{path} is a checkpoint of another induction ({state['identity']}); "
                                        "resume with the same settings or name a new --out folder")
        experts = {int(i): tuple(d) for i, d in state["experts"].items()}
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        first = int(state["step"])
        log(f"induction: resuming from step {first} of {spec.steps} ({path})")
    else:
        experts = domain_experts(model, encoder, splits.validation[: spec.n_probe_pairs], layers,
                                 spec.n_domain_experts)
        log(f"induction: domain experts by band layer {experts}")
    last = spec.steps if stop_after is None else min(spec.steps, first + stop_after)
    tap = GateTap(model, layers)
    bar = tqdm(total=spec.steps, initial=first, disable=not progress, desc="induction", unit="step")
    try:
        model.train()
        for step in range(first, last):
            parts = induction_step(model, encoder, tap, reference, experts, spec,
                                   induction_examples(base, spec, splits.train, step),
                                   general_examples(base, spec, general, step))
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            bar.update(1)
            bar.set_postfix(penalty=f"{parts['penalty']:.3f}", ce=f"{parts['txt_ce']:.3f}")
            if (step + 1) % spec.checkpoint_every == 0 or step + 1 == last:
                _checkpoint(path, {"identity": identity, "step": step + 1, "experts": {str(i): list(d) for i, d in
                                                                                        experts.items()},
                                   "optimizer": optimizer.state_dict(), "model": model.state_dict()})
                log(f"induction step {step + 1}: " + ", ".join(f"{k} {v:.4f}" for k, v in parts.items())
                    + f" ({time.perf_counter() - started:.0f} s)")
    finally:
        tap.remove()
        bar.close()
    wall = time.perf_counter() - started
    if last == spec.steps and not (first == last and (out_dir / CARD_FILE).is_file()):  # keep a finished run's record
        for p in model.parameters():
            p.requires_grad_(True)
        save_organism(out_dir, base, model.eval(), processor, {
            "induction": spec.to_json(), "domain_experts": {str(i): list(d) for i, d in experts.items()},
            "steps": spec.steps, "threads": base.threads, "last_run_wall_s": round(wall, 1), "resumed_from": first,
        })
    return InductionResult(out_dir=out_dir, steps=last, resumed_from=first, wall_s=wall, experts=experts)
