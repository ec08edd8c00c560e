"""Fixtures for the screen tests: a real gateway on the real broker, and headless Chromium.

Debian's /usr/bin/chromium is driven by Playwright (its own browser download is never used).
"""

from __future__ import annotations

import shutil
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest
from prometheus_client import CollectorRegistry

from consumers.gateway import Gateway
from livecue.config import Settings

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]




@pytest.fixture
async def gateway(test_settings: Settings) -> AsyncIterator[Gateway]:
    gw = Gateway(test_settings, CollectorRegistry())
    await gw.start()
    try:
        yield gw
    finally:
        await gw.stop()


@pytest.fixture
async def browser() -> AsyncIterator[Any]:
    # fail, never skip: screens untested must not look like a green run (.ci/run installs it)
    assert shutil.which(CHROMIUM), f"{CHROMIUM} is missing: apt-get install chromium (see .ci/run)"
    from playwright.async_api import async_playwright

    async with async_playwright() as pw:
        b = await pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        try:
            yield b
        finally:
            await b.close()


def now_ms() -> int:
    return int(time.time() * 1000)
