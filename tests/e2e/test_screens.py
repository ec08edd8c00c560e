"""The control-room and host screens in real headless Chromium against a real gateway and broker."""

from __future__ import annotations

import asyncio
import re
import time
from pathlib import Path
from typing import Any

import orjson
import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition
from playwright.async_api import expect
from prometheus_client import CollectorRegistry

from consumers.gateway import Gateway
from consumers.tokens import mint
from livecue.broker import EmbeddedBroker
from livecue.config import Settings
from producers import Kafka
from schemas.decode import decode_ack
from schemas.events import TOPIC_ACKS




def now_ms() -> int:
    return int(time.time() * 1000)


XSS = "<img src=x onerror=alert(1)>"
IDLE = re.compile(r"\bidle\b")
VIEWPORT = {"width": 1600, "height": 900}


def lineup(xss: bool = False) -> list[dict[str, Any]]:
    rows = [
        ("sku-1", "9.9元 补水面膜（引流）", "traffic_driver", 990, 420, False, 3.2, 1.1, 0.34, 380.0),
        ("sku-2", "玻尿酸精华 30ml", "hero", 15900, 38, True, 14.5, 6.2, 0.43, 95.0),
        ("sku-3", "福利款 洁面乳", "giveaway", 100, 0, False, 0.8, 0.0, None, None),
        ("sku-4", XSS if xss else "轻奢面霜礼盒 50g", "profit", 39900, 120, False, 1.4, 0.3, 0.21, None),
    ]
    return [{"sku_id": s, "name": n, "role": r, "price_cents": p, "stock": st, "on_air": air,
             "held": st == 0, "sold": 10, "cart_adds_per_min": c, "orders_per_min": o,
             "units_per_min": o, "conversion": conv, "eta_s": eta}
            for s, n, r, p, st, air, c, o, conv, eta in rows]


def stats(room: str, ts: int, i: int, xss: bool = False) -> dict[str, Any]:
    wave = (i % 12) / 12
    return {"type": "room_stats", "room_id": room, "session_id": f"{room}-s", "ts": ts, "tier": "hot",
            "online": 12000 + i * 85 + int(900 * wave), "online_trend": 0.12, "entered_per_min": 300.0,
            "left_per_min": 120.0, "chat_per_min": 180.0 + 40 * wave + i, "unique_chatters": 260,
            "intent_per_min": 42.0, "intent_share": 0.23, "likes_per_min": 5200.0 + i * 30,
            "cart_adds_per_min": 19.9, "orders_per_min": 7.6, "gmv_cents_per_min": 480000 + i * 9000,
            "gmv_cents_total": 86000000, "unpaid_share": 0.08, "on_air_sku": "sku-2",
            "skus": lineup(xss), "emitted_at": now_ms()}


def cue(room: str, n: int, kind: str, severity: str, sku: str, zh: str, en: str, detail_zh: str,
        evidence: dict[str, Any], target: str | None = None) -> dict[str, Any]:
    ts = now_ms()
    return {"type": "cue", "cue_id": f"{room}-{kind}-{n}", "room_id": room, "session_id": f"{room}-s",
            "kind": kind, "severity": severity, "sku_id": sku, "target_sku_id": target,
            "headline": zh, "detail": detail_zh, "evidence": evidence, "ts": ts, "emitted_at": ts,
            "texts": {"zh": {"headline": zh, "detail": detail_zh}, "en": {"headline": en, "detail": en + "."}}}


async def fill_room(kafka: Kafka, room: str, xss: bool = False) -> None:
    """Ten minutes of stats history (one snapshot per 10 s of event time), then a live one."""
    t1 = now_ms()
    for i in range(60):
        await kafka.stats(stats(room, t1 - (60 - i) * 10_000, i, xss))


async def wait_for(pred: Any, timeout: float = 8.0) -> None:
    deadline = time.monotonic() + timeout
    while not pred():
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.05)


async def test_control_room_shows_cues_and_stats_and_ack_reaches_live_acks(
        browser: Any, gateway: Gateway, kafka: Kafka, broker: EmbeddedBroker, test_settings: Settings,
        uid: str, artifacts_dir: Path) -> None:
    room = f"直播间-{uid}"
    await fill_room(kafka, room)
    await wait_for(lambda: len(gateway._history.get(room, ())) >= 50)
    tok = mint(test_settings.token_secret, "controller", [room], 3600, "场控-小王", time.time())
    page = await browser.new_page(viewport=VIEWPORT)
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    sent: list[str] = []
    page.on("websocket", lambda ws: ws.on("framesent", lambda payload: sent.append(str(payload))))
    await page.goto(f"{gateway.url}/#token={tok}")
    assert "token=" not in page.url, "the token is removed from the address bar"
    await page.wait_for_selector(".status.live")
    # The token rode the upgrade (a subprotocol): the page's first frame is its resume.
    await wait_for(lambda: len(sent) >= 1)
    assert orjson.loads(sent[0])["type"] == "resume", sent[0]
    assert not any(tok in f for f in sent)
    await expect(page.locator("#tier")).to_have_text("高人气")
    assert await page.text_content("#onair") == "玻尿酸精华 30ml"
    assert await page.locator("#lineup tbody tr").count() == 4

    # Stats update live.
    await kafka.stats({**stats(room, now_ms(), 61), "online": 23456, "tier": "warm"})
    await expect(page.locator("#k-online .k-value")).to_have_text("23,456")
    assert await page.text_content("#tier") == "中人气"

    # Cues appear newest first, with evidence, and light up their lineup rows.
    c1 = cue(room, 1, "push_stock", "warn", "sku-2", "爆款库存告急，马上补库存", "Hero nearly sold out: push stock",
             "玻尿酸精华 剩余 38 件，按当前速度约 95 秒售罄", {"stock": 38, "units_per_min": 24.1, "eta_s": 95})
    c2 = cue(room, 2, "switch_to_traffic_driver", "critical", "sku-4", "人气下滑，切引流款 9.9 面膜",
             "Popularity sagging: switch to the traffic driver", "在线人数 3 分钟下降 18%，利润款转化偏低",
             {"online_drop": 0.18, "samples": ["没抢到", "还有吗", "链接呢"]}, target="sku-1")
    offset1 = await kafka.cue(c1)
    await kafka.cue(c2)
    await expect(page.locator("#cues .cue")).to_have_count(2)
    headlines = await page.locator("#cues .c-headline").all_text_contents()
    assert headlines == [c2["headline"], c1["headline"]]
    assert await page.locator("#lineup tbody tr.cued").count() == 3  # sku-2, sku-4 and target sku-1
    assert "没抢到" in await page.locator("#cues .cue").first.text_content()

    # Language toggle switches the UI and the cue texts.
    await page.click("#lang")
    assert (await page.locator("#cues .c-headline").all_text_contents())[0] == c2["texts"]["en"]["headline"]
    assert await page.text_content("#tier") == "WARM"
    await page.click("#lang")

    # Ack the older cue: the record lands on live.acks with `by` from the token.
    acks = AIOKafkaConsumer(bootstrap_servers=broker.bootstrap, group_id=None, enable_auto_commit=False,
                            fetch_max_wait_ms=20)
    await acks.start()
    try:
        tps = [TopicPartition(TOPIC_ACKS, p) for p in sorted(await kafka.producer.partitions_for(TOPIC_ACKS))]
        acks.assign(tps)
        for tp, end in (await acks.end_offsets(tps)).items():
            acks.seek(tp, end)
        await page.locator(f"#cues .cue[data-cue-id='{c1['cue_id']}'] button[data-act='ack']").click()
        found = None
        async with asyncio.timeout(8):
            while found is None:
                for recs in (await acks.getmany(timeout_ms=200)).values():
                    for r in recs:
                        a = decode_ack(r.value)
                        if a.room_id == room:
                            found = a
    finally:
        await acks.stop()
    assert (found.cue_id, found.action, found.by) == (c1["cue_id"], "ack", "场控-小王")
    card = page.locator(f"#cues .cue[data-cue-id='{c1['cue_id']}']")
    await card.locator(".state-badge:has-text('已确认')").wait_for()
    assert "场控-小王" in await card.locator(".state-badge").text_content()
    assert gateway.backlog.seq_of(room, c1["cue_id"]) == offset1

    await page.wait_for_timeout(300)
    await page.screenshot(path=str(artifacts_dir / "control-room.png"))
    assert errors == []
    await page.close()


async def test_host_shows_one_headline_and_clears_when_done(
        browser: Any, gateway: Gateway, kafka: Kafka, test_settings: Settings, uid: str,
        artifacts_dir: Path) -> None:
    room = f"host-{uid}"
    host_tok = mint(test_settings.token_secret, "host", [room], 3600, "主播", time.time())
    ctl_tok = mint(test_settings.token_secret, "controller", [room], 3600, "场控", time.time())
    host = await browser.new_page(viewport={"width": 1280, "height": 720})
    await host.goto(f"{gateway.url}/host#token={host_tok}")
    await expect(host.locator("body")).to_have_class(IDLE)
    old = cue(room, 1, "push_stock", "warn", "sku-2", "补库存：精华再上 50 件", "Push 50 more serums", "", {})
    new = cue(room, 2, "release_orders", "critical", "sku-2", "没抢到的很多，马上放单！", "Many missed it: release now!",
              "", {"missed_per_min": 35})
    await kafka.cue(old)
    await expect(host.locator("#headline")).to_have_text(old["headline"])
    await kafka.cue(new)
    await expect(host.locator("#headline")).to_have_text(new["headline"])
    assert await host.evaluate("document.body.classList.contains('sev-critical')")
    size = await host.evaluate("parseFloat(getComputedStyle(document.querySelector('#headline')).fontSize)")
    assert size >= 80, "readable from two metres"
    visible = await host.evaluate("document.body.innerText.trim()")
    assert new["headline"] in visible and "missed_per_min" not in visible  # nothing else on screen
    await host.wait_for_timeout(200)
    await host.screenshot(path=str(artifacts_dir / "host.png"))

    # The controller marks it done: the host clears it and falls back to the older open cue.
    ctl = await browser.new_page(viewport=VIEWPORT)
    await ctl.goto(f"{gateway.url}/#token={ctl_tok}")
    await ctl.locator(f".cue[data-cue-id='{new['cue_id']}'] button[data-act='done']").click()
    await expect(host.locator("#headline")).to_have_text(old["headline"])
    await ctl.locator(f".cue[data-cue-id='{old['cue_id']}'] button[data-act='dismiss']").click()
    await expect(host.locator("body")).to_have_class(IDLE)
    assert await host.text_content("#headline") == ""
    await ctl.close()
    await host.close()


async def test_event_text_stays_inert(
        browser: Any, gateway: Gateway, kafka: Kafka, test_settings: Settings, uid: str) -> None:
    room = f"xss-{uid}"
    await kafka.stats(stats(room, now_ms(), 1, xss=True))
    tok = mint(test_settings.token_secret, "controller", [room], 3600, "ops", time.time())
    host_tok = mint(test_settings.token_secret, "host", [room], 3600, "host", time.time())
    page = await browser.new_page(viewport=VIEWPORT)
    host = await browser.new_page(viewport=VIEWPORT)
    dialogs: list[str] = []
    for p in (page, host):
        p.on("dialog", lambda d: (dialogs.append(d.message), asyncio.ensure_future(d.dismiss())))
    await page.goto(f"{gateway.url}/#token={tok}")
    await host.goto(f"{gateway.url}/host#token={host_tok}")
    await page.wait_for_selector("#lineup tbody tr")
    evil = cue(room, 1, "push_stock", "critical", "sku-4", XSS, XSS, XSS,
               {"chat": XSS, "samples": [XSS, "<script>alert(2)</script>"], XSS: 1}, target="sku-4")
    await kafka.cue(evil)
    await page.wait_for_selector("#cues .cue")
    await expect(host.locator("#headline")).not_to_have_text("")
    await page.wait_for_timeout(500)
    assert dialogs == []
    for p in (page, host):
        assert await p.locator("img").count() == 0
        assert await p.locator("main script").count() == 0
    assert await host.text_content("#headline") == XSS
    assert await page.locator("#cues .c-headline").first.text_content() == XSS
    assert XSS in await page.locator("#lineup tbody").text_content()
    await page.close()
    await host.close()


async def test_connection_drop_shows_banner_and_reconnects_with_resume(
        browser: Any, broker: EmbeddedBroker, kafka: Kafka, test_settings: Settings, uid: str) -> None:
    room = f"drop-{uid}"
    gw = Gateway(test_settings, CollectorRegistry())
    port = await gw.start()
    tok = mint(test_settings.token_secret, "controller", [room], 3600, "ops", time.time())
    page = await browser.new_page(viewport=VIEWPORT)
    try:
        await page.goto(f"{gw.url}/#token={tok}")
        await page.wait_for_selector(".status.live")
        await kafka.cue(cue(room, 1, "push_stock", "warn", "sku-1", "第一条", "first", "", {}))
        await expect(page.locator("#cues .cue")).to_have_count(1)
        await gw.stop()
        await page.wait_for_selector(".banner.bad")
        assert "重连" in await page.text_content("#banner")
        # Missed while down; a new instance on the same port serves it from the tail.
        await kafka.cue(cue(room, 2, "release_orders", "critical", "sku-1", "第二条", "second", "", {}))
        gw = Gateway(test_settings.replace(gateway_port=port), CollectorRegistry())
        await gw.start()
        await expect(page.locator("#cues .cue")).to_have_count(2, timeout=15000)
        await page.wait_for_selector(".banner.ok")
        assert "补发 1 条" in await page.text_content("#banner")
        assert await page.locator("#cues .c-headline").all_text_contents() == ["第二条", "第一条"]
    finally:
        await page.close()
        await gw.stop()



@pytest.mark.parametrize("link", ["forged", "mangled"])
async def test_a_bad_link_says_so_whichever_way_its_token_travels(
        browser: Any, gateway: Gateway, test_settings: Settings, uid: str, link: str) -> None:
    """A forged token rides the upgrade as a subprotocol; a mangled one (not a header token) goes
    in the first message. Either way the gateway refuses it and the page says so, once."""
    room = f"bad-{uid}"
    tok = mint("another-secret-of-at-least-32-bytes!!", "controller", [room], 3600, "ops", time.time())
    if link == "mangled":
        tok = tok.replace(".", "<>.", 1)
    before = gateway.metrics.refused.labels("bad_token")._value.get()
    page = await browser.new_page(viewport=VIEWPORT)
    sent: list[str] = []
    page.on("websocket", lambda ws: ws.on("framesent", lambda payload: sent.append(str(payload))))
    try:
        await page.goto(f"{gateway.url}/#token={tok}")
        await page.wait_for_selector(".banner.bad")
        assert "令牌无效" in await page.text_content("#banner")
        assert [orjson.loads(f)["type"] for f in sent] == (["auth"] if link == "mangled" else [])
        await asyncio.sleep(1.5)  # no retries after a refusal
        assert gateway.metrics.refused.labels("bad_token")._value.get() == before + 1
    finally:
        await page.close()

pytestmark = pytest.mark.slow
