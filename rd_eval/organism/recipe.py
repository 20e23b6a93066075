"""The whole training recipe of the shipped organism, as three seeded, resumable phases in one folder:

(a) ``a_plain``: the plain recipe (`OrganismSpec` defaults: mix 45/45/10, 3,000 steps): it reads and adds from text,
    but not from the image; the gap emerges from the mix, and the soft intervention does not narrow it;
(b) ``b1_image_qa`` then ``b2_image_qa``: image-QA-rich fine-tuning from (a), twice 600 steps at mix 30/20/50,
    each with a fresh AdamW and examples of its own seed (seed + 1, seed + 2: for seed 0, exactly the log's e4 and
    e5 runs); the validation accuracy of every form at its end is recorded: the organism now answers from the
    image too;
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

PHASES = ("a_plain", "b1_image_qa", "b2_image_qa", "c_induction")
PHASES_DIR = "phases"


@dataclass(frozen=True)
class Recipe:
    plain: OrganismSpec = OrganismSpec()
    image_qa_mix: tuple[float, float, float] = (0.30, 0.20, 0.50)
    image_qa_steps: int = 600  # each of the two fine-tuning stages
    image_qa_check: StopRule = StopRule(min_steps=600, every=600)  # the check at the end of stage b2, recorded
    induction: InductionSpec = field(default_factory=InductionSpec)

    def image_qa(self, stage: int) -> OrganismSpec:
        """Stage `stage` (1 or 2) of phase (b): the plain spec with the image-QA-rich mix and examples of seed
        `seed + stage`."""
        return replace(self.plain, mix=self.image_qa_mix, steps=self.image_qa_steps,
                       example_seed=self.plain.seed + stage)

    def to_json(self) -> dict[str, Any]:
        return {"plain": self.plain.to_json(), "image_qa": [self.image_qa(1).to_json(), self.image_qa(2).to_json()],
                "image_qa_check": vars(self.image_qa_check), "induction": self.induction.to_json()}


def phase_dir(out_dir: Path, phase: str) -> Path:
    return out_dir / PHASES_DIR / phase


def _card(folder: Path) -> dict[str, Any]:
    return json.loads((folder / CARD_FILE).read_text(encoding="utf-8"))


def run_recipe(recipe: Recipe, out_dir: Path, *, progress: bool = True,
               log: Callable[[str], None] = print) -> dict[str, Any]:
    """Run (or resume) the three phases into `out_dir`; return the final organism's card."""
    plain, stage1, stage2, induced = (phase_dir(out_dir, p) for p in PHASES)
    log(f"phase (a) plain recipe -> {plain}")
    train(recipe.plain, plain, progress=progress, log=log)
    log(f"phase (b) image-QA-rich fine-tuning -> {stage1}, {stage2}")
    train(recipe.image_qa(1), stage1, progress=progress, start_from=plain, log=log)
    train(recipe.image_qa(2), stage2, progress=progress, start_from=stage1, stop=recipe.image_qa_check, log=log)
    log(f"phase (c) routing induction -> {induced}")
    induce(recipe.plain, recipe.induction, induced, stage2, progress=progress, log=log)
    for item in induced.iterdir():
        if item.is_file() and item.name != CARD_FILE:
            shutil.copy2(item, out_dir / item.name)
    phases = {name: _card(phase_dir(out_dir, name)) for name in PHASES}
    card = {"recipe": recipe.to_json(), "phases": phases,
            "domain_experts": phases["c_induction"]["domain_experts"], "weights_sha256": weights_sha256(out_dir),
            "spec": recipe.plain.to_json()}
    (out_dir / CARD_FILE).write_text(json.dumps(card, indent=2) + "\n", encoding="utf-8")
    return card
