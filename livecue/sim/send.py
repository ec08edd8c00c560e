"""Sending records to Kafka paced by their event times, with a progress line.

Shared by ``livecue simulate``, ``livecue replay`` and ``livecue demo``. Pacing maps event time
to wall time: a record whose ``ts`` is ``d`` ms after the first one is sent ``d / speed`` ms
after the start (``speed=None``: as fast as possible). Order is the caller's: records are sent
one after another, so each (topic, key)'s order is kept.
"""

from __future__ import annotations

import asyncio
import sys
import time
from collections import Counter
from collections.abc import AsyncIterator, Iterable
from datetime import UTC, datetime
from typing import IO, Any

import orjson
from aiokafka import AIOKafkaProducer

from livecue.recording import Record

__all__ = ["Progress", "send_paced", "event_ts", "pace_order", "parse_speed", "parse_start"]


def parse_speed(text: str) -> float | None:
    """``max`` → None (no pacing); otherwise a positive number (1 = real time)."""
    if text.strip().lower() == "max":
        return None
    v = float(text)
    if not v > 0:
        raise ValueError("speed must be positive or 'max'")
    return v


def parse_start(text: str, now_ms: int | None = None) -> int:
    """``now``, epoch milliseconds, or an ISO 8601 time (UTC when it has no offset) → epoch ms."""
    t = text.strip()
    if t == "now":
        return now_ms if now_ms is not None else int(time.time() * 1000)
    if t.isdigit():
        return int(t)
    dt = datetime.fromisoformat(t.replace("Z", "+00:00"))
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    return int(dt.timestamp() * 1000)


def event_ts(value: bytes) -> int | None:
    """The ``ts`` of an encoded event, or None when the value has no integer ts."""
    try:
        obj = orjson.loads(value)
    except orjson.JSONDecodeError:
        return None
    ts = obj.get("ts") if type(obj) is dict else None
    return ts if type(ts) is int else None


def pace_order(records: Iterable[Record]) -> list[tuple[int | None, Record]]:
    """Records with their pacing time, ordered by it without reordering any (topic, key).

    A record's pacing time is the running maximum of ``ts`` within its (topic, key), so it never
    decreases along one (topic, key); a stable sort on it then merges the streams by event time
    while keeping each one's order exactly (an out-of-order event stays where it was). A record
    without a readable ts takes the pacing time of the record before it in the file.
    """
    last: dict[tuple[str, str | None], int] = {}
    prev: int | None = None
    out: list[tuple[int | None, int, Record]] = []
    for i, rec in enumerate(records):
        k = (rec.topic, rec.key)
        ts = event_ts(rec.value)
        p = max(ts, last.get(k, ts)) if ts is not None else last.get(k, prev)
        if p is not None:
            last[k] = p
            prev = p
        out.append((p, i, rec))
    first = next((p for p, _, _ in out if p is not None), 0)
    out.sort(key=lambda x: (first if x[0] is None else x[0], x[1]))
    return [(p, rec) for p, _, rec in out]


class Progress:
    """A progress line on stderr: events sent, rate, elapsed (and show time when paced)."""

    def __init__(self, label: str = "sent", stream: IO[str] | None = None, every_s: float | None = None) -> None:
        self.stream = stream if stream is not None else sys.stderr
        self.tty = bool(getattr(self.stream, "isatty", lambda: False)())
        self.every_s = every_s if every_s is not None else (0.5 if self.tty else 5.0)
        self.label = label
        self.t0 = time.monotonic()
        self.last = self.t0
        self.count = 0
        self.show_ms = 0

    def update(self, n: int = 1, show_ms: int | None = None) -> None:
        self.count += n
        if show_ms is not None:
            self.show_ms = show_ms
        now = time.monotonic()
        if now - self.last >= self.every_s:
            self.last = now
            self._write(now, final=False)

    def _write(self, now: float, final: bool) -> None:
        el = max(now - self.t0, 1e-9)
        s = self.show_ms // 1000
        line = (f"{self.label} {self.count:,} events  {self.count / el:,.0f}/s  "
                f"elapsed {el:,.1f}s  show time {s // 3600:02d}:{s // 60 % 60:02d}:{s % 60:02d}")
        if self.tty:
            self.stream.write("\r" + line + ("\n" if final else ""))
        else:
            self.stream.write(line + "\n")
        self.stream.flush()

    def note(self, line: str) -> None:
        """Print a line of its own (e.g. a cue) above the progress line."""
        self.stream.write(("\r\x1b[K" if self.tty else "") + line + "\n")
        self.stream.flush()
        if self.tty:
            self._write(time.monotonic(), final=False)

    def done(self) -> None:
        self._write(time.monotonic(), final=True)


async def send_paced(
    items: Iterable[tuple[int | None, Record]] | AsyncIterator[tuple[int | None, Record]],
    bootstrap: str,
    *,
    linger_ms: int,
    speed: float | None,
    progress: Progress | None = None,
    stop: asyncio.Event | None = None,
    producer_options: dict[str, Any] | None = None,
) -> Counter[str]:
    """Send ``(pace_ts, record)`` items in order; return the count sent per topic.

    Returns early (after flushing what was sent) when ``stop`` is set. Raises on a send error.
    """
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=linger_ms, **(producer_options or {}))
    await producer.start()
    counts: Counter[str] = Counter()
    pending: list[asyncio.Future[Any]] = []
    first: int | None = None
    w0 = time.monotonic()
    try:
        async for pace_ts, rec in _aiter(items):
            if stop is not None and stop.is_set():
                break
            if pace_ts is not None:
                if first is None:
                    first, w0 = pace_ts, time.monotonic()
                if speed is not None:
                    delay = w0 + (pace_ts - first) / 1000 / speed - time.monotonic()
                    if delay > 0.002:
                        if stop is not None:
                            try:
                                await asyncio.wait_for(stop.wait(), delay)
                                break
                            except TimeoutError:
                                pass
                        else:
                            await asyncio.sleep(delay)
            pending.append(await producer.send(rec.topic, rec.value, key=rec.key_bytes))
            counts[rec.topic] += 1
            if len(pending) >= 2000:
                await asyncio.gather(*pending)
                pending.clear()
            if progress is not None:
                progress.update(1, None if pace_ts is None or first is None else pace_ts - first)
        await producer.flush()
        await asyncio.gather(*pending)
    finally:
        await producer.stop()
        if progress is not None:
            progress.done()
    return counts


async def _aiter(items: Any) -> AsyncIterator[Any]:
    if hasattr(items, "__aiter__"):
        async for x in items:
            yield x
    else:
        for i, x in enumerate(items):
            if i % 500 == 499:
                await asyncio.sleep(0)  # let the producer's sender run at max speed
            yield x
