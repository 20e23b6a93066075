"""rd_kimi_vl: Kimi-VL-A3B (moonshotai/Kimi-VL-A3B-Instruct) on the generic HF image-text class, plus rd-eval
routing records and the intervention.

transformers has no native Kimi-VL: the checkpoint's own code must run, and that stays the user's explicit
choice (`trust_remote_code=true` in model_args; without it the checkpoint is refused with that hint).
Its auto map offers `AutoModelForCausalLM`, which the generic class falls back to. Routing: DeepSeek-V3-style
`MoEGate` routers (rd_eval.routing.families.deepseek_style), image tokens = `media_placeholder_token_id`.
"""

from __future__ import annotations

from typing import Any

from rd_eval_adapters.hf_image_text import HFImageTextModel
from rd_eval_adapters.routing_adapter import PreparedBatch, Request, RoutingAdapterMixin, pop_adapter_settings


class RDKimiVL(RoutingAdapterMixin, HFImageTextModel):
    rd_model_id = "rd_kimi_vl"
    model_types = ("kimi_vl",)

    def __init__(self, pretrained: str = "moonshotai/Kimi-VL-A3B-Instruct", trust_remote_code: bool = False,
                 **kwargs: Any) -> None:
        settings = pop_adapter_settings(kwargs, pretrained)
        self._rd_load_base(super().__init__, pretrained=pretrained, trust_remote_code=trust_remote_code, **kwargs)
        self._rd_setup(settings, pretrained=pretrained)

    def _rd_prepare_batch(self, chunk: list[Request]) -> PreparedBatch:
        return self.prepare_batch(chunk)

    def _rd_finish_text(self, text: str) -> str:
        return self.finish_text(text)
