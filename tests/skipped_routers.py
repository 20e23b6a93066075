"""MoE blocks whose forward skips the router module, as hub kernels, a fused gate or a wrapped router do.

The replaced forward computes exactly what the block computed (the router's own function runs on the router's
own weights), but never calls the router module, so no hook on it runs: the situation in which rd-eval must
stop instead of recording zeros or steering nothing.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from torch import nn


def skipping_forward(forward: Callable[..., Any], router_name: str) -> Callable[..., Any]:
    """`forward` (a MoE block class's forward) with the block's router called as a plain function."""

    def fused(block: nn.Module, *args: Any, **kwargs: Any) -> Any:
        router = block._modules[router_name]
        # An instance attribute shadows the submodule for `block.<router_name>`: the block gets the router's
        # bound forward, which bypasses Module.__call__ and so every hook.
        block.__dict__[router_name] = router.forward
        try:
            return forward(block, *args, **kwargs)
        finally:
            del block.__dict__[router_name]

    return fused


@contextmanager
def router_skipped(model: nn.Module, module_path: str) -> Iterator[nn.Module]:
    """Within the block, the MoE block holding the router at `module_path` runs a forward that skips it."""
    modules = dict(model.named_modules())
    block_path, _, router_name = module_path.rpartition(".")
    block = modules[block_path]
    assert isinstance(modules[module_path], nn.Module) and "forward" not in block.__dict__
    fused = skipping_forward(type(block).forward, router_name)
    block.forward = lambda *args, **kwargs: fused(block, *args, **kwargs)
    try:
        yield block
    finally:
        del block.forward


def skip_routers_of_class(monkeypatch: pytest.MonkeyPatch, block_class: type, router_name: str = "gate") -> None:
    """Every instance of `block_class` (also of models loaded later) skips its router, as a kernel would."""
    monkeypatch.setattr(block_class, "forward", skipping_forward(block_class.forward, router_name))
