"""The book and the pair probe as a reader meets them, in a real browser: a rendered page (navigation, no cut table
cell, no script error) and the pair-probe widget in a real JupyterLab (two images uploaded, two statements typed,
Score pressed, its table read back). Chromium drives through Playwright with ``executable_path``; without a Chromium
(``apt-get install chromium``, or ``$CHROMIUM``) or Playwright the tests are skipped and say why."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request

import numpy as np
import pytest
from PIL import Image

from analysis_lib.book import runner
from analysis_lib.data.toyworld import WorldConfig, render_all, sample_scenes

sync_api = pytest.importorskip("playwright.sync_api", reason="Playwright is not installed (pip install -e '.[dev]')")
CHROMIUM = os.environ.get("CHROMIUM") or shutil.which("chromium") or shutil.which("chromium-browser")
pytestmark = pytest.mark.skipif(
    CHROMIUM is None, reason="no Chromium found: apt-get install chromium (or set $CHROMIUM) to run the browser tests"
)
TEXTS = ["a red circle left of a blue square", "a red circle right of a blue square"]


@pytest.fixture
def browser():
    """A headless Chromium page of a reader's window size."""
    with sync_api.sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        yield chromium.new_page(viewport={"width": 1400, "height": 1000})
        chromium.close()


def test_every_rendered_page_reads_in_a_browser(browser, tmp_path):
    runner.main(["render", "--out", str(tmp_path / "book")])
    errors = []
    browser.on("pageerror", lambda err: errors.append(str(err)))
    pages = sorted((tmp_path / "book").glob("*.html"))
    assert len(pages) >= 9  # the claims page, seven chapters, the reference page
    for page in pages:
        browser.goto(page.as_uri())
        assert browser.locator("nav.book-nav").is_visible(), page.name
        cut = browser.evaluate(
            "[...document.querySelectorAll('td, th')].filter(c => c.scrollWidth > c.clientWidth + 1).length"
        )
        assert cut == 0 and not errors, (page.name, cut, errors)
    browser.goto((tmp_path / "book" / "03_positions.html").as_uri())
    assert browser.get_by_role("link", name="claims").first.is_visible()
    browser.screenshot(path=tmp_path / "page.png", full_page=True)
    assert Image.open(tmp_path / "page.png").size[0] == 1400


def free_port() -> int:
    """A TCP port nothing listens on now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture
def jupyterlab(tmp_path):
    """A JupyterLab server (this Python's) serving ``tmp_path``: its base URL, once it answers."""
    port, token = free_port(), "book-test"
    command = [sys.executable, "-m", "jupyterlab", "--no-browser", "--allow-root", f"--port={port}",
               "--ServerApp.ip=127.0.0.1", f"--IdentityProvider.token={token}", f"--ServerApp.root_dir={tmp_path}",
               "--LabApp.news_url="]  # fmt: skip
    with open(tmp_path / "server.log", "w") as log:
        server = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        for _ in range(120):
            try:
                urllib.request.urlopen(f"{url}/api/status?token={token}", timeout=2)
                break
            except OSError:
                time.sleep(1)
        else:
            pytest.fail(f"JupyterLab did not answer in 120 s: {(tmp_path / 'server.log').read_text()[-2000:]}")
        yield url, token
    finally:
        server.terminate()
        server.wait(30)


def test_the_pair_probe_widget_scores_uploads_in_jupyterlab(browser, jupyterlab, full_setup, tmp_path):
    url, token = jupyterlab
    source = f"from analysis_lib.book import pair_probe\npair_probe.widget(clip={full_setup.clip_model!r}, " \
             f"llava={full_setup.llava_model!r})"  # fmt: skip
    cell = {"cell_type": "code", "metadata": {}, "execution_count": None, "outputs": [], "source": source}
    kernel = {"name": "python3", "display_name": "Python 3", "language": "python"}
    notebook = {"cells": [cell], "metadata": {"kernelspec": kernel}, "nbformat": 4, "nbformat_minor": 5}
    (tmp_path / "probe.ipynb").write_text(json.dumps(notebook))
    world = WorldConfig()
    for i, image in enumerate(render_all(sample_scenes(2, world, seed=3), world, seed=4)):
        Image.fromarray(np.asarray(image)).save(tmp_path / f"{i}.png")

    browser.goto(f"{url}/lab/tree/probe.ipynb?token={token}", timeout=120_000)
    browser.locator(".jp-Cell .jp-InputArea-editor").first.click(timeout=120_000)
    browser.keyboard.press("Shift+Enter")
    uploads = browser.locator(".widget-upload")
    uploads.first.wait_for(timeout=300_000)
    for i, button in enumerate(uploads.all()):
        with browser.expect_file_chooser() as chooser:
            button.click()
        chooser.value.set_files(tmp_path / f"{i}.png")
    for field, text in zip(browser.locator(".widget-text input").all(), TEXTS):
        field.fill(text)
    browser.get_by_role("button", name="Score").click()
    table = browser.locator(".widget-output table")
    table.wait_for(timeout=120_000)
    shown = table.inner_text()
    assert "CLIP (cosine)" in shown and "LLaVA (VQAScore)" in shown and all(text in shown for text in TEXTS)
    assert "image 1 (1)" in uploads.first.inner_text()  # the upload the widget scored
