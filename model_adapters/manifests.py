"""Entry-point target for lmms-eval's model registry.

lmms-eval imports this module on every start, so it must stay light: class paths only, no torch.
"""

from lmms_eval.models.registry_v2 import ModelManifest

MANIFESTS = [
    ModelManifest(
        model_id="rd_qwen3_vl_moe",
        simple_class_path="rd_eval_adapters.qwen3_vl_moe.RDQwen3VLMoe",
    ),
    ModelManifest(
        model_id="rd_qwen3_5_moe",
        simple_class_path="rd_eval_adapters.qwen3_vl_moe.RDQwen3_5Moe",
    ),
]
