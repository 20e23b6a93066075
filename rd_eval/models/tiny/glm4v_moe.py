"""Tiny random GLM-4.5V checkpoint (model_type glm4v_moe): a dense first layer, then DeepSeek-V3-style
sigmoid routers with a correction bias and group-limited selection, plus a shared expert."""

from __future__ import annotations

from pathlib import Path

from rd_eval.models.tiny.common import save_tiny_model, train_qwen_tokenizer
from rd_eval.models.tiny.deepseek_v3 import randomise_correction_bias

# GLM-4.5V's special tokens (chat roles, and the media markers Glm4vProcessor looks up), by attribute name.
GLM_SPECIAL_TOKENS = {
    "gmask_token": "[gMASK]",
    "sop_token": "<sop>",
    "system_token": "<|system|>",
    "user_token": "<|user|>",
    "assistant_token": "<|assistant|>",
    "observation_token": "<|observation|>",
    "image_token": "<|image|>",
    "video_token": "<|video|>",
    "image_start_token": "<|begin_of_image|>",
    "image_end_token": "<|end_of_image|>",
    "video_start_token": "<|begin_of_video|>",
    "video_end_token": "<|end_of_video|>",
}

# Our own compact template in GLM's turn format; content is a string or lmms-eval's list of
# {"type": "text"|"image"|"video"} parts.
GLM4V_CHAT_TEMPLATE = (
    "[gMASK]<sop>{%- for message in messages %}<|{{ message['role'] }}|>{{ '\\n' }}"
    "{% if message['content'] is string %}{{ message['content'] }}"
    "{% else %}{% for part in message['content'] %}"
    "{% if part['type'] == 'image' %}<|begin_of_image|><|image|><|end_of_image|>"
    "{% elif part['type'] == 'video' %}<|begin_of_video|><|video|><|end_of_video|>"
    "{% elif part['type'] == 'text' %}{{ part['text'] }}"
    "{% endif %}{% endfor %}{% endif %}{% endfor %}"
    "{% if add_generation_prompt %}<|assistant|>{{ '\\n' }}{% endif %}"
)


def build(out_dir: Path, seed: int) -> None:
    import torch
    from transformers import (
        Glm4vImageProcessor,
        Glm4vMoeConfig,
        Glm4vMoeForConditionalGeneration,
        Glm4vProcessor,
        Glm4vVideoProcessor,
    )

    tokenizer = train_qwen_tokenizer(named_tokens=GLM_SPECIAL_TOKENS)
    tokenizer.chat_template = GLM4V_CHAT_TEMPLATE
    ids = {tok: tokenizer.convert_tokens_to_ids(tok) for tok in ("<|endoftext|>", *GLM_SPECIAL_TOKENS.values())}
    stop_ids = [ids["<|endoftext|>"], ids["<|user|>"], ids["<|observation|>"]]  # as GLM-4.5V stops
    # Layer 0 dense (first_k_dense_replace), then 5 MoE layers of 16 experts in 2 groups, top-4 from the best
    # group only (topk_group 1), so group limiting decides which experts can win.
    config = Glm4vMoeConfig(
        text_config={
            "vocab_size": len(tokenizer), "hidden_size": 64, "intermediate_size": 128, "moe_intermediate_size": 32,
            "num_hidden_layers": 6, "num_attention_heads": 4, "num_key_value_heads": 2, "head_dim": 32,
            "n_routed_experts": 16, "num_experts_per_tok": 4, "n_shared_experts": 1, "n_group": 2,
            "topk_group": 1, "first_k_dense_replace": 1, "routed_scaling_factor": 2.0, "norm_topk_prob": True,
            "partial_rotary_factor": 0.5, "max_position_embeddings": 4096,
            "rope_parameters": {"rope_type": "default", "rope_theta": 10000.0, "mrope_section": [2, 3, 3],
                                "partial_rotary_factor": 0.5},
            "pad_token_id": ids["<|endoftext|>"], "eos_token_id": stop_ids,
        },
        vision_config={
            "depth": 2, "hidden_size": 32, "intermediate_size": 64, "num_heads": 4, "patch_size": 14,
            "spatial_merge_size": 2, "temporal_patch_size": 2, "out_hidden_size": 64, "image_size": 56,
        },
        image_token_id=ids["<|image|>"], video_token_id=ids["<|video|>"],
        image_start_token_id=ids["<|begin_of_image|>"], image_end_token_id=ids["<|end_of_image|>"],
        video_start_token_id=ids["<|begin_of_video|>"], video_end_token_id=ids["<|end_of_video|>"],
    )
    torch.manual_seed(seed)
    model = Glm4vMoeForConditionalGeneration(config).eval()
    randomise_correction_bias(model, seed)
    save_tiny_model(model, out_dir, eos_token_id=stop_ids, pad_token_id=ids["<|endoftext|>"])
    # 14 px patches merged 2x2: one image token per 28x28 pixels; small pixel bounds for a CPU.
    size = {"shortest_edge": 28 * 28 * 4, "longest_edge": 28 * 28 * 64}
    processor = Glm4vProcessor(
        image_processor=Glm4vImageProcessor(size=size),
        tokenizer=tokenizer,
        video_processor=Glm4vVideoProcessor(size=size),
        chat_template=GLM4V_CHAT_TEMPLATE,
    )
    processor.save_pretrained(out_dir)
    tokenizer.save_pretrained(out_dir)
