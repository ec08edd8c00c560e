"""An event the core rejects after the merge (too far behind its room's event time) goes to
the dead letters as the record it came from: its own topic, partition and offset, and its exact
value bytes. The merge queues each record as one flat tuple; this holds its fields to the
record they describe."""

from __future__ import annotations

import orjson

from livecue.recording import record_of
from livecue.sim.show import generate
from stream.playbook import default_playbook
from stream.processor import Processor

PB = default_playbook()
PARTITION = 3


class Fetched:
    def __init__(self, offset: int, key: bytes, value: bytes) -> None:
        self.offset, self.key, self.value = offset, key, value


def test_a_rejected_event_is_dead_lettered_as_its_own_record() -> None:
    events = generate(5, ["r1"], "mixed", duration=120.0, rate=5.0)
    by_topic: dict[str, list[Fetched]] = {}
    for e in events:
        rec = record_of(e)
        lst = by_topic.setdefault(rec.topic, [])
        lst.append(Fetched(len(lst), rec.key_bytes or b"", rec.value))
    last_ts = max(e.ts for e in events)
    assert {"live.room", "live.chat", "live.likes"} <= set(by_topic)  # the show has them
    # two records dated 20 minutes before the room's latest event, on two topics, at the end
    # of their topic-partitions; the whitespace makes their bytes unlike any re-encoding
    late = {
        "live.likes": b'{"type": "like", "event_id": "late-like", "room_id": "r1", "ts": %d, "count": 2}',
        "live.chat": b'{"type":"chat", "event_id":"late-chat", "room_id":"r1", "ts":%d, "user_id":"u9", "text":"hi"}',
    }
    want = {}
    for topic, template in late.items():
        value = template % (last_ts - 1_200_000)
        offset = len(by_topic[topic])
        by_topic[topic].append(Fetched(offset, b"r1", value))
        want[topic] = (offset, value)
    wall = last_ts + 1_000
    proc = Processor(lambda r: PB, lambda r: None, max_idle_ms=10**12, grace_ms=0)
    # the late records come last in their topics, after the show's records in time order
    for topic, recs in by_topic.items():
        assert proc.ingest_batch(topic, PARTITION, recs, f"h-{topic}", wall, 0.0, wall) == []
    for topic in ("live.room", "live.viewers", "live.chat", "live.likes", "live.cart", "live.orders"):
        proc.mark_caught_up(topic, PARTITION, wall)
    out = proc.release(wall, wall)
    assert proc.pending() == 0
    got = {dl.topic: dl for dl in out.deadletters}
    assert set(got) == set(late), out.deadletters
    for topic, (offset, value) in want.items():
        dl = got[topic]
        assert (dl.partition, dl.offset, dl.key) == (PARTITION, offset, "r1")
        assert dl.raw() == value and not dl.raw_truncated
        assert dl.reason == "ts: too far behind the room's event time"
    # every record's batch handle comes back to be acked, the rejected ones' too
    handles = proc.flush(0.0).acks
    assert sorted(set(handles)) == sorted(f"h-{t}" for t in by_topic)
    assert len(handles) == sum(len(v) for v in by_topic.values())
    assert orjson.loads(got["live.likes"].raw())["event_id"] == "late-like"
