"""rd_aria: lmms-eval's own Aria class plus rd-eval routing records and the intervention.

lmms-eval's Aria answers one request at a time inside a monolithic loop; the adapter prepares batches the
way that loop prepares one request (same content parts, chat template, placeholder clean-up, image size,
decoding), with left padding so that batches larger than one give the same answers.
"""

from __future__ import annotations

import re
from types import MappingProxyType
from typing import Any

import torch
from lmms_eval.models.simple.aria import DEFAULT_IMAGE_TOKEN, Aria
from rd_eval_adapters.routing_adapter import PreparedBatch, Request, RoutingAdapterMixin, sampling_kwargs

# The answer budget lmms-eval's Aria uses (it sets it for every request); a task's own max_new_tokens wins.
ARIA_MAX_NEW_TOKENS = 1024
ARIA_IMAGE_SIZE = 980  # lmms-eval's Aria: max_image_size for images (490 is for video frames)
ARIA_END = "<|im_end|>"


def aria_content(context: str, n_images: int) -> list[dict[str, Any]]:
    """The user turn's content parts, as lmms-eval's Aria builds them (images first, or at `<image>` marks)."""
    text = context.replace("\n\n", "\n")
    if DEFAULT_IMAGE_TOKEN not in text:
        return [{"text": None, "type": "image"}] * n_images + [{"text": "\n" + text, "type": "text"}]
    if text.count(DEFAULT_IMAGE_TOKEN) != n_images:
        raise ValueError(f"the prompt has {text.count(DEFAULT_IMAGE_TOKEN)} {DEFAULT_IMAGE_TOKEN} marks for "
                         f"{n_images} image(s)")
    parts: list[dict[str, Any]] = []
    for i, piece in enumerate(text.split(DEFAULT_IMAGE_TOKEN)):
        parts.append({"text": piece, "type": "text"})
        if i < n_images:
            parts += [{"text": None, "type": "image"}] * n_images + [{"text": "\n", "type": "text"}]
    return parts


class RDAria(RoutingAdapterMixin, Aria):
    rd_model_id = "rd_aria"
    rd_default_pretrained = "rhymes-ai/Aria"
    rd_model_classes = MappingProxyType({"aria": "AriaForConditionalGeneration"})

    def _rd_device_map(self, device: str) -> str:
        # lmms-eval's Aria reads device_map "" as "one GPU per rank"; on a CPU load on the CPU.
        return device if device == "cpu" else ""

    def _rd_after_load(self) -> None:
        self.processor = self._image_processor  # the mixin pads and decodes through `self.processor`

    def _rd_prepare_batch(self, chunk: list[Request]) -> PreparedBatch:
        texts: list[str] = []
        images: list[Any] = []
        for context, _gen_kwargs, doc_to_visual, doc_id, task, split in chunk:
            visuals = self.flatten([doc_to_visual(self.task_dict[task][split][doc_id])])
            if any(isinstance(v, str) for v in visuals):
                raise ValueError("rd_aria answers image and text prompts; video inputs are not supported")
            messages = [{"role": "user", "content": aria_content(context, len(visuals))}]
            text = self._image_processor.apply_chat_template(messages, add_generation_prompt=True)
            texts.append(re.sub(r"<image \d+>|<image>", "", text))
            images.extend(visuals)
        inputs = self._image_processor(images=images or None, text=texts, return_tensors="pt", padding=True,
                                       max_image_size=ARIA_IMAGE_SIZE)
        if "pixel_values" in inputs:
            inputs["pixel_values"] = inputs["pixel_values"].to(self.model.dtype)
        return PreparedBatch(inputs, self._generate_kwargs(dict(chunk[0][1])), [])

    def _generate_kwargs(self, gen_kwargs: dict[str, Any]) -> dict[str, Any]:
        tokenizer = self._image_processor.tokenizer
        return {
            "max_new_tokens": int(gen_kwargs.get("max_new_tokens", ARIA_MAX_NEW_TOKENS)),
            "num_beams": int(gen_kwargs.get("num_beams", 1) or 1),
            "eos_token_id": tokenizer.convert_tokens_to_ids(ARIA_END),
            "pad_token_id": tokenizer.pad_token_id,
            **sampling_kwargs(gen_kwargs),
        }

    def _rd_decode(self, new_tokens: list[torch.Tensor]) -> list[str]:
        return [self._image_processor.decode(t, skip_special_tokens=True).replace(ARIA_END, "") for t in new_tokens]
