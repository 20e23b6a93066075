"""The leaderboard as one static HTML page whose table sorts and filters in the browser, with no server.

The rows are rendered here, in a real ``<table>``, so the page reads the same without JavaScript; a small inline
script then makes each header cell sort the rows on click (numbers numerically, a missing value last in both
directions, a second click reverses; ``aria-sort`` and an arrow show the order) and shows a filter box that
hides the rows not containing every word typed (in the columns marked ``filterable``).

Every value is escaped here, and the script only moves existing rows and toggles their ``hidden`` flag (no
``innerHTML``), so a checkpoint named ``<script>…`` stays text. A Content-Security-Policy lets the page load
nothing from outside and run no script but its own (by hash), a second guard should escaping ever be missed.
"""

from __future__ import annotations

import base64
import hashlib
import html
import math
from collections.abc import Sequence
from dataclasses import dataclass

__all__ = ["Cell", "Column", "leaderboard_page"]

TABLE_ID = "leaderboard"
FILTER_ID = "leaderboard-filter"
COUNT_ID = "leaderboard-count"


@dataclass(frozen=True)
class Column:
    name: str
    numeric: bool = False  # right-aligned, sorted by each cell's value
    filterable: bool = False  # searched by the filter box


@dataclass(frozen=True)
class Cell:
    text: str
    value: float | None = None  # what a numeric column sorts by; None (shown as text, e.g. "n/a") sorts last


_STYLE = """body{font-family:system-ui,sans-serif;margin:2em;color:#222}
table{border-collapse:collapse;font-size:.85em}th,td{border:1px solid #ccc;padding:3px 8px}
th{background:#f2f2f2;text-align:left;white-space:nowrap}td.num,th.num{text-align:right;white-space:nowrap}
table.sortable th{cursor:pointer;user-select:none}table.sortable th:hover{background:#e4e4e4}
th[aria-sort=ascending]::after{content:" \\25B2"}th[aria-sort=descending]::after{content:" \\25BC"}
tbody tr:nth-child(even){background:#fafafa}img{max-width:100%}p.note{color:#555;font-size:.9em;max-width:60em}
.controls{margin:1em 0}.controls input{font-size:1em;padding:3px 6px;width:28em}#leaderboard-count{color:#555}"""

# Sorting and filtering: reads the rows the server rendered, never writes markup.
_SCRIPT = """(() => {
  const table = document.getElementById("leaderboard");
  const body = table.tBodies[0];
  const headers = Array.from(table.tHead.rows[0].cells);
  const filterable = headers.filter((th) => th.dataset.filter === "1").map((th) => th.cellIndex);
  const count = document.getElementById("leaderboard-count");
  const box = document.getElementById("leaderboard-filter");
  const total = body.rows.length;
  const value = (row, i) => {
    const v = row.cells[i].dataset.value;
    return v === undefined || v === "" ? null : Number(v);
  };
  const sortBy = (th) => {
    const i = th.cellIndex;
    const dir = th.getAttribute("aria-sort") === "ascending" ? -1 : 1;
    const numeric = th.dataset.type === "number";
    const rows = Array.from(body.rows);
    rows.sort((a, b) => {
      if (numeric) {
        const x = value(a, i), y = value(b, i);
        if (x === null || y === null) return (x === null) - (y === null);
        return dir * (x - y);
      }
      return dir * a.cells[i].textContent.localeCompare(b.cells[i].textContent);
    });
    headers.forEach((h) => h.setAttribute("aria-sort", "none"));
    th.setAttribute("aria-sort", dir === 1 ? "ascending" : "descending");
    rows.forEach((row) => body.appendChild(row));
  };
  headers.forEach((th) => {
    th.tabIndex = 0;
    th.title = "sort by " + th.textContent;
    th.addEventListener("click", () => sortBy(th));
    th.addEventListener("keydown", (e) => {
      if (e.key === "Enter" || e.key === " ") { e.preventDefault(); sortBy(th); }
    });
  });
  const applyFilter = () => {
    const words = box.value.toLowerCase().split(/\\s+/).filter(Boolean);
    let shown = 0;
    for (const row of body.rows) {
      const text = filterable.map((i) => row.cells[i].textContent.toLowerCase()).join(" ");
      row.hidden = !words.every((w) => text.includes(w));
      shown += !row.hidden;
    }
    count.textContent = shown + " of " + total + " rows";
  };
  box.addEventListener("input", applyFilter);
  table.classList.add("sortable");
  box.closest(".controls").hidden = false;
  applyFilter();
})();"""


def _script_hash(script: str) -> str:
    return base64.b64encode(hashlib.sha256(script.encode("utf-8")).digest()).decode("ascii")


def _header(column: Column) -> str:
    attributes = ' scope="col" aria-sort="none"'
    attributes += ' class="num" data-type="number"' if column.numeric else ' data-type="text"'
    if column.filterable:
        attributes += ' data-filter="1"'
    return f"<th{attributes}>{html.escape(column.name)}</th>"


def _cell(column: Column, cell: Cell) -> str:
    if not column.numeric:
        return f"<td>{html.escape(cell.text)}</td>"
    value = cell.value
    if value is not None and not math.isfinite(value):
        value = None  # NaN / inf sort as missing
    shown = "" if value is None else repr(float(value))
    return f'<td class="num" data-value="{shown}">{html.escape(cell.text)}</td>'


def leaderboard_page(*, title: str, note: str, columns: Sequence[Column], rows: Sequence[Sequence[Cell]],
                     figures: Sequence[tuple[str, str]] = ()) -> str:
    """The page: heading, `note`, the filter box, the table, then the `figures` ((caption, base64 PNG) each)."""
    if not columns:
        raise ValueError("a leaderboard page needs at least one column")
    for number, row in enumerate(rows):
        if len(row) != len(columns):
            raise ValueError(f"row {number} has {len(row)} cells for {len(columns)} columns "
                             f"({', '.join(c.name for c in columns)})")
    head = "".join(_header(c) for c in columns)
    body = "\n".join("<tr>" + "".join(_cell(c, cell) for c, cell in zip(columns, row, strict=True)) + "</tr>"
                     for row in rows)
    searched = ", ".join(c.name for c in columns if c.filterable) or "no column"
    shown = "\n".join(
        f'<figure><img alt="{html.escape(caption)}" src="data:image/png;base64,{html.escape(png)}">'
        f"<figcaption>{html.escape(caption)}</figcaption></figure>"
        for caption, png in figures
    )
    policy = (f"default-src 'none'; img-src data:; style-src 'unsafe-inline'; "
              f"script-src 'sha256-{_script_hash(_SCRIPT)}'")
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        f'<meta http-equiv="Content-Security-Policy" content="{policy}">'
        f"<title>{html.escape(title)}</title><style>{_STYLE}</style></head><body>\n"
        f"<h1>{html.escape(title)}</h1>\n<p class=\"note\">{html.escape(note)}</p>\n"
        f'<p class="controls" hidden><label>Filter <input id="{FILTER_ID}" type="search" autocomplete="off" '
        f'placeholder="words in {html.escape(searched)}"></label> <span id="{COUNT_ID}"></span></p>\n'
        f'<table id="{TABLE_ID}"><thead><tr>{head}</tr></thead>\n<tbody>\n{body}\n</tbody></table>\n'
        f"{shown}\n<script>{_SCRIPT}</script>\n</body></html>\n"
    )
