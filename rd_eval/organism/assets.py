"""The organism's files other than its trained weights: tokenizer, processor, config, initial model.

Everything is built offline and deterministically: the tokenizer is trained here on the organism's own prompts
(byte-level BPE with Qwen2's pre-tokenisation, so every digit is its own token), the processor is Qwen3-VL's with
pixel bounds around the 192 x 32 problem images, and the config is a `Qwen3VLMoeConfig`, which transformers'
Auto classes and lmms-eval's Qwen3-VL class (so the rd_qwen3_vl_moe adapter) load unchanged.
"""

from __future__ import annotations

from typing import Any

from rd_eval.models.tiny.common import QWEN_SPECIAL_TOKENS, QWEN_VL_CHAT_TEMPLATE, train_qwen_tokenizer
from rd_eval.organism.prompts import tokenizer_corpus
from rd_eval.organism.spec import OrganismSpec

PATCH_SIZE = 16
MERGE_SIZE = 2
# The processor keeps a 192 x 32 image as it is (6,144 px lies inside the bounds); lmms-eval's Qwen3-VL class
# overrides these with its own min_pixels/max_pixels model_args, which must be given the same bounds.
MIN_PIXELS = 4 * 32 * 32
MAX_PIXELS = 64 * 32 * 32
# Normalisation that maps white paper to 0 (black ink to -2): with CLIP's mean the white background of a problem
# image is a large constant input that the patch embedding learned to amplify until every image gave the same
# features (docs/organism_log.md, t1/t2); with white at 0 a patch's input is its ink alone.
PAPER_WHITE = (1.0, 1.0, 1.0)
INK_SCALE = (0.5, 0.5, 0.5)
TOKENIZER_VOCAB = 512  # more than the corpus needs: every prompt word becomes one token


def build_tokenizer(spec: OrganismSpec) -> Any:
    tokenizer = train_qwen_tokenizer(tokenizer_corpus(spec.kinds), vocab_size=TOKENIZER_VOCAB)
    tokenizer.eos_token = "<|im_end|>"  # as in Qwen3-VL Instruct: the end of a turn ends generation
    tokenizer.pad_token = "<|endoftext|>"
    return tokenizer


def build_processor(tokenizer: Any) -> Any:
    from transformers import Qwen2VLImageProcessor, Qwen3VLProcessor, Qwen3VLVideoProcessor

    size = {"shortest_edge": MIN_PIXELS, "longest_edge": MAX_PIXELS}
    shape = {"patch_size": PATCH_SIZE, "merge_size": MERGE_SIZE, "temporal_patch_size": 2, "size": size}
    return Qwen3VLProcessor(image_processor=Qwen2VLImageProcessor(**shape, image_mean=PAPER_WHITE, image_std=INK_SCALE),
                            tokenizer=tokenizer,
                            video_processor=Qwen3VLVideoProcessor(**shape), chat_template=QWEN_VL_CHAT_TEMPLATE)


def special_ids(tokenizer: Any) -> dict[str, int]:
    return {tok: tokenizer.convert_tokens_to_ids(tok) for tok in QWEN_SPECIAL_TOKENS}


def build_config(spec: OrganismSpec, tokenizer: Any) -> Any:
    from transformers import Qwen3VLMoeConfig

    arch = spec.architecture
    ids = special_ids(tokenizer)
    quarter = arch.head_dim // 8
    text = {
        "vocab_size": len(tokenizer),
        "hidden_size": arch.hidden_size,
        "intermediate_size": 2 * arch.hidden_size,
        "moe_intermediate_size": arch.moe_intermediate_size,
        "num_hidden_layers": arch.num_layers,
        "num_attention_heads": arch.num_heads,
        "num_key_value_heads": arch.num_kv_heads,
        "head_dim": arch.head_dim,
        "num_experts": arch.num_experts,
        "num_experts_per_tok": arch.experts_per_token,
        "decoder_sparse_step": 1,
        "router_aux_loss_coef": spec.aux_loss_coef,
        "max_position_embeddings": 1024,
        # mrope_section must sum to head_dim / 2 (the default assumes head_dim 128 and is not rejected)
        "rope_parameters": {"rope_type": "default", "rope_theta": 10000.0,
                            "mrope_section": [2 * quarter, quarter, quarter], "mrope_interleaved": True},
        "tie_word_embeddings": False,
        "pad_token_id": ids["<|endoftext|>"],
        "eos_token_id": ids["<|im_end|>"],
    }
    vision = {
        "depth": arch.vision_depth,
        "hidden_size": arch.vision_hidden_size,
        "intermediate_size": 2 * arch.vision_hidden_size,
        "num_heads": 4,
        "patch_size": PATCH_SIZE,
        "spatial_merge_size": MERGE_SIZE,
        "temporal_patch_size": 2,
        "out_hidden_size": arch.hidden_size,
        "num_position_embeddings": 64,  # an 8 x 8 grid, interpolated to the image's grid
        "deepstack_visual_indexes": list(range(min(arch.vision_depth, 2))),  # must lie inside the vision depth
    }
    return Qwen3VLMoeConfig(text_config=text, vision_config=vision, image_token_id=ids["<|image_pad|>"],
                            video_token_id=ids["<|video_pad|>"], vision_start_token_id=ids["<|vision_start|>"],
                            vision_end_token_id=ids["<|vision_end|>"], tie_word_embeddings=False)


def initial_model(spec: OrganismSpec, tokenizer: Any) -> Any:
    """The untrained organism: weights drawn from torch's generator seeded with the spec's seed."""
    import torch
    from transformers import Qwen3VLMoeForConditionalGeneration

    torch.manual_seed(spec.seed)
    model = Qwen3VLMoeForConditionalGeneration(build_config(spec, tokenizer))
    ids = special_ids(tokenizer)
    generation = model.generation_config
    generation.eos_token_id = ids["<|im_end|>"]
    generation.pad_token_id = ids["<|endoftext|>"]
    generation.do_sample = False
    return model

