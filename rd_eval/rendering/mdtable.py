"""Markdown pipe-table cells: any value (a model name, a path, a task) stays in its own column."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any


def md_cell(value: Any) -> str:
    """`value` as one GitHub-flavoured markdown table cell: backslashes and pipes escaped, line breaks as spaces."""
    text = " ".join(str(value).splitlines())
    return text.replace("\\", "\\\\").replace("|", "\\|")


def md_row(cells: Iterable[Any]) -> str:
    return "| " + " | ".join(md_cell(c) for c in cells) + " |"


def site_label(site: Mapping[str, Any]) -> str:
    """A routing site as tables show it: its row, and where sites are not one per MoE layer (a site table says so),
    which MoE layer (and group) and decoder layer it is."""
    if "moe_layer" not in site:
        return str(site["site"])
    group = f" {site['group']}" if site["group"] else ""
    return f"{site['site']} (MoE {site['moe_layer']}{group}, layer {site['decoder_layer']})"
