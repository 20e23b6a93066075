"""Shared by the DeepSeek-V3-style tiny builders."""

from __future__ import annotations

from torch import nn


def randomise_correction_bias(model: nn.Module, seed: int) -> None:
    """Real checkpoints carry learned selection biases; zeros would leave that part of the math untested."""
    import torch

    generator = torch.Generator().manual_seed(seed + 1)
    for name, buffer in model.named_buffers():
        if name.endswith("e_score_correction_bias"):
            buffer.copy_(torch.randn(buffer.shape, generator=generator) * 0.05)
