"""The HTML pages of `rd-eval report` and `rd-eval leaderboard`: every value from a run is text, never markup."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from test_runs import write_run

from rd_eval.commands.main import main
from rd_eval.rendering.html import markdown_html
from rd_eval.reports.leaderboard import build_leaderboard
from rd_eval.reports.leaderboard import to_html as leaderboard_html
from rd_eval.reports.report import build_report, to_html

# A benchmark, checkpoint and model id that would be markup (HTML or markdown) if they were not escaped.
BENCH = "rd_a&b<script>alert(1)<\\script>*em*[x](javascript:alert(2))"
PRETRAINED = "org/ck&<script>alert(3)"
MODEL = "rd_<b>&model"


@pytest.fixture
def hostile_runs(tmp_path: Path) -> Path:
    root = tmp_path / "runs"
    rows = [("p1", 1, "A", "A"), ("p2", 0, "B", "C"), ("p3", 1, "C", "C")]
    write_run(root, "20250101_120000", {f"{BENCH}_img": rows, f"{BENCH}_txt": rows},
              model=MODEL, model_args=f"pretrained={PRETRAINED},note=<i>&amp;</i>")
    return root


def _no_markup_from_the_run(page: str) -> None:
    assert "<script" not in page and "<b>" not in page and "<i>" not in page
    assert "<em>" not in page and "<a " not in page and "javascript:alert(2)\"" not in page
    body = re.sub(r'src="data:image/png;base64,[^"]*"', "", page)
    assert re.search(r"&(?!amp;|lt;|gt;|quot;|#x27;)", body) is None, "a bare & in the page"


def test_report_html_escapes_task_names_checkpoints_and_model_args(hostile_runs: Path) -> None:
    page = to_html(build_report([hostile_runs], n_boot=20))
    _no_markup_from_the_run(page)
    assert "rd_a&amp;b&lt;script&gt;alert(1)&lt;\\script&gt;*em*[x](javascript:alert(2))" in page  # the benchmark
    assert "org__ck&amp;&lt;script&gt;alert(3)" in page  # the checkpoint as folders name it
    assert "rd_&lt;b&gt;&amp;model" in page  # the model id
    assert "note=&lt;i&gt;&amp;amp;&lt;/i&gt;" in page  # model_args, an entity in them shown as written


def test_leaderboard_html_escapes_the_same_values(hostile_runs: Path, tmp_path: Path) -> None:
    page = leaderboard_html(build_leaderboard([hostile_runs]))
    own_script = re.findall(r"<script>.*?</script>", page, flags=re.S)
    assert len(own_script) == 1 and "sortBy" in own_script[0]  # the page's sorting script, and no other
    _no_markup_from_the_run(page.replace(own_script[0], ""))
    assert "<td>rd_a&amp;b&lt;script&gt;alert(1)&lt;\\script&gt;*em*[x](javascript:alert(2))</td>" in page
    assert "org__ck&amp;&lt;script&gt;alert(3)" in page
    assert main(["leaderboard", str(hostile_runs), "--format", "html", "--out", str(tmp_path / "board")]) == 0
    assert (tmp_path / "board" / "leaderboard.html").read_text(encoding="utf-8") == page


def test_markdown_html_renders_what_the_reports_write() -> None:
    html = markdown_html("# T `a<b`\n\n- item **kept**\n  - nested\n\n| a | b |\n|---|---:|\n| x\\|y | 1 |\n")
    assert "<h1>T <code>a&lt;b</code></h1>" in html
    assert "<li>item **kept**" in html and "<li>nested</li>" in html  # emphasis off: the text as written
    assert "<td>x|y</td>" in html and '<td style="text-align:right">1</td>' in html
