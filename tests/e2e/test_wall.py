"""The lead's wall in headless Chromium: 50 rooms of simulator traffic through a real worker and
a real gateway on a broker of the test's own.

Proves: 50 tiles fit a 1920x1080 screen and update as the show runs; tiles are ordered by the
cues (rooms with an unacknowledged critical cue first, longest waiting first — computed here
from live.cues and live.acks); a critical cue left unacknowledged past the playbook's
``[wall] escalate_after_s`` flashes its tile and beeps; the control room's keyboard shortcuts
send the right acks to live.acks, and a room whose cues are handled leaves the top of the wall.
"""

from __future__ import annotations

import asyncio
import os
import sys
import time
from pathlib import Path
from typing import Any

import orjson
from aiokafka import AIOKafkaConsumer, TopicPartition
from prometheus_client import CollectorRegistry

from consumers.gateway import Gateway
from consumers.tokens import mint
from livecue.broker import EmbeddedBroker, create_topics
from livecue.config import Settings
from livecue.recording import record_of
from livecue.sim.send import pace_order, send_paced
from livecue.sim.show import generate
from schemas.events import TOPIC_ACKS, TOPIC_CUES

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "integration"))
from harness import start_worker  # noqa: E402

CHROMIUM = "/usr/bin/chromium"
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--disable-sync", "--no-first-run",
        "--autoplay-policy=no-user-gesture-required"]
ROOMS = 50
ESCALATE_S = 4


async def read_all(bootstrap: str, topic: str) -> list[dict[str, Any]]:
    """Every JSON value of ``topic`` up to each partition's fetch high watermark, in offset order."""
    c = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=None, enable_auto_commit=False,
                         fetch_max_wait_ms=50)
    await c.start()
    try:
        await c.topics()
        tps = [TopicPartition(topic, p) for p in sorted(c.partitions_for_topic(topic) or ())]
        c.assign(tps)
        await c.seek_to_beginning(*tps)
        out: list[dict[str, Any]] = []
        todo = set(tps)
        async with asyncio.timeout(30):
            while todo:
                for tp, msgs in (await c.getmany(*todo, timeout_ms=200)).items():
                    out += [{**orjson.loads(m.value), "_offset": m.offset} for m in msgs]
                for tp in list(todo):
                    hw = c.highwater(tp)
                    if hw is not None and await c.position(tp) >= hw:
                        todo.discard(tp)
        return out
    finally:
        await c.stop()


def expected_top(cues: list[dict[str, Any]], acks: list[dict[str, Any]]) -> list[str]:
    """Rooms with a critical cue nobody has acted on, longest waiting first."""
    acted = {a["cue_id"] for a in acks}
    oldest: dict[str, int] = {}
    for c in cues:
        if c["severity"] == "critical" and c["cue_id"] not in acted:
            oldest[c["room_id"]] = min(oldest.get(c["room_id"], c["emitted_at"]), c["emitted_at"])
    return sorted(oldest, key=lambda r: (oldest[r], r))


async def wait_until(pred: Any, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while True:
        v = pred()
        if asyncio.iscoroutine(v):
            v = await v
        if v:
            return
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.25)


async def test_wall_with_fifty_rooms(test_settings: Settings, tmp_path: Path, uid: str,
                                     artifacts_dir: Path) -> None:
    assert os.path.exists(CHROMIUM), "the wall test needs Debian's chromium"
    from playwright.async_api import async_playwright

    pb = tmp_path / "playbook.toml"
    pb.write_text(f"[wall]\nescalate_after_s = {ESCALATE_S}\n")
    rooms = [f"w{i:02d}-{uid[:6]}" for i in range(1, ROOMS + 1)]
    # ten busy flash-sale rooms (critical cues), forty quieter mixed shows
    events = sorted(generate(11, rooms[:10], "flash_sale", duration=150.0, rate=30.0)
                    + generate(11, rooms[10:], "mixed", duration=150.0, rate=8.0), key=lambda e: e.ts)
    records = [record_of(e) for e in events]
    # a broker of its own: the worker's fresh group then reads only this test's traffic
    broker = EmbeddedBroker(log_path=tmp_path / "tansu.log").start()
    try:
        await create_topics(broker.bootstrap, partitions=4)
        settings = test_settings.replace(broker=broker.bootstrap, playbook=pb)
        worker = await asyncio.to_thread(start_worker, settings, tmp_path / "worker.log", f"wall-{uid}")
        gw = Gateway(settings, CollectorRegistry())
        await gw.start()
        try:
            async with async_playwright() as pw:
                browser = await pw.chromium.launch(executable_path=CHROMIUM, args=ARGS, headless=True)
                try:
                    await _run(browser, gw, settings, broker.bootstrap, rooms, records, artifacts_dir)
                finally:
                    await browser.close()
        finally:
            await gw.stop()
            worker.stop()
    finally:
        broker.stop()


async def _run(browser: Any, gw: Gateway, settings: Settings, bootstrap: str, rooms: list[str],
               records: list[Any], artifacts_dir: Path) -> None:
    now = time.time()
    lead = mint(settings.token_secret, "controller", rooms, 3600, "运营-老张", now)
    page = await browser.new_page(viewport={"width": 1920, "height": 1080})
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    await page.goto(f"{gw.url}/wall#token={lead}")
    await page.wait_for_selector(".status.live")
    assert await page.locator(".tile").count() == ROOMS

    # --- traffic: 150 s of show for 50 rooms (~150k events), 6x faster than real time
    sender = asyncio.create_task(send_paced(pace_order(records), bootstrap, linger_ms=20, speed=6.0))

    async def tiles() -> list[dict[str, Any]]:
        return list(await page.eval_on_selector_all(".tile", """els => els.map(e => ({
            room: e.dataset.room, online: e.querySelector('.t-online b').textContent,
            tier: e.querySelector('.t-tier').className, esc: e.classList.contains('escalated'),
            crit: e.classList.contains('open-critical'), cue: e.querySelector('.t-cue').dataset.cueId || null,
            box: (r => [r.x, r.y, r.right, r.bottom])(e.getBoundingClientRect())}))"""))

    await wait_until(lambda: _count(tiles, lambda t: t["online"] != "—", 40), 90, "stats on 40 tiles")
    first = {t["room"]: t["online"] for t in await tiles()}
    await asyncio.sleep(4)
    second = {t["room"]: t["online"] for t in await tiles()}
    changed = sum(1 for r in rooms if first[r] != second[r] and second[r] != "—")
    assert changed >= 25, f"only {changed} tiles moved in 4 s of show"
    await sender
    # let the worker finish and every escalation timer run out
    await wait_until(lambda: _settled(bootstrap), 120, "cues to settle")
    await asyncio.sleep(ESCALATE_S + 1.5)

    cues = await read_all(bootstrap, TOPIC_CUES)
    assert cues and {c["room_id"] for c in cues} <= set(rooms)
    top = expected_top(cues, await read_all(bootstrap, TOPIC_ACKS))
    assert len(top) >= 3, "the flash sales fire critical cues in several rooms"
    got = await tiles()
    assert all(0 <= t["box"][0] and t["box"][2] <= 1920 and t["box"][3] <= 1080 for t in got), \
        "50 tiles fit on one 1080p screen"
    assert [t["room"] for t in got[:len(top)]] == top, "rooms with unacknowledged critical cues first"
    assert all(t["esc"] for t in got[:len(top)]) and not any(t["esc"] for t in got[len(top):])
    assert all("none" not in t["tier"] for t in got), "every tile shows its tier"
    assert int(await page.get_attribute("body", "data-beeps") or 0) == len(top), "one beep per escalated cue"
    assert await page.text_content("#escalations") == f"⚠ {len(top)} 超时未确认"
    await page.screenshot(path=str(artifacts_dir / "wall.png"))

    # --- the room at the top: its controller clears it with the keyboard
    room = top[0]
    mine = sorted((c for c in cues if c["room_id"] == room), key=lambda c: c["_offset"])
    ctl = await browser.new_page(viewport={"width": 1600, "height": 900})
    ctl.on("pageerror", lambda e: errors.append(str(e)))
    tok = mint(settings.token_secret, "controller", [room], 3600, "场控-小李", now)
    await ctl.goto(f"{gw.url}/#token={tok}")
    await ctl.wait_for_selector(".status.live")
    await wait_until(lambda: _n(ctl, "#cues .cue", len(mine)), 20, "the room's cues on the control room")
    await ctl.screenshot(path=str(artifacts_dir / "control-room-live.png"))
    target = ctl.locator("#cues .cue.kbd-target")
    assert await target.get_attribute("data-cue-id") == mine[-1]["cue_id"], "newest cue is the target"
    figs = await target.locator(".figures li").count()
    assert 2 <= figs <= 4, "evidence as a few figures"
    await ctl.keyboard.press("a")
    await wait_until(lambda: _has(ctl, f".cue.state-acked[data-cue-id='{mine[-1]['cue_id']}']"), 10, "ack")
    await ctl.keyboard.press("d")
    await wait_until(lambda: _has(ctl, f".cue.state-done[data-cue-id='{mine[-1]['cue_id']}']"), 10, "done")
    handled = 1
    for c in reversed(mine[:-1]):  # dismiss the rest, newest first
        await wait_until(lambda c=c: _has(ctl, f".cue.kbd-target[data-cue-id='{c['cue_id']}']"), 10, "next target")
        await ctl.keyboard.press("x")
        await wait_until(lambda c=c: _has(ctl, f".cue.state-dismissed[data-cue-id='{c['cue_id']}']"), 10, "dismiss")
        handled += 1
    assert await ctl.locator("#cues .cue.kbd-target").count() == 0

    acks = [a for a in await read_all(bootstrap, TOPIC_ACKS) if a["room_id"] == room]
    want = [(mine[-1]["cue_id"], "ack"), (mine[-1]["cue_id"], "done")] + [
        (c["cue_id"], "dismiss") for c in reversed(mine[:-1])]
    assert [(a["cue_id"], a["action"]) for a in acks] == want
    assert {a["by"] for a in acks} == {"场控-小李"}

    # --- the wall follows: the room leaves the top, its tile stops flashing
    async def moved() -> bool:
        order = [t["room"] for t in await tiles()]
        return order[:len(top) - 1] == top[1:] and order.index(room) >= len(top) - 1
    await wait_until(moved, 10, "the wall to reorder")
    t_room = next(t for t in await tiles() if t["room"] == room)
    assert not t_room["esc"] and not t_room["crit"]
    await page.screenshot(path=str(artifacts_dir / "wall-after-ack.png"))
    # mute switch
    await page.click("#mute")
    assert await page.get_attribute("#mute", "aria-pressed") == "true"
    await page.reload()
    await page.wait_for_selector(".status.live")
    assert await page.get_attribute("#mute", "aria-pressed") == "true", "mute is remembered"
    assert errors == []


async def _count(tiles: Any, pred: Any, n: int) -> bool:
    return sum(1 for t in await tiles() if pred(t)) >= n


async def _n(page: Any, sel: str, n: int) -> bool:
    return bool(await page.locator(sel).count() >= n)


async def _has(page: Any, sel: str) -> bool:
    return bool(await page.locator(sel).count() > 0)


_last: dict[str, Any] = {}


async def _settled(bootstrap: str) -> bool:
    """True once live.cues has not grown for 3 s."""
    n = len(await read_all(bootstrap, TOPIC_CUES))
    now = time.monotonic()
    if _last.get("n") != n:
        _last.update(n=n, since=now)
        return False
    return bool(now - _last["since"] >= 3)


async def test_cue_card_speaks_the_controllers_language(test_settings: Settings, uid: str,
                                                        artifacts_dir: Path) -> None:
    """Evidence as figures with labels and units, raw keys behind a toggle; a held SKU's ETA
    reads 憋单 (not 0 秒); English labels with --lang en."""
    assert os.path.exists(CHROMIUM), "the control-room test needs Debian's chromium"
    from aiokafka import AIOKafkaProducer
    from playwright.async_api import async_playwright

    room = f"card-{uid}"
    gw = Gateway(test_settings, CollectorRegistry())
    await gw.start()
    p = AIOKafkaProducer(bootstrap_servers=test_settings.broker, linger_ms=0)
    await p.start()
    try:
        now = int(time.time() * 1000)
        skus = [{"sku_id": "s1", "name": "玻尿酸精华", "role": "hero", "price_cents": 15900, "stock": 0,
                 "on_air": True, "held": True, "sold": 40, "cart_adds_per_min": 30.0, "orders_per_min": 0.0,
                 "units_per_min": 0.0, "conversion": None, "eta_s": 0.0},
                {"sku_id": "s2", "name": "洁面乳", "role": "giveaway", "price_cents": 100, "stock": 0,
                 "on_air": False, "held": False, "sold": 50, "cart_adds_per_min": 0.0, "orders_per_min": 0.0,
                 "units_per_min": 0.0, "conversion": None, "eta_s": 0.0}]
        st = {"type": "room_stats", "room_id": room, "session_id": "s", "ts": now, "tier": "hot", "online": 5000,
              "online_trend": 0.0, "entered_per_min": 1.0, "left_per_min": 1.0, "chat_per_min": 900.0,
              "unique_chatters": 300, "intent_per_min": 687.0, "intent_share": 0.7, "likes_per_min": 10.0,
              "cart_adds_per_min": 30.0, "orders_per_min": 0.0, "gmv_cents_per_min": 0, "gmv_cents_total": 1,
              "unpaid_share": 0.0, "on_air_sku": "s1", "skus": skus, "emitted_at": now}
        await p.send_and_wait("live.room_stats", orjson.dumps(st), key=room.encode())
        ev = {"stock": 0, "units_per_min": 0.0, "cart_adds_per_min": 30.2, "on_air": True,
              "intent_per_min": 687.4, "missed_per_min": 87.0, "chat_per_min": 900.0, "held": True,
              "held_s": 20.0, "weighted_intent_per_min": 774.4, "intent_share": 0.86}
        c = {"type": "cue", "cue_id": f"c-{uid}", "room_id": room, "session_id": "s", "kind": "release_orders",
             "severity": "critical", "sku_id": "s1", "target_sku_id": None, "headline": "玻尿酸精华放单！",
             "detail": "d", "evidence": ev, "ts": now, "emitted_at": now,
             "texts": {"zh": {"headline": "玻尿酸精华放单！", "detail": "d"},
                       "en": {"headline": "Release now", "detail": "d"}}}
        await p.send_and_wait("live.cues", orjson.dumps(c), key=room.encode())
        tok = mint(test_settings.token_secret, "controller", [room], 3600, "场控", time.time())
        async with async_playwright() as pw:
            browser = await pw.chromium.launch(executable_path=CHROMIUM, args=ARGS, headless=True)
            try:
                page = await browser.new_page(viewport={"width": 1600, "height": 900})
                await page.goto(f"{gw.url}/#token={tok}")
                await page.wait_for_selector("#cues .cue .figures li")
                figs = [" ".join(x.split()) for x in await page.locator(".figures li").all_inner_texts()]
                assert figs == ["求购弹幕 687 条/分", "没抢到 87 条/分", "已憋单 20 秒", "加购 30.2 次/分"]
                assert not await page.locator("details.raw dl").is_visible(), "raw keys behind a toggle"
                await page.click("details.raw summary")
                assert await page.locator("details.raw dt", has_text="weighted_intent_per_min").is_visible()
                await page.wait_for_selector("#lineup tbody tr")
                etas = await page.locator("#lineup tbody tr td:last-child").all_inner_texts()
                assert etas == ["憋单", "已售罄"], "a held SKU reads 憋单, not 0 秒"
                await page.screenshot(path=str(artifacts_dir / "control-room-card.png"))
                await page.click("#lang")
                figs = [" ".join(x.split()) for x in await page.locator(".figures li").all_inner_texts()]
                assert figs == ["Intent chats 687 /min", "Missed it 87 /min", "Held for 20 s",
                                "Cart adds 30.2 /min"]
                assert await page.locator("#lineup tbody tr td:last-child").all_inner_texts() == ["Held", "Sold out"]
                await page.click("#lang")
            finally:
                await browser.close()
    finally:
        await p.stop()
        await gw.stop()
