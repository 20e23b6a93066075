"""rd_ernie4_5_vl_moe: ERNIE-4.5-VL (transformers-native model_type `ernie4_5_vl_moe`) on the generic HF
image-text class, plus rd-eval routing records and the intervention.

ERNIE's MoE layers keep text and vision experts apart: which tokens go to the vision experts is decided by
the processor's `moe_mm_token_type_ids` (and M-RoPE by its `mm_token_type_ids`), so every processor output
reaches `generate`; a batch whose prompts carry vision tokens without them is refused rather than routed
through the text experts.
"""

from __future__ import annotations

import torch
from rd_eval_adapters.hf_image_text import RoutedImageTextModel
from rd_eval_adapters.routing_adapter import PreparedBatch, Request

# Baidu's first upload of this checkpoint ran its own remote code (model_type "ernie4_5_moe_vl"); transformers'
# documentation loads the native weights of the same repository (at the time from revision "refs/pr/11").
_REMOTE_ERNIE_HINT = (
    " (Baidu's remote-code layout of ERNIE-4.5-VL; load transformers-native weights instead, e.g. "
    "pretrained=baidu/ERNIE-4.5-VL-28B-A3B-PT with the revision that holds them, such as revision=refs/pr/11)"
)


class RDErnie4_5VLMoe(RoutedImageTextModel):
    rd_model_id = "rd_ernie4_5_vl_moe"
    rd_default_pretrained = "baidu/ERNIE-4.5-VL-28B-A3B-PT"
    model_types = ("ernie4_5_vl_moe",)
    model_type_hints = {"ernie4_5_moe_vl": _REMOTE_ERNIE_HINT}

    def _rd_prepare_batch(self, chunk: list[Request]) -> PreparedBatch:
        batch = super()._rd_prepare_batch(chunk)
        inputs = batch.inputs
        if "moe_mm_token_type_ids" not in inputs or "mm_token_type_ids" not in inputs:
            if bool(torch.isin(inputs["input_ids"], torch.tensor(self.rd_image_token_ids)).any()):
                raise ValueError(
                    f"the processor ({type(self.processor).__name__}) returned no moe_mm_token_type_ids / "
                    "mm_token_type_ids: ERNIE would send the vision tokens to its text experts"
                )
        return batch
