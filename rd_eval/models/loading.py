"""The one way rd-eval loads a checkpoint itself (expert identification: `rd-eval experts`, `rd-eval demo`).

transformers' Auto classes load the model and its processor under a `LoadPolicy` (`rd_eval.models.checkpoints`):
no hub kernels (they may bypass the router hooks) and no checkpoint code unless the caller opts in.
torch and transformers are imported where used: the command line imports this module before any work.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from rd_eval.models.checkpoints import ROUTING_LOAD, LoadPolicy


def load_model(checkpoint: Path, *, dtype: str | None = None, device: str | None = None,
               policy: LoadPolicy = ROUTING_LOAD) -> tuple[Any, Any]:
    """(model in eval mode, processor) of a local checkpoint.

    `device`: "cpu" or a CUDA device (default: CUDA when there is one). `dtype`: a torch dtype's name (default:
    bfloat16 on a GPU, float32 on the CPU)."""
    import torch
    from transformers import AutoModelForImageTextToText, AutoProcessor

    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    torch_dtype = getattr(torch, dtype) if dtype is not None else torch.float32 if device == "cpu" else torch.bfloat16
    placement = {} if device == "cpu" else {"device_map": device}
    model = AutoModelForImageTextToText.from_pretrained(checkpoint, dtype=torch_dtype, **placement,
                                                        **policy.model_kwargs())
    return model.eval(), AutoProcessor.from_pretrained(checkpoint, **policy.code_kwargs())
