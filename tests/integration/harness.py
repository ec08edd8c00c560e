"""Helpers for integration tests: worker subprocesses, producers and output collectors."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
from aiokafka import AIOKafkaConsumer, TopicPartition
from confluent_kafka import Producer

from livecue.broker import EmbeddedBroker, create_topics
from livecue.config import Settings, settings_env
from livecue.recording import Record, record_of
from schemas.events import Event

REPO = Path(__file__).resolve().parents[2]


@contextmanager
def fresh_broker(tmp_path: Path, partitions: int = 4) -> Iterator[EmbeddedBroker]:
    """A broker of a test's own, with the contract's topics: a fresh consumer group then reads
    only that test's traffic, not every earlier test's on the session broker."""
    b = EmbeddedBroker(log_path=tmp_path / "tansu.log").start()
    try:
        asyncio.run(create_topics(b.bootstrap, partitions=partitions))
        yield b
    finally:
        b.stop()


class ChildProc:
    """A child process with a log file: stop it (SIGTERM, then SIGKILL) and read its log tail."""

    proc: subprocess.Popen[bytes]
    log_path: Path

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)

    def log_tail(self, n: int = 40) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-n:])
        except OSError:
            return ""


@dataclass
class WorkerProc(ChildProc):
    """A ``livecue worker`` child process."""

    proc: subprocess.Popen[bytes]
    metrics_url: str
    log_path: Path

    def metrics(self) -> str:
        with urllib.request.urlopen(self.metrics_url, timeout=5) as r:
            return str(r.read().decode())

    def kill9(self) -> None:
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)


def start_worker(settings: Settings, log_path: Path, worker_id: str, timeout: float = 60.0,
                 wait_assigned: bool = True) -> WorkerProc:
    """Start a worker and wait until it serves /metrics and (optionally) owns partitions."""
    env = dict(os.environ)
    env.update(settings_env(settings))
    env["LIVECUE_WORKER_ID"] = worker_id
    env["PYTHONUNBUFFERED"] = "1"
    log = open(log_path, "ab")  # noqa: SIM115 - owned by the child for its lifetime
    proc = subprocess.Popen(
        [sys.executable, "-m", "livecue.cli", "worker"], cwd=REPO, env=env,
        stdout=subprocess.PIPE, stderr=log, stdin=subprocess.DEVNULL,
    )
    log.close()
    assert proc.stdout is not None
    deadline = time.monotonic() + timeout
    url = None
    while time.monotonic() < deadline:
        line = proc.stdout.readline().decode()
        if not line:
            break
        m = re.search(r"metrics: (http://\S+)", line)
        if m:
            url = m.group(1)
            break
    if url is None:
        proc.kill()
        raise AssertionError(f"worker did not start: {log_path.read_text(errors='replace')[-3000:]}")
    w = WorkerProc(proc, url, log_path)
    if wait_assigned:
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise AssertionError(f"worker exited: {w.log_tail()}")
            try:
                if "livecue_consumer_lag{" in w.metrics():
                    return w
            except OSError:
                pass
            time.sleep(0.2)
        w.stop()
        raise AssertionError(f"worker never got partitions: {w.log_tail()}")
    return w


def produce(bootstrap: str, records: Iterable[Record | tuple[str, bytes | None, bytes]],
            pace: Callable[[Any], None] | None = None) -> int:
    """Produce records with librdkafka (confluent-kafka), linger 20 ms. Returns the count."""
    p = Producer({"bootstrap.servers": bootstrap, "linger.ms": 20, "enable.idempotence": False,
                  "acks": "all"})
    n = 0
    for rec in records:
        if pace is not None:
            pace(rec)
        if isinstance(rec, Record):
            topic, key, value = rec.topic, rec.key_bytes, rec.value
        else:
            topic, key, value = rec
        while True:
            try:
                p.produce(topic, value=value, key=key)
                break
            except BufferError:
                p.poll(0.05)
        p.poll(0)
        n += 1
    remaining = p.flush(30)
    assert remaining == 0, f"{remaining} records not delivered"
    return n


def records_of(events: Iterable[Event]) -> list[Record]:
    return [record_of(e) for e in events]


async def collect(bootstrap: str, topic: str, match: Callable[[dict[str, Any]], bool],
                  done: Callable[[list[dict[str, Any]]], bool], timeout: float,
                  settle_s: float = 0.0) -> list[dict[str, Any]]:
    """Read ``topic`` from the beginning (all partitions, no group) and return the JSON values
    that ``match``, once ``done(values)`` has held for ``settle_s`` (time for anything extra to
    show up) or ``timeout`` passes."""
    c = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False, fetch_max_wait_ms=50)
    await c.start()
    try:
        parts = c.partitions_for_topic(topic) or set()
        for _ in range(50):
            if parts:
                break
            await asyncio.sleep(0.1)
            parts = await c._client._wait_on_metadata(topic) or set()  # noqa: SLF001
            parts = c.partitions_for_topic(topic) or set()
        tps = [TopicPartition(topic, p) for p in sorted(parts)]
        c.assign(tps)
        await c.seek_to_beginning(*tps)
        out: list[dict[str, Any]] = []
        deadline = time.monotonic() + timeout
        settled_at: float | None = None
        while time.monotonic() < deadline:
            batch = await c.getmany(timeout_ms=200)
            for msgs in batch.values():
                for m in msgs:
                    try:
                        v = orjson.loads(m.value)
                    except orjson.JSONDecodeError:
                        continue
                    if isinstance(v, dict) and match(v):
                        v["_partition"], v["_offset"] = m.partition, m.offset
                        out.append(v)
            if done(out):
                settled_at = settled_at or time.monotonic() + settle_s
                if time.monotonic() >= settled_at:
                    break
        return out
    finally:
        await c.stop()


def metric_value(text: str, name: str, labels: dict[str, str] | None = None) -> float:
    """Sum of a metric's samples in Prometheus text whose labels include ``labels``."""
    total = 0.0
    for line in text.splitlines():
        if not line.startswith(name):
            continue
        m = re.match(r"([a-zA-Z_:]+)(\{([^}]*)\})? (\S+)", line)
        if not m or m.group(1) != name:
            continue
        got = dict(re.findall(r'(\w+)="([^"]*)"', m.group(3) or ""))
        if labels and any(got.get(k) != v for k, v in labels.items()):
            continue
        total += float(m.group(4))
    return total


def recompute(records: Iterable[Record], room_id: str) -> Any:
    """Fold one room's records (in production order) through the pure core, canonically ordered,
    with the default playbook. Returns the StepResult (state, cues, stats, rejected)."""
    from schemas.decode import decode_event
    from stream.core import new_state, step_many
    from stream.core.align import canonical_order
    from stream.playbook import default_playbook

    items = []
    for rec in records:
        if rec.key != room_id:
            continue
        ev = decode_event(rec.value, rec.key_bytes, rec.topic)
        items.append((rec.topic, ev.ts, ev))
    return step_many(new_state(room_id), canonical_order(items), default_playbook())
