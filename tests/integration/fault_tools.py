"""Tools for the load-and-fault tests and scripts (scale out/in, soak, changelog restore).

- :func:`steady_show`: a seeded show whose rate stays roughly flat over a long run (rooms in
  cohorts whose shows start a fraction of a show apart, so one cohort's hot opening overlaps
  another's quiet end), stamped from a given start time so event time follows the wall clock.
- :class:`PacedProducer`: sends ``(offset_s, Record)`` pairs at their wall-clock offsets from a
  thread (librdkafka), counting what it sent.
- :class:`Observer`: samples, on any Kafka-compatible broker, the group's committed offsets
  (OffsetFetch) against each input partition's end, where the end is the *fetch* high watermark
  of a consumer reading the input topics (Tansu's ListOffsets(latest) answers the last batch's
  base offset, not the end); and notes when each output record (live.cues, live.room_stats)
  arrives. From the samples: the largest stall of committed progress, the largest gap in
  output, and when the lag came back to normal after a moment of interest.
- :func:`rss_bytes`: a process's resident set size, from ``/proc``.

Used by ``test_scale.py``, ``test_soak.py``, ``test_changelog_restore.py`` and the scripts
``scripts/soak.py`` / ``scripts/restore_bench.py``.
"""

from __future__ import annotations

import asyncio
import heapq
import threading
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
from aiokafka import AIOKafkaConsumer, TopicPartition
from confluent_kafka import Producer

from livecue.config import Settings, load_settings
from livecue.recording import Record, record_of
from livecue.sim.show import generate
from schemas.events import INPUT_TOPICS

from harness import EXACT_GRACE_MS, GatewayProc, start_gateway  # noqa: F401 - re-exported

__all__ = ["EXACT_GRACE_MS", "INPUTS", "GatewayProc", "Observer", "PacedProducer", "Sample", "rss_bytes", "screen_counter",
           "start_gateway", "steady_show", "tansu_settings"]

REPO = Path(__file__).resolve().parents[2]

INPUTS: tuple[str, ...] = tuple(INPUT_TOPICS)


def tansu_settings(url: str, tmp_path: Path, uid: str, **env: str) -> Settings:
    """Worker/gateway settings on a Tansu broker of the caller's own: own group and data dir; Tansu
    forms a group only after the rebalance timeout, so that is short (3 s), session to match."""
    base = {
        "LIVECUE_BROKER": url, "LIVECUE_APP_ID": f"livecue-faults-{uid}",
        "LIVECUE_DATA_DIR": str(tmp_path / "data"), "LIVECUE_METRICS_PORT": "0",
        "LIVECUE_GATEWAY_PORT": "0", "LIVECUE_REBALANCE_TIMEOUT_S": "3",
        "LIVECUE_SESSION_TIMEOUT_S": "6", "LIVECUE_HEARTBEAT_INTERVAL_S": "0.5",
        "LIVECUE_COMMIT_INTERVAL_S": "0.2", "LIVECUE_TOKEN_SECRET": "faults-secret-" + uid * 4,
        "LIVECUE_LOG_FORMAT": "text",
    }
    base.update(env)
    return load_settings(base)


def rss_bytes(pid: int) -> int:
    """Resident set size of ``pid`` (bytes), 0 when the process is gone."""
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def _cohort_shows(seed: int, rooms: list[str], start_ms: int, show_s: float, rate: float,
                  until_ms: int) -> Iterator[tuple[int, Record]]:
    """One cohort's shows back to back (next seed each, 2 s apart) until ``until_ms``."""
    t = start_ms
    while t < until_ms:
        for ev in generate(seed, rooms, "mixed", start_ts=t, duration=show_s, rate=rate):
            if ev.ts >= until_ms:
                return
            yield ev.ts, record_of(ev)
        seed += 1
        t += int(show_s * 1000) + 2000


def steady_show(prefix: str, rooms: int, seconds: float, per_room_rate: float, start_ms: int,
                cohorts: int = 4, show_s: float = 240.0, seed: int = 5) -> Iterator[tuple[float, Record]]:
    """``(send offset s, record)`` for ``seconds`` of shows in ``rooms`` rooms (ids
    ``{prefix}{i}``), about ``per_room_rate`` events a room a second, generated lazily. Cohort
    ``j`` starts ``j * show_s / cohorts`` seconds late (the first seconds are then quieter);
    the send offset is the record's event time minus ``start_ms``."""
    ids = [f"{prefix}{i}" for i in range(rooms)]
    until = start_ms + int(seconds * 1000)
    rate = per_room_rate * 0.63  # the generator's mixed show gives ~1.6x its rate on average
    streams = []
    for j in range(cohorts):
        members = ids[j::cohorts]
        if members:
            off = int(j * show_s / cohorts * 1000)
            streams.append(_cohort_shows(seed + 1000 * j, members, start_ms + off, show_s, rate, until))
    for ts, rec in heapq.merge(*streams, key=lambda x: x[0]):
        yield (ts - start_ms) / 1000.0, rec


class PacedProducer:
    """Send ``(offset_s, Record)`` pairs at ``t0 + offset_s`` (wall clock) from a thread."""

    def __init__(self, bootstrap: str, items: Iterable[tuple[float, Record]]) -> None:
        self._items = items
        self._p = Producer({"bootstrap.servers": bootstrap, "linger.ms": 5, "acks": "all",
                            "enable.idempotence": False})
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="paced-producer", daemon=True)
        self.sent = 0
        self.sent_records: list[Record] = []
        self.keep = False
        self.error: BaseException | None = None
        self.t0 = 0.0
        self.done = threading.Event()

    def start(self, keep: bool = False) -> PacedProducer:
        self.keep = keep
        self.t0 = time.monotonic()
        self._thread.start()
        return self

    def _run(self) -> None:
        try:
            for off, rec in self._items:
                if self._stop.is_set():
                    break
                wait = self.t0 + off - time.monotonic()
                if wait > 0.002:
                    self._p.poll(0)
                    if self._stop.wait(wait):
                        break
                while True:
                    try:
                        self._p.produce(rec.topic, value=rec.value, key=rec.key_bytes)
                        break
                    except BufferError:
                        self._p.poll(0.05)
                self.sent += 1
                if self.keep:
                    self.sent_records.append(rec)
            left = self._p.flush(30)
            if left:
                raise AssertionError(f"{left} records not delivered")
        except BaseException as exc:  # reported by join()
            self.error = exc
        finally:
            self.done.set()

    def stop(self) -> None:
        self._stop.set()

    def join(self, timeout: float = 60.0) -> None:
        self._thread.join(timeout)
        if self._thread.is_alive():
            raise AssertionError("paced producer did not finish")
        if self.error is not None:
            raise AssertionError(f"paced producer failed: {self.error!r}") from self.error


@dataclass
class Sample:
    t: float  # monotonic
    committed: dict[tuple[str, int], int]
    ends: dict[tuple[str, int], int]

    @property
    def committed_total(self) -> int:
        return sum(self.committed.values())

    @property
    def lag(self) -> int:
        return sum(max(0, e - self.committed.get(tp, 0)) for tp, e in self.ends.items())


@dataclass
class Observer:
    """Samples a group's commits against the input ends, and output arrivals (see module doc)."""

    bootstrap: str
    group: str
    partitions: int = 4
    interval_s: float = 0.5
    output_topics: tuple[str, ...] = ("live.cues", "live.room_stats")
    rooms: frozenset[str] | None = None
    samples: list[Sample] = field(default_factory=list)
    cues: list[dict[str, Any]] = field(default_factory=list)
    output_times: list[float] = field(default_factory=list)
    marks: dict[str, float] = field(default_factory=dict)
    _tasks: list[asyncio.Task[None]] = field(default_factory=list)
    _stop: asyncio.Event = field(default_factory=asyncio.Event)

    async def start(self) -> Observer:
        self._in = AIOKafkaConsumer(bootstrap_servers=self.bootstrap, enable_auto_commit=False,
                                    fetch_max_wait_ms=100, max_partition_fetch_bytes=1024)
        self._out = AIOKafkaConsumer(bootstrap_servers=self.bootstrap, enable_auto_commit=False,
                                     fetch_max_wait_ms=100)
        # a consumer with the group's id that never subscribes: it reads commits, never joins
        self._group = AIOKafkaConsumer(bootstrap_servers=self.bootstrap, group_id=self.group,
                                       enable_auto_commit=False)
        await self._in.start()
        await self._out.start()
        await self._group.start()
        self._tps = [TopicPartition(t, p) for t in INPUTS for p in range(self.partitions)]
        self._in.assign(self._tps)
        await self._in.seek_to_end(*self._tps)
        outs = [TopicPartition(t, p) for t in self.output_topics for p in range(self.partitions)]
        self._out.assign(outs)
        await self._out.seek_to_beginning(*outs)
        self._tasks = [asyncio.create_task(self._read_inputs()), asyncio.create_task(self._read_outputs()),
                       asyncio.create_task(self._sample())]
        return self

    def mark(self, name: str) -> None:
        self.marks[name] = time.monotonic()

    async def stop(self) -> None:
        self._stop.set()
        for t in self._tasks:
            t.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        for c in (self._in, self._out, self._group):
            await c.stop()

    async def _read_inputs(self) -> None:
        # Only to learn each partition's fetch high watermark, cheaply: fetch from the last one
        # seen (at most a KiB a partition comes back), then jump to the new one.
        while not self._stop.is_set():
            await self._in.getmany(timeout_ms=300)
            for tp in self._tps:
                hw = self._in.highwater(tp)
                if hw is not None:
                    self._in.seek(tp, hw)
            await asyncio.sleep(0.1)

    async def _read_outputs(self) -> None:
        while not self._stop.is_set():
            batch = await self._out.getmany(timeout_ms=300)
            now = time.monotonic()
            for tp, msgs in batch.items():
                for m in msgs:
                    try:
                        v = orjson.loads(m.value)
                    except orjson.JSONDecodeError:
                        continue
                    if not isinstance(v, dict) or (self.rooms is not None and v.get("room_id") not in self.rooms):
                        continue
                    self.output_times.append(now)
                    if tp.topic == "live.cues":
                        v["_arrived"] = now
                        self.cues.append(v)

    async def committed(self) -> dict[tuple[str, int], int]:
        """The group's committed offset of each input partition (OffsetFetch; Tansu does not
        answer the admin client's ListConsumerGroupOffsets in a form aiokafka decodes)."""
        out = {}
        for tp in self._tps:
            off = await self._group.committed(tp)
            if off is not None and off >= 0:
                out[(tp.topic, tp.partition)] = off
        return out

    def ends(self) -> dict[tuple[str, int], int]:
        out = {}
        for tp in self._tps:
            hw = self._in.highwater(tp)
            out[(tp.topic, tp.partition)] = hw or 0
        return out

    async def _sample(self) -> None:
        while not self._stop.is_set():
            try:
                c = await self.committed()
            except Exception:  # noqa: BLE001 - a failed sample is a missing point, not a failure
                c = None
            if c is not None:
                self.samples.append(Sample(time.monotonic(), c, self.ends()))
            await asyncio.sleep(self.interval_s)

    # --- figures --------------------------------------------------------------------------

    def commit_stall_s(self, start: float, end: float) -> float:
        """Largest time in [start, end] the committed total stood still while there was lag."""
        worst = 0.0
        since: float | None = None
        last_total = -1
        for s in self.samples:
            if s.t < start or s.t > end:
                continue
            if s.committed_total != last_total or s.lag == 0:
                since = s.t
                last_total = s.committed_total
                continue
            if since is not None:
                worst = max(worst, s.t - since)
        return worst

    def output_gap_s(self, start: float, end: float) -> float:
        """Largest gap between two output arrivals (cues or room_stats) in [start, end]."""
        ts = [start] + [t for t in self.output_times if start <= t <= end] + [end]
        return max((b - a for a, b in zip(ts, ts[1:], strict=False)), default=0.0)

    def lag_between(self, start: float, end: float) -> list[int]:
        return [s.lag for s in self.samples if start <= s.t <= end]

    def lag_back_after(self, at: float, normal: int, until: float) -> float | None:
        """Seconds from ``at`` until the lag, past its peak in [at, until], is at or below
        ``normal`` again (0 when it never rose above); None if it is not by ``until``."""
        window = [s for s in self.samples if at <= s.t <= until]
        if not window:
            return None
        peak = max(range(len(window)), key=lambda i: window[i].lag)
        if window[peak].lag <= normal:
            return 0.0
        back = next((s for s in window[peak:] if s.lag <= normal), None)
        return None if back is None else back.t - at


async def screen_counter(ws_url: str, token: str, cue_ids: set[str], stop: asyncio.Event) -> None:
    """A controller screen on ``ws_url`` (a gateway's ``.../ws``): add every cue id it receives to
    ``cue_ids`` until ``stop``; reconnects."""
    from websockets.asyncio.client import connect

    while not stop.is_set():
        try:
            async with connect(ws_url, max_size=None) as ws:
                await ws.send(orjson.dumps({"type": "auth", "token": token}).decode())
                while not stop.is_set():
                    try:
                        m = orjson.loads(await asyncio.wait_for(ws.recv(), 1.0))
                    except TimeoutError:
                        continue
                    if m.get("type") == "cue":
                        cue_ids.add(m["cue_id"])
        except (OSError, Exception):  # noqa: BLE001 - a dropped screen reconnects, as the page does
            await asyncio.sleep(1.0)


async def changelog_states(bootstrap: str, topic: str) -> tuple[dict[str, bytes], int]:
    """Last value per key of a changelog over all its partitions, read to each one's *fetch*
    high watermark (right on Tansu too); and how many records it holds (tombstones included)."""
    c = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False, fetch_max_wait_ms=50,
                         max_partition_fetch_bytes=4 * 1024 * 1024)
    await c.start()
    try:
        await c._client._wait_on_metadata(topic)  # noqa: SLF001 - this client has not seen the topic yet
        tps = [TopicPartition(topic, p) for p in sorted(c.partitions_for_topic(topic) or [])]
        if not tps:
            return {}, 0
        c.assign(tps)
        await c.seek_to_beginning(*tps)
        last: dict[str, bytes] = {}
        n = 0
        while True:
            batch = await c.getmany(*tps, timeout_ms=300, max_records=50_000)
            for msgs in batch.values():
                for m in msgs:
                    n += 1
                    if m.key is None:
                        continue
                    if m.value is None:
                        last.pop(m.key.decode(), None)
                    else:
                        last[m.key.decode()] = m.value
            behind = False
            for tp in tps:
                hw = c.highwater(tp)
                if hw is None or await c.position(tp) < hw:
                    behind = True
            if not behind:
                return last, n
    finally:
        await c.stop()
