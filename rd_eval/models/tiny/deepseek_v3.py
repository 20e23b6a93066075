"""Tiny random DeepSeek-V3 language model (model_type deepseek_v3): text only. Besides its own family it
carries the routing math of Kimi-VL's remote-code gate (sigmoid scores, correction bias, group-limited
top-k), so that math is tested offline on a native transformers model."""

from __future__ import annotations

from pathlib import Path

from torch import nn

from rd_eval.models.tiny.common import QWEN_SPECIAL_TOKENS, save_tiny_model, train_qwen_tokenizer


def randomise_correction_bias(model: nn.Module, seed: int, scale: float = 0.05) -> None:
    """Give every `e_score_correction_bias` random values (after init, before saving): real checkpoints
    carry learned selection biases, and all-zero ones would leave that part of the routing math untested."""
    import torch

    generator = torch.Generator().manual_seed(seed + 1)
    found = 0
    with torch.no_grad():
        for name, buffer in model.named_buffers():
            if name.endswith("e_score_correction_bias"):
                buffer.copy_(torch.randn(buffer.shape, generator=generator) * scale)
                found += 1
    if not found:
        raise ValueError(f"{type(model).__name__} has no e_score_correction_bias buffer to randomise")


def build(out_dir: Path, seed: int) -> None:
    import torch
    from transformers import DeepseekV3Config, DeepseekV3ForCausalLM

    tokenizer = train_qwen_tokenizer()
    ids = {tok: tokenizer.convert_tokens_to_ids(tok) for tok in QWEN_SPECIAL_TOKENS}
    # Layer 0 dense (first_k_dense_replace), then 5 MoE layers of 16 experts in 2 groups, top-4 from the best
    # group only (topk_group 1), so group limiting decides which experts can win.
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
    save_tiny_model(model, out_dir, eos_token_id=ids["<|im_end|>"], pad_token_id=ids["<|endoftext|>"])
    tokenizer.save_pretrained(out_dir)
