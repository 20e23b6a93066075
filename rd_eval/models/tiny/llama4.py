"""Tiny random Llama 4 checkpoint (model_type llama4): 8 decoder layers, MoE on every second (4 MoE layers),
8 routed experts, top-1 with a sigmoid gate, plus the shared expert; a 112 px single-tile vision tower."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from rd_eval.models.tiny.common import TOKENIZER_CORPUS, save_tiny_model

# Llama 4's special tokens (the names processing_llama4.py and our chat template use); the order fixes their
# ids right after the trained vocabulary.
LLAMA4_SPECIAL_TOKENS = (
    "<|begin_of_text|>",
    "<|end_of_text|>",
    "<|finetune_right_pad_id|>",
    "<|header_start|>",
    "<|header_end|>",
    "<|eot|>",
    "<|image_start|>",
    "<|image_end|>",
    "<|image|>",
    "<|patch|>",
    "<|tile_x_separator|>",
    "<|tile_y_separator|>",
)

# Our own compact Llama-4-style template: content may be a string or a list of {"type": "text"|"image"} parts.
LLAMA4_CHAT_TEMPLATE = (
    "{{ bos_token }}{%- for message in messages %}<|header_start|>{{ message['role'] }}<|header_end|>{{ '\\n\\n' }}"
    "{% if message['content'] is string %}{{ message['content'] }}"
    "{% else %}{% for part in message['content'] %}"
    "{% if part['type'] == 'image' %}<|image|>"
    "{% elif part['type'] == 'text' %}{{ part['text'] }}"
    "{% endif %}{% endfor %}{% endif %}<|eot|>{% endfor %}"
    "{% if add_generation_prompt %}<|header_start|>assistant<|header_end|>{{ '\\n\\n' }}{% endif %}"
)

IMAGE_SIZE = 112  # one tile; 14 px patches -> 8x8, pixel shuffle 0.5 -> 16 <|patch|> tokens per tile
PATCH_SIZE = 14
PIXEL_SHUFFLE_RATIO = 0.5


def train_byte_bpe_tokenizer(special_tokens: Sequence[str], *, bos: str, eos: str, pad: str,
                             extra_special_tokens: dict[str, str] | None = None,
                             corpus: Iterable[str] = TOKENIZER_CORPUS, vocab_size: int = 512) -> Any:
    """A byte-level BPE fast tokenizer trained locally on `corpus`, `special_tokens` appended as specials
    (never split, ids in order after the vocabulary). No BOS is added on encode: chat templates write it."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    backend = Tokenizer(models.BPE())
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    backend.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
                                  show_progress=False)
    backend.train_from_iterator(list(corpus), trainer=trainer)
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=backend, bos_token=bos, eos_token=eos, pad_token=pad,
                                        extra_special_tokens=extra_special_tokens or {})
    tokenizer.add_special_tokens({"additional_special_tokens": [t for t in special_tokens
                                                                if t not in (bos, eos, pad)]})
    tokenizer.add_tokens([t for t in special_tokens if t in (bos, eos, pad)], special_tokens=True)
    missing = [t for t in special_tokens if tokenizer.convert_tokens_to_ids(t) in (None, tokenizer.unk_token_id)]
    if missing:
        raise RuntimeError(f"special tokens {missing} got no id in the tiny tokenizer")
    return tokenizer


def build(out_dir: Path, seed: int) -> None:
    import torch
    from transformers import Llama4Config, Llama4ForConditionalGeneration, Llama4ImageProcessor, Llama4Processor

    tokenizer = train_byte_bpe_tokenizer(LLAMA4_SPECIAL_TOKENS, bos="<|begin_of_text|>", eos="<|eot|>",
                                         pad="<|finetune_right_pad_id|>")
    tokenizer.chat_template = LLAMA4_CHAT_TEMPLATE
    ids = {tok: tokenizer.convert_tokens_to_ids(tok) for tok in LLAMA4_SPECIAL_TOKENS}
    vision_hidden = 32
    projector_dim = 64
    config = Llama4Config(
        text_config={
            "vocab_size": len(tokenizer),
            "hidden_size": 64,
            "intermediate_size": 32,  # routed and shared experts
            "intermediate_size_mlp": 64,  # the dense layers between MoE layers
            "num_hidden_layers": 8,
            "interleave_moe_layer_step": 2,  # MoE layers 1, 3, 5, 7 (as Llama 4 Maverick interleaves)
            "num_attention_heads": 4,
            "num_key_value_heads": 2,
            "head_dim": 16,
            "num_local_experts": 8,
            "num_experts_per_tok": 1,  # every released Llama 4 checkpoint routes to one expert
            "max_position_embeddings": 4096,
            "rope_parameters": {"rope_type": "default", "rope_theta": 500000.0},
            "pad_token_id": ids["<|finetune_right_pad_id|>"],
            "bos_token_id": ids["<|begin_of_text|>"],
            "eos_token_id": ids["<|eot|>"],
        },
        vision_config={
            "hidden_size": vision_hidden,
            "num_hidden_layers": 2,
            "num_attention_heads": 4,
            # The pixel-shuffle MLP takes hidden / ratio^2 features, the same width as the encoder MLP.
            "intermediate_size": int(vision_hidden / PIXEL_SHUFFLE_RATIO**2),
            "image_size": IMAGE_SIZE,
            "patch_size": PATCH_SIZE,
            "pixel_shuffle_ratio": PIXEL_SHUFFLE_RATIO,
            "projector_input_dim": projector_dim,  # fc2 maps projector_output_dim to itself: keep them equal
            "projector_output_dim": projector_dim,
            "vision_output_dim": projector_dim,  # what the multimodal projector reads
            "rope_parameters": {"rope_type": "default", "rope_theta": 10000.0},
        },
        # The language model replaces <|patch|> tokens with image features (as the released configs do).
        image_token_index=ids["<|patch|>"],
        boi_token_index=ids["<|image_start|>"],
        eoi_token_index=ids["<|image_end|>"],
    )
    torch.manual_seed(seed)
    model = Llama4ForConditionalGeneration(config).eval()
    save_tiny_model(model, out_dir, eos_token_id=ids["<|eot|>"], pad_token_id=ids["<|finetune_right_pad_id|>"],
                    bos_token_id=ids["<|begin_of_text|>"])

    image_processor = Llama4ImageProcessor(size={"height": IMAGE_SIZE, "width": IMAGE_SIZE}, max_patches=4)
    processor = Llama4Processor(image_processor=image_processor, tokenizer=tokenizer, patch_size=PATCH_SIZE,
                                pixel_shuffle_ratio=PIXEL_SHUFFLE_RATIO, chat_template=LLAMA4_CHAT_TEMPLATE)
    processor.save_pretrained(out_dir)
    tokenizer.save_pretrained(out_dir)
