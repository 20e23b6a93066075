"""rd_qwen3_vl_moe and rd_qwen3_5_moe: lmms-eval's own Qwen3-VL / Qwen3.5 classes plus rd-eval routing
records and the intervention (lmms-eval's Qwen3_5 subclasses its Qwen3_VL, so one adapter serves both).

lmms-eval's Qwen3_VL picks the MoE model class only when the checkpoint *name* matches `A<digits>B`; here the
class comes from the checkpoint's config.json `model_type` (rd_eval_adapters.loading), so any folder name loads.
"""

from __future__ import annotations

from types import MappingProxyType

from lmms_eval.models.simple.qwen3_5 import Qwen3_5
from lmms_eval.models.simple.qwen3_vl import Qwen3_VL
from rd_eval_adapters.routing_adapter import PreparedBatch, Request, RoutingAdapterMixin

_DENSE = " (a dense checkpoint: it has no MoE routers to record or steer)"


class _QwenVLRouting(RoutingAdapterMixin):
    """What both Qwen classes share: lmms-eval's own batch preparation and thinking-block strip."""

    def _rd_prepare_batch(self, chunk: list[Request]) -> PreparedBatch:
        inputs, _contexts, gen_kwargs, until = self._preprocess_chunk(chunk)
        return PreparedBatch(inputs, self._build_generate_kwargs(gen_kwargs), until)

    def _rd_finish_text(self, text: str) -> str:
        return self._strip_thinking(text)


class RDQwen3VLMoe(_QwenVLRouting, Qwen3_VL):
    rd_model_id = "rd_qwen3_vl_moe"
    rd_default_pretrained = "Qwen/Qwen3-VL-30B-A3B-Instruct"
    rd_model_classes = MappingProxyType({"qwen3_vl_moe": "Qwen3VLMoeForConditionalGeneration"})
    rd_model_type_hints = MappingProxyType({"qwen3_vl": _DENSE})


class RDQwen3_5Moe(_QwenVLRouting, Qwen3_5):
    rd_model_id = "rd_qwen3_5_moe"
    rd_default_pretrained = "Qwen/Qwen3.5-35B-A3B"
    rd_model_classes = MappingProxyType({"qwen3_5_moe": "Qwen3_5MoeForConditionalGeneration"})
    rd_model_type_hints = MappingProxyType({"qwen3_5": _DENSE, "qwen3_5_text": _DENSE})
