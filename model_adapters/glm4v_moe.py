"""rd_glm4v_moe: lmms-eval's own GLM4V class (GLM-4.5V / GLM-4.6V, the MoE checkpoints) plus rd-eval routing
records and the intervention.

lmms-eval's GLM4V loads the dense class for any checkpoint name containing "Flash"; here the class comes from
the checkpoint's config.json `model_type` (rd_eval_adapters.loading): the MoE class for `glm4v_moe` whatever
the name; a dense `glm4v` checkpoint is refused (it has no MoE routers).
"""

from __future__ import annotations

from types import MappingProxyType
from typing import Any

from lmms_eval.models.simple.glm4v import GLM4V
from rd_eval_adapters.chat_template_batching import ChatTemplateBatching
from rd_eval_adapters.routing_adapter import RoutingAdapterMixin

MOE_MODEL_TYPE = "glm4v_moe"


class RDGlm4vMoe(ChatTemplateBatching, RoutingAdapterMixin, GLM4V):
    rd_model_id = "rd_glm4v_moe"
    rd_default_pretrained = "zai-org/GLM-4.6V"
    rd_model_classes = MappingProxyType({MOE_MODEL_TYPE: "Glm4vMoeForConditionalGeneration"})
    rd_model_type_hints = MappingProxyType(
        {"glm4v": " (a dense GLM-4.xV such as GLM-4.6V-Flash: it has no MoE routers to record or steer)"}
    )

    def _rd_adjust_inputs(self, inputs: Any) -> Any:
        inputs.pop("token_type_ids", None)  # as GLM4V does: the model's forward takes none
        return inputs
