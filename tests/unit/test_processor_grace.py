"""The worker's merge waits for quiet topics until an event is ready: the grace counted from when
the worker received its batch, whatever the producer stamped. A producer can hold a record for
long before it reaches the broker (metadata at its start, retries through a leader election):
counted from the stamp, such a record was ready at once and went past earlier records of other
topics still on their way."""

from __future__ import annotations

import orjson

from stream.playbook import default_playbook
from stream.processor import Processor

PB = default_playbook()
T0 = 1_800_000_000_000  # wall ms: event times must be plausible dates
TOPICS = ("live.room", "live.viewers", "live.chat", "live.likes", "live.cart", "live.orders")


class Fetched:
    """A fetched record as the worker's consumer hands it over (aiokafka's parsed record)."""

    def __init__(self, offset: int, value: bytes, timestamp: int) -> None:
        self.offset, self.key, self.value, self.timestamp = offset, b"r1", value, timestamp


class Bare:
    """A record without a producer stamp."""

    def __init__(self, offset: int, value: bytes) -> None:
        self.offset, self.key, self.value = offset, b"r1", value


def _like(i: int, ts: int) -> bytes:
    return orjson.dumps({"type": "like", "event_id": f"e{i}", "room_id": "r1", "ts": T0 + ts, "count": 1})


def _ingest(proc: Processor, records: list[object], now_ms: int) -> None:
    assert proc.ingest_batch("live.likes", 0, records, None, T0 + now_ms, 0.0, T0 + now_ms) == []


def _released_after_polls_at(proc: Processor, poll_ms: int, now_ms: int) -> int:
    for t in TOPICS:
        if t != "live.likes":
            proc.mark_caught_up(t, 0, T0 + poll_ms)
    before = proc.pending()
    proc.release(T0 + now_ms, T0 + now_ms)
    return before - proc.pending()


def test_a_record_stamped_long_before_it_arrived_still_waits_the_grace_from_its_arrival() -> None:
    proc = Processor(lambda r: PB, lambda r: None, 10**12, grace_ms=50)
    # produced at 100 and 900, held by their producer, arrived at 1000: ready at 1050
    _ingest(proc, [Fetched(0, _like(0, 100), T0 + 100), Fetched(1, _like(1, 900), T0 + 900)], 1000)
    assert proc.pending() == 2
    assert _released_after_polls_at(proc, 1000, 1000) == 0  # caught up at arrival: not enough
    assert _released_after_polls_at(proc, 1049, 1049) == 0  # not ready yet
    assert _released_after_polls_at(proc, 1049, 1060) == 0  # ready, but no poll since
    assert _released_after_polls_at(proc, 1050, 1060) == 2


def test_records_without_a_stamp_count_the_grace_from_their_arrival() -> None:
    proc = Processor(lambda r: PB, lambda r: None, 10**12, grace_ms=50)
    _ingest(proc, [Bare(0, _like(0, 900))], 1000)
    assert _released_after_polls_at(proc, 1049, 1049) == 0
    assert _released_after_polls_at(proc, 1050, 1050) == 1
