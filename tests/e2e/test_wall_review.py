"""Review links on the screens, in headless Chromium against a real gateway: the wall and the
control room show a review button only for rooms that have a review, the button opens it (a
signed link: no token in the URL), and a screen of other rooms cannot open it. A wall of two
rooms fills the screen instead of two small tiles in a corner, and stays inside it."""

from __future__ import annotations

import os
import time
from pathlib import Path

from prometheus_client import CollectorRegistry

from consumers.gateway import Gateway
from consumers.tokens import mint
from livecue.config import Settings

CHROMIUM = "/usr/bin/chromium"
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--disable-sync", "--no-first-run"]


async def test_review_buttons_open_signed_links_and_two_rooms_fill_the_wall(
        test_settings: Settings, uid: str, tmp_path: Path, artifacts_dir: Path) -> None:
    assert os.path.exists(CHROMIUM), "the wall test needs Debian's chromium"
    from playwright.async_api import async_playwright

    reviewed, quiet = f"rv-{uid}", f"rq-{uid}"
    settings = test_settings.replace(reports_dir=tmp_path / "reports")
    (settings.reports_dir / reviewed).mkdir(parents=True)
    page_html = f"<!doctype html><title>review</title><h1>直播复盘 · {reviewed}</h1>"
    (settings.reports_dir / reviewed / "index.html").write_text(page_html, "utf-8")
    gw = Gateway(settings, CollectorRegistry())
    await gw.start()
    now = time.time()
    lead = mint(settings.token_secret, "viewer", [reviewed, quiet], 3600, "运营", now)
    other = mint(settings.token_secret, "controller", [quiet], 3600, "场控", now)
    try:
        async with async_playwright() as pw:
            browser = await pw.chromium.launch(executable_path=CHROMIUM, args=ARGS, headless=True)
            try:
                ctx = await browser.new_context(viewport={"width": 1920, "height": 1080})
                wall = await ctx.new_page()
                await wall.goto(f"{gw.url}/wall#token={lead}")
                link = wall.locator(f'.tile[data-room="{reviewed}"] .t-foot a')
                await link.wait_for(state="visible")
                assert await wall.locator(f'.tile[data-room="{quiet}"] .t-foot a').is_hidden()
                href = await link.get_attribute("href")
                assert href is not None and href.startswith(f"/reports/{reviewed}/?exp=") and lead not in href
                boxes = [await wall.locator(f'.tile[data-room="{r}"]').bounding_box() for r in (reviewed, quiet)]
                assert all(b is not None for b in boxes)
                assert sum(b["width"] for b in boxes if b) > 1200, "two rooms fill the wall's width"
                assert all(b and b["x"] >= 0 and b["x"] + b["width"] <= 1920 and b["y"] + b["height"] <= 1080
                           for b in boxes), "and stay on the screen"
                await wall.screenshot(path=str(artifacts_dir / "wall-two-rooms.png"))
                async with ctx.expect_page() as opened:
                    await link.click()
                review = await opened.value
                await review.wait_for_load_state()
                assert f"直播复盘 · {reviewed}" in await review.inner_text("h1")

                ctl = await ctx.new_page()
                await ctl.goto(f"{gw.url}/#token={lead}")
                # a locator, not wait_for_function: the page's CSP (script-src 'self') refuses
                # the eval Playwright's string predicates need when they have to poll
                await ctl.locator("#room option").nth(1).wait_for(state="attached")
                assert await ctl.locator("#room option").count() == 2
                await ctl.select_option("#room", reviewed)
                await ctl.wait_for_selector("#review:not([hidden])")
                resp = await ctl.goto(gw.url + (await ctl.get_attribute("#review", "href") or ""))
                assert resp is not None and resp.status == 200

                # a screen of other rooms gets no button, and the review's own URL refuses it
                ctx2 = await browser.new_context(viewport={"width": 1600, "height": 900})
                stranger = await ctx2.new_page()
                await stranger.goto(f"{gw.url}/#token={other}")
                await stranger.wait_for_selector("#who:not(:empty)")
                assert await stranger.locator("#review").is_hidden()
                resp = await stranger.goto(f"{gw.url}/reports/{reviewed}/")
                assert resp is not None and resp.status == 401
                assert "直播复盘" not in await stranger.content()
            finally:
                await browser.close()
    finally:
        await gw.stop()
