"""Event → cue on a screen, and the broker's own floor, measured the same way.

**e2e**: live shows played at real speed in ``rate / 50`` rooms (child :mod:`bench.pace`,
``rate`` events/s in all, each event stamped with the wall clock as it is sent) go through a
running worker and gateway; websocket clients connected as controllers of those rooms note, for every cue it receives, ``now - cue.ts``:
the wall time from the event that fired the cue being sent to the cue reaching the screen.

**floor**: the same paced events go producer → the six input topics → a plain aiokafka
consume-and-forward of their 48 topic-partitions (child, same fetch wait and linger as a worker)
→ topic B → an aiokafka consumer here, which notes ``now - ts`` for every record: what the same
two Kafka hops cost on this host at that rate, with no work. The contract spreads a room's events
over six topics, so any consumer of them fetches 6 × partitions topic-partitions, and the
embedded broker's fetch cost grows with them (``docs/operations.md``). ``floor(...,
one_topic=True)`` is the lighter floor measured before 4 December: everything sent to one topic A
of ``partitions`` partitions and forwarded from there.

p50 / p99 are nearest-rank quantiles in ms. The paced sender is a separate process so that its
CPU does not delay this process's clock readings. Both begin with ``warmup_s`` at the same rate in
rooms of their own, not measured (the same for e2e and floor): on Apache Kafka the producer's
delivery latency was ~470 ms for the first 2-3 s of a run and ~10 ms after (librdkafka's own
figure, 48 topic-partitions at 20,000/s), which is the broker warming up, not the path measured.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import sys
import time
from collections.abc import Callable
from typing import Any

import orjson
from aiokafka import AIOKafkaConsumer, TopicPartition
from websockets.asyncio.client import ClientConnection, connect

from consumers.tokens import MAX_ROOMS, mint
from schemas.events import INPUT_TOPICS

from .common import create_topics_with_configs, hist_quantile, metric_sum, partitions_of, progress, quantile, scrape
from .pace import rooms_for
from .worker import CONSUMED, RELEASED

__all__ = ["e2e", "floor", "FLOOR_A", "FLOOR_B"]

FLOOR_A = "bench.floor.a"
FLOOR_B = "bench.floor.b"


async def _pacer(bootstrap: str, rooms: list[str], rate: float, seconds: float,
                 to_topic: str | None = None, warmup_s: float = 0.0, warmup_prefix: str = "") -> asyncio.subprocess.Process:
    args = [sys.executable, "-m", "bench.pace", "send", "--bootstrap", bootstrap, "--rooms", ",".join(rooms),
            "--rate", str(rate), "--seconds", str(seconds)]
    if to_topic:
        args += ["--to-topic", to_topic]
    if warmup_s > 0:
        args += ["--warmup-seconds", str(warmup_s), "--warmup-rooms", ",".join(rooms_for(rate, warmup_prefix))]
    proc = await asyncio.create_subprocess_exec(*args, stdin=asyncio.subprocess.PIPE,
                                                stdout=asyncio.subprocess.PIPE)
    assert proc.stdout is not None
    line = await asyncio.wait_for(proc.stdout.readline(), 120)
    if line.strip() != b"ready":
        proc.kill()
        raise RuntimeError(f"paced sender did not start: {line!r}")
    return proc


async def _go_and_wait(proc: asyncio.subprocess.Process, on_measuring: Callable[[], None] | None = None) -> dict[str, Any]:
    """Start the paced sender; ``on_measuring`` runs when its warm-up is over."""
    assert proc.stdin is not None and proc.stdout is not None
    proc.stdin.write(b"go\n")
    await proc.stdin.drain()
    line = await proc.stdout.readline()
    if line.strip() != b"measuring":
        raise RuntimeError(f"paced sender failed in its warm-up: {line!r}")
    if on_measuring is not None:
        on_measuring()
    out = await proc.stdout.read()
    await proc.wait()
    lines = [ln for ln in out.decode().splitlines() if ln.startswith("{")]
    if proc.returncode != 0 or not lines:
        raise RuntimeError(f"paced sender failed ({proc.returncode})")
    result: dict[str, Any] = json.loads(lines[-1])
    return result


def _summary(lat_ms: list[float], sent: dict[str, Any], extra: dict[str, Any],
             at_s: list[float] | None = None) -> dict[str, Any]:
    return {
        "offered_eps": round(sent["offered_eps"], 1), "sent": sent["sent"], "producer": sent.get("producer"),
        "samples": len(lat_ms),
        "p50_ms": quantile(lat_ms, 0.50), "p99_ms": quantile(lat_ms, 0.99),
        "max_ms": max(lat_ms) if lat_ms else None,
        "per_second": per_second(lat_ms, at_s) if at_s is not None else None, **extra,
    }


def per_second(lat_ms: list[float], at_s: list[float]) -> list[dict[str, Any]]:
    """The latencies by the second of the run they were measured in (from the first): how the
    path behaves over the run (a broker that slows as it fills, a warm-up)."""
    if not at_s:
        return []
    t0 = min(at_s)
    by: dict[int, list[float]] = {}
    for lat, at in zip(lat_ms, at_s, strict=True):
        by.setdefault(int(at - t0), []).append(lat)
    return [{"second": sec, "samples": len(v), "p50_ms": quantile(v, 0.5), "max_ms": round(max(v), 1)}
            for sec, v in sorted(by.items())]


def _released(metrics_url: str) -> float:
    text = scrape(metrics_url)
    v = metric_sum(text, RELEASED)
    return v if v is not None else (metric_sum(text, CONSUMED) or 0.0)


async def _screen(ws_url: str, token: str) -> ClientConnection:
    ws = await connect(ws_url, max_size=None, open_timeout=20)
    await ws.send(orjson.dumps({"type": "auth", "token": token}).decode())
    while True:
        m = orjson.loads(await asyncio.wait_for(ws.recv(), 20))
        if m.get("type") == "hello":
            return ws
        if m.get("type") == "error":
            raise RuntimeError(f"gateway refused the bench screen: {m}")


async def e2e(bootstrap: str, ws_url: str, secret: str, worker_metrics_url: str, rate: float,
              seconds: float, prefix: str, drain_timeout_s: float = 120.0, warmup_s: float = 0.0) -> dict[str, Any]:
    """Event → cue received by websocket screens at ``rate`` events/s for ``seconds``: one
    controller screen per 64 rooms (a token's limit) of the run's ``rate / 50`` live rooms."""
    room_ids = rooms_for(rate, prefix)
    now = time.time()
    chunks = [room_ids[i:i + MAX_ROOMS] for i in range(0, len(room_ids), MAX_ROOMS)]
    screens = [await _screen(ws_url, mint(secret, "controller", chunk, 3600, f"bench-{i}", now))
               for i, chunk in enumerate(chunks)]
    lat: list[float] = []
    at: list[float] = []
    wanted = set(room_ids)

    async def read(ws: ClientConnection) -> None:
        async for raw in ws:
            now_ms = time.time() * 1000
            m = orjson.loads(raw)
            if m.get("type") == "cue" and m.get("room_id") in wanted and type(m.get("ts")) is int:
                lat.append(now_ms - m["ts"])
                at.append(now_ms / 1000)

    readers = [asyncio.create_task(read(ws)) for ws in screens]
    before: dict[str, str] = {}

    def measuring() -> None:  # the worker's own histogram from here on (not the warm-up's cues)
        before["metrics"] = scrape(worker_metrics_url)
        progress(f"e2e {rate:,.0f}/s: warm, measuring")

    try:
        pacer = await _pacer(bootstrap, room_ids, rate, seconds, warmup_s=warmup_s, warmup_prefix=f"{prefix}w")
        base = _released(worker_metrics_url)
        progress(f"e2e {rate:,.0f}/s: {len(room_ids)} live rooms, {len(screens)} screens, "
                 f"warming up for {warmup_s:.0f} s, then sending for {seconds:.0f} s")
        sent = await _go_and_wait(pacer, measuring)
        deadline = time.monotonic() + drain_timeout_s
        drained = False
        while time.monotonic() < deadline:
            if _released(worker_metrics_url) - base >= sent["sent"] + sent["warmup_sent"]:
                drained = True
                break
            await asyncio.sleep(0.2)
        await asyncio.sleep(2.0)  # the last cues' way through live.cues and the gateway
    finally:
        for r in readers:
            r.cancel()
        await asyncio.gather(*readers, return_exceptions=True)
        await asyncio.gather(*(ws.close() for ws in screens), return_exceptions=True)
    progress(f"e2e {rate:,.0f}/s: {len(lat)} cues received")
    # where the time goes: the worker's own share (event time -> cue handed to its producer)
    metrics_after = scrape(worker_metrics_url)
    metrics_before = before.get("metrics", "")
    at_worker = {f"worker_{k}_ms": _ms(hist_quantile(metrics_before, metrics_after, EVENT_TIME_LAG, q))
                 for k, q in (("p50", 0.5), ("p99", 0.99))}
    return _summary(lat, sent, {"cues": len(lat), "rooms": len(room_ids), "drained": drained,
                                "warmup_s": warmup_s, **at_worker}, at)


#: the worker's histogram of (cue sent - event time it fired at), seconds
EVENT_TIME_LAG = "livecue_event_time_lag_seconds"


def _ms(seconds: float | None) -> float | None:
    return None if seconds is None else round(seconds * 1000, 1)


async def floor(bootstrap: str, rate: float, seconds: float, prefix: str, timeout_s: float = 120.0,
                warmup_s: float = 0.0, one_topic: bool = False) -> dict[str, Any]:
    """Two plain Kafka hops at ``rate`` events/s for ``seconds``: latency of every record.
    The first hop is the six input topics (they must exist), or with ``one_topic`` one topic A."""
    await create_topics_with_configs(bootstrap, (FLOOR_A, FLOOR_B) if one_topic else (FLOOR_B,), 8)
    src = FLOOR_A if one_topic else ",".join(INPUT_TOPICS)
    fwd = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "bench.pace", "forward", "--bootstrap", bootstrap, "--src", src,
        "--dst", FLOOR_B, stdout=asyncio.subprocess.PIPE)
    c = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=None, enable_auto_commit=False,
                         fetch_max_wait_ms=20, auto_offset_reset="latest")
    lat: list[float] = []
    at: list[float] = []
    seen: set[str] = set()
    dupes = foreign = 0
    try:
        assert fwd.stdout is not None
        line = await asyncio.wait_for(fwd.stdout.readline(), 60)
        if line.strip() != b"forwarding":
            raise RuntimeError(f"floor forwarder did not start: {line!r}")
        await c.start()
        tps = await partitions_of(bootstrap, [FLOOR_B])
        c.assign(tps)
        await c.seek_to_end(*tps)
        for tp in tps:
            await c.position(tp)
        rooms = set(rooms_for(rate, prefix))
        pacer = await _pacer(bootstrap, sorted(rooms), rate, seconds, to_topic=FLOOR_A if one_topic else None,
                             warmup_s=warmup_s,
                             warmup_prefix=f"{prefix}w")
        send_task = asyncio.create_task(_go_and_wait(pacer))
        progress(f"floor {rate:,.0f}/s: warming up for {warmup_s:.0f} s, then sending for {seconds:.0f} s")
        deadline = time.monotonic() + warmup_s + seconds + timeout_s
        while time.monotonic() < deadline:
            batch = await c.getmany(timeout_ms=100, max_records=10000)
            now_ms = time.time() * 1000
            for msgs in batch.values():
                for m in msgs:
                    v = orjson.loads(m.value)
                    if v.get("room_id") not in rooms:  # not measured: the warm-up (or an earlier run)
                        foreign += 1
                        continue
                    if v["event_id"] in seen:  # a producer retry's duplicate: the first arrival counts
                        dupes += 1
                        continue
                    seen.add(v["event_id"])
                    lat.append(now_ms - v["ts"])
                    at.append(now_ms / 1000)
            if send_task.done() and len(lat) >= send_task.result()["sent"]:
                break
        sent = await send_task
    finally:
        with contextlib.suppress(Exception):
            await c.stop()
        if fwd.returncode is None:
            fwd.terminate()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(fwd.wait(), 10)
    progress(f"floor {rate:,.0f}/s: {len(lat):,} records")
    return _summary(lat, sent, {"complete": len(lat) >= sent["sent"], "duplicates": dupes, "foreign": foreign,
                                "warmup_s": warmup_s}, at)
