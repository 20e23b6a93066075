"""rd_kimi_vl: Kimi-VL-A3B (moonshotai/Kimi-VL-A3B-Instruct) on the generic HF image-text class, plus rd-eval
routing records and the intervention.

transformers has no native Kimi-VL: the checkpoint's own code must run, and that stays the user's explicit
choice (`trust_remote_code=true` in model_args; without it the checkpoint is refused with that hint).
Its auto map offers `AutoModelForCausalLM`, which the generic class falls back to. Routing: DeepSeek-V3-style
`MoEGate` routers (rd_eval.routing.families.deepseek_style), image tokens = `media_placeholder_token_id`.
"""

from __future__ import annotations

from rd_eval_adapters.hf_image_text import RoutedImageTextModel


class RDKimiVL(RoutedImageTextModel):
    rd_model_id = "rd_kimi_vl"
    rd_default_pretrained = "moonshotai/Kimi-VL-A3B-Instruct"
    model_types = ("kimi_vl",)
