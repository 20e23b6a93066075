"""Pieces shared by the tiny-checkpoint builders: a locally trained tokenizer and chat templates."""

from __future__ import annotations

import json
from collections.abc import Iterable

# Qwen-style special tokens; the order fixes their ids right after the trained vocabulary.
QWEN_SPECIAL_TOKENS = (
    "<|endoftext|>",
    "<|im_start|>",
    "<|im_end|>",
    "<|vision_start|>",
    "<|vision_end|>",
    "<|image_pad|>",
    "<|video_pad|>",
)

# Our own compact ChatML template with Qwen-VL's image/video placeholders (content may be a string or a
# list of {"type": "text"|"image"|"video"} parts, as lmms-eval's Qwen classes send it).
QWEN_VL_CHAT_TEMPLATE = (
    "{%- for message in messages %}<|im_start|>{{ message['role'] }}{{ '\\n' }}"
    "{% if message['content'] is string %}{{ message['content'] }}"
    "{% else %}{% for part in message['content'] %}"
    "{% if part['type'] == 'image' %}<|vision_start|><|image_pad|><|vision_end|>"
    "{% elif part['type'] == 'video' %}<|vision_start|><|video_pad|><|vision_end|>"
    "{% elif part['type'] == 'text' %}{{ part['text'] }}"
    "{% endif %}{% endfor %}{% endif %}<|im_end|>{{ '\\n' }}{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant{{ '\\n' }}{% endif %}"
)

# Text the tiny tokenizer is trained on: enough to give digits, operators and common words their own
# tokens; quality is irrelevant for a random model.
TOKENIZER_CORPUS = (
    "You are a helpful assistant. Solve the problem shown in the image. Reply with only the final number.",
    "Reply with only the letter of the correct option. Which is larger? A) 37 B) 52 C) 18 D) 90",
    "Mia has 7 apples and buys 5 more. How many apples does she have now? The answer is 12.",
    "The table lists items, prices and quantities. What is the total cost? Item Price Quantity",
    "The bar chart shows values per category. Which category has the largest value? difference",
    "Write a short poem about the sea. Explain how photosynthesis works. Give three tips for sleep.",
    "0 1 2 3 4 5 6 7 8 9 10 11 12 + - * / = . , : ; ? ! ( ) $ % the a an of to in is and or",
)


def train_qwen_tokenizer(corpus: Iterable[str] = TOKENIZER_CORPUS, vocab_size: int = 512,
                         named_tokens: dict[str, str] | None = None):
    """A byte-level BPE tokenizer with Qwen2's pre-tokenisation, trained locally on `corpus`.

    `named_tokens` adds model-specific special tokens that processors look up by attribute
    (e.g. InternVL's `context_image_token`); they get ids after Qwen's special tokens."""
    from tokenizers import trainers
    from transformers import Qwen2Tokenizer

    seed_tokenizer = Qwen2Tokenizer(vocab={"<|endoftext|>": 0}, merges=[])
    backend = seed_tokenizer.backend_tokenizer
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        initial_alphabet=[chr(c) for c in _byte_alphabet()],
        special_tokens=["<|endoftext|>"],
        show_progress=False,
    )
    backend.train_from_iterator(list(corpus), trainer=trainer)
    model_state = json.loads(backend.to_str())["model"]
    merges = [tuple(m.split(" ")) if isinstance(m, str) else tuple(m) for m in model_state["merges"]]
    tokenizer = Qwen2Tokenizer(vocab=model_state["vocab"], merges=merges, extra_special_tokens=named_tokens)
    extra = list(QWEN_SPECIAL_TOKENS[1:]) + list((named_tokens or {}).values())
    tokenizer.add_special_tokens({"additional_special_tokens": extra})
    tokenizer.chat_template = QWEN_VL_CHAT_TEMPLATE
    return tokenizer


def _byte_alphabet() -> list[int]:
    """The 256 code points GPT-2 style byte-level BPE maps bytes to (so every input is encodable)."""
    printable = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1))
    printable += list(range(ord("®"), ord("ÿ") + 1))
    extra = [256 + i for i in range(256 - len(printable))]
    return printable + extra


def save_tiny_model(model, out_dir, *, eos_token_id, pad_token_id, bos_token_id=None) -> None:
    """Greedy-decoding generation defaults with the family's stop and pad ids, then safetensors weights."""
    config = model.generation_config
    if bos_token_id is not None:
        config.bos_token_id = bos_token_id
    config.eos_token_id = eos_token_id
    config.pad_token_id = pad_token_id
    config.do_sample = False
    model.save_pretrained(out_dir)
