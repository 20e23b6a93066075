"""The leaderboard page in a real headless Chromium (tests/browser.py): it opens without errors, shows the rows the
markdown has, sorts on a click of a header (numbers numerically, n/a last, a second click reverses), filters as
one types, keeps a hostile checkpoint name as text, and reads without JavaScript. Needs Debian's `chromium`
(a missing browser fails the test; RD_EVAL_SKIP_BROWSER=1 skips it, for developers only)."""

from __future__ import annotations

import csv
import json
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from browser import Browser, BrowserError, chromium_or_fail
from test_leaderboard import outcomes, write_run

from rd_eval.commands.main import main
from rd_eval.routing.spec import ExpertSet, InterventionSpec, LayerExperts
from rd_eval.vocabulary.task_names import SIX_BENCHMARKS

# A checkpoint that is markup two ways if a page ever inserts it unescaped: a script, and an image whose error
# handler runs even where a script inserted by innerHTML would not.
HOSTILE = "org/ck<script>alert(1)<\\script><img src=x onerror=alert(2)>"
HOSTILE_LABEL = "org__ck<script>alert(1)<\\script><img src=x onerror=alert(2)>"  # as run folders name it
TWO = ("rd_mathvista", "rd_wemath")
SHOT_FOR_THE_LEAD = Path("/tmp/leaderboard.png")
ROWS = "#leaderboard tbody tr"


def _spec(folder: Path, model: str, **fields: Any) -> Path:
    experts = ExpertSet(model=model, kind="domain", layers=(LayerExperts(1, (0, 3)), LayerExperts(2, (5,))))
    spec = InterventionSpec(experts=experts, **fields)
    return spec.save(folder / f"{model}_{spec.mode}_{spec.strength:g}.json")


def _benchmarks(names: tuple[str, ...], shift: int) -> dict[str, list[int]]:
    """Both forms of each benchmark, with img/txt accuracies that differ per benchmark and per setting."""
    out = {}
    for i, name in enumerate(names):
        out[f"{name}_img"] = outcomes((i + shift) % 9 + 1)
        out[f"{name}_txt"] = outcomes(min(10, (2 * i + shift) % 7 + 4))
    return out


@pytest.fixture(scope="module")
def page(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """`rd-eval leaderboard --out DIR` of five settings: model rd_a (the hostile checkpoint) plain,
    soft λ=1 and soft λ=2 on all six benchmarks; model rd_b plain and a random control on two."""
    root = tmp_path_factory.mktemp("lb_browser")
    runs, specs = root / "runs", root / "specs"
    specs.mkdir()
    settings = [
        ("rd_a", HOSTILE, None, SIX_BENCHMARKS, 0),
        ("rd_a", HOSTILE, _spec(specs, "rd_a", mode="soft", strength=1.0), SIX_BENCHMARKS, 2),
        ("rd_a", HOSTILE, _spec(specs, "rd_a", mode="soft", strength=2.0), SIX_BENCHMARKS, 5),
        ("rd_b", "org/ckpt-b", None, TWO, 1),
        ("rd_b", "org/ckpt-b", _spec(specs, "rd_b", mode="random", strength=1.0), TWO, 3),
    ]
    for n, (model, pretrained, spec, names, shift) in enumerate(settings):
        args = f"pretrained={pretrained}" + (f",intervention={spec}" if spec else "")
        write_run(runs / f"s{n}", f"20250101_12000{n}", _benchmarks(names, shift), model=model, model_args=args)
    assert main(["leaderboard", str(runs), "--out", str(root / "board")]) == 0  # md, csv and html
    return root / "board" / "leaderboard.html"


def expected_rows(board_csv: Path) -> list[list[str]]:
    """The page's rows as the CSV (the markdown's table) gives them: per setting, each benchmark it has, then
    'six' where it has any of them."""
    out = []
    with board_csv.open(encoding="utf-8", newline="") as fh:
        for row in csv.DictReader(fh):
            benchmarks = [c[:-4] for c in row if c.endswith(" img") and c != "six img"]
            present = [b for b in benchmarks if row[f"{b} img"]]
            for name in present + (["six"] if set(present) & set(SIX_BENCHMARKS) else []):
                out.append([row["model"], row["checkpoint"], row["setting"], name,
                            *(row[f"{name} {m}"] for m in ("img", "txt", "gap", "gain"))])
    return out


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with Browser(chromium_or_fail(), width=1400, height=1000) as b:
        yield b


def table(b: Browser, *, visible_only: bool = False) -> list[list[str]]:
    """The table body's cell texts in DOM order (only the rows shown, if asked)."""
    only = ".filter((r) => !r.hidden && r.getClientRects().length)" if visible_only else ""
    return b.evaluate(f"Array.from(document.querySelectorAll({json.dumps(ROWS)})){only}"
                      ".map((r) => Array.from(r.cells, (c) => c.textContent))")


def column(b: Browser, name: str, what: str = "c.dataset.value") -> list[Any]:
    return b.evaluate(
        f"(() => {{ const i = Array.from(document.querySelectorAll('#leaderboard thead th'))"
        f".findIndex((th) => th.textContent === {json.dumps(name)});"
        f" return Array.from(document.querySelectorAll({json.dumps(ROWS)}), (r) => {{ const c = r.cells[i]; "
        f"return {what}; }}); }})()"
    )


def header_state(b: Browser) -> dict[str, str]:
    return b.evaluate("Object.fromEntries(Array.from(document.querySelectorAll('#leaderboard thead th'),"
                      " (th) => [th.textContent, th.getAttribute('aria-sort')]))")


def test_page_in_headless_chromium(page: Path, browser: Browser, tmp_path: Path) -> None:
    expected = expected_rows(page.with_suffix(".csv"))
    assert len(expected) == 3 * (6 + 1) + 2 * (2 + 1)  # settings x (benchmarks + their mean)
    browser.open(page.as_uri())

    # It opens: no console error or exception, no dialog, nothing loaded but the page itself.
    assert browser.evaluate("document.title") == "rd-eval leaderboard"
    assert browser.console_errors == [] and browser.dialogs == []
    assert [u for u in browser.requests if not u.startswith("data:")] == [page.as_uri()]
    assert browser.evaluate("document.querySelector('#leaderboard-count').textContent") == "27 of 27 rows"

    # The rows the markdown has, in its order, the hostile checkpoint as text; no markup of it reached the DOM.
    shown = table(browser)
    assert [r[:4] + r[5:] for r in shown] == expected  # column 4 is the pairs count
    assert {r[1] for r in shown} == {HOSTILE_LABEL, "org__ckpt-b"}
    assert {r[2] for r in shown} == {"plain", "soft λ=1, domain experts, band 0.25–0.75",
                                     "soft λ=2, domain experts, band 0.25–0.75",
                                     "random control, seed 0, λ=1, band 0.25–0.75"}
    assert browser.evaluate("document.scripts.length") == 1
    assert browser.evaluate("document.images.length") == 1  # the bar chart, no <img src=x>
    assert browser.evaluate("document.querySelector('figure img').naturalWidth") > 0  # and it decoded

    # A click on 'gap' sorts by gap ascending, n/a last; a second click descending, n/a still last.
    numbers = sorted(float(r[6]) for r in expected if r[6] and not r[6].startswith("n/a"))
    missing = sum(1 for r in expected if r[6].startswith("n/a"))
    assert missing == 2  # rd_b's two settings have 2 of the six
    browser.click("#leaderboard thead th:nth-child(8)")
    assert header_state(browser)["gap"] == "ascending"
    values = column(browser, "gap")
    assert [float(v) for v in values[:-missing]] == pytest.approx(numbers, abs=0.05)
    assert values[-missing:] == [""] * missing
    assert all(t.startswith("n/a") for t in column(browser, "gap", "c.textContent")[-missing:])
    browser.click("#leaderboard thead th:nth-child(8)")
    assert header_state(browser)["gap"] == "descending"
    values = column(browser, "gap")
    assert [float(v) for v in values[:-missing]] == pytest.approx(numbers[::-1], abs=0.05)
    assert values[-missing:] == [""] * missing
    assert sorted(map(tuple, table(browser))) == sorted(map(tuple, shown))  # the same rows, reordered
    browser.screenshot(tmp_path / "leaderboard.png")
    shutil.copyfile(tmp_path / "leaderboard.png", SHOT_FOR_THE_LEAD)
    assert SHOT_FOR_THE_LEAD.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    # Text columns sort as text: a click on 'benchmark' puts the rows in name order.
    browser.click("#leaderboard thead th:nth-child(4)")
    names = column(browser, "benchmark", "c.textContent")
    assert names == sorted(names) and header_state(browser)["gap"] == "none"

    # Typing in the filter hides every row lacking one of the words (any case, in model/checkpoint/setting/
    # benchmark); the count follows.
    browser.type_text("#leaderboard-filter", "MATHVISTA soft")
    visible = table(browser, visible_only=True)
    assert sorted((r[2], r[3]) for r in visible) == [("soft λ=1, domain experts, band 0.25–0.75", "rd_mathvista"),
                                                     ("soft λ=2, domain experts, band 0.25–0.75", "rd_mathvista")]
    assert browser.evaluate("document.querySelector('#leaderboard-count').textContent") == "2 of 27 rows"
    browser.type_text("#leaderboard-filter", " λ=2")
    assert [(r[2], r[3]) for r in table(browser, visible_only=True)] == [
        ("soft λ=2, domain experts, band 0.25–0.75", "rd_mathvista")]
    browser.evaluate("(() => { const box = document.querySelector('#leaderboard-filter'); box.value = '';"
                     " box.dispatchEvent(new Event('input')); })()")
    assert len(table(browser, visible_only=True)) == 27
    browser.type_text("#leaderboard-filter", "<script>")  # the hostile checkpoint's text matches as text
    assert {r[1] for r in table(browser, visible_only=True)} == {HOSTILE_LABEL}
    assert len(table(browser, visible_only=True)) == 21
    assert browser.console_errors == [] and browser.dialogs == []


def test_page_reads_without_javascript(page: Path, browser: Browser) -> None:
    browser.send("Emulation.setScriptExecutionDisabled", {"value": True})
    try:
        browser.open(page.as_uri())
        assert len(table(browser)) == 27  # rendered in the page itself, not by its script
        assert browser.evaluate("document.querySelector('.controls').getClientRects().length") == 0  # no dead box
        assert browser.evaluate("document.querySelector('#leaderboard').classList.contains('sortable')") is False
    finally:
        browser.send("Emulation.setScriptExecutionDisabled", {"value": False})


def test_the_helper_sees_dialogs_errors_and_requests(browser: Browser, tmp_path: Path) -> None:
    """What the page test asserts the absence of is seen when it happens (else 'no alert' would prove nothing)."""
    other = tmp_path / "noisy.html"
    other.write_text("<!DOCTYPE html><title>noisy</title><img src='missing.png'>"
                     "<script>console.error('boom'); alert('hi'); undefinedName;</script>", encoding="utf-8")
    browser.console_errors.clear()
    browser.dialogs.clear()
    browser.requests.clear()
    browser.open(other.as_uri())
    assert browser.dialogs == ["alert: hi"]
    assert "boom" in browser.console_errors
    assert any("undefinedName" in e for e in browser.console_errors)
    assert (tmp_path / "missing.png").as_uri() in browser.requests
    with pytest.raises(BrowserError, match="no element matches '#absent'"):
        browser.click("#absent")
    with pytest.raises(BrowserError, match="ReferenceError"):
        browser.evaluate("alsoUndefined")


def test_a_missing_browser_fails_with_how_to_install_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RD_EVAL_CHROMIUM", "/nonexistent/chromium")
    monkeypatch.delenv("RD_EVAL_SKIP_BROWSER", raising=False)
    with pytest.raises(pytest.fail.Exception, match=r"apt-get install -y chromium.*RD_EVAL_SKIP_BROWSER=1"):
        chromium_or_fail()
    monkeypatch.setenv("RD_EVAL_SKIP_BROWSER", "1")
    with pytest.raises(pytest.skip.Exception, match="no Chromium"):
        chromium_or_fail()
