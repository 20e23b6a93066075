"""rd_qwen3_vl_moe: lmms-eval's own Qwen3-VL class plus rd-eval routing records and the intervention."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from lmms_eval.models.simple.qwen3_vl import Qwen3_VL
from rd_eval_adapters.routing_adapter import Request, RoutingAdapterMixin, default_device

from rd_eval.routing.settings import pop_routing_settings

# lmms-eval 0.7.3's Qwen3_VL loads the MoE model class only when the checkpoint name matches this.
_MOE_NAME = re.compile(r"A\d+B")


class RDQwen3VLMoe(RoutingAdapterMixin, Qwen3_VL):
    rd_model_id = "rd_qwen3_vl_moe"

    def __init__(self, pretrained: str = "Qwen/Qwen3-VL-30B-A3B-Instruct", device: str | None = None,
                 device_map: str | None = None, **kwargs: Any) -> None:
        settings = pop_routing_settings(kwargs)
        local = Path(pretrained).expanduser()
        if (local.is_absolute() or pretrained.startswith(".")) and not local.is_dir():
            raise ValueError(f"pretrained={pretrained!r}: no such checkpoint folder")
        if not _MOE_NAME.search(pretrained):
            raise ValueError(
                f"pretrained={pretrained!r}: lmms-eval's qwen3_vl class picks the MoE model class only when the "
                "checkpoint name matches 'A<digits>B' (as in Qwen3-VL-30B-A3B); name the folder accordingly "
                "(rd-eval make-tiny names its checkpoints this way)"
            )
        device = device or default_device()
        # The base class moves inputs to "cuda" whenever device_map is "auto"; on a CPU keep it on the device.
        device_map = device_map or (device if device == "cpu" else "auto")
        super().__init__(pretrained=pretrained, device=device, device_map=device_map, **kwargs)
        self._rd_setup(settings, pretrained=pretrained)

    def _rd_prepare_batch(self, chunk: list[Request]) -> tuple[Any, list[str], dict, list[str]]:
        return self._preprocess_chunk(chunk)
