"""The drawing page as a person meets it: `python -m emnist_lightning.cli.demo` in a real headless Chromium.

Needs Debian's chromium (/usr/bin/chromium, or CHROMIUM_PATH) and the playwright package; CI installs both.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import REPO_ROOT

CHROMIUM = os.environ.get("CHROMIUM_PATH") or shutil.which("chromium") or "/usr/bin/chromium"
playwright = pytest.importorskip("playwright.sync_api", reason="playwright is not installed (make install adds it)")

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not Path(CHROMIUM).is_file(), reason=f"no Chromium at {CHROMIUM}: apt-get install chromium"),
]
# Headless in a closed network: without the background-networking flags Chromium keeps trying to reach
# Google's services; --no-sandbox because CI runs as root.
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


@contextlib.contextmanager
def served_page(checkpoint: Path, tmp_path: Path) -> Iterator[str]:
    """The page served by the demo entry point for `checkpoint`, as a user starts it, on a free port."""
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "emnist_lightning.cli.demo",
            f"ckpt_path={checkpoint}",
            "demo.port=0",
            f"hydra.run.dir={tmp_path}/run",
        ],
        cwd=REPO_ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        deadline, url = time.monotonic() + 120, None
        while url is None and time.monotonic() < deadline:
            line = process.stdout.readline()
            if not line and process.poll() is not None:
                pytest.fail(f"the demo stopped before serving (exit {process.returncode})")
            found = re.search(r"http://127\.0\.0\.1:\d+/", line)
            url = found.group(0) if found else None
        assert url, "the demo printed no address within 2 minutes"
        yield url
    finally:
        process.terminate()
        process.wait(timeout=30)


@pytest.fixture
def page_url(synthetic_checkpoint: Path, tmp_path: Path) -> Iterator[str]:
    with served_page(synthetic_checkpoint, tmp_path) as url:
        yield url


def open_page(driver: Any, url: str) -> Any:
    browser = driver.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
    page = browser.new_page(viewport={"width": 800, "height": 600})
    page.goto(url)
    return page


def draw_an_l(page: Any) -> None:
    """An L: down the left side, then along the bottom; waits for the reply to the stroke's end."""
    box = page.locator("#pad").bounding_box()
    page.mouse.move(box["x"] + 90, box["y"] + 50)
    page.mouse.down()
    for step in range(1, 21):
        page.mouse.move(box["x"] + 90, box["y"] + 50 + 9 * step)
    for step in range(1, 11):
        page.mouse.move(box["x"] + 90 + 10 * step, box["y"] + 230)
    page.mouse.up()
    page.wait_for_function("window.lastPrediction && window.lastPrediction.top", timeout=30_000)
    page.wait_for_timeout(500)  # the reply to the stroke's end, after any sent while drawing


def test_drawing_shows_probabilities_and_what_the_model_sees(page_url: str, tmp_path: Path) -> None:
    with playwright.sync_playwright() as driver:
        browser = driver.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 800, "height": 600})
        requests_elsewhere = []
        page.on(
            "request",
            lambda request: None if request.url.startswith(page_url) else requests_elsewhere.append(request.url),
        )
        page.goto(page_url)
        assert page.locator("#status").inner_text() == "Draw to see predictions."
        page.wait_for_function("document.getElementById('what').textContent !== 'A character'")
        assert page.locator(".hint").first.inner_text().startswith("A digit, a capital or a lower-case letter")
        draw_an_l(page)
        rows = page.locator("#predictions li")
        assert rows.count() == 5
        shown = [float(rows.nth(i).get_attribute("data-probability")) for i in range(5)]
        assert shown == sorted(shown, reverse=True) and 0 < shown[0] <= 1
        everything = page.evaluate("Object.values(window.lastPrediction.probabilities)")
        assert len(everything) == 47 and sum(everything) == pytest.approx(1, abs=0.005)
        # the model's 28x28 view is drawn: the view canvas holds white ink on black
        lit = page.evaluate(
            "(() => { const c = document.getElementById('view'); const d = c.getContext('2d')"
            ".getImageData(0, 0, c.width, c.height).data; let n = 0;"
            " for (let i = 0; i < d.length; i += 4) if (d[i] > 128) n++; return n / (d.length / 4); })()"
        )
        assert 0.02 < lit < 0.6
        page.screenshot(path=tmp_path / "demo.png")
        print(f"screenshot: {tmp_path / 'demo.png'}")
        page.click("#clear")
        assert rows.count() == 0 and page.locator("#status").inner_text() == "Draw to see predictions."
        browser.close()
    assert requests_elsewhere == []  # everything the page needs comes from the package


def test_a_digits_models_page_asks_for_digits_and_reads_only_digits(digits_checkpoint: Path, tmp_path: Path) -> None:
    with served_page(digits_checkpoint, tmp_path) as url, playwright.sync_playwright() as driver:
        page = open_page(driver, url)
        page.wait_for_function("document.getElementById('what').textContent !== 'A character'")
        assert page.locator(".hint").first.inner_text() == "A digit, 0 to 9, with mouse, pen or finger."
        draw_an_l(page)
        shown = page.locator("#predictions li").all_inner_texts()
        everything = page.evaluate("Object.keys(window.lastPrediction.probabilities)")
        assert sorted(everything) == list("0123456789") and all(row.strip()[0].isdigit() for row in shown), shown
        page.context.browser.close()
