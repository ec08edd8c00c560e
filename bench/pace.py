"""Child processes of the latency parts, kept apart from the measuring client so their CPU does not
delay its clock readings.

``python -m bench.pace send``: play the opening ``--seconds`` of a simulated live show in each of
``--rooms`` rooms at real speed (``--rate`` events/s in all), each event stamped with the wall
clock (``ts``, epoch ms) as it is sent, to the contract's input topics (``--to-topic`` sends everything to one topic instead: the
floor's topic A). Prints ``{"sent", "offered_eps"}`` as its last line. ``--warmup-seconds`` first
plays that long in the ``--warmup-rooms`` at the same rate, then prints ``measuring`` and goes on
with the measured rooms without a pause: the path is warm (the broker's JIT, the producer's and
consumers' connections and batches) when the measured events begin.

``python -m bench.pace forward``: the floor's middle hop: a plain aiokafka consumer of ``--src``
(comma-separated topics, every partition of each) that forwards every record unchanged to ``--dst`` (same fetch wait and producer linger as a
worker's defaults). Prints ``forwarding`` once assigned; runs until SIGTERM.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
import sys
import time
from typing import Any

import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from livecue.recording import record_of
from livecue.sim.show import generate

from .common import partitions_of

__all__ = ["show_events"]


#: Events a second of each room in a paced run: a busy room; rooms = rate / this.
PER_ROOM_RATE = 50.0


def rooms_for(rate: float, prefix: str) -> list[str]:
    """Room ids of a paced run at ``rate`` events/s (``rate / PER_ROOM_RATE`` rooms)."""
    return [f"{prefix}{i:03d}" for i in range(max(1, round(rate / PER_ROOM_RATE)))]


def show_events(rooms: list[str], rate: float, seconds: float, seed: int = 11) -> list[tuple[float, str, bytes, dict[str, Any]]]:
    """(send offset s, topic, key, value dict) of the first ``seconds`` of a live ``mixed`` show per
    room, played at real speed: the opening flash sale fires cues within seconds, as in a real room.
    The offsets are the events' own event-time offsets, stretched by a few percent so that the
    run offers exactly ``rate`` events/s."""
    n = max(1, int(rate * seconds))
    per_room = rate / len(rooms) * 0.63  # the generator's hot opening gives ~1.6x its rate
    evs = generate(seed, rooms, "mixed", duration=seconds + 1.0, rate=max(0.5, per_room))
    while len(evs) < n:
        per_room *= 1.25
        evs = generate(seed, rooms, "mixed", duration=seconds + 1.0, rate=per_room)
    evs = evs[:n]
    t0 = evs[0].ts
    span_s = max(1e-3, (evs[-1].ts - t0) / 1000)
    stretch = (n / rate) / span_s  # ~1: event time runs at wall speed
    out = []
    for ev in evs:
        r = record_of(ev)
        out.append(((ev.ts - t0) / 1000 * stretch, r.topic, r.key_bytes or b"", orjson.loads(r.value)))
    return out


class _AioSender:
    """aiokafka (murmur2 partitioner): the fallback when confluent-kafka is not installed."""

    def __init__(self, bootstrap: str, linger_ms: int) -> None:
        self.p = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=linger_ms, max_batch_size=256 * 1024)

    async def start(self) -> None:
        await self.p.start()

    async def send(self, topic: str, value: bytes, key: bytes) -> None:
        await self.p.send(topic, value, key=key)

    async def close(self) -> None:
        await self.p.flush()
        await self.p.stop()


class _ConfluentSender:
    """librdkafka: ~10x less CPU a record than aiokafka, so one process can offer 20k events/s on
    a host whose cores the worker, gateway and broker share. ``murmur2_random`` is the Java /
    aiokafka partitioner: a room lands on the partition a worker expects."""

    def __init__(self, bootstrap: str, linger_ms: int) -> None:
        from confluent_kafka import Producer  # type: ignore[import-untyped]

        self.p = Producer({"bootstrap.servers": bootstrap, "linger.ms": linger_ms,
                           "partitioner": "murmur2_random", "queue.buffering.max.messages": 1_000_000})

    async def start(self) -> None:
        self.p.list_topics(timeout=20)

    async def send(self, topic: str, value: bytes, key: bytes) -> None:
        while True:
            try:
                self.p.produce(topic, value, key)
                break
            except BufferError:
                self.p.poll(0.01)
        self.p.poll(0)

    async def close(self) -> None:
        left = self.p.flush(30)
        if left:
            raise RuntimeError(f"{left} records not delivered")


def _sender(bootstrap: str, linger_ms: int) -> _AioSender | _ConfluentSender:
    try:
        return _ConfluentSender(bootstrap, linger_ms)
    except ImportError:
        return _AioSender(bootstrap, linger_ms)


async def _play(p: _AioSender | _ConfluentSender, events: list[tuple[float, str, bytes, dict[str, Any]]],
                to_topic: str | None) -> tuple[int, float]:
    """Send ``events`` at their offsets from now; returns (sent, seconds it took)."""
    sent = 0
    t0 = time.time()
    n = len(events)
    while sent < n:
        now = time.time()
        now_ms = int(now * 1000)
        elapsed = now - t0
        while sent < n and events[sent][0] <= elapsed:
            _at, topic, key, value = events[sent]
            value["ts"] = now_ms  # stamped with the wall clock as it is sent
            await p.send(to_topic or topic, orjson.dumps(value), key)
            sent += 1
        await asyncio.sleep(0.002)
    return sent, time.time() - t0


async def _send(bootstrap: str, rooms: list[str], rate: float, seconds: float, to_topic: str | None,
                linger_ms: int, warmup_s: float = 0.0, warmup_rooms: list[str] | None = None) -> dict[str, Any]:
    events = show_events(rooms, rate, seconds)
    warmup = show_events(warmup_rooms, rate, warmup_s, seed=12) if warmup_s > 0 and warmup_rooms else []
    p = _sender(bootstrap, linger_ms)
    await p.start()
    print("ready", flush=True)
    sys.stdin.readline()  # the parent says go once its client listens
    try:
        warm = (await _play(p, warmup, to_topic))[0] if warmup else 0
        print("measuring", flush=True)
        sent, elapsed = await _play(p, events, to_topic)
    finally:
        await p.close()
    return {"sent": sent, "offered_eps": sent / max(1e-9, elapsed), "warmup_sent": warm,
            "producer": type(p).__name__.strip("_")}


async def _forward(bootstrap: str, src: str, dst: str, fetch_max_wait_ms: int, linger_ms: int) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    p = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=linger_ms)
    c = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=None, enable_auto_commit=False,
                         fetch_max_wait_ms=fetch_max_wait_ms, auto_offset_reset="latest")
    await p.start()
    await c.start()
    try:
        tps = await partitions_of(bootstrap, src.split(","))
        c.assign(tps)
        await c.seek_to_end(*tps)
        for tp in tps:
            await c.position(tp)
        print("forwarding", flush=True)
        while not stop.is_set():
            batch = await c.getmany(timeout_ms=100, max_records=5000)
            for msgs in batch.values():
                for m in msgs:
                    await p.send(dst, m.value, key=m.key)
    finally:
        await c.stop()
        await p.stop()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("send")
    s.add_argument("--bootstrap", required=True)
    s.add_argument("--rooms", required=True, help="comma-separated room ids")
    s.add_argument("--rate", type=float, required=True)
    s.add_argument("--seconds", type=float, required=True)
    s.add_argument("--to-topic", default=None)
    s.add_argument("--linger-ms", type=int, default=5)
    s.add_argument("--warmup-seconds", type=float, default=0.0)
    s.add_argument("--warmup-rooms", default="", help="comma-separated room ids of the warm-up")
    f = sub.add_parser("forward")
    f.add_argument("--bootstrap", required=True)
    f.add_argument("--src", required=True, help="comma-separated topics")
    f.add_argument("--dst", required=True)
    f.add_argument("--fetch-max-wait-ms", type=int, default=20)
    f.add_argument("--linger-ms", type=int, default=20)
    a = ap.parse_args(argv)
    if a.cmd == "send":
        result = asyncio.run(_send(a.bootstrap, a.rooms.split(","), a.rate, a.seconds, a.to_topic, a.linger_ms,
                                   a.warmup_seconds, [r for r in a.warmup_rooms.split(",") if r]))
        print(json.dumps(result), flush=True)
    else:
        asyncio.run(_forward(a.bootstrap, a.src, a.dst, a.fetch_max_wait_ms, a.linger_ms))
    return 0


if __name__ == "__main__":
    sys.exit(main())
