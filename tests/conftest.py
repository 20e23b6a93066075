"""Shared fixtures: one tiny random Qwen3-VL-MoE checkpoint per test session, built offline."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

TINY_FAMILY = "qwen3_vl_moe"
TINY_FOLDER = "rd-tiny-qwen3_vl_moe-A1B"


@pytest.fixture(scope="session")
def tiny_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny random Qwen3-VL-MoE checkpoint (8 MoE layers, 16 experts, top-4), built once per session."""
    from rd_eval.models.tiny import make_tiny

    return make_tiny(TINY_FAMILY, tmp_path_factory.mktemp("tiny") / TINY_FOLDER, seed=0)


def load_tiny_model(path: Path):
    """The tiny checkpoint as float32 in eval mode."""
    import torch
    from transformers import AutoModelForImageTextToText

    return AutoModelForImageTextToText.from_pretrained(path, dtype=torch.float32, use_kernels=False).eval()


def load_tiny_processor(path: Path):
    from transformers import AutoProcessor

    return AutoProcessor.from_pretrained(path)


@pytest.fixture(scope="module")
def tiny_model(tiny_dir: Path):
    """The tiny model, loaded once per test module."""
    return load_tiny_model(tiny_dir)


@pytest.fixture(scope="module")
def tiny_processor(tiny_dir: Path):
    return load_tiny_processor(tiny_dir)


@pytest.fixture
def fresh_tiny_model(tiny_dir: Path):
    """A newly loaded tiny model that no other test has run or hooked."""
    return load_tiny_model(tiny_dir)


@pytest.fixture(scope="module")
def one_thread():
    """One intra-op thread for a module (`pytestmark = pytest.mark.usefixtures("one_thread")`): two threads on a
    shared 2-core machine make tiny-model generation ~100x slower."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="session")
def ernie_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny random ERNIE-4.5-VL checkpoint (a text and a vision router per MoE layer), built once per session."""
    from rd_eval.models.tiny import make_tiny

    return make_tiny("ernie4_5_vl_moe", tmp_path_factory.mktemp("tiny") / "rd-tiny-ernie4_5_vl_moe", seed=0)

