"""Worker throughput and event → cue latency, against the raw aiokafka ceiling in the same run.

    python -m bench.worker [--events 200000] [--rate 2000] [--seconds 15]

1. Produces a simulated show backlog (``--events``) to a fresh embedded broker.
2. Ceiling: a raw aiokafka consumer reading the backlog and ``orjson.loads``-ing every value.
3. Worker: a fresh ``livecue worker`` (its own group) catching up the same backlog; events/s from
   its ``livecue_events_consumed_total`` counter, timed from its first consumed event.
4. Latency: a paced stream (``--rate`` events/s for ``--seconds``) stamped with the wall clock;
   each cue's ``emitted_at - ts`` is the event → cue latency (p50 / p99).
Prints figures and ratios; progress lines go to stderr.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from livecue.broker import EmbeddedBroker, create_topics
from livecue.config import load_settings, settings_env
from livecue.recording import record_of
from livecue.sim.show import generate
from schemas.events import INPUT_TOPICS


def progress(msg: str) -> None:
    print(f"[bench] {msg}", file=sys.stderr, flush=True)


async def produce_all(bootstrap: str, records: list, label: str) -> None:
    p = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=20, max_batch_size=256 * 1024)
    await p.start()
    try:
        futs = []
        for i, r in enumerate(records):
            futs.append(await p.send(r.topic, r.value, key=r.key_bytes))
            if i % 20000 == 0:
                progress(f"{label}: produced {i}/{len(records)}")
        await asyncio.gather(*futs)
    finally:
        await p.stop()


async def raw_ceiling(bootstrap: str, n: int) -> float:
    c = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False, fetch_max_wait_ms=20,
                         max_partition_fetch_bytes=4 * 1024 * 1024)
    await c.start()
    try:
        tps = [TopicPartition(t, p) for t in INPUT_TOPICS for p in (c.partitions_for_topic(t) or [])]
        c.assign(tps)
        await c.seek_to_beginning(*tps)
        got = 0
        t0 = time.perf_counter()
        while got < n:
            batch = await c.getmany(timeout_ms=100, max_records=10000)
            for msgs in batch.values():
                for m in msgs:
                    orjson.loads(m.value)
                got += len(msgs)
        return got / (time.perf_counter() - t0)
    finally:
        await c.stop()


def metric(url: str, name: str) -> float:
    try:
        text = urllib.request.urlopen(url, timeout=5).read().decode()
    except OSError:
        return 0.0
    return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines() if line.startswith(name + "{") or line.startswith(name + " "))


def start_worker(env: dict, log: Path) -> tuple[subprocess.Popen, str]:
    proc = subprocess.Popen([sys.executable, "-m", "livecue.cli", "worker"], env=env,
                            stdout=subprocess.PIPE, stderr=open(log, "ab"))
    line = proc.stdout.readline().decode()
    return proc, line.split("metrics: ", 1)[1].strip()


def stop(proc: subprocess.Popen) -> None:
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(20)
    except subprocess.TimeoutExpired:
        proc.kill()


async def latency(bootstrap: str, rate: int, seconds: float) -> list[float]:
    rooms = [f"lat-{i}" for i in range(4)]
    # a 2-minute flash-sale show per room, squeezed into `seconds` of wall time at `rate`
    events = generate(11, rooms, "flash_sale", duration=120.0, rate=rate * seconds / 120.0 / len(rooms))
    events = events[: int(rate * seconds)]
    p = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=20)
    await p.start()
    t_start = time.time()
    try:
        for i, ev in enumerate(events):
            # paced at `rate`, each event stamped with the wall clock when it is sent
            delay = t_start + i / rate - time.time()
            if delay > 0:
                await asyncio.sleep(delay)
            r = record_of(dataclasses.replace(ev, ts=int(time.time() * 1000)))
            await p.send(r.topic, r.value, key=r.key_bytes)
            if i % max(1, rate * 2) == 0:
                progress(f"latency: sent {i}/{len(events)}")
    finally:
        await p.stop()
    await asyncio.sleep(3)
    c = AIOKafkaConsumer("live.cues", bootstrap_servers=bootstrap, auto_offset_reset="earliest",
                         enable_auto_commit=False, fetch_max_wait_ms=20)
    await c.start()
    lat = []
    try:
        end = time.monotonic() + 5
        while time.monotonic() < end:
            batch = await c.getmany(timeout_ms=200)
            for msgs in batch.values():
                for m in msgs:
                    v = orjson.loads(m.value)
                    if v["room_id"] in rooms:
                        lat.append((v["emitted_at"] - v["ts"]) / 1000.0)
    finally:
        await c.stop()
    return lat


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--events", type=int, default=200_000)
    ap.add_argument("--rate", type=int, default=2000)
    ap.add_argument("--seconds", type=float, default=15.0)
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="livecue-bench-"))
    with EmbeddedBroker(log_path=tmp / "tansu.log") as broker:
        asyncio.run(create_topics(broker.bootstrap, 4))
        rooms = max(1, args.events // 20000)
        progress(f"generating {args.events} events in {rooms} rooms")
        evs = generate(5, [f"bench-{i}" for i in range(rooms)], "mixed", duration=3600.0,
                       rate=args.events / rooms / 3600.0 * 1.05)[: args.events]
        records = [record_of(e) for e in evs]
        asyncio.run(produce_all(broker.bootstrap, records, "backlog"))
        n = len(records)
        progress("raw aiokafka ceiling")
        ceiling = asyncio.run(raw_ceiling(broker.bootstrap, n))
        settings = load_settings({
            "LIVECUE_BROKER": broker.url, "LIVECUE_APP_ID": "bench", "LIVECUE_DATA_DIR": str(tmp / "data"),
            "LIVECUE_METRICS_PORT": "0", "LIVECUE_REBALANCE_TIMEOUT_S": "3", "LIVECUE_SESSION_TIMEOUT_S": "6",
            "LIVECUE_HEARTBEAT_INTERVAL_S": "0.5", "LIVECUE_LOG_FORMAT": "json", "LIVECUE_LOG_LEVEL": "WARNING",
        })
        env = {**os.environ, **settings_env(settings)}
        proc, url = start_worker(env, tmp / "worker.log")
        try:
            t_first = None
            last_report = 0.0
            while True:
                done = metric(url, "livecue_events_consumed_total")
                now = time.perf_counter()
                if done > 0 and t_first is None:
                    t_first, done_first = now, done
                if done >= n:
                    break
                if now - last_report > 2:
                    progress(f"worker: {int(done)}/{n} events")
                    last_report = now
                if proc.poll() is not None:
                    raise SystemExit(f"worker died, see {tmp / 'worker.log'}")
                time.sleep(0.05)
            elapsed = time.perf_counter() - t_first
            worker_rate = (n - done_first) / elapsed if elapsed > 0 else float("nan")
            progress("latency run")
            lat = asyncio.run(latency(broker.bootstrap, args.rate, args.seconds))
        finally:
            stop(proc)
    print(f"events                 {n}")
    print(f"raw aiokafka+orjson    {ceiling:12,.0f} events/s  ({1e6 / ceiling:7.2f} µs/event)")
    print(f"livecue worker         {worker_rate:12,.0f} events/s  ({1e6 / worker_rate:7.2f} µs/event)")
    print(f"ratio worker/ceiling   {worker_rate / ceiling:12.3f}")
    if lat:
        q = statistics.quantiles(lat, n=100)
        print(f"event->cue latency     p50 {statistics.median(lat) * 1000:.0f} ms  p99 {q[98] * 1000:.0f} ms  ({len(lat)} cues at {args.rate} events/s)")
    else:
        print("event->cue latency     no cues fired in the latency run")
    return 0


if __name__ == "__main__":
    sys.exit(main())
