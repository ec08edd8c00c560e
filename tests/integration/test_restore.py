"""A restarted worker restores exactly the room states last written, on Tansu too.

Tansu answers ListOffsets (latest) with the base offset of a partition's last record batch, not
its end; a flush writes many rooms' states in one batch. Faust's recovery reads a changelog up to
that end, so without the worker's fix it stops short of the last flush, and a restarted worker
resumes from the committed offset with older room states: records between are never re-applied.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from pathlib import Path

import orjson
import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition

from livecue.broker import EmbeddedBroker
from livecue.config import Settings
from livecue.recording import Record
from livecue.sim.show import generate
from stream.core import dump_state
from stream.processor import decode_room_value

from harness import WorkerProc, fresh_broker, produce, recompute, records_of, start_worker

pytestmark = pytest.mark.slow

ROOMS = 12


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[EmbeddedBroker]:
    with fresh_broker(tmp_path, partitions=1) as b:  # one changelog partition: one batch per flush
        yield b


async def read_to_end(bootstrap: str, topic: str) -> tuple[dict[str, bytes], int, int]:
    """Last value per key, read up to the *fetch* high watermark; and (ListOffsets end, fetch
    high watermark) of partition 0."""
    c = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False, fetch_max_wait_ms=50)
    await c.start()
    try:
        tp = TopicPartition(topic, 0)
        c.assign([tp])
        await c.seek_to_beginning(tp)
        listed = (await c.end_offsets([tp]))[tp]
        last: dict[str, bytes] = {}
        while True:
            batch = await c.getmany(tp, timeout_ms=300)
            for m in batch.get(tp, []):
                if m.key is not None and m.value is not None:
                    last[m.key.decode()] = m.value
            hw = c.highwater(tp)
            if hw is not None and await c.position(tp) >= hw:
                return last, listed, hw
    finally:
        await c.stop()


async def committed(bootstrap: str, group: str, topics: list[str]) -> dict[str, int | None]:
    c = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=group, enable_auto_commit=False)
    await c.start()
    try:
        return {t: await c.committed(TopicPartition(t, 0)) for t in topics}
    finally:
        await c.stop()


async def _wait_committed(broker: EmbeddedBroker, group: str, records: list[Record]) -> None:
    ends = {t: sum(1 for r in records if r.topic == t) for t in {r.topic for r in records}}
    got: dict[str, int | None] = {}
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        got = await committed(broker.bootstrap, group, list(ends))
        if got == ends:
            return
        await asyncio.sleep(0.3)
    raise AssertionError(f"precondition: every input record committed ({got} vs {ends})")


def _likes(rooms: list[str], ts: int, uid: str) -> list[tuple[str, bytes, bytes]]:
    return [("live.likes", r.encode(), orjson.dumps({"type": "like", "event_id": f"l{uid}{i}",
                                                     "room_id": r, "ts": ts, "count": 7}))
            for i, r in enumerate(rooms)]


async def test_restart_restores_the_last_flush_even_when_it_shares_a_batch(
    broker: EmbeddedBroker, test_settings: Settings, tmp_path: Path, uid: str
) -> None:
    rooms = [f"rs{uid}-{i}" for i in range(ROOMS)]
    events = sorted(generate(4, rooms, "mixed", duration=30.0, rate=5.0), key=lambda e: e.ts)
    records = records_of(events)
    changelog = f"{test_settings.app_id}-room_state-changelog"
    settings = test_settings.replace(partitions=1)
    w1: WorkerProc = start_worker(settings, tmp_path / "w1.log", "w1")
    likes1 = _likes(rooms, events[-1].ts, uid + "a")
    try:
        produce(broker.bootstrap, records)
        await _wait_committed(broker, settings.app_id, records)
        before, _l, hw_before = await read_to_end(broker.bootstrap, changelog)
        # one like per room, produced together: one release, one flush, one changelog batch
        produce(broker.bootstrap, likes1)
        await _wait_committed(broker, settings.app_id, records + [Record(t, k.decode(), v) for t, k, v in likes1])
        last, listed, hw = await read_to_end(broker.bootstrap, changelog)
        assert set(last) == set(rooms), "precondition: every room's state was written"
        assert all(last[r] != before.get(r) for r in rooms), "precondition: the likes changed every room"
        assert hw - hw_before == ROOMS, "precondition: the likes' flush wrote each room once"
        assert listed < hw, f"precondition: ListOffsets ({listed}) short of the end ({hw}), as on Tansu"
        w1.kill9()
    finally:
        w1.stop()
    # restart, then one more event per room: applied on top of the restored state
    likes = _likes(rooms, events[-1].ts, uid + "b")
    w2 = start_worker(settings, tmp_path / "w2.log", "w2")
    try:
        produce(broker.bootstrap, likes)
        all_records = records + [Record(t, k.decode(), v) for t, k, v in likes1 + likes]
        want = {r: dump_state(recompute(all_records, r).state) for r in rooms}
        deadline = time.monotonic() + 90
        states: dict[str, bytes] = {}
        while time.monotonic() < deadline:
            last, _listed, _hw = await read_to_end(broker.bootstrap, changelog)
            states = {r: dump_state(decode_room_value(last[r])[1]) for r in rooms if r in last}
            if states == want:
                break
            await asyncio.sleep(0.5)
        wrong = [r for r in rooms if states.get(r) != want[r]]
        assert not wrong, f"{len(wrong)} rooms restored wrong, e.g. {wrong[:3]}\n{w2.log_tail()}"
    finally:
        w2.stop()


async def test_recovery_end_offsets_come_from_the_fetch_high_watermark(
    broker: EmbeddedBroker, test_settings: Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The mechanism itself, deterministically: the worker's consumer confirms each changelog
    partition's ListOffsets end by a fetch, and recovery gets the larger (the true end)."""
    from aiokafka import AIOKafkaProducer
    from faust.transport.drivers import aiokafka as faust_aiokafka
    from faust.types import TP

    from stream.app import create_app

    settings = test_settings.replace(partitions=1, data_dir=tmp_path / "data")
    worker = create_app(settings)
    changelog = worker.changelog_topic
    p = AIOKafkaProducer(bootstrap_servers=broker.bootstrap, linger_ms=50)
    await p.start()
    try:
        await p.send_and_wait(changelog, b"v0", key=b"k0", partition=0)
        futs = [await p.send(changelog, f"v{i}".encode(), key=f"k{i}".encode(), partition=0) for i in range(1, 9)]
        await asyncio.gather(*futs)  # eight records lingered into one batch
    finally:
        await p.stop()
    _last, listed, hw = await read_to_end(broker.bootstrap, changelog)
    assert hw == 9 and listed < hw, f"precondition: ListOffsets {listed} short of the end {hw}"

    async def listoffsets(self: object, *partitions: TP) -> dict[TP, int]:
        return {tp: listed for tp in partitions}  # what Faust's own highwaters() reports here

    monkeypatch.setattr(faust_aiokafka.Consumer, "highwaters", listoffsets)
    consumer = worker.app.batch_consumer()
    tp = TP(changelog, 0)
    other = TP("live.chat", 0)
    got = await consumer.highwaters(tp, other)
    assert got[tp] == hw  # the changelog's true end
    assert got[other] == listed  # input partitions are not recovered: left as reported
