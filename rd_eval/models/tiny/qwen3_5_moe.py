"""Tiny random Qwen3.5-MoE checkpoint (model_type qwen3_5_moe): hybrid Gated-DeltaNet / full attention,
softmax top-k experts plus a sigmoid-gated shared expert."""

from __future__ import annotations

from pathlib import Path

from rd_eval.models.tiny.qwen_vl import HEAD_DIM, build_qwen_vl


def build(out_dir: Path, seed: int) -> None:
    from transformers import Qwen3_5MoeConfig, Qwen3_5MoeForConditionalGeneration

    layers = 4  # the linear-attention layers run slow reference code on a CPU: keep them few
    build_qwen_vl(
        out_dir, seed, config_class=Qwen3_5MoeConfig, model_class=Qwen3_5MoeForConditionalGeneration,
        text_overrides={
            "num_hidden_layers": layers,
            "layer_types": ["linear_attention", "full_attention"] * (layers // 2),
            "shared_expert_intermediate_size": 32,
            "linear_conv_kernel_dim": 4,
            "linear_key_head_dim": HEAD_DIM,
            "linear_value_head_dim": HEAD_DIM,
            "linear_num_key_heads": 2,
            "linear_num_value_heads": 4,
            "partial_rotary_factor": 1.0,
        },
    )
