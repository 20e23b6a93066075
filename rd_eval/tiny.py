"""Tiny random MoE VLM checkpoints, built entirely offline.

A tiny checkpoint is a complete local model folder (config, safetensors weights, a tokenizer trained
here, processor configs and a chat template) that transformers' Auto classes and lmms-eval's stock
model class for the family load with no network. Weights are random: such a model answers near chance;
it exists to exercise the pipeline, the routing hooks and the tests on a CPU.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType

from rd_eval import __version__

PROVENANCE_FILE = "rd_tiny.json"

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
_TOKENIZER_CORPUS = (
    "You are a helpful assistant. Solve the problem shown in the image. Reply with only the final number.",
    "Reply with only the letter of the correct option. Which is larger? A) 37 B) 52 C) 18 D) 90",
    "Mia has 7 apples and buys 5 more. How many apples does she have now? The answer is 12.",
    "The table lists items, prices and quantities. What is the total cost? Item Price Quantity",
    "The bar chart shows values per category. Which category has the largest value? difference",
    "Write a short poem about the sea. Explain how photosynthesis works. Give three tips for sleep.",
    "0 1 2 3 4 5 6 7 8 9 10 11 12 + - * / = . , : ; ? ! ( ) $ % the a an of to in is and or",
)


class TinyModelError(ValueError):
    """A tiny checkpoint cannot be built or reused as asked."""


@dataclass(frozen=True)
class TinySpec:
    """What a tiny checkpoint is: recorded beside it so a later run can reuse it safely."""

    family: str
    seed: int

    def to_json(self) -> dict[str, object]:
        return {"family": self.family, "seed": self.seed, "rd_eval_version": __version__}


def _train_qwen_tokenizer(corpus: Iterable[str], vocab_size: int = 512):
    """A byte-level BPE tokenizer with Qwen2's pre-tokenisation, trained locally on `corpus`."""
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
    tokenizer = Qwen2Tokenizer(vocab=model_state["vocab"], merges=merges)
    tokenizer.add_special_tokens({"additional_special_tokens": list(QWEN_SPECIAL_TOKENS[1:])})
    tokenizer.chat_template = QWEN_VL_CHAT_TEMPLATE
    return tokenizer


def _byte_alphabet() -> list[int]:
    """The 256 code points GPT-2 style byte-level BPE maps bytes to (so every input is encodable)."""
    printable = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1))
    printable += list(range(ord("®"), ord("ÿ") + 1))
    extra = [256 + i for i in range(256 - len(printable))]
    return printable + extra


def _build_qwen3_vl_moe(out_dir: Path, seed: int) -> None:
    import torch
    from transformers import (
        Qwen2VLImageProcessor,
        Qwen3VLMoeConfig,
        Qwen3VLMoeForConditionalGeneration,
        Qwen3VLProcessor,
        Qwen3VLVideoProcessor,
    )

    tokenizer = _train_qwen_tokenizer(_TOKENIZER_CORPUS)
    ids = {tok: tokenizer.convert_tokens_to_ids(tok) for tok in QWEN_SPECIAL_TOKENS}
    head_dim = 16
    config = Qwen3VLMoeConfig(
        text_config={
            "vocab_size": len(tokenizer),  # every id decodes to text
            "hidden_size": 64,
            "intermediate_size": 128,
            "moe_intermediate_size": 32,
            "num_hidden_layers": 8,
            "num_attention_heads": 4,
            "num_key_value_heads": 2,
            "head_dim": head_dim,
            "num_experts": 16,
            "num_experts_per_tok": 4,
            "decoder_sparse_step": 1,
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
        },
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
            "deepstack_visual_indexes": [0, 1],
        },
        image_token_id=ids["<|image_pad|>"],
        video_token_id=ids["<|video_pad|>"],
        vision_start_token_id=ids["<|vision_start|>"],
        vision_end_token_id=ids["<|vision_end|>"],
    )
    torch.manual_seed(seed)
    model = Qwen3VLMoeForConditionalGeneration(config).eval()
    model.generation_config.eos_token_id = ids["<|im_end|>"]
    model.generation_config.pad_token_id = ids["<|endoftext|>"]
    model.generation_config.do_sample = False
    model.save_pretrained(out_dir)

    # Real Qwen3-VL sizes: 16 px patches merged 2x2 into one token; pixel bounds kept small for a CPU.
    size = {"shortest_edge": 64 * 32 * 32, "longest_edge": 256 * 32 * 32}
    image_processor = Qwen2VLImageProcessor(patch_size=16, merge_size=2, temporal_patch_size=2, size=size)
    video_processor = Qwen3VLVideoProcessor(patch_size=16, merge_size=2, temporal_patch_size=2, size=size)
    processor = Qwen3VLProcessor(
        image_processor=image_processor,
        tokenizer=tokenizer,
        video_processor=video_processor,
        chat_template=QWEN_VL_CHAT_TEMPLATE,
    )
    processor.save_pretrained(out_dir)
    tokenizer.save_pretrained(out_dir)


TINY_BUILDERS: MappingProxyType[str, Callable[[Path, int], None]] = MappingProxyType(
    {"qwen3_vl_moe": _build_qwen3_vl_moe}
)


def supported_tiny_families() -> tuple[str, ...]:
    return tuple(sorted(TINY_BUILDERS))


def read_tiny_spec(out_dir: Path) -> TinySpec | None:
    """The spec a folder was built with, or None when it holds no tiny checkpoint of ours."""
    path = Path(out_dir) / PROVENANCE_FILE
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text())
        return TinySpec(family=str(data["family"]), seed=int(data["seed"]))
    except (ValueError, KeyError, TypeError):
        return None


def make_tiny(family: str, out_dir: str | os.PathLike[str], *, seed: int = 0, overwrite: bool = False) -> Path:
    """Write a tiny random checkpoint of `family` to `out_dir`, atomically (built aside, then renamed)."""
    if family not in TINY_BUILDERS:
        raise TinyModelError(
            f"unknown model family {family!r} for make-tiny; supported: {', '.join(supported_tiny_families())}"
        )
    target = Path(out_dir).expanduser().absolute()
    occupied = any(target.iterdir()) if target.is_dir() else target.exists()
    if occupied and not overwrite:
        raise TinyModelError(f"output folder {str(target)!r} exists and is not empty; pass --overwrite")
    parent = target.parent
    try:
        parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=parent))
        umask = os.umask(0)
        os.umask(umask)
        staging.chmod(0o777 & ~umask)  # mkdtemp makes it private; a checkpoint folder is not
    except OSError as exc:
        raise TinyModelError(f"cannot write to {str(parent)!r}: {exc.strerror or exc}") from None
    try:
        TINY_BUILDERS[family](staging, seed)
        (staging / PROVENANCE_FILE).write_text(json.dumps(TinySpec(family, seed).to_json(), indent=2) + "\n")
        if target.exists():
            shutil.rmtree(target) if target.is_dir() else target.unlink()
        os.replace(staging, target)
    finally:
        if staging.exists():
            shutil.rmtree(staging, ignore_errors=True)
    return target


def ensure_tiny(family: str, out_dir: str | os.PathLike[str], *, seed: int = 0) -> tuple[Path, bool]:
    """Reuse `out_dir` when it already holds this family and seed; otherwise build it. Returns (path, built)."""
    target = Path(out_dir).expanduser().absolute()
    if read_tiny_spec(target) == TinySpec(family, seed):
        return target, False
    return make_tiny(family, target, seed=seed, overwrite=True), True
