"""Fault: the gateway killed (``kill -9``) and restarted mid-show, on Tansu and on Apache Kafka.

A staggered show runs through a worker (produced at 10x its event time). Two screens watch it
through a ``livecue gateway`` process: a websocket client that behaves like the screens' link
(auth, resume from its last seq per room, reconnect with exponential backoff and jitter) for every
room, and the control-room page itself in headless Chromium for one room. Once cues flow, the
gateway is killed; the worker keeps emitting cues while it is down; a new gateway starts on the
same port and fills its backlog from live.cues. Both screens reconnect by themselves, resume, and
end with exactly the backtest's cue ids of their rooms: none missed, none extra.
"""

from __future__ import annotations

import asyncio
import shutil
import time
from pathlib import Path
from typing import Any

import pytest

from brokers import BrokerUnderTest
from consumers.tokens import mint
from harness import (
    EXACT_GRACE_MS, Pacer, Screen, backtest_ids, group_at_tail, metric_value, paced_production,
    staggered_show, start_gateway, start_worker,
)

pytestmark = pytest.mark.slow

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]
DOWN_S = 2.0  # the gateway stays dead this long (screens retry meanwhile) once a cue was missed


async def _cues_emitted(w: Any) -> float:
    return metric_value(await asyncio.to_thread(w.metrics), "livecue_cues_total")


async def test_gateway_killed_mid_show_screens_reconnect_resume_and_miss_no_cue(
    any_broker: BrokerUnderTest, tmp_path: Path, uid: str
) -> None:
    # fail, never skip: screens untested must not look like a green run (.ci/run installs it)
    assert shutil.which(CHROMIUM), f"{CHROMIUM} is missing: apt-get install chromium (see .ci/run)"
    from playwright.async_api import async_playwright

    b = any_broker
    settings = b.settings(tmp_path, uid, LIVECUE_ALIGN_GRACE_MS=EXACT_GRACE_MS)
    records, rooms = staggered_show(f"gf{uid}", rooms=4, step_s=30.0, duration=300.0, rate=5.0)
    expected = backtest_ids(records, rooms)
    page_room = rooms[0]
    page_expected = backtest_ids(records, [page_room])
    assert len(expected) >= 6 and page_expected
    await group_at_tail(b.bootstrap, settings.app_id)
    pacer = Pacer(10.0)
    now = time.time()
    screen_tok = mint(settings.token_secret, "controller", rooms, 3600, "verifier", now)
    page_tok = mint(settings.token_secret, "controller", [page_room], 3600, "场控", now)
    worker = await asyncio.to_thread(start_worker, settings, tmp_path / "worker.log", "w")
    gateways: list[Any] = []
    try:
        gw = await asyncio.to_thread(start_gateway, settings, tmp_path / "gw1.log")
        gateways.append(gw)
        async with async_playwright() as pw, Screen(lambda: gw.ws_url, screen_tok) as screen:
            browser = await pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
            page = await browser.new_page()
            await page.goto(f"{gw.url}/#token={page_tok}")
            await page.wait_for_selector(".status.live")
            async with paced_production(b.bootstrap, records, pacer) as producing:
                # precondition: cues flow to the screen before the kill
                assert await screen.wait_for(lambda s: len(s.deliveries) >= 2, 60), worker.log_tail()
                gw.kill9()
                killed_at = time.monotonic()
                # a cue is emitted while no gateway runs: the screens must get it by resuming
                before = await _cues_emitted(worker)
                deadline = time.monotonic() + 60
                while await _cues_emitted(worker) <= before:
                    assert time.monotonic() < deadline, "no cue emitted while the gateway was down"
                    await asyncio.sleep(0.1)
                await asyncio.sleep(max(0.0, killed_at + DOWN_S - time.monotonic()))
                assert not producing.done(), "the show ended before the gateway came back"
                t_restart = time.monotonic()
                gw = await asyncio.to_thread(start_gateway, settings, tmp_path / "gw2.log", gw.port)
                gateways.append(gw)
                ready_s = time.monotonic() - t_restart
                assert await screen.wait_for(lambda s: s.connections >= 2, 30), "the screen did not reconnect"
                reconnect_s = time.monotonic() - t_restart
                await page.wait_for_selector(".status.live", timeout=30_000)

                pacer.hurry()
                await producing
            assert await screen.wait_for(lambda s: expected <= s.ids(), 120), (
                f"missing on the screen: {sorted(expected - screen.ids())}\n{gw.log_tail()}")
            async with asyncio.timeout(60):
                while await page.locator("#cues [data-cue-id]").count() < len(page_expected):
                    await asyncio.sleep(0.2)
            await asyncio.sleep(2)  # anything extra would show up now
            page_ids = await page.eval_on_selector_all("#cues [data-cue-id]",
                                                       "els => els.map(e => e.dataset.cueId)")
            await browser.close()
        resumed = sum(m["cues"] for m in screen.resumed)
        print(f"[{b.name}] gateway kill -9: down {t_restart - killed_at:.1f}s, new gateway ready {ready_s:.1f}s "
              f"after its start, screen reconnected {reconnect_s - ready_s:.1f}s after that ({screen.attempts} "
              f"attempts in all); {resumed} cues resumed; screen got {len(screen.deliveries)} cues "
              f"({screen.duplicates()} duplicates before dedupe), expected {len(expected)}; the page shows "
              f"{len(page_ids)} of {len(page_expected)}")
        assert screen.ids() == expected, f"extra: {sorted(screen.ids() - expected)}"
        assert screen.connections == 2 and screen.attempts > 2, "reconnected after failed attempts (backoff)"
        assert resumed >= 1, "the cues emitted while the gateway was down came by resume"
        assert sorted(page_ids) == sorted(page_expected) and len(page_ids) == len(set(page_ids))
    finally:
        for g in gateways:
            g.stop()
        worker.stop()
