"""Tiny random Aria checkpoint (model_type aria): 6 MoE decoder layers, 8 routed experts, top-2 with softmax
weights over the two selected logits, plus one shared expert; an Idefics3 vision tower with 70 px patches."""

from __future__ import annotations

from pathlib import Path

from rd_eval.models.tiny.common import save_tiny_model
from rd_eval.models.tiny.llama4 import train_byte_bpe_tokenizer

ARIA_SPECIAL_TOKENS = (
    "<|startoftext|>",
    "<|endoftext|>",
    "<|im_start|>",
    "<|im_end|>",
    "<fim_prefix>",
    "<|img|>",
    "<fim_suffix>",
)

# Our own compact ChatML template with Aria's image placeholder (the processor expands <|img|>).
ARIA_CHAT_TEMPLATE = (
    "{%- for message in messages %}<|im_start|>{{ message['role'] }}{{ '\\n' }}"
    "{% if message['content'] is string %}{{ message['content'] }}"
    "{% else %}{% for part in message['content'] %}"
    "{% if part['type'] == 'image' %}<fim_prefix><|img|><fim_suffix>"
    "{% elif part['type'] == 'text' %}{{ part['text'] }}"
    "{% endif %}{% endfor %}{% endif %}<|im_end|>{{ '\\n' }}{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant{{ '\\n' }}{% endif %}"
)

# AriaImageProcessor accepts only max_image_size 490 or 980 (and AriaProcessor defaults to 980): with 70 px
# patches they give 7x7 = 49 and 14x14 = 196 patches, which the projector maps to 8 and 16 query tokens.
PATCH_SIZE = 70
PATCH_TO_QUERY = {49: 8, 196: 16}
SIZE_CONVERSION = {490: 8, 980: 16}  # image side -> <|img|> tokens, matching PATCH_TO_QUERY


def build(out_dir: Path, seed: int) -> None:
    import torch
    from transformers import AriaConfig, AriaForConditionalGeneration, AriaImageProcessor, AriaProcessor

    tokenizer = train_byte_bpe_tokenizer(ARIA_SPECIAL_TOKENS, bos="<|startoftext|>", eos="<|im_end|>",
                                         pad="<|endoftext|>", extra_special_tokens={"image_token": "<|img|>"})
    tokenizer.chat_template = ARIA_CHAT_TEMPLATE
    ids = {tok: tokenizer.convert_tokens_to_ids(tok) for tok in ARIA_SPECIAL_TOKENS}
    config = AriaConfig(
        text_config={
            "vocab_size": len(tokenizer),
            "hidden_size": 64,
            "intermediate_size": 32,  # per routed expert; the shared experts are moe_num_shared_experts wide
            "num_hidden_layers": 6,  # every Aria decoder layer is MoE
            "num_attention_heads": 4,
            "num_key_value_heads": 2,
            "head_dim": 16,
            "moe_num_experts": 8,
            "moe_topk": 2,
            "moe_num_shared_experts": 1,
            "max_position_embeddings": 4096,
            "rope_parameters": {"rope_type": "default", "rope_theta": 10000.0},
            "pad_token_id": ids["<|endoftext|>"],
            "bos_token_id": ids["<|startoftext|>"],
            "eos_token_id": ids["<|im_end|>"],
        },
        vision_config={
            "model_type": "idefics3_vision",
            "hidden_size": 32,
            "intermediate_size": 64,
            "num_hidden_layers": 2,
            "num_attention_heads": 4,
            "image_size": 980,
            "patch_size": PATCH_SIZE,
        },
        projector_patch_to_query_dict=PATCH_TO_QUERY,
        image_token_index=ids["<|img|>"],
    )
    torch.manual_seed(seed)
    model = AriaForConditionalGeneration(config).eval()
    save_tiny_model(model, out_dir, eos_token_id=ids["<|im_end|>"], pad_token_id=ids["<|endoftext|>"],
                    bos_token_id=ids["<|startoftext|>"])

    image_processor = AriaImageProcessor(max_image_size=980, min_image_size=70)
    processor = AriaProcessor(image_processor=image_processor, tokenizer=tokenizer, chat_template=ARIA_CHAT_TEMPLATE,
                              size_conversion=SIZE_CONVERSION)
    processor.save_pretrained(out_dir)
    tokenizer.save_pretrained(out_dir)
