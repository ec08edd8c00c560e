"""The worker on the real broker: cues from a librdkafka-produced show, dead letters one for one,
catch-up == paced, and kill -9 mid-show with nothing lost."""

from __future__ import annotations

import asyncio
import base64
import time
from collections.abc import Iterator
from pathlib import Path

import orjson
import pytest

from livecue.broker import EmbeddedBroker, create_topics
from livecue.config import Settings
from livecue.recording import Record
from livecue.sim.show import generate
from stream.core import dump_state
from stream.processor import decode_room_value

from harness import (
    WorkerProc, collect, fresh_broker, metric_value, produce, recompute, records_of, start_worker,
)

pytestmark = pytest.mark.slow


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[EmbeddedBroker]:
    """A broker of its own for each worker test: a fresh consumer group then reads only this
    test's show, not every earlier test's traffic on the session broker."""
    with fresh_broker(tmp_path) as b:
        yield b


def _show(uid: str, rooms: int = 2, duration: float = 240.0, scenario: str = "mixed", seed: int = 7) -> tuple[list[Record], list[str]]:
    ids = [f"w{uid}-{i}" for i in range(rooms)]
    return records_of(generate(seed, ids, scenario, duration=duration, rate=25.0)), ids


def _expected_ids(records: list[Record], rooms: list[str]) -> set[str]:
    ids = set()
    for r in rooms:
        ids |= {c.cue_id for c in recompute(records, r).cues}
    return ids


async def _cues(broker: EmbeddedBroker, rooms: list[str], want: set[str], timeout: float) -> list[dict]:
    rs = set(rooms)
    return await collect(
        broker.bootstrap, "live.cues", lambda v: v.get("room_id") in rs,
        lambda got: want <= {c["cue_id"] for c in got}, timeout,
    )


async def test_show_from_librdkafka_producer_yields_expected_cues(
    broker: EmbeddedBroker, test_settings: Settings, tmp_path: Path, uid: str
) -> None:
    records, rooms = _show(uid)
    expected = _expected_ids(records, rooms)
    assert len(expected) >= 3, "the mixed show should fire several cues"
    w = start_worker(test_settings, tmp_path / "worker.log", "w1")
    try:
        produce(broker.bootstrap, records)
        got = await _cues(broker, rooms, expected, timeout=90)
        got_ids = {c["cue_id"] for c in got}
        assert got_ids == expected, _explain(records, rooms, got_ids, w)
        for c in got:
            assert c["type"] == "cue" and len(c["headline"]) <= 60 and c["emitted_at"] > 0
        # room_stats are screen refreshes: at most one a second per room, always the newest, so
        # each room's last snapshot is the core's last snapshot of the show.
        last_ts = {r: recompute(records, r).stats[-1].ts for r in rooms}
        stats = await collect(broker.bootstrap, "live.room_stats", lambda v: v.get("room_id") in rooms,
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
    broker: EmbeddedBroker, test_settings: Settings, tmp_path: Path, uid: str
) -> None:
    room = f"dl{uid}"
    bad = [(v.replace(b"ROOM", room.encode()), reason) for v, reason in BAD]
    # an order for a SKU the session does not have: valid JSON, impossible in context
    good = records_of(generate(3, [room], "mixed", duration=20.0, rate=10.0))
    unknown_sku = orjson.dumps({
        "type": "order", "event_id": f"x{uid}", "room_id": room, "ts": orjson.loads(good[-1].value)["ts"],
        "order_id": "o-x", "user_id": "u", "sku_id": "NO-SUCH-SKU", "qty": 1, "amount_cents": 100,
        "status": "created",
    })
    w = start_worker(test_settings, tmp_path / "worker.log", "w1")
    try:
        produce(broker.bootstrap, good)
        produce(broker.bootstrap, [("live.likes", room.encode(), v) for v, _ in bad]
                + [("live.orders", room.encode(), unknown_sku)])
        got = await collect(broker.bootstrap, "live.deadletter", lambda v: v.get("key") == room,
                            lambda got: len(got) >= len(bad) + 1, timeout=60)
        assert len(got) == len(bad) + 1, w.log_tail()
        by_raw = {base64.b64decode(g["raw_b64"]): g for g in got}
        for value, reason in bad:
            dl = by_raw[value]
            assert dl["topic"] == "live.likes" and dl["reason"].startswith(reason)
            assert isinstance(dl["partition"], int) and isinstance(dl["offset"], int)
        assert "unknown" in by_raw[unknown_sku]["reason"].lower() or "sku" in by_raw[unknown_sku]["reason"].lower()
        assert len(by_raw) == len(bad) + 1  # one dead letter per bad record, none twice
        assert metric_value(w.metrics(), "livecue_deadletters_total") >= len(bad) + 1
        assert w.proc.poll() is None  # still running
    finally:
        w.stop()


async def test_all_at_once_and_paced_give_identical_cue_ids(
    broker: EmbeddedBroker, test_settings: Settings, tmp_path: Path, uid: str
) -> None:
    records, rooms = _show(uid, rooms=1, duration=180.0)
    expected = _expected_ids(records, rooms)
    assert expected
    # 1) a live worker while the show is produced paced (~20x real time)
    live = start_worker(test_settings.replace(app_id=test_settings.app_id + "-paced"),
                        tmp_path / "paced.log", "paced")
    try:
        t0 = orjson.loads(records[0].value)["ts"]
        start = time.monotonic()

        def pace(rec: Record) -> None:
            due = (orjson.loads(rec.value)["ts"] - t0) / 1000.0 / 20.0
            delay = start + due - time.monotonic()
            if delay > 0:
                time.sleep(delay)

        await asyncio.to_thread(produce, broker.bootstrap, records, pace)
        paced = await _cues(broker, rooms, expected, timeout=60)
    finally:
        live.stop()
    paced_ids = {c["cue_id"] for c in paced}
    boundary = int(time.time() * 1000)
    # 2) a fresh group catching up the whole backlog at once
    catchup = start_worker(test_settings.replace(app_id=test_settings.app_id + "-catchup"),
                           tmp_path / "catchup.log", "catchup")
    try:
        got = await collect(broker.bootstrap, "live.cues",
                            lambda v: v.get("room_id") in rooms and v.get("emitted_at", 0) >= boundary,
                            lambda got: expected <= {c["cue_id"] for c in got}, timeout=90)
    finally:
        catchup.stop()
    caught_ids = {c["cue_id"] for c in got}
    assert paced_ids == expected, live.log_tail()
    assert caught_ids == expected, catchup.log_tail()


async def test_kill9_mid_show_loses_nothing_and_state_equals_recomputation(
    broker: EmbeddedBroker, test_settings: Settings, tmp_path: Path, uid: str
) -> None:
    records, rooms = _show(uid, rooms=2, duration=240.0)
    expected = _expected_ids(records, rooms)
    half = len(records) // 2
    w1: WorkerProc = start_worker(test_settings, tmp_path / "w1.log", "w1")
    try:
        produce(broker.bootstrap, records[:half])
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
    produce(broker.bootstrap, records[half:])
    t_restart = time.monotonic()
    w2 = start_worker(test_settings, tmp_path / "w2.log", "w2")
    try:
        got = await _cues(broker, rooms, expected, timeout=120)
        got_ids = {c["cue_id"] for c in got}
        assert expected <= got_ids, w2.log_tail()
        assert got_ids <= expected  # duplicates only ever repeat an expected id
        print(f"restart to all cues: {time.monotonic() - t_restart:.1f}s")
        # the restored + continued state equals a recomputation from the input
        changelog = f"{test_settings.app_id}-room_state-changelog"
        want = {r: dump_state(recompute(records, r).state) for r in rooms}
        last: dict[str, bytes] = {}
        for _ in range(40):
            last = await _changelog_last(broker, changelog, rooms)
            if all(last.get(r) is not None and dump_state(decode_room_value(last[r])[1]) == want[r] for r in rooms):
                break
            await asyncio.sleep(0.5)
        for r in rooms:
            assert r in last, f"no state for {r} in {changelog}"
            assert dump_state(decode_room_value(last[r])[1]) == want[r]
    finally:
        w2.stop()


async def _changelog_last(broker: EmbeddedBroker, topic: str, rooms: list[str]) -> dict[str, bytes]:
    from aiokafka import AIOKafkaConsumer, TopicPartition

    c = AIOKafkaConsumer(bootstrap_servers=broker.bootstrap, enable_auto_commit=False, fetch_max_wait_ms=50)
    await c.start()
    try:
        parts = c.partitions_for_topic(topic) or set()
        tps = [TopicPartition(topic, p) for p in sorted(parts)]
        c.assign(tps)
        await c.seek_to_beginning(*tps)
        ends = await c.end_offsets(tps)
        last: dict[str, bytes] = {}
        async def behind() -> bool:
            for tp in tps:
                if await c.position(tp) < ends[tp]:
                    return True
            return False

        while await behind():
            batch = await c.getmany(timeout_ms=300)
            for msgs in batch.values():
                for m in msgs:
                    k = m.key.decode() if m.key else ""
                    if k in rooms and m.value is not None:
                        last[k] = m.value
        return last
    finally:
        await c.stop()


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
