"""The whole training recipe of the shipped organism, as three seeded, resumable phases in one folder:

(a) ``a_plain``: the plain recipe (`OrganismSpec` defaults: mix 45/45/10, 3,000 steps): it reads and adds from text,
    but not from the image; the gap emerges from the mix, and the soft intervention does not narrow it;
(b) ``b_image_qa``: image-QA-rich fine-tuning from (a) (mix 30/20/50, fresh AdamW, its own example stream) until
    every form reaches the stop rule's validation accuracy: the organism now answers from the image too;
(c) ``c_induction``: the routing distraction, *induced* by a routing term on the band layers' routers only
    (`rd_eval.organism.induce`), with the domain experts identified on validation pairs and recorded.

Each phase trains in ``DIR/phases/<phase>/`` and resumes from its own checkpoint; a finished phase is not rerun.
The final organism (phase (c)'s model files) is copied to ``DIR`` with a card, ``organism.json``, that records
the recipe, each phase's record, the domain experts and the weights' sha256.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from rd_eval.organism.induce import InductionSpec, induce
from rd_eval.organism.spec import OrganismSpec
from rd_eval.organism.train import CARD_FILE, StopRule, train, weights_sha256

PHASES = ("a_plain", "b_image_qa", "c_induction")
PHASES_DIR = "phases"


@dataclass(frozen=True)
class Recipe:
    plain: OrganismSpec = OrganismSpec()
    image_qa_mix: tuple[float, float, float] = (0.30, 0.20, 0.50)
    image_qa_max_steps: int = 2000
    image_qa_stop: StopRule = StopRule(min_steps=600, every=200)
    induction: InductionSpec = field(default_factory=InductionSpec)

    def image_qa(self) -> OrganismSpec:
        """Phase (b)'s spec: the plain spec with the image-QA-rich mix, its own example stream, at most
        `image_qa_max_steps` steps."""
        return replace(self.plain, mix=self.image_qa_mix, steps=self.image_qa_max_steps, data_stream=1)

    def to_json(self) -> dict[str, Any]:
        return {"plain": self.plain.to_json(), "image_qa": self.image_qa().to_json(),
                "image_qa_stop": vars(self.image_qa_stop), "induction": self.induction.to_json()}


def phase_dir(out_dir: Path, phase: str) -> Path:
    return out_dir / PHASES_DIR / phase


def _card(folder: Path) -> dict[str, Any]:
    return json.loads((folder / CARD_FILE).read_text(encoding="utf-8"))


def run_recipe(recipe: Recipe, out_dir: Path, *, progress: bool = True,
               log: Callable[[str], None] = print) -> dict[str, Any]:
    """Run (or resume) the three phases into `out_dir`; return the final organism's card."""
    plain, image_qa, induced = (phase_dir(out_dir, p) for p in PHASES)
    log(f"phase (a) plain recipe -> {plain}")
    train(recipe.plain, plain, progress=progress, log=log)
    log(f"phase (b) image-QA-rich fine-tuning -> {image_qa}")
    train(recipe.image_qa(), image_qa, progress=progress, start_from=plain, stop=recipe.image_qa_stop, log=log)
    log(f"phase (c) routing induction -> {induced}")
    induce(recipe.plain, recipe.induction, induced, image_qa, progress=progress, log=log)
    for item in induced.iterdir():
        if item.is_file() and item.name != CARD_FILE:
            shutil.copy2(item, out_dir / item.name)
    phases = {name: _card(phase_dir(out_dir, name)) for name in PHASES}
    card = {"recipe": recipe.to_json(), "phases": phases,
            "domain_experts": phases["c_induction"]["domain_experts"], "weights_sha256": weights_sha256(out_dir),
            "spec": recipe.plain.to_json()}
    (out_dir / CARD_FILE).write_text(json.dumps(card, indent=2) + "\n", encoding="utf-8")
    return card
