"""Tiny random Qwen3-VL-MoE checkpoint (model_type qwen3_vl_moe)."""

from __future__ import annotations

from pathlib import Path

from rd_eval.models.tiny.qwen_vl import build_qwen_vl


def build(out_dir: Path, seed: int) -> None:
    from transformers import Qwen3VLMoeConfig, Qwen3VLMoeForConditionalGeneration

    build_qwen_vl(out_dir, seed, config_class=Qwen3VLMoeConfig, model_class=Qwen3VLMoeForConditionalGeneration,
                  text_overrides={"decoder_sparse_step": 1})
