"""rd_internvl_moe: lmms-eval's InternVLHf class (InternVL3.5 MoE "-HF" checkpoints) plus rd-eval routing
records and the intervention.

lmms-eval's InternVLHf is a chat model (requests carry `doc_to_messages`) limited to batch size 1. The adapter
reuses its loading and settings (min/max patches, use_cache) and answers lmms-eval's simple requests: the
messages are the ones lmms-eval's default `doc_to_messages` builds for a simple task (the document's images,
then its text), rendered by the checkpoint's chat template and processed with InternVLHf's patch settings, in
left-padded batches of any size.
"""

from __future__ import annotations

from types import MappingProxyType
from typing import Any

from lmms_eval.models.chat.internvl_hf import InternVLHf
from PIL import Image
from rd_eval_adapters.routing_adapter import (
    PreparedBatch,
    Request,
    RoutingAdapterMixin,
    positive_batch_size,
    sampling_kwargs,
)

# InternVLHf's defaults for a task that sets none.
INTERNVL_MAX_NEW_TOKENS = 1024


class RDInternVLMoe(RoutingAdapterMixin, InternVLHf):
    rd_model_id = "rd_internvl_moe"
    rd_default_pretrained = "OpenGVLab/InternVL3_5-30B-A3B-HF"
    rd_model_classes = MappingProxyType({"internvl": "InternVLForConditionalGeneration"})
    is_simple = True  # lmms-eval hands this class (context, gen_kwargs, doc_to_visual, ...) requests

    def _rd_base_args(self, pretrained: str, model_args: dict[str, Any]) -> dict[str, Any]:
        # InternVLHf accepts batch size 1 only because its own loop is single-request; ours batches.
        self._rd_batch_size = positive_batch_size(model_args.pop("batch_size", 1))
        return super()._rd_base_args(pretrained, model_args) | {"batch_size": 1}

    def _rd_after_load(self) -> None:
        self.batch_size_per_gpu = self._rd_batch_size

    def _rd_prepare_batch(self, chunk: list[Request]) -> PreparedBatch:
        texts: list[str] = []
        images: list[Image.Image] = []
        for context, _gen_kwargs, doc_to_visual, doc_id, task, split in chunk:
            visuals = doc_to_visual(self.task_dict[task][split][doc_id]) or []
            if any(not isinstance(v, Image.Image) for v in visuals):
                raise ValueError("rd_internvl_moe answers image and text prompts; other visuals are not supported")
            content = [{"type": "image"} for _ in visuals] + [{"type": "text", "text": context}]
            texts.append(self.processor.apply_chat_template([{"role": "user", "content": content}], tokenize=False,
                                                            add_generation_prompt=True))
            images.extend(v.convert("RGB") for v in visuals)
        image_kwargs = {key: value for key, value in (("min_patches", self.min_patches),
                                                      ("max_patches", self.max_patches)) if value is not None}
        inputs = self.processor(images=images or None, text=texts, padding=True, return_tensors="pt",
                                **(image_kwargs if images else {}))
        if "pixel_values" in inputs:
            inputs["pixel_values"] = inputs["pixel_values"].to(self.model.dtype)
        # InternVLHf applies no `until` strings (chat models stop at the end of their turn); neither do we.
        return PreparedBatch(inputs, self._generate_kwargs(dict(chunk[0][1])), [])

    def _generate_kwargs(self, gen_kwargs: dict[str, Any]) -> dict[str, Any]:
        """InternVLHf's: greedy unless the task sets a temperature; its default answer budget."""
        return {
            "max_new_tokens": int(gen_kwargs.get("max_new_tokens") or INTERNVL_MAX_NEW_TOKENS),
            "num_beams": int(gen_kwargs.get("num_beams") or 1),
            "pad_token_id": self.pad_token_id,
            "eos_token_id": self.eot_token_id,
            "use_cache": self.use_cache,
            **sampling_kwargs(gen_kwargs),
        }

