"""Helpers for integration tests: worker subprocesses, producers and output collectors."""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import re
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import AsyncIterator, Callable, Iterable, Iterator
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

# LIVECUE_ALIGN_GRACE_MS for a test that compares cues with the backtest while it produces a show
# in a burst (or paced, through faults) on a loaded 2-core machine: the records of one moment
# reach the broker topic by topic, up to a few hundred ms apart, and the worker's live default
# (100 ms) would release an event before a quiet topic's record of the same moment arrived (the
# show test on Kafka lost a room's first cues that way at load 12). Exactness needs the longer wait.
EXACT_GRACE_MS = "1500"


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


def _spawn(command: str, settings: Settings, log_path: Path, ready: str, timeout: float,
           *args: str, **env: str) -> tuple[subprocess.Popen[bytes], re.Match[str]]:
    """Start ``livecue COMMAND`` with ``settings`` in its environment (stderr to ``log_path``) and
    wait for a stdout line matching ``ready``."""
    child_env = {**os.environ, **settings_env(settings), "PYTHONUNBUFFERED": "1", **env}
    log = open(log_path, "ab")  # noqa: SIM115 - owned by the child for its lifetime
    proc = subprocess.Popen(
        [sys.executable, "-m", "livecue.cli", command, *args], cwd=REPO, env=child_env,
        stdout=subprocess.PIPE, stderr=log, stdin=subprocess.DEVNULL,
    )
    log.close()
    assert proc.stdout is not None
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        line = proc.stdout.readline().decode()
        if not line:
            break
        m = re.search(ready, line)
        if m:
            return proc, m
    proc.kill()
    raise AssertionError(f"{command} did not start: {log_path.read_text(errors='replace')[-3000:]}")


def start_worker(settings: Settings, log_path: Path, worker_id: str, timeout: float = 60.0,
                 wait_assigned: bool = True) -> WorkerProc:
    """Start a worker and wait until it serves /metrics and (optionally) owns partitions."""
    deadline = time.monotonic() + timeout
    proc, m = _spawn("worker", settings, log_path, r"metrics: (http://\S+)", timeout, LIVECUE_WORKER_ID=worker_id)
    w = WorkerProc(proc, m.group(1), log_path)
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
            pace: Callable[[Any], None] | None = None, idempotent: bool = False) -> int:
    """Produce records with librdkafka (confluent-kafka), linger 20 ms. Returns the count.

    ``idempotent``: keep each partition's order and write each record once even when a broker
    dies mid-send (without it librdkafka's retries may reorder a partition: the input is then
    not the list sent). Apache Kafka only: Tansu has no idempotent producers."""
    p = Producer({"bootstrap.servers": bootstrap, "linger.ms": 20, "enable.idempotence": idempotent,
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


def explain_state(room_id: str, value: bytes | None, want: bytes) -> str:
    """Why a room's changelog value is not the recomputation: its applied offsets and, field by
    field, what differs (the first few, values cut short). For failure messages."""
    import orjson

    from stream.core import dump_state
    from stream.core.state import DUMP_FIELDS
    from stream.processor import decode_room_value

    if value is None:
        return f"{room_id}: no value in the changelog"
    head = value.partition(b"\n")[0]
    got, exp = orjson.loads(dump_state(decode_room_value(value)[1])), orjson.loads(want)
    diffs = []
    for i, name in enumerate(DUMP_FIELDS):
        a = got[i] if i < len(got) else None
        b = exp[i] if i < len(exp) else None
        if a != b:
            diffs.append(f"  {name}: got {str(a)[:300]}\n  {' ' * len(name)}  want {str(b)[:300]}")
    return f"{room_id}: applied offsets {head.decode()}\n" + "\n".join(diffs[:6])


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


async def topic_ends(bootstrap: str, topics: Iterable[str]) -> dict[TopicPartition, int]:
    """Each partition's true end offset. ListOffsets alone is not enough on Tansu (it answers
    with the last batch's base offset), so the answer is confirmed by reading to the high
    watermark a fetch reports."""
    c = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False, fetch_max_wait_ms=50)
    await c.start()
    try:
        tps: list[TopicPartition] = []
        for t in topics:
            await c._client._wait_on_metadata(t)  # noqa: SLF001 - this client has not seen the topic yet
            tps += [TopicPartition(t, p) for p in sorted(c.partitions_for_topic(t) or set())]
        c.assign(tps)
        for tp, end in (await c.end_offsets(tps)).items():
            c.seek(tp, end)
        deadline = time.monotonic() + 30
        while True:
            await c.getmany(*tps, timeout_ms=100)
            hw = {tp: c.highwater(tp) for tp in tps}
            pos = {tp: await c.position(tp) for tp in tps}
            if all(h is not None and pos[tp] >= h for tp, h in hw.items()):
                return pos
            assert time.monotonic() < deadline, f"no high watermark for {[tp for tp, h in hw.items() if h is None]}"
    finally:
        await c.stop()


async def start_group_at(bootstrap: str, group: str, offsets: dict[TopicPartition, int]) -> None:
    """Commit ``offsets`` for a consumer group that has no member yet: a worker of that group then
    starts there (committed offsets win over auto.offset.reset), which lets tests share one broker
    per session and still have each worker read only its own test's records."""
    c = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=group, enable_auto_commit=False)
    await c.start()
    try:
        c.assign(list(offsets))
        await c.commit(dict(offsets))
    finally:
        await c.stop()


async def group_at_tail(bootstrap: str, group: str) -> dict[TopicPartition, int]:
    """Start ``group`` at the current end of every input topic; returns those offsets."""
    from schemas.events import INPUT_TOPICS

    ends = await topic_ends(bootstrap, INPUT_TOPICS)
    await start_group_at(bootstrap, group, ends)
    return ends


async def changelog_last(bootstrap: str, topic: str, rooms: Iterable[str]) -> dict[str, bytes]:
    """The last value of each of ``rooms`` in ``topic`` (a changelog), read to its true end."""
    want = set(rooms)
    ends = await topic_ends(bootstrap, [topic])
    c = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False, fetch_max_wait_ms=50)
    await c.start()
    try:
        tps = list(ends)
        if not tps:
            return {}
        c.assign(tps)
        await c.seek_to_beginning(*tps)
        last: dict[str, bytes] = {}
        deadline = time.monotonic() + 60
        while any([await c.position(tp) < ends[tp] for tp in tps]):
            assert time.monotonic() < deadline, f"{topic} not read to its end within 60 s"
            for msgs in (await c.getmany(timeout_ms=300)).values():
                for m in msgs:
                    k = m.key.decode() if m.key else ""
                    if k in want and m.value is not None:
                        last[k] = m.value
        return last
    finally:
        await c.stop()


def show_records(prefix: str, rooms: int = 2, duration: float = 240.0, seed: int = 7,
                 scenario: str = "mixed", rate: float = 25.0) -> tuple[list[Record], list[str]]:
    """A simulated show of ``rooms`` rooms named ``{prefix}-{i}``, as records in production order."""
    from livecue.sim.show import generate

    ids = [f"{prefix}-{i}" for i in range(rooms)]
    return records_of(generate(seed, ids, scenario, duration=duration, rate=rate)), ids


def backtest_ids(records: list[Record], rooms: Iterable[str]) -> set[str]:
    """The cue ids the pure core fires for ``rooms`` from ``records``."""
    ids: set[str] = set()
    for r in rooms:
        ids |= {c.cue_id for c in recompute(records, r).cues}
    return ids


async def collect_cues(bootstrap: str, rooms: Iterable[str], want: set[str], timeout: float,
                       settle_s: float = 0.0) -> list[dict[str, Any]]:
    """live.cues of ``rooms`` from the beginning, until every id of ``want`` is in (or timeout)."""
    rs = set(rooms)
    return await collect(bootstrap, "live.cues", lambda v: v.get("room_id") in rs,
                         lambda got: want <= {c["cue_id"] for c in got}, timeout, settle_s=settle_s)


async def topic_config(bootstrap: str, topic: str, name: str) -> str | None:
    """One configuration value of ``topic`` as the broker reports it (None: not reported)."""
    from aiokafka.admin import AIOKafkaAdminClient
    from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType

    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        for r in await admin.describe_configs([ConfigResource(ConfigResourceType.TOPIC, topic)]):
            for res in r.resources:
                for entry in res[4]:
                    if entry[0] == name:
                        return str(entry[1])
        return None
    finally:
        await admin.close()


def staggered_show(prefix: str, rooms: int, step_s: float, duration: float, rate: float,
                   seed: int = 11) -> tuple[list[Record], list[str]]:
    """``rooms`` mixed shows of ``duration`` s, room i starting ``i * step_s`` after room 0 (each
    its own seed), merged by event time: cues then fall every few seconds of show time instead of
    in one burst per phase, so a fault at any moment is followed by a cue soon."""
    from livecue.sim.show import DEFAULT_START_TS, generate

    ids = [f"{prefix}-{i}" for i in range(rooms)]
    events = []
    for i, rid in enumerate(ids):
        events += generate(seed + i, [rid], "mixed", start_ts=DEFAULT_START_TS + int(i * step_s * 1000),
                           duration=duration, rate=rate)
    events.sort(key=lambda e: e.ts)  # stable: each room keeps its own order
    return records_of(events), ids


class Pacer:
    """A ``produce`` pace callback: records leave at ``speed`` x their event time, until
    :meth:`hurry` lets the rest go at once. Counts what it let through (one writer thread)."""

    def __init__(self, speed: float) -> None:
        self.speed = speed
        self.produced = 0
        self._t0: int | None = None
        self._start = 0.0
        self._hurry = False

    def hurry(self) -> None:
        self._hurry = True

    def __call__(self, rec: Record) -> None:
        ts = int(orjson.loads(rec.value)["ts"])
        if self._t0 is None:
            self._t0, self._start = ts, time.monotonic()
        due = self._start + (ts - self._t0) / 1000.0 / self.speed
        while not self._hurry and (delay := due - time.monotonic()) > 0:
            time.sleep(min(delay, 0.2))  # re-checks hurry five times a second
        self.produced += 1


@dataclass
class Delivery:
    """One cue as a screen received it."""

    cue_id: str
    room_id: str
    seq: int
    emitted_at: int
    at: float  # time.monotonic() on arrival
    connection: int  # which connection of the screen (1 = first)


class Screen:
    """A real websocket screen, as the control-room page's link behaves (consumers/static/common.js):
    authenticate, resume every room from the last seq it saw (-1 at first), reconnect with
    exponential backoff and jitter when the connection drops. Records every cue it receives."""

    def __init__(self, url: Callable[[], str] | str, token: str, backoff_s: float = 0.25,
                 max_backoff_s: float = 4.0) -> None:
        self._url = url if callable(url) else (lambda: url)
        self.token = token
        self.backoff_s, self.max_backoff_s = backoff_s, max_backoff_s
        self.deliveries: list[Delivery] = []
        self.last_seq: dict[str, int] = {}
        self.connections = 0  # hellos received
        self.attempts = 0  # connection attempts, failed ones included
        self.resumed: list[dict[str, Any]] = []
        self.connected = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    async def __aenter__(self) -> Screen:
        self._task = asyncio.create_task(self._run())
        async with asyncio.timeout(20):
            await self.connected.wait()
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._task is not None
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task

    def ids(self) -> set[str]:
        return {d.cue_id for d in self.deliveries}

    def duplicates(self) -> int:
        return len(self.deliveries) - len(self.ids())

    async def wait_for(self, pred: Callable[[Screen], bool], timeout: float) -> bool:
        """Wait until ``pred(self)`` holds (True) or ``timeout`` passes (False)."""
        deadline = time.monotonic() + timeout
        while not pred(self):
            if time.monotonic() > deadline:
                return False
            await asyncio.sleep(0.05)
        return True

    async def _run(self) -> None:
        from websockets.asyncio.client import connect
        from websockets.exceptions import ConnectionClosed

        failures = 0
        while True:
            self.attempts += 1
            try:
                async with connect(self._url(), open_timeout=5) as ws:
                    await ws.send(orjson.dumps({"type": "auth", "token": self.token}).decode())
                    async for raw in ws:
                        m = orjson.loads(raw)
                        if m["type"] == "hello":
                            rooms = {r: self.last_seq.get(r, -1) for r in m["rooms"]}
                            await ws.send(orjson.dumps({"type": "resume", "rooms": rooms}).decode())
                            self.connections += 1
                            failures = 0
                            self.connected.set()
                        elif m["type"] == "cue":
                            self.deliveries.append(Delivery(m["cue_id"], m["room_id"], m["seq"],
                                                            int(m.get("emitted_at", 0)), time.monotonic(),
                                                            self.connections))
                            if m["seq"] > self.last_seq.get(m["room_id"], -1):
                                self.last_seq[m["room_id"]] = m["seq"]
                        elif m["type"] == "resumed":
                            self.resumed.append(m)
                        elif m["type"] == "error" and m.get("code") in ("bad_token", "expired", "wrong_room"):
                            raise AssertionError(f"screen refused: {m}")
            except (OSError, ConnectionClosed, TimeoutError):
                pass
            failures += 1
            delay = min(self.max_backoff_s, self.backoff_s * 2 ** min(failures - 1, 5))
            await asyncio.sleep(delay * (0.8 + 0.4 * random.random()))


@dataclass
class GatewayProc(ChildProc):
    """A ``livecue gateway`` child process."""

    proc: subprocess.Popen[bytes]
    url: str  # http://127.0.0.1:PORT
    log_path: Path

    @property
    def port(self) -> int:
        return int(self.url.rsplit(":", 1)[1])

    @property
    def ws_url(self) -> str:
        return "ws" + self.url.removeprefix("http") + "/ws"

    def kill9(self) -> None:
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)


def start_gateway(settings: Settings, log_path: Path, port: int = 0, timeout: float = 60.0) -> GatewayProc:
    """Start ``livecue gateway`` on ``port`` (0: a free one); returns once it serves."""
    proc, m = _spawn("gateway", settings, log_path, r"gateway ready on (http://\S+)", timeout, "--port", str(port))
    return GatewayProc(proc, m.group(1), log_path)


@contextlib.asynccontextmanager
async def paced_production(bootstrap: str, records: list[Record], pacer: Pacer) -> AsyncIterator[asyncio.Task[int]]:
    """Produce ``records`` paced by ``pacer`` in a thread for the duration of the block (the task
    is done when every record is delivered); on the way out the rest goes at once."""
    task = asyncio.create_task(asyncio.to_thread(produce, bootstrap, records, pacer))
    try:
        yield task
    finally:
        pacer.hurry()
        await asyncio.gather(task, return_exceptions=True)
