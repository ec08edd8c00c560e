"""The worker's room cache stays bounded: junk room ids leave no state, least recently used
rooms leave memory (and come back from the table unchanged), ended sessions leave the table."""

from __future__ import annotations

import time

import orjson

from livecue.recording import record_of
from livecue.sim.show import generate
from stream.core import dump_state, new_state, step_many
from stream.core.align import canonical_order
from stream.playbook import default_playbook
from stream.processor import Processor, decode_room_value

PB = default_playbook()
TOPICS = ("live.room", "live.viewers", "live.chat", "live.likes", "live.cart", "live.orders")


class Raw:
    def __init__(self, offset: int, key: bytes, value: bytes) -> None:
        self.offset, self.key, self.value = offset, key, value


def run(proc: Processor, records: list, table: dict[str, bytes], start: dict[str, int], now: float) -> None:
    by_topic: dict[str, list[Raw]] = {}
    for r in records:
        lst = by_topic.setdefault(r.topic, [])
        lst.append(Raw(start.get(r.topic, 0) + len(lst), r.key_bytes, r.value))
    for t, recs in by_topic.items():
        proc.ingest_batch(t, 0, recs, None, 0, 0.0, int(time.time() * 1000))
        start[t] = start.get(t, 0) + len(recs)
    for t in TOPICS:
        proc.mark_caught_up(t, 0, 0)
    proc.release(int(now * 1000), 0)
    out = proc.flush(now)
    for _p, room, value in out.table_writes:
        table[room] = value
    for _p, room in out.table_deletes:
        table.pop(room, None)


def test_junk_rooms_leave_no_state() -> None:
    table: dict[str, bytes] = {}
    proc = Processor(lambda r: PB, table.get, 10**12, 0)
    now = int(time.time() * 1000)
    recs = [Raw(i, f"junk-{i}".encode(), orjson.dumps({"type": "like", "event_id": f"e{i}",
            "room_id": f"junk-{i}", "ts": now, "count": 1})) for i in range(2000)]
    proc.ingest_batch("live.likes", 0, recs, None, 0, 0.0, now)
    for t in TOPICS:
        proc.mark_caught_up(t, 0, 0)
    out = proc.release(10**13, 0)
    assert out.deadletters == []  # audience events before any session are ignored, not errors
    assert proc.active_rooms() == 2000  # precondition: each was looked at
    flushed = proc.flush(0.0)
    assert flushed.table_writes == [] and proc.active_rooms() == 0


def test_lru_keeps_the_cache_bounded_and_rooms_come_back_from_the_table() -> None:
    rooms = [f"lru-{i}" for i in range(6)]
    events = sorted(generate(3, rooms, "mixed", duration=60.0, rate=4.0), key=lambda e: e.ts)
    records = [record_of(e) for e in events]
    table: dict[str, bytes] = {}
    proc = Processor(lambda r: PB, table.get, 10**12, 0, max_rooms=2)
    start: dict[str, int] = {}
    half = len(records) // 2
    run(proc, records[:half], table, start, 1.0)
    assert proc.active_rooms() == 2 and proc.evicted >= 4
    run(proc, records[half:], table, start, 2.0)
    for room in rooms:
        items = [(r.topic, e.ts, e) for r, e in zip(records, events) if e.room_id == room]
        want = dump_state(step_many(new_state(room), canonical_order(items), PB).state)
        assert dump_state(decode_room_value(table[room])[1]) == want


def test_an_ended_session_leaves_the_table_after_its_retention() -> None:
    rooms = ["end-a"]
    events = sorted(generate(4, rooms, "mixed", duration=30.0, rate=4.0), key=lambda e: e.ts)
    assert events[-1].type == "session_end"
    table: dict[str, bytes] = {}
    proc = Processor(lambda r: PB, table.get, 10**12, 0, ended_retention_s=60.0)
    run(proc, [record_of(e) for e in events], table, {}, 100.0)
    assert "end-a" in table
    assert proc.flush(159.0).table_deletes == []
    assert proc.flush(160.0).table_deletes == [(0, "end-a")]
    assert proc.active_rooms() == 0 and proc.expired == 1


def test_revoke_drops_what_it_must_and_nothing_else() -> None:
    """Revoking partition 0 forgets its queued records and its rooms; partition 1 keeps both."""
    table: dict[str, bytes] = {}
    proc = Processor(lambda r: PB, table.get, 10**12, 0)
    now = int(time.time() * 1000)
    for p, room in ((0, "rv-0"), (1, "rv-1")):
        events = sorted(generate(p + 1, [room], "mixed", duration=20.0, rate=4.0), key=lambda e: e.ts)
        by_topic: dict[str, list[Raw]] = {}
        for e in events:
            r = record_of(e)
            lst = by_topic.setdefault(r.topic, [])
            lst.append(Raw(len(lst), r.key_bytes, r.value))
        for t, recs in by_topic.items():
            proc.ingest_batch(t, p, recs, None, 0, 0.0, now)
        for t in TOPICS:
            proc.mark_caught_up(t, p, 0)
    proc.release(10**13, 0)  # both rooms processed...
    n1 = proc.pending()
    for t in TOPICS:  # ...then more records arrive for both partitions, held back (unread)
        proc.mark_caught_up(t, 0, None)
        proc.mark_caught_up(t, 1, None)
    late = [Raw(10_000, b"rv-0", orjson.dumps({"type": "like", "event_id": "x0", "room_id": "rv-0", "ts": now, "count": 1}))]
    proc.ingest_batch("live.likes", 0, late, None, 0, 0.0, now)
    late1 = [Raw(10_000, b"rv-1", orjson.dumps({"type": "like", "event_id": "x1", "room_id": "rv-1", "ts": now, "count": 1}))]
    proc.ingest_batch("live.likes", 1, late1, None, 0, 0.0, now)
    assert proc.pending() == n1 + 2 and proc.room_state("rv-0") is not None  # precondition
    dropped = proc.revoke({0})
    assert dropped == proc.queued("live.likes", 0) + 1 and proc.queued("live.likes", 0) == 0
    assert proc.room_state("rv-0") is None  # its rooms go: the new owner loads them from the table
    assert proc.room_state("rv-1") is not None and proc.queued("live.likes", 1) >= 1
