"""Problems in a form, as the tensors Qwen3-VL-MoE takes: token ids, masks, image rows, loss labels.

The layout is the Qwen3-VL processor's own (tests compare it with the processor's output): each image's
placeholder is expanded to one token per merged 32 x 32 patch, `mm_token_type_ids` marks those tokens, and
`pixel_values` are the image processor's normalised patch rows (its own `patchify`). Building them here, in
one batched step, is what keeps a training step fast; the processor's per-image call costs about 15 ms.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from rd_eval.organism.problems import Problem, problem_image
from rd_eval.organism.prompts import IMAGE_FORMS, messages, target

IGNORE_INDEX = -100  # labels of prompt and padding tokens: no loss there


@dataclass(frozen=True)
class Example:
    problem: Problem
    form: str


@dataclass(frozen=True)
class Encoder:
    """Turns examples into model inputs with one organism's processor (tokenizer, image processor, template)."""

    processor: Any

    @property
    def tokenizer(self) -> Any:
        return self.processor.tokenizer

    def prompt_ids(self, example: Example) -> list[int]:
        text = self.processor.apply_chat_template(messages(example.problem, example.form), tokenize=False,
                                                  add_generation_prompt=True)
        pad = self.processor.image_token
        if example.form in IMAGE_FORMS:
            text = text.replace(pad, pad * self.tokens_per_image(example.problem))
        return self.tokenizer(text, add_special_tokens=False)["input_ids"]

    def target_ids(self, example: Example) -> list[int]:
        reply = self.tokenizer(target(example.problem, example.form), add_special_tokens=False)["input_ids"]
        return [*reply, self.tokenizer.eos_token_id]

    def tokens_per_image(self, problem: Problem) -> int:
        side = self.processor.image_processor.patch_size * self.processor.image_processor.merge_size
        width, height = problem.image_size
        return (height // side) * (width // side)

    def pixel_inputs(self, problems: Sequence[Problem]) -> dict[str, Any]:
        """`pixel_values` and `image_grid_thw` of the problems' images, in the image processor's layout: each
        image's patch rows in the problems' order. Images of one size are normalised and patchified together."""
        import numpy as np
        import torch

        ip = self.processor.image_processor
        mean = torch.tensor(ip.image_mean, dtype=torch.float32)[:, None, None]
        std = torch.tensor(ip.image_std, dtype=torch.float32)[:, None, None]
        per_image: list[Any] = [None] * len(problems)
        grids: list[list[int]] = [[]] * len(problems)
        for size in dict.fromkeys(p.image_size for p in problems):
            where = [i for i, p in enumerate(problems) if p.image_size == size]
            pixels = np.stack([np.asarray(problem_image(problems[i]), dtype=np.uint8) for i in where])
            images = torch.from_numpy(pixels).permute(0, 3, 1, 2).to(torch.float32) * ip.rescale_factor
            rows, grid_h, grid_w = ip.patchify((images - mean) / std, ip.patch_size, ip.merge_size,
                                               ip.temporal_patch_size)
            for i, image_rows in zip(where, rows, strict=True):
                per_image[i], grids[i] = image_rows, [1, grid_h, grid_w]
        return {"pixel_values": torch.cat([r.reshape(-1, r.shape[-1]) for r in per_image]),
                "image_grid_thw": torch.tensor(grids, dtype=torch.long)}

    def batch(self, examples: Sequence[Example], *, with_targets: bool) -> dict[str, Any]:
        """Training batches (`with_targets`): prompt + reply, right-padded, labels on the reply only.
        Generation batches: the prompt only, left-padded (as lmms-eval pads)."""
        import torch

        pad_id = self.tokenizer.pad_token_id
        image_id = self.tokenizer.convert_tokens_to_ids(self.processor.image_token)
        rows: list[list[int]] = []
        labels: list[list[int]] = []
        for example in examples:
            prompt = self.prompt_ids(example)
            reply = self.target_ids(example) if with_targets else []
            rows.append(prompt + reply)
            labels.append([IGNORE_INDEX] * len(prompt) + reply)
        width = max(len(r) for r in rows)
        ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
        mask = torch.zeros((len(rows), width), dtype=torch.long)
        label_ids = torch.full((len(rows), width), IGNORE_INDEX, dtype=torch.long)
        for i, (row, label) in enumerate(zip(rows, labels, strict=True)):
            span = slice(0, len(row)) if with_targets else slice(width - len(row), width)
            ids[i, span] = torch.tensor(row)
            mask[i, span] = 1
            label_ids[i, span] = torch.tensor(label)
        inputs: dict[str, Any] = {"input_ids": ids, "attention_mask": mask,
                                  "mm_token_type_ids": (ids == image_id).to(torch.long)}
        with_image = [e.problem for e in examples if e.form in IMAGE_FORMS]
        if with_image:
            inputs |= self.pixel_inputs(with_image)
        if with_targets:
            inputs["labels"] = label_ids
        return inputs
