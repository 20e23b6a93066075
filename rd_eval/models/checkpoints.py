"""How rd-eval loads a checkpoint for routing: the loading policy and the checkpoint's own config.json.

Two choices of transformers' `from_pretrained` matter to rd-eval and are never left to defaults:
- hub kernels (`use_kernels`): transformers >= 5.25 turns them on unless told otherwise, and a kernel may replace
  a MoE block's forward so that the router hooks never run; rd-eval loads with `use_kernels=False` unless the
  user opts in (then a routing session proves on the first batch that every router hook fired);
- remote code (`trust_remote_code`): a checkpoint whose config (or tokenizer config) carries an `auto_map` runs
  its own Python only when the user opts in.
The model class is chosen from the checkpoint's `config.json` `model_type`, read without running any of its code.
"""

from __future__ import annotations

import json
from collections.abc import MutableMapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rd_eval.routing.settings import parse_bool

LOAD_POLICY_KEYS = ("trust_remote_code", "use_kernels")


@dataclass(frozen=True)
class LoadPolicy:
    """What `from_pretrained` may do: run the checkpoint's own code, apply hub kernels (both off by default)."""

    trust_remote_code: bool = False
    use_kernels: bool = False

    @classmethod
    def pop_from(cls, model_args: MutableMapping[str, Any]) -> LoadPolicy:
        """The policy `model_args` asks for (`trust_remote_code=true`, `use_kernels=true`), keys removed."""
        chosen = {key: parse_bool(key, model_args.pop(key)) for key in LOAD_POLICY_KEYS if key in model_args}
        return cls(**chosen)

    def model_kwargs(self) -> dict[str, bool]:
        """Keyword arguments for a model class's `from_pretrained`."""
        return {"trust_remote_code": self.trust_remote_code, "use_kernels": self.use_kernels}

    def code_kwargs(self) -> dict[str, bool]:
        """Keyword arguments for the `from_pretrained` of a config, tokenizer or processor class."""
        return {"trust_remote_code": self.trust_remote_code}

    def describe(self) -> str:
        return f"trust_remote_code={str(self.trust_remote_code).lower()}, use_kernels={str(self.use_kernels).lower()}"


ROUTING_LOAD = LoadPolicy()  # rd-eval's own loads (demo, experts): no remote code, no hub kernels


def local_checkpoint(pretrained: str) -> Path | None:
    """The folder `pretrained` names, None for a hub id; a path-like name without a folder is refused."""
    path = Path(pretrained).expanduser()
    if path.is_dir():
        return path
    if path.is_absolute() or pretrained.startswith((".", "~")) or path.exists():
        raise ValueError(f"pretrained={pretrained!r}: no such checkpoint folder")
    return None


def checkpoint_config_dict(pretrained: str, revision: str | None = None) -> dict[str, Any]:
    """The checkpoint's raw config.json (no code of the checkpoint is run to read it)."""
    local = local_checkpoint(pretrained)
    if local is not None:
        path = local / "config.json"
        if not path.is_file():
            raise ValueError(f"pretrained={pretrained!r}: no config.json in the folder; not a transformers checkpoint")
        try:
            config = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise ValueError(f"pretrained={pretrained!r}: config.json unreadable: {exc}") from None
    else:
        from transformers import PretrainedConfig

        try:
            config, _ = PretrainedConfig.get_config_dict(pretrained, revision=revision)
        except OSError as exc:
            first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise ValueError(f"pretrained={pretrained!r}: cannot read its config.json: {first_line}") from None
    if not isinstance(config, dict):
        raise ValueError(f"pretrained={pretrained!r}: config.json holds {type(config).__name__}, not an object")
    return config
