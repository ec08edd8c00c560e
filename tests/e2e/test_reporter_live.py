"""The reporter's live path on a real broker: a show the reporter followed while it ran is
reviewed from what it folded (no re-reading), and that review equals the from-scratch build over
the topics; a reporter restarted mid-show builds that show's review from scratch, whole."""

from __future__ import annotations

import asyncio
from pathlib import Path

import orjson
from aiokafka import AIOKafkaProducer
from prometheus_client import CollectorRegistry

from consumers.reporter import Reporter
from livecue.broker import EmbeddedBroker
from livecue.config import Settings
from livecue.recording import record_of
from livecue.report import build_report
from livecue.report.model import Report
from livecue.report.source import read_broker
from livecue.sim.backtest import run_backtest
from livecue.sim.show import generate
from schemas.events import (
    CartAdd, Chat, Event, Like, Order, SessionEnd, SessionStart, StockSet, Viewers,
)
from stream.playbook import default_playbook


def _show(room: str) -> list[Event]:
    return sorted(generate(9, [room], "mixed", duration=300.0, rate=40.0), key=lambda e: e.ts)


def _before(show: list[Event]) -> list[Event]:
    """One record of the room on each input topic, dated before its session: what a reporter
    that has run for a while has seen of a room's partitions before a show starts."""
    start = next(e for e in show if isinstance(e, SessionStart))
    room, t = start.room_id, start.ts - 60_000
    sku = start.lineup[0].sku_id
    return [StockSet("w1", room, t, sku, 5), Viewers("w2", room, t, 3, 3, 0), Chat("w3", room, t, "u", "hi"),
            Like("w4", room, t, 1), CartAdd("w5", room, t, "u", sku, 1),
            Order("w6", room, t, "o-w", "u", sku, 1, 100, "created")]


async def _send(p: AIOKafkaProducer, room: str, events: list[Event]) -> None:
    for e in events:
        r = record_of(e)
        await p.send(r.topic, r.value, key=room.encode())
    await p.flush()


async def _extras(p: AIOKafkaProducer, room: str, show: list[Event]) -> None:
    """The backtest's cues as the worker sends them (stamped), acks of five, a bad record of the
    room, a dead letter."""
    cues = run_backtest(show, default_playbook()).cues
    for c in cues:
        doc = orjson.loads(orjson.dumps(c))
        doc["emitted_at"] = c.ts + 700
        await p.send("live.cues", orjson.dumps(doc), key=room.encode())
    for c in cues[:5]:
        await p.send("live.acks", orjson.dumps({"cue_id": c.cue_id, "room_id": room, "action": "ack",
                                                "by": "ctl", "ts": c.ts + 3000}), key=room.encode())
    await p.send("live.chat", b"{not json", key=room.encode())
    await p.send("live.deadletter", orjson.dumps({"key": room, "reason": "text: missing"}), key=room.encode())
    await p.flush()


async def _scratch(broker: EmbeddedBroker, room: str, session_id: str | None = None) -> Report:
    inp = await read_broker(broker.bootstrap, room)
    return build_report(inp.ordered(), default_playbook(), session_id=session_id, cues=inp.cues or None,
                        acks=inp.acks, deadletters=inp.deadletters)


async def _start(settings: Settings, got: list[tuple[Report, str]], done: asyncio.Event,
                 registry: CollectorRegistry) -> tuple[Reporter, asyncio.Event, asyncio.Task[None]]:
    def reviewed(rep: Report, how: str) -> None:
        got.append((rep, how))
        done.set()

    rep = Reporter(settings, delay_s=0.5, reviewed=reviewed, registry=registry)
    stop = asyncio.Event()
    task = asyncio.create_task(rep.run(stop))
    await asyncio.wait_for(rep.wait_ready(), 30)
    return rep, stop, task


async def test_followed_show_is_reviewed_live_and_equals_from_scratch(
        broker: EmbeddedBroker, test_settings: Settings, uid: str, tmp_path: Path) -> None:
    settings = test_settings.replace(reports_dir=tmp_path / "reports")
    room = f"lv-{uid}"
    show = _show(room)
    got: list[tuple[Report, str]] = []
    done = asyncio.Event()
    registry = CollectorRegistry()
    rep, stop, task = await _start(settings, got, done, registry)
    p = AIOKafkaProducer(bootstrap_servers=broker.bootstrap, linger_ms=5)
    await p.start()
    try:
        await _send(p, room, _before(show))
        await _send(p, room, [e for e in show if not isinstance(e, SessionEnd)])
        await _extras(p, room, show)
        await _send(p, room, [e for e in show if isinstance(e, SessionEnd)])
        await asyncio.wait_for(done.wait(), 120)
    finally:
        await p.stop()
        stop.set()
        await task
    [(live, how)] = got
    assert how == "live", "the show was followed: its review must not be rebuilt from the topics"
    assert registry.get_sample_value("livecue_reporter_reviews_built_total", {"how": "live"}) == 1
    scratch = await _scratch(broker, room)
    assert live.events == len(show) and scratch.cues and scratch.summary.orders_paid
    assert sum(1 for r in live.cues if r.ack_s is not None) == 5
    assert all(r.ack_s == 2.3 for r in live.cues if r.ack_s is not None)  # from the worker's emitted_at
    assert dict(live.deadletters) == {"value: not valid JSON": 1, "text: missing": 1}
    assert live == scratch
    assert (settings.reports_dir / room / live.session_id / "index.html").is_file()


async def test_reporter_restarted_mid_show_builds_from_scratch(
        broker: EmbeddedBroker, test_settings: Settings, uid: str, tmp_path: Path) -> None:
    settings = test_settings.replace(reports_dir=tmp_path / "reports")
    room = f"rs-{uid}"
    show = _show(room)
    end = next(e for e in show if isinstance(e, SessionEnd))
    half = [e for e in show if e.ts < (show[0].ts + end.ts) // 2]
    rest = [e for e in show if e.ts >= (show[0].ts + end.ts) // 2 and e is not end]
    got: list[tuple[Report, str]] = []
    done = asyncio.Event()
    p = AIOKafkaProducer(bootstrap_servers=broker.bootstrap, linger_ms=5)
    await p.start()
    try:
        first, stop, task = await _start(settings, got, done, CollectorRegistry())
        await _send(p, room, _before(show) + half)
        async with asyncio.timeout(30):  # the first reporter follows the show ...
            while room not in first.tracker.followed:
                await asyncio.sleep(0.05)
        stop.set()  # ... and goes away mid-show
        await task
        registry = CollectorRegistry()
        second, stop, task = await _start(settings, got, done, registry)
        await _send(p, room, rest)
        await _extras(p, room, show)
        await _send(p, room, [end])
        await asyncio.wait_for(done.wait(), 120)
        stop.set()
        await task
    finally:
        await p.stop()
    [(rep, how)] = got
    assert how == "scratch" and room not in second.tracker.followed
    assert registry.get_sample_value("livecue_reporter_reviews_built_total", {"how": "scratch"}) == 1
    assert rep.events == len(show)  # the whole show, not the half the second reporter saw
    assert rep == await _scratch(broker, room)


async def test_a_followed_show_found_unusable_at_the_end_is_built_from_scratch(
        broker: EmbeddedBroker, test_settings: Settings, uid: str, tmp_path: Path) -> None:
    """The session announced again just before its end: the follower learns it only when it
    finishes (the event waits behind the frontier), and the reporter builds from scratch."""
    settings = test_settings.replace(reports_dir=tmp_path / "reports")
    room = f"lx-{uid}"
    show = _show(room)
    start = next(e for e in show if isinstance(e, SessionStart))
    end = next(e for e in show if isinstance(e, SessionEnd))
    again = SessionStart("again", room, end.ts - 1, start.session_id, start.lineup)
    got: list[tuple[Report, str]] = []
    done = asyncio.Event()
    registry = CollectorRegistry()
    rep, stop, task = await _start(settings, got, done, registry)
    p = AIOKafkaProducer(bootstrap_servers=broker.bootstrap, linger_ms=5)
    await p.start()
    try:
        await _send(p, room, _before(show) + [e for e in show if e is not end] + [again, end])
        await asyncio.wait_for(done.wait(), 120)
    finally:
        await p.stop()
        stop.set()
        await task
    [(review, how)] = got
    assert how == "scratch" and rep.failures == 0
    assert registry.get_sample_value("livecue_reporter_reviews_built_total", {"how": "scratch"}) == 1
    # the session that ended, from its first start (announced again, it is still one show)
    assert review.summary.started_ts == start.ts and review.events > len(show) // 2
    assert review == await _scratch(broker, room, start.session_id)


async def test_a_batch_written_before_the_reporter_started_is_not_read_as_new(
        broker: EmbeddedBroker, test_settings: Settings, uid: str, tmp_path: Path) -> None:
    """Tansu answers ListOffsets (latest) with the base offset of a partition's last record
    batch: a reporter starting there reads that batch as new. Here the last batch on each of the
    room's partitions holds another room's records dated after the show's start, so a reporter
    that read it would find "records from before it started" dated in the show and refuse to
    follow. It starts at the fetch high watermark instead: the first records it reads are dated
    before the start (another room's), and it follows the show."""
    from aiokafka.partitioner import DefaultPartitioner

    settings = test_settings.replace(reports_dir=tmp_path / "reports")
    room, other = f"lb-{uid}", f"lbo-{uid}"
    show = _show(room)
    start = next(e for e in show if isinstance(e, SessionStart))
    sku = start.lineup[0].sku_id

    def of_other(t: int) -> list[Event]:
        return [StockSet(f"s{t}", other, t, sku, 5), Viewers(f"v{t}", other, t, 3, 3, 0),
                Chat(f"c{t}", other, t, "u", "hi"), Like(f"l{t}", other, t, 1),
                CartAdd(f"a{t}", other, t, "u", sku, 1), Order(f"o{t}", other, t, f"o-{t}", "u", sku, 1, 100, "created")]

    p = AIOKafkaProducer(bootstrap_servers=broker.bootstrap, linger_ms=200)
    await p.start()
    got: list[tuple[Report, str]] = []
    done = asyncio.Event()
    try:
        parts = sorted(await p.partitions_for("live.room"))
        part = DefaultPartitioner()(room.encode(), parts, parts)  # the room's, on every topic

        async def to_part(events: list[Event]) -> None:
            futs = []
            for e in events:
                r = record_of(e)
                futs.append(await p.send(r.topic, r.value, key=other.encode(), partition=part))
            await asyncio.gather(*futs)

        await to_part([e for k in range(10) for e in of_other(start.ts + 10_000 + k)])  # one batch each
        rep, stop, task = await _start(settings, got, done, CollectorRegistry())
        await to_part(of_other(start.ts - 30_000))
        await _send(p, room, [e for e in show if not isinstance(e, SessionEnd)])
        await _send(p, room, [e for e in show if isinstance(e, SessionEnd)])
        await asyncio.wait_for(done.wait(), 120)
        stop.set()
        await task
    finally:
        await p.stop()
    [(review, how)] = got
    assert how == "live", "the batch written before the reporter started was read as new"
    assert review.events == len(show)
