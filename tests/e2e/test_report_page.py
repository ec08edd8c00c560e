"""The review page in headless Chromium (no network, nothing fails to load, screenshots), and the
review read from the topics of a real broker equal to the one read from the same show's file."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import orjson
import pytest
from aiokafka import AIOKafkaProducer

from livecue.broker import EmbeddedBroker
from livecue.cli import main
from livecue.recording import record_of, write_recording
from livecue.report import build_report
from livecue.report.charts import HEIGHT_PX, WIDTH_PX
from livecue.report.source import read_broker, read_file
from livecue.sim.backtest import run_backtest
from livecue.sim.show import generate
from schemas.events import Event
from stream.playbook import default_playbook

CHROMIUM = "/usr/bin/chromium"
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--disable-sync", "--no-first-run"]


def _show(room: str) -> list[Event]:
    return generate(3, [room], "mixed", duration=900.0, rate=40.0)


@pytest.mark.parametrize("lang", ["zh", "en"])
def test_report_page_opens_offline_in_chromium(tmp_path: Path, artifacts_dir: Path, lang: str) -> None:
    assert os.path.exists(CHROMIUM), "the report page test needs Debian's chromium"
    from playwright.sync_api import sync_playwright

    rec = tmp_path / "show.jsonl"
    write_recording(rec, (record_of(e) for e in _show("demo-1")))
    out = tmp_path / "out"
    assert main(["report", str(rec), "--out", str(out), "--lang", lang, "--quiet"]) == 0
    page_path = out / "index.html"
    requests: list[str] = []
    failed: list[str] = []
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=ARGS, headless=True)
        try:
            ctx = browser.new_context(viewport={"width": 1320, "height": 1000}, offline=True)
            page = ctx.new_page()
            page.on("request", lambda r: requests.append(r.url))
            page.on("requestfailed", lambda r: failed.append(f"{r.url} {r.failure}"))
            errors: list[str] = []
            page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
            page.goto(page_path.as_uri(), wait_until="load")
            sizes: list[Any] = page.eval_on_selector_all(
                "img", "els => els.map(e => [e.complete, e.naturalWidth, e.naturalHeight])")
            cards = page.eval_on_selector_all("#summary .card", "els => els.length")
            rows = page.eval_on_selector_all("#cues tr[data-cue]", "els => els.length")
            title = page.title()
            page.screenshot(path=str(artifacts_dir / f"report_{lang}.png"), full_page=True)
        finally:
            browser.close()
    assert failed == [] and errors == []
    assert all(u.startswith(("file:", "data:")) for u in requests), requests
    assert sizes == [[True, WIDTH_PX, HEIGHT_PX]] * 3
    assert cards == 18
    assert rows == len(run_backtest(_show("demo-1"), default_playbook()).cues) > 0
    assert ("直播复盘" if lang == "zh" else "Show review") in title


async def test_report_from_topics_equals_report_from_file(broker: EmbeddedBroker, uid: str,
                                                          tmp_path: Path) -> None:
    room = f"rep-{uid}"
    show = _show(room)
    cues = run_backtest(show, default_playbook()).cues
    acks = [{"cue_id": c.cue_id, "room_id": room, "action": "ack", "by": "lead", "ts": c.ts + 4000}
            for c in cues]
    p = AIOKafkaProducer(bootstrap_servers=broker.bootstrap, linger_ms=5)
    await p.start()
    try:
        for e in show:
            r = record_of(e)
            await p.send(r.topic, r.value, key=room.encode())
        # the worker's cues (as it would send them, stamped) and the controllers' acks
        for c in cues:
            doc = orjson.loads(orjson.dumps(c))
            doc["emitted_at"] = c.ts + 1000
            await p.send("live.cues", orjson.dumps(doc), key=room.encode())
            await p.send("live.cues", orjson.dumps(doc), key=room.encode())  # a re-send
        for a in acks:
            await p.send("live.acks", orjson.dumps(a), key=room.encode())
        await p.send("live.deadletter", orjson.dumps({
            "topic": "live.chat", "partition": 0, "offset": 1, "key": room, "reason": "text: missing",
            "field_name": "text", "raw_b64": "", "emitted_at": 0, "type": "deadletter"}), key=room.encode())
        # another room's records must not leak in
        for e in _show(f"other-{uid}")[:500]:
            r = record_of(e)
            await p.send(r.topic, r.value, key=e.room_id.encode())
        await p.flush()
    finally:
        await p.stop()

    inp = await read_broker(broker.bootstrap, room)
    assert inp.room_id == room and len(inp.items) == len(show)
    assert inp.cues is not None and len(inp.cues) == 2 * len(cues)
    rep = build_report(inp.items, default_playbook(), cues=inp.cues, acks=inp.acks,
                       deadletters=inp.deadletters)
    rec = tmp_path / "show.jsonl"
    write_recording(rec, (record_of(e) for e in show))
    ref_in = read_file(rec, room)
    ref = build_report(ref_in.items, default_playbook())
    assert rep.summary == ref.summary
    assert rep.skus == ref.skus
    assert [r.cue.cue_id for r in rep.cues] == [c.cue_id for c in cues]
    assert all(r.ack_s == 3.0 and r.ack_by == "lead" for r in rep.cues)  # from emitted_at
    assert dict(rep.deadletters) == {"text: missing": 1}
    # and through the command
    out = tmp_path / "cli"
    rc = await _run_cli(["report", "--room", room, "--broker", broker.url, "--out", str(out), "--quiet"])
    assert rc == 0 and (out / "index.html").is_file()


async def _run_cli(argv: list[str]) -> int:
    import asyncio

    # the command runs its own event loop: give it a thread
    return await asyncio.to_thread(main, argv)
