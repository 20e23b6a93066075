"""Entry-point target for lmms-eval's model registry.

lmms-eval imports this module on every start, so it must stay light: class paths only, no torch.
"""

from lmms_eval.models.registry_v2 import ModelManifest

# model id -> class path; every id is rd_<family>, the family as `rd-eval make-tiny` names it.
ADAPTER_CLASSES = {
    "rd_qwen3_vl_moe": "rd_eval_adapters.qwen3_vl_moe.RDQwen3VLMoe",
    "rd_qwen3_5_moe": "rd_eval_adapters.qwen3_vl_moe.RDQwen3_5Moe",
    "rd_glm4v_moe": "rd_eval_adapters.glm4v_moe.RDGlm4vMoe",
    "rd_llama4": "rd_eval_adapters.llama4.RDLlama4",
    "rd_aria": "rd_eval_adapters.aria.RDAria",
    "rd_internvl_moe": "rd_eval_adapters.internvl_moe.RDInternVLMoe",
    "rd_ernie4_5_vl_moe": "rd_eval_adapters.ernie4_5_vl_moe.RDErnie4_5VLMoe",
    "rd_kimi_vl": "rd_eval_adapters.kimi_vl.RDKimiVL",
}

MANIFESTS = [ModelManifest(model_id=model_id, simple_class_path=path) for model_id, path in ADAPTER_CLASSES.items()]
