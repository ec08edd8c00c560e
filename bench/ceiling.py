"""The ceiling: a raw aiokafka consumer reading the input topics and ``orjson.loads``-ing every value.

No group, no commits, no state: what any Python consumer of these topics on this host pays before
doing any work. Events/s are timed from the first record to the last; CPU µs/event is this
process's CPU time (``time.process_time``: every thread) over the same interval.
"""

from __future__ import annotations

import time
from typing import Any

import orjson
from aiokafka import AIOKafkaConsumer, TopicPartition

from schemas.events import INPUT_TOPICS

from .common import partitions_of, progress

__all__ = ["raw_ceiling", "median_read"]


async def raw_ceiling(bootstrap: str, n: int, timeout_s: float = 120.0) -> dict[str, Any]:
    """Consume and decode the ``n`` input events from the beginning; events/s and CPU µs/event."""
    c = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False, fetch_max_wait_ms=20,
                         max_partition_fetch_bytes=4 * 1024 * 1024, fetch_max_bytes=64 * 1024 * 1024)
    await c.start()
    try:
        tps = await partitions_of(bootstrap, INPUT_TOPICS)
        c.assign(tps)
        await c.seek_to_beginning(*tps)
        got = 0
        t0 = c0 = 0.0
        first = 0
        deadline = time.monotonic() + timeout_s
        while got < n and time.monotonic() < deadline:
            batch = await c.getmany(timeout_ms=100, max_records=20000)
            for msgs in batch.values():
                for m in msgs:
                    orjson.loads(m.value)
                if msgs and not t0:
                    # the clock starts once the first fetch is in hand (like the worker's first progress)
                    t0, c0, first = time.perf_counter(), time.process_time(), len(msgs)
                got += len(msgs)
        wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    finally:
        await c.stop()
    counted = got - first
    if got < n or counted <= 0:
        raise RuntimeError(f"ceiling consumer read {got} of {n} events in {timeout_s:.0f} s")
    progress(f"ceiling: {got:,} events in {wall:.2f} s")
    return {"eps": counted / wall, "cpu_us_per_event": cpu * 1e6 / counted, "events": got}


def median_read(reads: list[dict[str, Any]]) -> dict[str, Any]:
    """The read with the median events/s (the upper one of an even count), with every read's
    events/s as ``reads_eps`` in the order they ran."""
    if not reads:
        raise ValueError("no ceiling reads")
    out = dict(sorted(reads, key=lambda r: r["eps"])[len(reads) // 2])
    out["reads_eps"] = [round(r["eps"], 1) for r in reads]
    return out
