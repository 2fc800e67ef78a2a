"""The leaderboard site in a real headless browser: Debian's Chromium driven by Playwright.

Opens the site from disk (file://), checks that nothing is fetched from the network and every
image loads, sorts a table by clicking its header, follows a run link to the run's page, and
keeps screenshots as artefacts (``tests/artifacts/site/``, ignored by git).

Skipped only when Chromium (or Playwright) is missing *and* ``CI`` is not set; under CI a missing
browser is a failure (``.ci/install-browser`` installs it). Playwright never downloads a browser
here: it launches the system one.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from shared_data import in_ci as _in_ci
from site_home import built_site, site_home  # noqa: F401 (session fixtures shared with test_site)

pytestmark = pytest.mark.slow

CHROMIUM = os.environ.get("AVSKIT_CHROMIUM", "/usr/bin/chromium")
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--no-first-run", "--disable-sync"]
ARTIFACTS = Path(__file__).resolve().parent / "artifacts" / "site"


def _missing(what: str) -> None:
    if _in_ci():
        pytest.fail(f"CI is set but {what} is missing: run .ci/install-browser (Debian chromium) and "
                    f"pip install -e '.[dev]' (playwright)", pytrace=False)
    pytest.skip(f"{what} is not installed (.ci/install-browser installs Chromium)")


@pytest.fixture(scope="module")
def browser():
    if not (Path(CHROMIUM).is_file() and os.access(CHROMIUM, os.X_OK)):
        _missing(f"Chromium ({CHROMIUM})")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        _missing("the playwright package")
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        try:
            yield b
        finally:
            b.close()


@pytest.fixture
def page(browser, tmp_path):
    """A page that records every request and every error the site causes."""
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    pg = context.new_page()
    pg.requests, pg.errors = [], []
    pg.on("request", lambda r: pg.requests.append(r.url))
    pg.on("pageerror", lambda e: pg.errors.append(str(e)))
    pg.on("console", lambda m: pg.errors.append(m.text) if m.type == "error" else None)
    yield pg
    context.close()


def _shot(pg, tmp_path: Path, name: str) -> Path:
    path = tmp_path / f"{name}.png"
    pg.screenshot(path=str(path), full_page=True)
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    shutil.copy2(path, ARTIFACTS / path.name)
    assert path.stat().st_size > 10_000  # a rendered page, not a blank one
    return path


def _column(pg, table_id: str, header: str) -> list[float | None]:
    """The data-sort values of one column, in the order the rows are shown."""
    return pg.evaluate(
        """([id, header]) => {
             const t = document.getElementById(id);
             const col = Array.from(t.tHead.rows[0].cells).findIndex(h => h.textContent.trim() === header);
             if (col < 0) throw new Error('no column ' + header);
             return Array.from(t.tBodies[0].rows).map(r => {
               const v = r.cells[col].getAttribute('data-sort');
               return v === null ? null : parseFloat(v);
             });
           }""", [table_id, header])


def test_index_opens_from_disk_with_no_network(page, built_site, tmp_path):
    out, result = built_site
    page.goto((out / "index.html").as_uri())
    names = page.locator("#datasets tbody tr td:first-child a").all_inner_texts()
    assert sorted(names) == sorted(result.datasets)
    _shot(page, tmp_path, "index")
    assert all(u.startswith("file://") for u in page.requests), page.requests
    assert page.errors == []


def test_sort_by_clicking_a_header(page, built_site, tmp_path):
    out, _ = built_site
    page.goto((out / "datasets" / "avsbench-s4.html").as_uri())
    table, header = "table-avsbench-s4-avsbench-v1-1.0", "test mIoU (%)"
    before = _column(page, table, header)
    assert len(before) == 3 and before != sorted(before, reverse=True)  # shown by method name first
    page.locator(f"[id=\"{table}\"] th", has_text=header).click()
    after = _column(page, table, header)
    assert after == sorted(before, reverse=True)  # first click on a number: best first
    assert page.locator(f"[id=\"{table}\"] th", has_text=header).get_attribute("aria-sort") == "descending"
    methods = page.locator(f"[id=\"{table}\"] tbody tr td:nth-child(2)").all_inner_texts()
    assert methods == ["av2t", "probe-clip-only", "empty"]
    page.locator(f"[id=\"{table}\"] th", has_text=header).click()
    assert _column(page, table, header) == sorted(before)
    page.locator(f"[id=\"{table}\"] th", has_text="method").click()  # text: A to Z
    assert page.locator(f"[id=\"{table}\"] tbody tr td:nth-child(2)").all_inner_texts() == ["av2t", "empty",
                                                                                     "probe-clip-only"]
    # every plot on the page loaded (file:// under the page's CSP)
    widths = page.evaluate("Array.from(document.images).map(i => i.complete ? i.naturalWidth : -1)")
    assert widths and all(w > 0 for w in widths), widths
    _shot(page, tmp_path, "dataset-avsbench-s4")
    assert page.errors == []


def test_follow_a_run_link_to_its_metrics(page, built_site, site_home, tmp_path):
    import json

    out, _ = built_site
    page.goto((out / "datasets" / "synth-s4.html").as_uri())
    run_id = site_home[1]["synth-s4"][0]
    page.locator("a.run", has_text=run_id).first.click()
    page.wait_for_load_state()
    assert page.url.endswith(f"/runs/{run_id}.html")
    assert run_id in page.locator("h1").inner_text()
    record = json.loads((site_home[0] / "runs" / run_id / "record.json").read_text())
    shown = page.locator("#metrics tbody tr").all_inner_texts()
    for protocol, values in record["metrics"]["test"].items():
        for metric, value in values.items():
            row = next(r for r in shown if protocol in r and f"\t{metric}" in r)
            assert f"{value * 100:.2f}" in row, (row, value)
    assert page.locator("#categories tbody tr").count() >= 1
    widths = page.evaluate("Array.from(document.images).map(i => i.complete ? i.naturalWidth : -1)")
    assert len(widths) >= 3 and all(w > 0 for w in widths), widths  # categories, curves, gallery
    _shot(page, tmp_path, "run")
    assert page.errors == []
