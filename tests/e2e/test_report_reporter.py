"""The reporter on a real broker: a show ends, its review appears in the reports directory, and
a real gateway serves it read-only at /reports/ (with its own CSP) to a token of the room or a
link signed from one, nothing else."""

from __future__ import annotations

import asyncio
import time
import urllib.error
import urllib.request
from pathlib import Path

import orjson
from aiokafka import AIOKafkaProducer
from prometheus_client import CollectorRegistry

from consumers.gateway import Gateway
from consumers.reporter import Reporter
from consumers.tokens import mint
from livecue.broker import EmbeddedBroker
from livecue.config import Settings
from livecue.recording import record_of
from livecue.sim.backtest import run_backtest
from livecue.sim.show import generate
from stream.playbook import default_playbook


def _get(url: str, token: str | None = None) -> tuple[int, bytes, dict[str, str]]:
    req = urllib.request.Request(url, headers={"Authorization": f"Bearer {token}"} if token else {})
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            return r.status, r.read(), dict(r.headers)
    except urllib.error.HTTPError as e:
        return e.code, e.read(), dict(e.headers)


async def test_reporter_writes_review_on_session_end_and_gateway_serves_it(
        broker: EmbeddedBroker, test_settings: Settings, uid: str, tmp_path: Path) -> None:
    settings = test_settings.replace(reports_dir=tmp_path / "reports")
    room = f"rr-{uid}"
    show = generate(5, [room], "flash_sale", duration=240.0, rate=30.0)
    cues = run_backtest(show, default_playbook()).cues
    assert cues
    written: list[Path] = []
    got = asyncio.Event()

    def on_written(p: Path) -> None:
        written.append(p)
        got.set()

    registry = CollectorRegistry()
    rep = Reporter(settings, delay_s=0.5, lang="zh", written=on_written, registry=registry)
    stop = asyncio.Event()
    task = asyncio.create_task(rep.run(stop))
    await asyncio.wait_for(rep.wait_ready(), 30)
    p = AIOKafkaProducer(bootstrap_servers=broker.bootstrap, linger_ms=5)
    await p.start()
    try:
        # a session_end of a room that never started: its review fails, the reporter goes on
        ghost = f"ghost-{uid}"
        await p.send("live.room", orjson.dumps({"type": "session_end", "event_id": "g1", "room_id": ghost,
                                                "ts": show[0].ts}), key=ghost.encode())
        for e in show:
            r = record_of(e)
            await p.send(r.topic, r.value, key=room.encode())
        for c in cues:  # the controller acknowledged the first cue
            await p.send("live.acks", orjson.dumps({"cue_id": c.cue_id, "room_id": room,
                                                    "action": "ack", "by": "ctl", "ts": c.ts + 2000}),
                         key=room.encode())
            break
        await p.flush()
    finally:
        await p.stop()
    try:
        await asyncio.wait_for(got.wait(), 120)
        async with asyncio.timeout(30):
            while rep.failures < 1:  # the ghost's review
                await asyncio.sleep(0.1)
    finally:
        stop.set()
        await task
    assert rep.failures == 1 and rep.reports == 1
    assert registry.get_sample_value("livecue_reporter_reviews_total", {"result": "written"}) == 1
    assert registry.get_sample_value("livecue_reporter_reviews_total", {"result": "failed"}) == 1
    assert registry.get_sample_value("livecue_reporter_review_duration_seconds_count") == 1
    page = written[0]
    session = next(e for e in show if e.type == "session_start").session_id  # type: ignore[union-attr]
    assert page == settings.reports_dir / room / session / "index.html"
    html = page.read_text("utf-8")
    assert "直播复盘" in html and room in html and html.count('data-cue="') == len(cues)
    assert (settings.reports_dir / room / "index.html").read_bytes() == page.read_bytes()

    gw = Gateway(settings, CollectorRegistry())
    port = await gw.start()
    now = time.time()
    tok = mint(settings.token_secret, "controller", [f"other-{uid}", room], 600, "lead", now)
    other = mint(settings.token_secret, "controller", [f"other-{uid}"], 600, "ctl", now)
    try:
        base = f"http://127.0.0.1:{port}"
        # /reports/ wants a token of the room (consumers/report_access.py)
        status, body, headers = await asyncio.to_thread(_get, f"{base}/reports/{room}/")
        assert status == 401 and body != page.read_bytes() and "Bearer" in headers["WWW-Authenticate"]
        status, body, _ = await asyncio.to_thread(_get, f"{base}/reports/{room}/", other)
        assert status == 403 and body != page.read_bytes()
        status, body, headers = await asyncio.to_thread(_get, f"{base}/reports/{room}/", tok)
        assert status == 200 and body == page.read_bytes()
        assert "default-src 'none'" in headers["Content-Security-Policy"]
        status, body, headers = await asyncio.to_thread(_get, f"{base}/reports/{room}/{session}/gmv.png", tok)
        assert status == 200 and body[:8] == b"\x89PNG\r\n\x1a\n" and headers["Content-Type"] == "image/png"
        for bad in (f"/reports/{room}/../{room}/index.html", "/reports/%2e%2e/", "/reports/x.txt"):
            status, _, _ = await asyncio.to_thread(_get, base + bad, tok)
            assert status in (403, 404), bad
        # the screens' way in: links signed for the token's rooms that have a review
        status, body, _ = await asyncio.to_thread(_get, f"{base}/reports/~links", tok)
        links = orjson.loads(body)["links"]
        assert status == 200 and set(links) == {room}
        status, body, headers = await asyncio.to_thread(_get, base + links[room])
        assert status == 200 and body == page.read_bytes() and headers["Referrer-Policy"] == "no-referrer"
        status, _, _ = await asyncio.to_thread(_get, base + links[room].replace(room, f"other-{uid}", 1))
        assert status == 401
    finally:
        await gw.stop()
