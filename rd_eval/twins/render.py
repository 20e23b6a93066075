"""Deterministic rendering of problems into images (Pillow only, bundled font).

Every function is a pure function of its arguments: the same input always gives the same pixels and,
through :func:`png_bytes`, the same PNG bytes. Only Pillow's bundled default font is used so the output
does not depend on fonts installed on the machine.
"""

from __future__ import annotations

import io
import unicodedata
from collections.abc import Callable, Sequence
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
    return _greedy_wrap(text, font, max_width, _split_long_word)


def _greedy_wrap(text: str, font: ImageFont.FreeTypeFont, max_width: int,
                 split_long_word: Callable[[str, ImageFont.FreeTypeFont, int], list[str]]) -> list[str]:
    """Greedy word wrap; a word wider than a line is cut into line-wide pieces by `split_long_word`."""
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
                *full, current = split_long_word(word, font, max_width)
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


# --- Exact twins: a problem's own text rendered as an image (GSM8K, MATH-500) --------------------------------
# 768 px wide is a multiple of 32 (Qwen3-VL's merged patch) and of 16 px; about 60 characters fit a line. At
# 24 px the bundled font's digits are 16 px and its x-height 13 px tall on the image. A GSM8K problem is at most
# ~400 px tall; the tallest MATH-500 problems (long [asy] listings) reach ~2,000 px (1.55 Mpx), which
# lmms-eval's Qwen3-VL pixel budget (1,605,632) keeps whole and a 1280*28*28 = 1,003,520 budget shrinks to
# 0.8x (digits still ~13 px). tests/test_exact_twins.py measures these on rendered pixels.
TWIN_WIDTH = 768
TWIN_FONT_SIZE = 24
TWIN_MARGIN = 24

# Readable ASCII for characters the bundled font (Pillow's Aileron subset) has no glyph for. Anything not listed
# here is tried through NFKC ("½" -> "1⁄2"), then with accents stripped ("é" -> "e"), then shown as <U+XXXX>.
GLYPH_FALLBACKS: dict[str, str] = {
    "€": "EUR", "£": "GBP", "¥": "JPY", "¢": "cents", "×": "x", "÷": "/", "−": "-", "–": "-", "—": "--",
    "•": "*", "≤": "<=", "≥": ">=", "≠": "!=", "≈": "~=", "→": "->", "←": "<-", "π": "pi", "√": "sqrt",
    "∞": "infinity", "µ": "micro", "§": "section", "¶": "paragraph", "®": "(R)",
    "⁰": "^0", "¹": "^1", "²": "^2", "³": "^3", "⁴": "^4", "⁵": "^5", "⁶": "^6", "⁷": "^7", "⁸": "^8", "⁹": "^9",
    "₀": "_0", "₁": "_1", "₂": "_2", "₃": "_3", "₄": "_4", "₅": "_5", "₆": "_6", "₇": "_7", "₈": "_8", "₉": "_9",
}
_NOTDEF_PROBE = "\ue000"  # a private-use code point: the font draws its "missing glyph" box for it


@lru_cache(maxsize=1)
def _notdef_mask() -> tuple[tuple[int, int], bytes]:
    mask = _font(TWIN_FONT_SIZE).getmask(_NOTDEF_PROBE)
    return mask.size, bytes(mask)


@lru_cache(maxsize=4096)
def has_glyph(ch: str) -> bool:
    """Whether the bundled font draws ``ch`` as itself (not as its missing-glyph box). Whitespace counts as drawn."""
    if len(ch) != 1:
        raise ValueError(f"has_glyph takes one character, got {ch!r}")
    if ch.isspace():
        return True
    mask = _font(TWIN_FONT_SIZE).getmask(ch)
    return (mask.size, bytes(mask)) != _notdef_mask()


def _all_drawn(text: str) -> bool:
    return bool(text) and all(has_glyph(c) for c in text)


def _fallback(ch: str) -> str:
    composed = unicodedata.normalize("NFKC", ch)
    if composed != ch and _all_drawn(composed):
        return composed
    stripped = "".join(c for c in unicodedata.normalize("NFKD", ch) if not unicodedata.combining(c))
    if stripped != ch and _all_drawn(stripped):
        return stripped
    return f"<U+{ord(ch):04X}>"


def displayable_text(text: str) -> str:
    """``text`` with every character the bundled font cannot draw replaced by a readable ASCII stand-in.

    The image of an exact twin shows this text (never a missing-glyph box), so it is also the reference a
    transcription is compared with. A word-like stand-in from :data:`GLYPH_FALLBACKS` is kept apart from
    adjacent letters and digits ("€1500" -> "EUR 1500", "3×4" -> "3 x 4"); a transliteration is not
    ("café" -> "cafe"). Text the font can draw is returned unchanged.
    """
    out: list[str] = []
    for i, ch in enumerate(text):
        if has_glyph(ch):
            out.append(ch)
            continue
        if ch not in GLYPH_FALLBACKS:
            out.append(_fallback(ch))  # a form of the same letter or number ("é" -> "e"), kept in place
            continue
        sub = GLYPH_FALLBACKS[ch]
        if sub[:1].isalpha() and out and out[-1][-1:].isalnum():
            sub = " " + sub
        if sub[-1:].isalpha() and i + 1 < len(text) and text[i + 1].isalnum():
            sub = sub + " "
        out.append(sub)
    return "".join(out)


def _breakable(before: str, after: str) -> bool:
    """Whether an overlong word may be split between these two characters: never inside a run of letters or
    digits, nor around a decimal point or thousands comma ("3.5", "1,000")."""
    if before.isalnum() and after.isalnum():
        return False
    return not ((before in ".," and after.isdigit()) or (before.isdigit() and after in ".,"))


def _split_long_word_at_breaks(word: str, font: ImageFont.FreeTypeFont, max_width: int) -> list[str]:
    """Split a word wider than ``max_width`` into fitting pieces, at the last allowed break of each piece
    (so ``\\frac{12}{13}+...`` breaks at ``}``, ``+`` or before ``\\``, never inside ``12``); a piece with no
    allowed break (a very long number) is split at the last character that fits."""
    pieces: list[str] = []
    rest = word
    while _text_width(font, rest) > max_width:
        fit = 1
        while fit < len(rest) and _text_width(font, rest[: fit + 1]) <= max_width:
            fit += 1
        cut = next((k for k in range(fit, 0, -1) if _breakable(rest[k - 1], rest[k])), fit)
        pieces.append(rest[:cut])
        rest = rest[cut:]
    return [*pieces, rest] if rest else pieces


def wrap_twin_text(text: str, font: ImageFont.FreeTypeFont, max_width: int) -> list[str]:
    """:func:`wrap_text` for exact twins: the same greedy word wrap, but a word wider than a line (long LaTeX)
    is split where a reader would break it (:func:`_split_long_word_at_breaks`), so no number is cut in two."""
    return _greedy_wrap(text, font, max_width, _split_long_word_at_breaks)


def render_twin(text: str) -> Image.Image:
    """The image form of an exact twin: ``text`` (LaTeX stays source text, see :func:`displayable_text`)
    word-wrapped by :func:`wrap_twin_text` at :data:`TWIN_WIDTH` with the bundled font at :data:`TWIN_FONT_SIZE`.

    The layout and look are :func:`render_text`'s (same margins, line spacing, colours); only overlong words
    break differently."""
    shown = displayable_text(text)
    if not shown.strip():
        raise ValueError("text to render is empty; pass at least one visible character")
    _check_layout(TWIN_WIDTH, TWIN_FONT_SIZE, TWIN_MARGIN)
    font = _font(TWIN_FONT_SIZE)
    lines = wrap_twin_text(shown.strip("\n"), font, TWIN_WIDTH - 2 * TWIN_MARGIN)
    height = len(lines) * (_line_height(font) + LINE_SPACING) - LINE_SPACING + 2 * TWIN_MARGIN
    img = _blank(TWIN_WIDTH, height)
    _draw_lines(ImageDraw.Draw(img), lines, font, TWIN_MARGIN, TWIN_MARGIN)
    return img
