"""Batch preparation for lmms-eval classes whose `generate_until` builds HF chat messages in one piece.

lmms-eval 0.7.3's GLM4V and Llama4Scout (and classes written like them) factor nothing out of their loop:
per batch they build `[{"role": "user", "content": [<image parts>, {"type": "text", ...}]}]` messages,
call `processor.apply_chat_template(..., tokenize=True, return_dict=True, padding=True)` on the whole batch
and generate greedily unless the task asks for a temperature. `ChatTemplateBatching._rd_prepare_batch`
reproduces that step for `RoutingAdapterMixin`, reusing the base class's own attributes and helpers
(`system_prompt`, `max_new_tokens`, `use_cache`, `_image_to_base64`, its processor and tokenizer); the few
per-family differences are the hooks below.

The one intended difference: each request's own `doc_to_visual` is applied to its own doc (the stock loops
apply the batch's first one to every doc; the adapter's loop batches per task, where the two agree).
"""

from __future__ import annotations

from typing import Any

from PIL import Image
from rd_eval_adapters.routing_adapter import PreparedBatch, Request


class ChatTemplateBatching:
    """Mixed in before `RoutingAdapterMixin` (whose `_rd_prepare_batch` it provides) and the lmms-eval class."""

    # -- hooks for the per-family differences ---------------------------------------------------------------
    def _rd_visual_parts(self, visual: Any) -> list[dict[str, Any]]:
        """Message content parts for one visual, as the base class makes them: a PIL image as a JPEG data
        URL (through the base class's `_image_to_base64`), a string as an image URL or path; others dropped."""
        if isinstance(visual, Image.Image):
            return [{"type": "image", "url": self._image_to_base64(visual)}]
        if isinstance(visual, str):
            return [{"type": "image", "url": visual}]
        return []

    def _rd_pad_token_id(self) -> int | None:
        """The pad token `generate` gets (GLM4V passes the tokenizer's as it is, even None)."""
        return self.tokenizer.pad_token_id

    def _rd_adjust_inputs(self, inputs: Any) -> Any:
        """The base class's last touch on the processor output before it goes to the device."""
        return inputs

    # -- shared ----------------------------------------------------------------------------------------------
    def _rd_messages(self, context: str, visuals: Any) -> list[dict[str, Any]]:
        messages: list[dict[str, Any]] = []
        if self.system_prompt:
            messages.append({"role": "system", "content": self.system_prompt})
        content = [part for visual in (visuals or ()) for part in self._rd_visual_parts(visual)]
        content.append({"type": "text", "text": context.replace("<image>", "")})
        messages.append({"role": "user", "content": content})
        return messages

    def _rd_until(self, gen_kwargs: dict[str, Any]) -> list[str]:
        until = gen_kwargs.get("until", [self.tokenizer.decode(self.eot_token_id)])
        if isinstance(until, str):
            return [until]
        if not isinstance(until, list):
            raise ValueError(f"Expected `gen_kwargs['until']` to be of type Union[str, list], but got {type(until)}")
        return until

    def _rd_generate_kwargs(self, gen_kwargs: dict[str, Any]) -> dict[str, Any]:
        """What the base class passes to `model.generate` besides the inputs: only these keys of the task's
        generation kwargs count, greedy unless temperature > 0, its own `max_new_tokens` by default."""
        current = {"max_new_tokens": self.max_new_tokens, "temperature": 0.0, "top_p": None, "num_beams": 1,
                   **gen_kwargs}
        sample = current["temperature"] > 0
        return {
            "eos_token_id": self.tokenizer.eos_token_id,
            "pad_token_id": self._rd_pad_token_id(),
            "do_sample": sample,
            "temperature": current["temperature"] if sample else None,
            "top_p": current["top_p"] if sample else None,
            "num_beams": current["num_beams"],
            "max_new_tokens": current["max_new_tokens"],
            "use_cache": self.use_cache,
        }

    def _rd_prepare_batch(self, chunk: list[Request]) -> PreparedBatch:
        """One batch of one task: each request's visuals from its own doc, its chat messages, the inputs."""
        gen_kwargs = chunk[0][1]  # a batch shares its generation kwargs (lmms-eval groups by them)
        until = self._rd_until(gen_kwargs)
        batched_messages = []
        for context, _gen, doc_to_visual, doc_id, task, split in chunk:
            visuals = doc_to_visual(self.task_dict[task][split][doc_id])
            batched_messages.append(self._rd_messages(context, visuals))
        inputs = self.processor.apply_chat_template(
            batched_messages,
            tokenize=True,
            add_generation_prompt=True,
            return_dict=True,
            return_tensors="pt",
            padding=True,
        )
        return PreparedBatch(self._rd_adjust_inputs(inputs), self._rd_generate_kwargs(gen_kwargs), until)
