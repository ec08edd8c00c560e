"""The worker on each real broker (Tansu and Apache Kafka: the ``any_broker`` fixture): cues from
a librdkafka-produced show, dead letters one for one, catch-up == paced, and kill -9 mid-show with
nothing lost and the state equal to a recomputation.

The brokers are the session's; each test starts its worker group at the inputs' tail
(``group_at_tail``), so a worker reads only its own test's records."""

from __future__ import annotations

import asyncio
import base64
import time
from pathlib import Path

import orjson
import pytest

from brokers import BrokerUnderTest
from harness import (
    EXACT_GRACE_MS, WorkerProc, backtest_ids, changelog_last, collect, collect_cues, group_at_tail, metric_value,
    produce, recompute, records_of, show_records, start_group_at, start_worker, topic_config,
)
from livecue.broker import EmbeddedBroker, create_topics
from livecue.recording import Record
from livecue.sim.show import generate
from stream.core import dump_state
from stream.processor import decode_room_value

pytestmark = pytest.mark.slow


async def test_show_from_librdkafka_producer_yields_expected_cues(
    any_broker: BrokerUnderTest, tmp_path: Path, uid: str
) -> None:
    b = any_broker
    settings = b.settings(tmp_path, uid, LIVECUE_ALIGN_GRACE_MS=EXACT_GRACE_MS)
    records, rooms = show_records(f"w{uid}")
    expected = backtest_ids(records, rooms)
    assert len(expected) >= 3, "the mixed show should fire several cues"
    await group_at_tail(b.bootstrap, settings.app_id)
    w = start_worker(settings, tmp_path / "worker.log", "w1")
    try:
        produce(b.bootstrap, records)
        got = await collect_cues(b.bootstrap, rooms, expected, timeout=90)
        got_ids = {c["cue_id"] for c in got}
        assert got_ids == expected, _explain(records, rooms, got_ids, w)
        for c in got:
            assert c["type"] == "cue" and len(c["headline"]) <= 60 and c["emitted_at"] > 0
        # room_stats are screen refreshes: at most one a second per room, always the newest, so
        # each room's last snapshot is the core's last snapshot of the show.
        last_ts = {r: recompute(records, r).stats[-1].ts for r in rooms}
        stats = await collect(b.bootstrap, "live.room_stats", lambda v: v.get("room_id") in rooms,
                              lambda got: {r: max((s["ts"] for s in got if s["room_id"] == r), default=0)
                                           for r in rooms} == last_ts, timeout=30)
        assert {s["tier"] for s in stats} <= {"hot", "warm", "cold"}
        assert {r: max(s["ts"] for s in stats if s["room_id"] == r) for r in rooms} == last_ts
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and metric_value(w.metrics(), "livecue_events_consumed_total") < len(records):
            await asyncio.sleep(0.2)
        text = w.metrics()
        assert metric_value(text, "livecue_events_consumed_total") == len(records)
        assert metric_value(text, "livecue_cues_total") >= len(expected)
    finally:
        w.stop()
    assert w.proc.returncode == 0, w.log_tail()


def _explain(records: list[Record], rooms: list[str], got_ids: set[str], w: WorkerProc) -> str:
    lines = []
    for r in rooms:
        for c in recompute(records, r).cues:
            mark = "ok" if c.cue_id in got_ids else "MISSING"
            lines.append(f"{mark} {c.cue_id} {c.room_id} {c.kind} ts={c.ts}")
    pending = metric_value(w.metrics(), "livecue_aligner_pending")
    return "\n".join(lines) + f"\naligner pending={pending}\n" + w.log_tail()


BAD = [
    (b"not json", "value: not valid JSON"),
    (b"\xff\xfe\x00", "value: not valid UTF-8"),
    (b"[1, 2]", "value: JSON is not an object"),
    (b'{"type": "like", "event_id": "e", "room_id": "ROOM", "ts": 1795000000000, "count": 0}', "count: must be positive"),
    (b'{"type": "teleport", "event_id": "e", "room_id": "ROOM", "ts": 1795000000000}', "type: unknown"),
    (b'{"type": "like", "event_id": "e", "room_id": "OTHER", "ts": 1795000000000, "count": 3}', "key: Kafka key disagrees with room_id"),
    (b'{"type": "like", "event_id": "e", "room_id": "ROOM", "ts": 1795000000000.5, "count": 3}', "ts: must be an integer"),
]


async def test_malformed_events_land_one_for_one_in_deadletter(
    any_broker: BrokerUnderTest, tmp_path: Path, uid: str
) -> None:
    b = any_broker
    settings = b.settings(tmp_path, uid)
    room = f"dl{uid}"
    bad = [(v.replace(b"ROOM", room.encode()), reason) for v, reason in BAD]
    # an order for a SKU the session does not have: valid JSON, impossible in context
    good = records_of(generate(3, [room], "mixed", duration=20.0, rate=10.0))
    unknown_sku = orjson.dumps({
        "type": "order", "event_id": f"x{uid}", "room_id": room, "ts": orjson.loads(good[-1].value)["ts"],
        "order_id": "o-x", "user_id": "u", "sku_id": "NO-SUCH-SKU", "qty": 1, "amount_cents": 100,
        "status": "created",
    })
    await group_at_tail(b.bootstrap, settings.app_id)
    w = start_worker(settings, tmp_path / "worker.log", "w1")
    try:
        produce(b.bootstrap, good)
        produce(b.bootstrap, [("live.likes", room.encode(), v) for v, _ in bad]
                + [("live.orders", room.encode(), unknown_sku)])
        got = await collect(b.bootstrap, "live.deadletter", lambda v: v.get("key") == room,
                            lambda got: len(got) >= len(bad) + 1, timeout=60, settle_s=1.0)
        assert len(got) == len(bad) + 1, w.log_tail()
        by_raw = {base64.b64decode(g["raw_b64"]): g for g in got}
        assert len(by_raw) == len(bad) + 1  # one dead letter per bad record, none twice
        for value, reason in bad:
            dl = by_raw[value]
            assert dl["topic"] == "live.likes" and dl["reason"].startswith(reason), dl
            assert isinstance(dl["partition"], int) and isinstance(dl["offset"], int)
        assert "sku" in by_raw[unknown_sku]["reason"].lower()
        assert metric_value(w.metrics(), "livecue_deadletters_total") >= len(bad) + 1
        assert w.proc.poll() is None  # still running
    finally:
        w.stop()


@pytest.mark.parametrize("any_broker", ["tansu"], indirect=True)  # pacing is the worker's part, not the broker's
async def test_all_at_once_and_paced_give_identical_cue_ids(
    any_broker: BrokerUnderTest, tmp_path: Path, uid: str
) -> None:
    b = any_broker
    settings = b.settings(tmp_path, uid)
    records, rooms = show_records(f"w{uid}", rooms=1, duration=180.0)
    expected = backtest_ids(records, rooms)
    assert expected
    paced_s = settings.replace(app_id=settings.app_id + "-paced")
    catchup_s = settings.replace(app_id=settings.app_id + "-catchup")
    start = await group_at_tail(b.bootstrap, paced_s.app_id)
    await start_group_at(b.bootstrap, catchup_s.app_id, start)
    # 1) a live worker while the show is produced paced (~20x real time)
    live = start_worker(paced_s, tmp_path / "paced.log", "paced")
    try:
        t0 = orjson.loads(records[0].value)["ts"]
        t_start = time.monotonic()

        def pace(rec: Record) -> None:
            due = (orjson.loads(rec.value)["ts"] - t0) / 1000.0 / 20.0
            delay = t_start + due - time.monotonic()
            if delay > 0:
                time.sleep(delay)

        await asyncio.to_thread(produce, b.bootstrap, records, pace)
        paced = await collect_cues(b.bootstrap, rooms, expected, timeout=60)
    finally:
        live.stop()
    paced_ids = {c["cue_id"] for c in paced}
    boundary = int(time.time() * 1000)
    # 2) a second group catching up the whole show at once
    catchup = start_worker(catchup_s, tmp_path / "catchup.log", "catchup")
    try:
        got = await collect(b.bootstrap, "live.cues",
                            lambda v: v.get("room_id") in rooms and v.get("emitted_at", 0) >= boundary,
                            lambda got: expected <= {c["cue_id"] for c in got}, timeout=90)
    finally:
        catchup.stop()
    caught_ids = {c["cue_id"] for c in got}
    assert paced_ids == expected, live.log_tail()
    assert caught_ids == expected, catchup.log_tail()


async def test_kill9_mid_show_loses_nothing_and_state_equals_recomputation(
    any_broker: BrokerUnderTest, tmp_path: Path, uid: str
) -> None:
    b = any_broker
    settings = b.settings(tmp_path, uid, LIVECUE_ALIGN_GRACE_MS=EXACT_GRACE_MS)
    records, rooms = show_records(f"w{uid}", rooms=2, duration=240.0)
    expected = backtest_ids(records, rooms)
    half = len(records) // 2
    await group_at_tail(b.bootstrap, settings.app_id)
    w1: WorkerProc = start_worker(settings, tmp_path / "w1.log", "w1")
    try:
        produce(b.bootstrap, records[:half])
        # let it process part of the backlog, then kill it without warning
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            progress = w1.metrics()
            if metric_value(progress, "livecue_events_consumed_total") >= half // 2 and \
                    metric_value(progress, "livecue_events_released_total") > 0:
                break
            await asyncio.sleep(0.05)
        # precondition: the kill lands mid-show, after real work (consumed and released)
        assert metric_value(progress, "livecue_events_consumed_total") >= half // 2, w1.log_tail()
        assert metric_value(progress, "livecue_events_released_total") > 0
        w1.kill9()
    finally:
        w1.stop()
    produce(b.bootstrap, records[half:])
    t_restart = time.monotonic()
    w2 = start_worker(settings, tmp_path / "w2.log", "w2")
    try:
        got = await collect_cues(b.bootstrap, rooms, expected, timeout=120)
        got_ids = {c["cue_id"] for c in got}
        assert expected <= got_ids, w2.log_tail()
        assert got_ids <= expected  # duplicates only ever repeat an expected id
        print(f"[{b.name}] kill -9: restart to all {len(expected)} cues {time.monotonic() - t_restart:.1f}s, "
              f"{len(got) - len(got_ids)} duplicate cue records before dedupe")
        # the restored + continued state equals a recomputation from the input
        changelog = f"{settings.app_id}-room_state-changelog"
        want = {r: dump_state(recompute(records, r).state) for r in rooms}
        last: dict[str, bytes] = {}
        for _ in range(40):
            last = await changelog_last(b.bootstrap, changelog, rooms)
            if all(last.get(r) is not None and dump_state(decode_room_value(last[r])[1]) == want[r] for r in rooms):
                break
            await asyncio.sleep(0.5)
        for r in rooms:
            assert r in last, f"no state for {r} in {changelog}"
            assert dump_state(decode_room_value(last[r])[1]) == want[r]
        # declared compacted on every broker (whether the broker compacts is BrokerTraits.compacts_changelog)
        assert await topic_config(b.bootstrap, changelog, "cleanup.policy") == "compact"
    finally:
        w2.stop()


def test_worker_refuses_input_topics_with_different_partition_counts(tmp_path: Path) -> None:
    import subprocess
    import sys

    from schemas.events import INPUT_TOPICS

    with EmbeddedBroker(log_path=tmp_path / "tansu.log") as b:
        asyncio.run(create_topics(b.bootstrap, 3, INPUT_TOPICS[:-1]))
        asyncio.run(create_topics(b.bootstrap, 2, INPUT_TOPICS[-1:]))
        done = subprocess.run(
            [sys.executable, "-m", "livecue.cli", "worker", "--broker", b.url, "--no-create-topics",
             "--metrics-port", "0", "--data-dir", str(tmp_path / "data")],
            capture_output=True, text=True, timeout=60,
        )
    assert done.returncode == 1
    assert "input topics must share one partition count" in done.stderr
    assert "live.orders=2" in done.stderr
