"""The shipped organism (rd_eval/organism/model/, issue 16 item 2): it loads offline through transformers' Auto
classes from the package folder, its files are package data a wheel carries, its card states the weights' hash,
and on held-out pairs it still answers from text and fails from the image (the gap's sign) while it sees."""

from __future__ import annotations

import fnmatch
import hashlib
from pathlib import Path

import pytest
import tomllib

from rd_eval.organism.problems import make_splits
from rd_eval.organism.shipped import SHIPPED_DIR, organism_card, organism_dir
from rd_eval.organism.spec import OrganismSpec, OrganismSpecError

REPO = Path(__file__).resolve().parents[1]


def test_the_card_names_the_weights_hash_and_the_domain_experts() -> None:
    card = organism_card()
    digest = hashlib.sha256((SHIPPED_DIR / "model.safetensors").read_bytes()).hexdigest()
    assert card["weights_sha256"] == digest
    assert digest in (SHIPPED_DIR / "README.md").read_text(encoding="utf-8")
    assert set(card["domain_experts"]) == {"1", "2"}  # the band 0.25-0.75 of 4 MoE layers
    assert (SHIPPED_DIR / "model.safetensors").stat().st_size <= 20 * 2**20


def test_every_file_of_the_folder_is_package_data() -> None:
    config = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))["tool"]["setuptools"]
    # a package of its own (no __init__.py: setuptools warns about a data folder that looks like a package otherwise)
    assert "rd_eval.organism.model" in config["packages"]
    patterns = config["package-data"]["rd_eval.organism.model"]
    files = [p.name for p in SHIPPED_DIR.iterdir()]
    assert "README.md" in files and "model.safetensors" in files
    assert all(p.is_file() for p in SHIPPED_DIR.iterdir())  # no sub-folder that "*" would miss
    assert [f for f in files if not any(fnmatch.fnmatch(f, pattern) for pattern in patterns)] == []
    assert "general_text.txt" in config["package-data"]["rd_eval.organism"]


def test_every_package_folder_is_installed() -> None:
    """A package missing from pyproject's explicit list works in an editable install and is absent from a wheel."""
    config = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))["tool"]["setuptools"]
    installed = {folder: name for name, folder in config["package-dir"].items()}
    found = set()
    for init in REPO.glob("*/**/__init__.py"):
        top, *rest = init.parent.relative_to(REPO).parts
        if top in installed:
            found.add(".".join([installed[top], *rest]))
    assert found and found <= set(config["packages"])


def test_it_loads_offline_with_the_auto_classes_and_keeps_its_signs(monkeypatch: pytest.MonkeyPatch) -> None:
    import torch
    from transformers import AutoModelForImageTextToText, AutoProcessor, Qwen3VLMoeForConditionalGeneration

    from rd_eval.organism.evaluate import score_forms

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    torch.set_num_threads(1)
    model = AutoModelForImageTextToText.from_pretrained(SHIPPED_DIR, use_kernels=False).eval()
    processor = AutoProcessor.from_pretrained(SHIPPED_DIR)
    assert type(model) is Qwen3VLMoeForConditionalGeneration
    spec = OrganismSpec.from_json(organism_card()["spec"])
    problems = make_splits(spec.kinds, spec.seed, n_heldout=spec.n_heldout, n_validation=spec.n_validation)
    scores = score_forms(model, processor, problems.heldout[:48])
    # 48 held-out pairs: it answers from text and reads the image, and answers from the image far less often
    assert scores["txt"].accuracy >= 0.8 and scores["transcribe"].accuracy >= 0.8
    assert scores["txt"].accuracy - scores["img"].accuracy >= 0.2


def test_a_folder_that_is_not_an_organism_is_named_with_what_it_lacks(tmp_path: Path) -> None:
    (tmp_path / "config.json").write_text("{}")
    with pytest.raises(OrganismSpecError, match=r"not a complete organism folder: missing model\.safetensors"):
        organism_dir(tmp_path)
