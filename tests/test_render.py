"""The renderer is deterministic, legible-sized and draws real content."""

from __future__ import annotations

import io

import pytest
from PIL import Image

from rd_eval.twins.render import (
    BAR_FILL,
    MIN_FONT_SIZE,
    _font,
    png_bytes,
    render_bar_chart,
    render_table,
    render_text,
    stack_vertical,
    wrap_text,
)

TEXT = "Mia has 7 apples and buys 5 more. How many apples does Mia have now?"
HEADER = ["Item", "Price ($)", "Quantity"]
ROWS = [["Pencils", "3", "4"], ["Erasers", "1", "10"]]


def _has_dark_pixels(img: Image.Image) -> bool:
    lo, _ = img.convert("L").getextrema()
    return lo < 64


@pytest.mark.parametrize(
    "make",
    [
        lambda: render_text(TEXT),
        lambda: render_table(HEADER, ROWS, "School supply order"),
        lambda: render_bar_chart(["Jan", "Feb", "Mar"], [12, 30, 7], "Rainy days per month"),
    ],
    ids=["text", "table", "bar_chart"],
)
def test_same_input_gives_identical_png_bytes(make) -> None:
    first, second = png_bytes(make()), png_bytes(make())
    assert first == second
    assert first.startswith(b"\x89PNG\r\n\x1a\n")


def test_different_input_gives_different_bytes() -> None:
    assert png_bytes(render_text(TEXT)) != png_bytes(render_text(TEXT.replace("7", "8")))
    assert png_bytes(render_table(HEADER, ROWS, "A")) != png_bytes(render_table(HEADER, [ROWS[0]], "A"))
    chart = ["Jan", "Feb"], "T"
    assert png_bytes(render_bar_chart(chart[0], [3, 4], chart[1])) != png_bytes(
        render_bar_chart(chart[0], [3, 5], chart[1])
    )


def test_png_round_trips_to_same_rgb_pixels() -> None:
    img = render_text(TEXT)
    decoded = Image.open(io.BytesIO(png_bytes(img)))
    assert decoded.mode == "RGB"
    assert decoded.tobytes() == img.tobytes()


def test_text_sizes_are_sane_and_height_fits_content() -> None:
    short, longer = render_text("Short."), render_text(" ".join([TEXT] * 4))
    for img in (short, longer):
        assert img.mode == "RGB"
        assert img.width == 448
        assert 40 <= img.height <= 1000
        assert _has_dark_pixels(img)
    assert longer.height > short.height


def test_wrapped_lines_fit_the_width_and_keep_every_word() -> None:
    font = _font(20)
    lines = wrap_text(TEXT + "\nSecond paragraph.", font, 200)
    assert all(font.getlength(line) <= 200 for line in lines)
    assert " ".join(lines).split() == (TEXT + " Second paragraph.").split()
    assert lines[-1] == "Second paragraph."


def test_overlong_word_is_split_not_clipped() -> None:
    font = _font(20)
    word = "x" * 80
    lines = wrap_text(word, font, 120)
    assert "".join(lines) == word
    assert all(font.getlength(line) <= 120 for line in lines)


def test_table_and_chart_draw_content() -> None:
    table = render_table(HEADER, ROWS, "School supply order")
    chart = render_bar_chart(["Jan", "Feb", "Mar"], [12, 30, 7], "Rainy days per month")
    assert table.width == 448 and chart.width == 448
    assert _has_dark_pixels(table) and _has_dark_pixels(chart)
    assert BAR_FILL in {color for _, color in chart.getcolors(maxcolors=1 << 16)}


def test_bar_heights_are_proportional_to_values() -> None:
    img = render_bar_chart(["A", "B"], [10, 40], "T")

    def bar_height(x0: int, x1: int) -> int:
        column = img.crop((x0, 0, x1, img.height))
        width, height = column.size
        return sum(any(column.getpixel((x, y)) == BAR_FILL for x in range(width)) for y in range(height))

    left, right = bar_height(0, img.width // 2), bar_height(img.width // 2, img.width)
    assert right > 0 and abs(left / right - 10 / 40) < 0.02


def test_content_wider_than_width_widens_the_image() -> None:
    wide = render_table(["Name", "Description"], [["A", "a very long description " * 3]], "T")
    assert wide.width > 448


def test_stack_vertical_pads_to_widest() -> None:
    a, b = Image.new("RGB", (10, 5), (0, 0, 0)), Image.new("RGB", (20, 7), (0, 0, 0))
    out = stack_vertical([a, b])
    assert out.size == (20, 12)
    assert out.getpixel((15, 0)) == (255, 255, 255)


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: render_text(TEXT, font_size=MIN_FONT_SIZE - 1), "font_size"),
        (lambda: render_text("   "), "empty"),
        (lambda: render_text(TEXT, width=60), "width"),
        (lambda: render_table([], [], "T"), "header"),
        (lambda: render_table(HEADER, [["only one"]], "T"), "row 0"),
        (lambda: render_bar_chart(["A", "B"], [1], "T"), "labels"),
        (lambda: render_bar_chart(["A"], [-1], "T"), "non-negative"),
        (lambda: stack_vertical([]), "at least one"),
    ],
)
def test_bad_input_raises_clear_errors(call, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        call()
