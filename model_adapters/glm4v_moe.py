"""rd_glm4v_moe: lmms-eval's own GLM4V class (GLM-4.5V / GLM-4.6V, the MoE checkpoints) plus rd-eval routing
records and the intervention."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from lmms_eval.models.simple.glm4v import GLM4V
from rd_eval_adapters.chat_template_batching import ChatTemplateBatching
from rd_eval_adapters.routing_adapter import (
    RoutingAdapterMixin,
    device_and_map,
    pop_adapter_settings,
    require_checkpoint_folder,
)

MOE_MODEL_TYPE = "glm4v_moe"


def _local_model_type(pretrained: str) -> str | None:
    config = Path(pretrained).expanduser() / "config.json"
    try:
        return json.loads(config.read_text()).get("model_type")
    except (OSError, ValueError, AttributeError):
        return None


def require_moe_checkpoint(pretrained: str) -> None:
    """Refuse what lmms-eval's GLM4V would load as the dense model, or what is not a GLM-4V MoE checkpoint."""
    if "Flash" in pretrained:
        raise ValueError(
            f"pretrained={pretrained!r}: lmms-eval's GLM4V loads any checkpoint with 'Flash' in its name as the "
            "dense GLM-4.xV-Flash model, which has no MoE routers to record or steer; use a MoE checkpoint "
            "(e.g. zai-org/GLM-4.5V, zai-org/GLM-4.6V) whose path does not contain 'Flash'"
        )
    model_type = _local_model_type(pretrained)
    if model_type is not None and model_type != MOE_MODEL_TYPE:
        raise ValueError(
            f"pretrained={pretrained!r}: config.json says model_type {model_type!r}, not {MOE_MODEL_TYPE!r}; "
            "rd_glm4v_moe needs a GLM-4V MoE checkpoint (a dense GLM-4V has no MoE routers)"
        )


class RDGlm4vMoe(ChatTemplateBatching, RoutingAdapterMixin, GLM4V):
    rd_model_id = "rd_glm4v_moe"

    def __init__(self, pretrained: str = "zai-org/GLM-4.6V", device: str | None = None,
                 device_map: str | None = None, **kwargs: Any) -> None:
        settings = pop_adapter_settings(kwargs)
        require_checkpoint_folder(pretrained)
        require_moe_checkpoint(pretrained)
        device, device_map = device_and_map(device, device_map)
        self._rd_load_base(super().__init__, pretrained=pretrained, device=device, device_map=device_map, **kwargs)
        self._rd_setup(settings, pretrained=pretrained)

    def _rd_adjust_inputs(self, inputs: Any) -> Any:
        inputs.pop("token_type_ids", None)  # as GLM4V does: the model's forward takes none
        return inputs
