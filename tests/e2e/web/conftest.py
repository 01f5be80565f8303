"""One Chromium for every browser test: Debian's ``chromium`` driven by Playwright (no
browser is downloaded)."""

from __future__ import annotations

import shutil
from collections.abc import Iterator

import pytest
from playwright.sync_api import Browser, expect, sync_playwright

WAIT_MS = 30_000  # the longest a page may take to show what a test waits for
expect.set_options(timeout=WAIT_MS)


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    """Per module, not per session: while Playwright runs, its asyncio loop counts as
    running in this thread, and a later test of the same worker could not start one."""
    chromium = shutil.which("chromium")
    if chromium is None:
        pytest.fail("the browser tests need Debian's chromium package (apt-get install chromium)")
    with sync_playwright() as pw:
        launched = pw.chromium.launch(executable_path=chromium, args=["--no-sandbox"])
        yield launched
        launched.close()
