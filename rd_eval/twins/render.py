"""Deterministic rendering of problems into images (Pillow only, bundled font).

Every function is a pure function of its arguments: the same input always gives the same pixels and,
through :func:`png_bytes`, the same PNG bytes. Only Pillow's bundled default font is used so the output
does not depend on fonts installed on the machine.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from functools import lru_cache

from PIL import Image, ImageDraw, ImageFont

MIN_FONT_SIZE = 18  # smaller text is hard to read for VLM vision encoders at ~448 px
WHITE = (255, 255, 255)
BLACK = (0, 0, 0)
HEADER_FILL = (228, 228, 228)
BAR_FILL = (70, 110, 180)
LINE_SPACING = 6
CELL_PAD_X = 8
CELL_PAD_Y = 5


@lru_cache(maxsize=16)
def _font(size: int) -> ImageFont.FreeTypeFont:
    font = ImageFont.load_default(size=size)
    if not isinstance(font, ImageFont.FreeTypeFont):
        # Without FreeType Pillow falls back to a fixed-size bitmap font that ignores `size`.
        raise RuntimeError("Pillow was built without FreeType; rendering needs its scalable default font")
    return font


def _check_layout(width: int, font_size: int, margin: int) -> None:
    if font_size < MIN_FONT_SIZE:
        raise ValueError(f"font_size={font_size} is too small; use at least {MIN_FONT_SIZE} for legible text")
    if margin < 0:
        raise ValueError(f"margin={margin} must be >= 0")
    if width - 2 * margin < 4 * font_size:
        raise ValueError(f"width={width} is too narrow for margin={margin} and font_size={font_size}; "
                         f"need width >= {2 * margin + 4 * font_size}")


def _line_height(font: ImageFont.FreeTypeFont) -> int:
    ascent, descent = font.getmetrics()
    return ascent + descent


def _text_width(font: ImageFont.FreeTypeFont, text: str) -> int:
    return int(round(font.getlength(text)))


def _split_long_word(word: str, font: ImageFont.FreeTypeFont, max_width: int) -> list[str]:
    pieces: list[str] = []
    current = ""
    for ch in word:
        if current and _text_width(font, current + ch) > max_width:
            pieces.append(current)
            current = ch
        else:
            current += ch
    if current:
        pieces.append(current)
    return pieces


def wrap_text(text: str, font: ImageFont.FreeTypeFont, max_width: int) -> list[str]:
    """Greedy word wrap; explicit newlines start new lines, blank lines are kept."""
    lines: list[str] = []
    for paragraph in text.split("\n"):
        words = paragraph.split()
        if not words:
            lines.append("")
            continue
        current = ""
        for word in words:
            candidate = f"{current} {word}" if current else word
            if _text_width(font, candidate) <= max_width:
                current = candidate
                continue
            if current:
                lines.append(current)
            if _text_width(font, word) <= max_width:
                current = word
            else:
                *full, current = _split_long_word(word, font, max_width)
                lines.extend(full)
        lines.append(current)
    return lines


def _draw_lines(draw: ImageDraw.ImageDraw, lines: Sequence[str], font: ImageFont.FreeTypeFont,
                x: int, y: int) -> int:
    """Draw lines top-down from y; return the y just below the last line."""
    step = _line_height(font) + LINE_SPACING
    for line in lines:
        draw.text((x, y), line, fill=BLACK, font=font)
        y += step
    return y - LINE_SPACING if lines else y


def _blank(width: int, height: int) -> Image.Image:
    return Image.new("RGB", (width, height), WHITE)


def render_text(text: str, *, width: int = 448, font_size: int = 20, margin: int = 16) -> Image.Image:
    """Word-wrapped black text on white; the height fits the content."""
    _check_layout(width, font_size, margin)
    if not text.strip():
        raise ValueError("text to render is empty; pass at least one visible character")
    font = _font(font_size)
    lines = wrap_text(text.strip("\n"), font, width - 2 * margin)
    height = len(lines) * (_line_height(font) + LINE_SPACING) - LINE_SPACING + 2 * margin
    img = _blank(width, height)
    _draw_lines(ImageDraw.Draw(img), lines, font, margin, margin)
    return img


def _column_widths(header: Sequence[str], rows: Sequence[Sequence[str]], font: ImageFont.FreeTypeFont,
                   available: int) -> list[int]:
    natural = [
        max(_text_width(font, cell) for cell in column) + 2 * CELL_PAD_X
        for column in zip(header, *rows, strict=True)
    ]
    extra = available - sum(natural)
    if extra <= 0:
        return natural  # the image grows wider instead of clipping cell text
    share, rest = divmod(extra, len(natural))
    return [w + share + (1 if i < rest else 0) for i, w in enumerate(natural)]


def render_table(header: list[str], rows: list[list[str]], title: str, *, width: int = 448,
                 font_size: int = 20, margin: int = 16) -> Image.Image:
    """A title above a ruled table with a shaded header row; widens if cells need more room."""
    _check_layout(width, font_size, margin)
    if not header:
        raise ValueError("table header is empty; give at least one column name")
    for i, row in enumerate(rows):
        if len(row) != len(header):
            raise ValueError(f"table row {i} has {len(row)} cells; the header has {len(header)}")
    font = _font(font_size)
    col_widths = _column_widths(header, rows, font, width - 2 * margin)
    width = max(width, sum(col_widths) + 2 * margin)
    title_lines = wrap_text(title, font, width - 2 * margin) if title.strip() else []
    line_h = _line_height(font)
    row_h = line_h + 2 * CELL_PAD_Y
    table_top = margin + (len(title_lines) * (line_h + LINE_SPACING) + LINE_SPACING if title_lines else 0)
    n_rows = len(rows) + 1
    height = table_top + n_rows * row_h + margin + 1

    img = _blank(width, height)
    draw = ImageDraw.Draw(img)
    _draw_lines(draw, title_lines, font, margin, margin)
    table_right = margin + sum(col_widths)
    draw.rectangle((margin, table_top, table_right, table_top + row_h), fill=HEADER_FILL)
    for r, cells in enumerate([header, *rows]):
        y = table_top + r * row_h
        x = margin
        for cell, w in zip(cells, col_widths, strict=True):
            draw.text((x + CELL_PAD_X, y + CELL_PAD_Y), cell, fill=BLACK, font=font)
            x += w
    for r in range(n_rows + 1):
        y = table_top + r * row_h
        draw.line((margin, y, table_right, y), fill=BLACK, width=1)
    x = margin
    for w in [0, *col_widths]:
        x += w
        draw.line((x, table_top, x, table_top + n_rows * row_h), fill=BLACK, width=1)
    return img


def render_bar_chart(labels: list[str], values: list[int], title: str, *, width: int = 448,
                     plot_height: int = 180, font_size: int = 20, margin: int = 16) -> Image.Image:
    """Vertical bars with each value printed above its bar and its label below, so numbers are readable."""
    _check_layout(width, font_size, margin)
    if not labels or len(labels) != len(values):
        raise ValueError(f"bar chart needs one value per label and at least one bar; "
                         f"got {len(labels)} labels and {len(values)} values")
    if any(isinstance(v, bool) or not isinstance(v, int) or v < 0 for v in values):
        raise ValueError(f"bar chart values must be non-negative ints, got {values!r}")
    if plot_height < 2 * font_size:
        raise ValueError(f"plot_height={plot_height} is too small; use at least {2 * font_size}")
    font = _font(font_size)
    line_h = _line_height(font)
    widest = max(max(_text_width(font, s) for s in labels), max(_text_width(font, str(v)) for v in values))
    width = max(width, len(labels) * (widest + 12) + 2 * margin)
    title_lines = wrap_text(title, font, width - 2 * margin) if title.strip() else []
    title_bottom = margin + (len(title_lines) * (line_h + LINE_SPACING) if title_lines else 0)
    plot_top = title_bottom + line_h + LINE_SPACING  # room for the value label over the tallest bar
    baseline = plot_top + plot_height
    height = baseline + 4 + line_h + margin

    img = _blank(width, height)
    draw = ImageDraw.Draw(img)
    _draw_lines(draw, title_lines, font, margin, margin)
    slot = (width - 2 * margin) / len(labels)
    bar_w = max(4, int(slot * 0.6))
    top_value = max(values) or 1
    for i, (label, value) in enumerate(zip(labels, values, strict=True)):
        cx = int(margin + slot * i + slot / 2)
        bar_top = baseline - round(value / top_value * plot_height)
        if value > 0:
            draw.rectangle((cx - bar_w // 2, bar_top, cx + bar_w // 2, baseline), fill=BAR_FILL)
        draw.text((cx, bar_top - 3), str(value), fill=BLACK, font=font, anchor="md")
        draw.text((cx, baseline + 4), label, fill=BLACK, font=font, anchor="ma")
    draw.line((margin, baseline, width - margin, baseline), fill=BLACK, width=2)
    return img


def stack_vertical(images: Sequence[Image.Image]) -> Image.Image:
    """Stack images top to bottom, left-aligned, padding narrower ones with white."""
    if not images:
        raise ValueError("stack_vertical needs at least one image")
    width = max(im.width for im in images)
    out = _blank(width, sum(im.height for im in images))
    y = 0
    for im in images:
        out.paste(im.convert("RGB"), (0, y))
        y += im.height
    return out


def png_bytes(img: Image.Image) -> bytes:
    """Encode as PNG with fixed options and no metadata, so equal pixels give equal bytes."""
    buf = io.BytesIO()
    img.convert("RGB").save(buf, format="PNG", optimize=False, compress_level=6)
    return buf.getvalue()
