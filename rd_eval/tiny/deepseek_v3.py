"""Tiny random DeepSeek-V3 language model (model_type deepseek_v3): text only. It carries the routing math
of Kimi-VL's remote-code gate (sigmoid scores, correction bias, group-limited top-k), so that math is
tested offline on a native transformers model."""

from __future__ import annotations

from pathlib import Path

from rd_eval.tiny.common import QWEN_SPECIAL_TOKENS, train_qwen_tokenizer
from rd_eval.tiny.sigmoid_bias import randomise_correction_bias


def build(out_dir: Path, seed: int) -> None:
    import torch
    from transformers import DeepseekV3Config, DeepseekV3ForCausalLM

    tokenizer = train_qwen_tokenizer()
    ids = {tok: tokenizer.convert_tokens_to_ids(tok) for tok in QWEN_SPECIAL_TOKENS}
    config = DeepseekV3Config(
        vocab_size=len(tokenizer), hidden_size=64, intermediate_size=128, moe_intermediate_size=32,
        num_hidden_layers=6, num_attention_heads=4, num_key_value_heads=4, n_shared_experts=1,
        n_routed_experts=16, num_experts_per_tok=4, n_group=2, topk_group=1, first_k_dense_replace=1,
        routed_scaling_factor=2.5, norm_topk_prob=True, kv_lora_rank=16, q_lora_rank=32,
        qk_rope_head_dim=8, qk_nope_head_dim=8, v_head_dim=16, max_position_embeddings=4096,
        pad_token_id=ids["<|endoftext|>"], eos_token_id=ids["<|im_end|>"], bos_token_id=None,
        tie_word_embeddings=False,
    )
    torch.manual_seed(seed)
    model = DeepseekV3ForCausalLM(config).eval()
    randomise_correction_bias(model, seed)
    model.generation_config.eos_token_id = ids["<|im_end|>"]
    model.generation_config.pad_token_id = ids["<|endoftext|>"]
    model.generation_config.do_sample = False
    model.save_pretrained(out_dir)
    tokenizer.save_pretrained(out_dir)
