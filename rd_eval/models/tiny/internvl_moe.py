"""Tiny random InternVL checkpoint with a Qwen3-MoE language model (model_type internvl), the layout of
the InternVL3.5 MoE "-HF" checkpoints."""

from __future__ import annotations

from pathlib import Path

from rd_eval.models.tiny.common import QWEN_SPECIAL_TOKENS, save_tiny_model, train_qwen_tokenizer

IMAGE_TOKENS = {
    "start_image_token": "<img>",
    "end_image_token": "</img>",
    "context_image_token": "<IMG_CONTEXT>",
    "video_token": "<video>",
}

# ChatML with InternVL's image placeholder: its processor expands <IMG_CONTEXT> to <img> + context tokens + </img>.
INTERNVL_CHAT_TEMPLATE = (
    "{%- for message in messages %}<|im_start|>{{ message['role'] }}{{ '\\n' }}"
    "{% if message['content'] is string %}{{ message['content'] }}"
    "{% else %}{% for part in message['content'] %}"
    "{% if part['type'] == 'image' %}<IMG_CONTEXT>{{ '\\n' }}"
    "{% elif part['type'] == 'video' %}<video>{{ '\\n' }}"
    "{% elif part['type'] == 'text' %}{{ part['text'] }}"
    "{% endif %}{% endfor %}{% endif %}<|im_end|>{{ '\\n' }}{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant{{ '\\n' }}{% endif %}"
)


def build(out_dir: Path, seed: int) -> None:
    import torch
    from transformers import (
        GotOcr2ImageProcessor,
        InternVLConfig,
        InternVLForConditionalGeneration,
        InternVLProcessor,
        InternVLVideoProcessor,
    )

    tokenizer = train_qwen_tokenizer(named_tokens=IMAGE_TOKENS)
    tokenizer.chat_template = INTERNVL_CHAT_TEMPLATE
    ids = {tok: tokenizer.convert_tokens_to_ids(tok) for tok in (*QWEN_SPECIAL_TOKENS, *IMAGE_TOKENS.values())}
    image_size, patch_size, downsample = 32, 8, 0.5
    image_seq_length = int((image_size // patch_size) ** 2 * downsample**2)
    config = InternVLConfig(
        vision_config={
            "hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 4, "intermediate_size": 64,
            "image_size": [image_size, image_size], "patch_size": [patch_size, patch_size],
        },
        text_config={
            "model_type": "qwen3_moe", "vocab_size": len(tokenizer), "hidden_size": 64, "intermediate_size": 128,
            "moe_intermediate_size": 32, "num_hidden_layers": 6, "num_attention_heads": 4,
            "num_key_value_heads": 2, "head_dim": 16, "num_experts": 16, "num_experts_per_tok": 4,
            "norm_topk_prob": True, "decoder_sparse_step": 1, "max_position_embeddings": 4096,
            "tie_word_embeddings": False, "pad_token_id": ids["<|endoftext|>"], "eos_token_id": ids["<|im_end|>"],
        },
        image_token_id=ids["<IMG_CONTEXT>"],
        image_seq_length=image_seq_length,
        downsample_ratio=downsample,
        # InternVLConfig defaults to tying, which would silently tie the language model's untied head on load.
        tie_word_embeddings=False,
    )
    torch.manual_seed(seed)
    model = InternVLForConditionalGeneration(config).eval()
    save_tiny_model(model, out_dir, eos_token_id=ids["<|im_end|>"], pad_token_id=ids["<|endoftext|>"])
    size = {"height": image_size, "width": image_size}
    processor = InternVLProcessor(
        # InternVLProcessor always tiles (crop_to_patches): at most 4 tiles + a thumbnail keeps images small.
        image_processor=GotOcr2ImageProcessor(size=size, crop_to_patches=True, min_patches=1, max_patches=4),
        tokenizer=tokenizer,
        video_processor=InternVLVideoProcessor(size=size),
        image_seq_length=image_seq_length,
        chat_template=INTERNVL_CHAT_TEMPLATE,
    )
    processor.save_pretrained(out_dir)
    tokenizer.save_pretrained(out_dir)
