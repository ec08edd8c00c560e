"""The worker acks a batch only once the broker acknowledged every output and state write it
caused: a slow or failing changelog send never lets the committable offset pass it.

Runs the real WorkerApp (Faust app built, not started) with a fake producer at the boundary.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import orjson
from faust.types import TP

from livecue.config import load_settings
from stream.app import create_app


class FakeProducer:
    """Records sends; each returns a future the test resolves."""

    def __init__(self) -> None:
        self.sent: list[tuple[str, bytes | None, bytes, int | None, asyncio.Future[Any]]] = []

    async def send(self, topic: str, key: bytes | None, value: bytes, partition: int | None,
                   timestamp: Any, headers: Any) -> asyncio.Future[Any]:
        fut: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self.sent.append((topic, key, value, partition, fut))
        return fut


class Rec:
    def __init__(self, offset: int, key: bytes, value: bytes) -> None:
        self.offset, self.key, self.value = offset, key, value


def _worker(tmp_path: Path) -> Any:
    s = load_settings({"LIVECUE_DATA_DIR": str(tmp_path), "LIVECUE_MAX_TASK_IDLE_MS": "0",
                       "LIVECUE_ALIGN_GRACE_MS": "0"})
    w = create_app(s)
    w.app._producer = FakeProducer()
    return w


def _session(room: str, ts: int) -> bytes:
    return orjson.dumps({"type": "session_start", "event_id": "e1", "room_id": room, "ts": ts,
                         "session_id": "s1", "lineup": [{"sku_id": "a", "name": "A", "role": "hero",
                                                         "price_cents": 100, "stock": 5}]})


async def test_commit_waits_for_the_changelog_write_and_retries_a_failed_one(tmp_path: Path) -> None:
    w = _worker(tmp_path)
    tp = TP("live.room", 0)
    w.on_assigned({tp})
    tracker = w.app.batch_consumer().tracker
    batch = tracker.add(tp, 0, 1, 2)
    import time
    now = int(time.time() * 1000)
    w.on_batch(tp, [Rec(0, b"r1", _session("r1", now)), Rec(1, b"r1", b"not json")], batch)
    await w.pump(force_flush=True)
    producer: FakeProducer = w.app.producer
    kinds = sorted(t for t, *_ in producer.sent if t != "live.room_stats")  # stats: not acked on
    assert kinds == ["live.deadletter", w.changelog_topic]  # precondition: both writes started
    assert tracker.committable(tp) is None
    # the dead letter is acknowledged, the state write is still in flight: nothing committable
    for t, _k, _v, _p, fut in producer.sent:
        if t == "live.deadletter":
            fut.set_result(None)
    await w.pump()
    assert tracker.committable(tp) is None
    # the state write fails: still nothing committable, and it is sent again
    state = [s for s in producer.sent if s[0] == w.changelog_topic]
    state[0][4].set_exception(RuntimeError("broker said no"))
    w._retry_at = 0.0
    await w.pump()
    retried = [s for s in producer.sent if s[0] == w.changelog_topic]
    assert len(retried) == 2 and retried[1][2] == retried[0][2] and retried[1][3] == retried[0][3]
    assert tracker.committable(tp) is None
    retried[1][4].set_result(None)
    await w.pump()
    assert tracker.committable(tp) == 2
    assert w.metrics.registry.get_sample_value("livecue_send_failures_total", {"kind": "state"}) == 1.0


async def test_revoked_partition_is_never_committed_by_late_acks(tmp_path: Path) -> None:
    w = _worker(tmp_path)
    tp = TP("live.room", 1)
    w.on_assigned({tp})
    tracker = w.app.batch_consumer().tracker
    batch = tracker.add(tp, 0, 0, 1)
    import time
    w.on_batch(tp, [Rec(0, b"r2", _session("r2", int(time.time() * 1000)))], batch)
    await w.pump(force_flush=True)
    w.on_revoked({tp})
    tracker.revoke([tp])
    for *_rest, fut in w.app.producer.sent:
        fut.set_result(None)
    await w.pump()
    assert tracker.committable(tp) is None
