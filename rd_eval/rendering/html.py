"""Self-contained HTML pages from the markdown the reports write, rendered by markdown-it-py.

The renderer knows only the markdown the reports use: headings, bullet lists, pipe tables, paragraphs and
code spans. Raw HTML, entities, links, images and emphasis are switched off, so a value from a run (a task
name, model_args, a checkpoint path) is always text: ``<script>`` comes out as ``&lt;script&gt;`` and ``&``
as ``&amp;``, and ``*`` or ``[..](..)`` in a path stays as written. Plots are embedded as base64 PNG: the page
loads no external resource.
"""

from __future__ import annotations

import html
from collections.abc import Sequence

from markdown_it import MarkdownIt

__all__ = ["Figure", "html_page", "markdown_html"]

# (caption, base64 PNG data)
Figure = tuple[str, str]

# Inline and block rules through which text of a run could become markup; off (code spans and tables stay on).
_OFF_RULES = ["html_block", "html_inline", "entity", "emphasis", "link", "image", "autolink", "reference", "code",
              "fence", "blockquote", "hr", "lheading"]


def markdown_html(markdown: str) -> str:
    """The markdown as an HTML fragment; every character of its text is escaped."""
    renderer = MarkdownIt("commonmark", {"html": False}).enable("table").disable(_OFF_RULES)
    return renderer.render(markdown)


def html_page(title: str, markdown: str, *, style: str, figures: Sequence[Figure] = (),
              figures_heading: str | None = None, captions: bool = True) -> str:
    """One page: the rendered markdown, then the figures (under `figures_heading` when given; each captioned
    unless `captions` is False, where the caption is only the image's alt text)."""
    shown = "\n".join(
        f'<figure><img alt="{html.escape(caption)}" src="data:image/png;base64,{html.escape(png)}">'
        + (f"<figcaption>{html.escape(caption)}</figcaption>" if captions else "") + "</figure>"
        for caption, png in figures
    )
    if shown and figures_heading:
        shown = f"<h2>{html.escape(figures_heading)}</h2>\n{shown}"
    return (
        f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title>'
        f"<style>{style}</style></head><body>\n{markdown_html(markdown)}\n{shown}\n</body></html>\n"
    )
