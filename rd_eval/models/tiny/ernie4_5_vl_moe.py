"""Tiny random ERNIE-4.5-VL checkpoint (model_type ernie4_5_vl_moe): a dense first layer, then layers with
separate text and vision experts (each with a softmax router and a selection bias) plus shared experts."""

from __future__ import annotations

from pathlib import Path

from rd_eval.models.tiny.common import QWEN_SPECIAL_TOKENS, save_tiny_model, train_qwen_tokenizer

ERNIE_MEDIA_TOKENS = {
    "image_token": "<|IMAGE_PLACEHOLDER|>",
    "image_start_token": "<|IMAGE_START|>",
    "image_end_token": "<|IMAGE_END|>",
    "video_token": "<|VIDEO_PLACEHOLDER|>",
    "video_start_token": "<|VIDEO_START|>",
    "video_end_token": "<|VIDEO_END|>",
}

# ChatML-style turns (our own template) with ERNIE-4.5-VL's image and video markers.
ERNIE_CHAT_TEMPLATE = (
    "{%- for message in messages %}<|im_start|>{{ message['role'] }}{{ '\\n' }}"
    "{% if message['content'] is string %}{{ message['content'] }}"
    "{% else %}{% for part in message['content'] %}"
    "{% if part['type'] == 'image' %}<|IMAGE_START|><|IMAGE_PLACEHOLDER|><|IMAGE_END|>"
    "{% elif part['type'] == 'video' %}<|VIDEO_START|><|VIDEO_PLACEHOLDER|><|VIDEO_END|>"
    "{% elif part['type'] == 'text' %}{{ part['text'] }}"
    "{% endif %}{% endfor %}{% endif %}<|im_end|>{{ '\\n' }}{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant{{ '\\n' }}{% endif %}"
)


def build(out_dir: Path, seed: int) -> None:
    import torch
    from transformers import (
        Ernie4_5_VLMoeConfig,
        Ernie4_5_VLMoeForConditionalGeneration,
        Ernie4_5_VLMoeImageProcessor,
        Ernie4_5_VLMoeProcessor,
        Ernie4_5_VLMoeVideoProcessor,
    )

    tokenizer = train_qwen_tokenizer(named_tokens=ERNIE_MEDIA_TOKENS)
    tokenizer.chat_template = ERNIE_CHAT_TEMPLATE
    ids = {tok: tokenizer.convert_tokens_to_ids(tok) for tok in (*QWEN_SPECIAL_TOKENS, *ERNIE_MEDIA_TOKENS.values())}
    layers = 6
    config = Ernie4_5_VLMoeConfig(
        text_config={
            "vocab_size": len(tokenizer), "hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": layers,
            "num_attention_heads": 4, "num_key_value_heads": 2, "moe_intermediate_size": [32, 16], "moe_k": 4,
            "moe_num_experts": 16, "moe_num_shared_experts": 1, "max_position_embeddings": 4096,
            # head_dim 16: 8 rotary frequencies split height/width/time, as ERNIE's 3-D RoPE needs
            "rope_parameters": {"rope_type": "default", "rope_theta": 500000.0, "mrope_section": [3, 3, 2]},
            "mlp_layer_types": ["dense"] + ["sparse"] * (layers - 1), "tie_word_embeddings": True,
            "pad_token_id": ids["<|endoftext|>"], "eos_token_id": ids["<|im_end|>"],
        },
        vision_config={"depth": 2, "hidden_size": 32, "intermediate_size": 64, "num_heads": 4, "patch_size": 14,
                       "spatial_merge_size": 2},
        image_token_id=ids["<|IMAGE_PLACEHOLDER|>"], video_token_id=ids["<|VIDEO_PLACEHOLDER|>"],
        image_start_token_id=ids["<|IMAGE_START|>"], image_end_token_id=ids["<|IMAGE_END|>"],
        video_start_token_id=ids["<|VIDEO_START|>"], video_end_token_id=ids["<|VIDEO_END|>"],
    )
    torch.manual_seed(seed)
    model = Ernie4_5_VLMoeForConditionalGeneration(config).eval()
    generator = torch.Generator().manual_seed(seed + 1)
    for name, param in model.named_parameters():
        if name.endswith("e_score_correction_bias"):  # real checkpoints carry learned selection biases
            param.data.copy_(torch.randn(param.shape, generator=generator) * 0.01)
    save_tiny_model(model, out_dir, eos_token_id=ids["<|im_end|>"], pad_token_id=ids["<|endoftext|>"])
    size = {"shortest_edge": 28 * 28 * 4, "longest_edge": 28 * 28 * 64}
    processor = Ernie4_5_VLMoeProcessor(
        image_processor=Ernie4_5_VLMoeImageProcessor(size=size),
        tokenizer=tokenizer,
        video_processor=Ernie4_5_VLMoeVideoProcessor(size=size, draw_on_frames=False),
        chat_template=ERNIE_CHAT_TEMPLATE,
    )
    processor.save_pretrained(out_dir)
    tokenizer.save_pretrained(out_dir)
