"""Where the shipped organism lives: a model folder inside the package (weights, config, tokenizer and processor
files, ``organism.json`` and its model card ``README.md``), loadable offline by transformers' Auto classes and
by lmms-eval's Qwen3-VL class (``pretrained=<this folder>``)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from rd_eval.organism.spec import OrganismSpecError
from rd_eval.organism.train import CARD_FILE, WEIGHTS_FILE

SHIPPED_DIR = Path(__file__).resolve().parent / "model"
NEEDED_FILES = ("config.json", WEIGHTS_FILE, "tokenizer.json", "processor_config.json", CARD_FILE)


def organism_dir(folder: Path = SHIPPED_DIR) -> Path:
    """`folder` if it holds a complete organism (default: the shipped one); otherwise a clear error."""
    missing = [name for name in NEEDED_FILES if not (folder / name).is_file()]
    if missing:
        raise OrganismSpecError(f"{folder} is not a complete organism folder: missing {', '.join(missing)}")
    return folder


def organism_card(folder: Path = SHIPPED_DIR) -> dict[str, Any]:
    """The organism's card (`organism.json`): recipe, phases, domain experts, weights hash."""
    return json.loads((organism_dir(folder) / CARD_FILE).read_text(encoding="utf-8"))
