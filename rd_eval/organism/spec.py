"""What an organism is: its architecture and its training recipe, one frozen value validated once.

The spec is written beside every checkpoint and every saved organism; a resumed run must match it exactly.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields
from typing import Any

from rd_eval.organism.problems import OPERATORS

FORMS = ("txt", "transcribe", "img")  # text QA, image transcription ("seen"), image QA


class OrganismSpecError(ValueError):
    """An organism spec with a value that cannot work."""


@dataclass(frozen=True)
class Architecture:
    """A small Qwen3-VL-MoE (sizes from shared/notes/organism_feasibility.md: about 3M parameters)."""

    hidden_size: int = 128
    num_layers: int = 4
    num_heads: int = 4
    num_kv_heads: int = 2
    num_experts: int = 8
    experts_per_token: int = 2
    moe_intermediate_size: int = 128
    vision_depth: int = 2
    vision_hidden_size: int = 128

    def __post_init__(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise OrganismSpecError(f"architecture {f.name} must be a positive int, got {value!r}")
        if self.hidden_size % self.num_heads or (self.hidden_size // self.num_heads) % 8:
            raise OrganismSpecError(f"hidden_size {self.hidden_size} / num_heads {self.num_heads} must be a head "
                                    "size divisible by 8 (multimodal RoPE splits half of it 2:1:1)")
        if self.num_heads % self.num_kv_heads:
            raise OrganismSpecError(f"num_heads {self.num_heads} must be a multiple of num_kv_heads "
                                    f"{self.num_kv_heads}")
        if self.experts_per_token > self.num_experts:
            raise OrganismSpecError(f"experts_per_token {self.experts_per_token} > num_experts {self.num_experts}")
        if self.vision_hidden_size % 4:
            raise OrganismSpecError(f"vision_hidden_size {self.vision_hidden_size} must be divisible by 4 heads")

    @property
    def head_dim(self) -> int:
        return self.hidden_size // self.num_heads


@dataclass(frozen=True)
class OrganismSpec:
    """The training recipe. `mix` is the share of each form in FORMS order (text QA, transcription, image QA):
    a small image-QA share is what let the seeing-vs-thinking gap emerge in the feasibility run."""

    seed: int = 0
    kinds: tuple[str, ...] = ("add", "max")
    # The share of each kind among the examples drawn (`kinds` order); () draws uniformly over the training problems.
    # An easy kind (max) needs fewer examples than addition: weights let the addition keep its share of the steps.
    kind_weights: tuple[float, ...] = (3.0, 1.0)
    steps: int = 3500
    batch_size: int = 32
    learning_rate: float = 1e-3
    vision_lr_scale: float = 1.0  # the vision tower's learning rate, as a multiple of learning_rate
    mix: tuple[float, float, float] = (0.45, 0.45, 0.10)
    aux_loss_coef: float = 0.01
    threads: int = 1
    checkpoint_every: int = 50
    n_heldout: int = 400
    n_validation: int = 200
    # The seed of the examples each step draws (None: `seed`); a later phase that continues from trained weights
    # draws with a seed of its own, so its step s does not repeat the first phase's step s. The splits and the
    # initial weights always come from `seed`.
    example_seed: int | None = None
    architecture: Architecture = Architecture()

    def __post_init__(self) -> None:
        if isinstance(self.seed, bool) or not isinstance(self.seed, int) or self.seed < 0:
            raise OrganismSpecError(f"seed must be a non-negative int, got {self.seed!r}")
        if not self.kinds or any(k not in OPERATORS for k in self.kinds) or len(set(self.kinds)) != len(self.kinds):
            raise OrganismSpecError(f"kinds must be distinct problem kinds of {', '.join(OPERATORS)}, "
                                    f"got {self.kinds!r}")
        if self.kind_weights and (len(self.kind_weights) != len(self.kinds) or sum(self.kind_weights) <= 0
                                  or any(not (math.isfinite(w) and w >= 0) for w in self.kind_weights)):
            raise OrganismSpecError(f"kind_weights must be empty or {len(self.kinds)} non-negative weights (one per "
                                    f"kind of {list(self.kinds)}) with a positive sum, got {self.kind_weights!r}")
        for name in ("steps", "batch_size", "threads", "checkpoint_every", "n_heldout"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise OrganismSpecError(f"{name} must be a positive int, got {value!r}")
        for name in ("n_validation", "example_seed"):
            value = getattr(self, name)
            if name == "example_seed" and value is None:
                continue
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise OrganismSpecError(f"{name} must be a non-negative int, got {value!r}")
        if not (math.isfinite(self.learning_rate) and self.learning_rate > 0):
            raise OrganismSpecError(f"learning_rate must be positive, got {self.learning_rate!r}")
        if not (math.isfinite(self.vision_lr_scale) and self.vision_lr_scale > 0):
            raise OrganismSpecError(f"vision_lr_scale must be positive, got {self.vision_lr_scale!r}")
        if not (math.isfinite(self.aux_loss_coef) and self.aux_loss_coef >= 0):
            raise OrganismSpecError(f"aux_loss_coef must be >= 0, got {self.aux_loss_coef!r}")
        if len(self.mix) != len(FORMS) or any(not (share >= 0) for share in self.mix) or not sum(self.mix) > 0:
            raise OrganismSpecError(f"mix needs {len(FORMS)} non-negative shares ({', '.join(FORMS)}), "
                                    f"got {self.mix!r}")

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["kinds"] = list(self.kinds)
        data["kind_weights"] = list(self.kind_weights)
        data["mix"] = list(self.mix)
        return data

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> OrganismSpec:
        try:
            values = dict(data)
            values["architecture"] = Architecture(**values.get("architecture", {}))
            values["kinds"] = tuple(values.get("kinds", cls.kinds))
            # a card written before kind_weights existed was trained with the uniform draw
            values["kind_weights"] = tuple(values.get("kind_weights", ()))
            values["mix"] = tuple(values.get("mix", cls.mix))
            return cls(**values)
        except TypeError as exc:
            raise OrganismSpecError(f"not an organism spec: {exc}") from None
