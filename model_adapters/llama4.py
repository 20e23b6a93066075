"""rd_llama4: lmms-eval's own Llama4Scout class (any Llama 4 checkpoint: Scout, Maverick) plus rd-eval routing
records and the intervention."""

from __future__ import annotations

from types import MappingProxyType
from typing import Any

from lmms_eval.models.simple.llama4_scout import Llama4Scout
from rd_eval_adapters.chat_template_batching import ChatTemplateBatching
from rd_eval_adapters.routing_adapter import RoutingAdapterMixin

_VIDEO_SUFFIXES = (".mp4", ".avi", ".mov", ".mkv", ".webm")  # what Llama4Scout reads as a video


class RDLlama4(ChatTemplateBatching, RoutingAdapterMixin, Llama4Scout):
    rd_model_id = "rd_llama4"
    rd_default_pretrained = "meta-llama/Llama-4-Scout-17B-16E-Instruct"
    rd_model_classes = MappingProxyType({"llama4": "Llama4ForConditionalGeneration"})

    def _rd_visual_parts(self, visual: Any) -> list[dict[str, Any]]:
        if isinstance(visual, str) and visual.endswith(_VIDEO_SUFFIXES):
            # As Llama4Scout does: max_frames_num frames sampled uniformly, each sent as an image.
            import torch
            from torchvision.transforms.functional import to_pil_image

            frames = torch.from_numpy(self.load_video(visual, self.max_frames_num)).permute(0, 3, 1, 2)
            return [part for frame in frames for part in super()._rd_visual_parts(to_pil_image(frame))]
        return super()._rd_visual_parts(visual)

    def _rd_pad_token_id(self) -> int | None:
        pad = self.tokenizer.pad_token_id
        return self.tokenizer.eos_token_id if pad is None else pad  # Llama tokenizers often have none
