"""Tiny random checkpoints of the Qwen-VL MoE families (Qwen3-VL-MoE, Qwen3.5-MoE): one builder, the
family's config and model classes plugged in. Both use Qwen3-VL's processor and placeholder tokens."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from rd_eval.models.tiny.common import QWEN_SPECIAL_TOKENS, QWEN_VL_CHAT_TEMPLATE, save_tiny_model, train_qwen_tokenizer

HEAD_DIM = 16


def base_text_config(tokenizer: Any, ids: dict[str, int]) -> dict[str, Any]:
    return {
        "vocab_size": len(tokenizer),  # every id decodes to text
        "hidden_size": 64,
        "intermediate_size": 128,
        "moe_intermediate_size": 32,
        "num_hidden_layers": 8,
        "num_attention_heads": 4,
        "num_key_value_heads": 2,
        "head_dim": HEAD_DIM,
        "num_experts": 16,
        "num_experts_per_tok": 4,
        "max_position_embeddings": 4096,
        "rope_parameters": {
            "rope_type": "default",
            "rope_theta": 10000.0,
            "mrope_section": [4, 2, 2],  # sums to head_dim / 2
            "mrope_interleaved": True,
        },
        "tie_word_embeddings": False,
        "pad_token_id": ids["<|endoftext|>"],
        "eos_token_id": ids["<|im_end|>"],
    }


def build_qwen_vl(out_dir: Path, seed: int, *, config_class: Any, model_class: Any,
                  text_overrides: dict[str, Any] | None = None) -> None:
    import torch
    from transformers import Qwen2VLImageProcessor, Qwen3VLProcessor, Qwen3VLVideoProcessor

    tokenizer = train_qwen_tokenizer()
    ids = {tok: tokenizer.convert_tokens_to_ids(tok) for tok in QWEN_SPECIAL_TOKENS}
    config = config_class(
        text_config=base_text_config(tokenizer, ids) | (text_overrides or {}),
        vision_config={
            "depth": 2,
            "hidden_size": 32,
            "intermediate_size": 64,
            "num_heads": 4,
            "patch_size": 16,
            "spatial_merge_size": 2,
            "temporal_patch_size": 2,
            "out_hidden_size": 64,
            "num_position_embeddings": 256,
        } | ({"deepstack_visual_indexes": [0, 1]} if "Qwen3VL" in config_class.__name__ else {}),
        image_token_id=ids["<|image_pad|>"],
        video_token_id=ids["<|video_pad|>"],
        vision_start_token_id=ids["<|vision_start|>"],
        vision_end_token_id=ids["<|vision_end|>"],
    )
    torch.manual_seed(seed)
    model = model_class(config).eval()
    save_tiny_model(model, out_dir, eos_token_id=ids["<|im_end|>"], pad_token_id=ids["<|endoftext|>"])

    # Real Qwen-VL sizes: 16 px patches merged 2x2 into one token; pixel bounds kept small for a CPU.
    size = {"shortest_edge": 64 * 32 * 32, "longest_edge": 256 * 32 * 32}
    processor = Qwen3VLProcessor(
        image_processor=Qwen2VLImageProcessor(patch_size=16, merge_size=2, temporal_patch_size=2, size=size),
        tokenizer=tokenizer,
        video_processor=Qwen3VLVideoProcessor(patch_size=16, merge_size=2, temporal_patch_size=2, size=size),
        chat_template=QWEN_VL_CHAT_TEMPLATE,
    )
    processor.save_pretrained(out_dir)
    tokenizer.save_pretrained(out_dir)
