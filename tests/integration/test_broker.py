"""The embedded broker as the CLI runs it, and Kafka clients against it.

- ``livecue broker`` prints ``kafka://127.0.0.1:PORT`` first, serves Kafka, and leaves no Tansu
  process behind, whether stopped with SIGINT/SIGTERM or its own process SIGKILLed
  (``PR_SET_PDEATHSIG``).
- ``livecue topics`` creates the contract's ten topics with the requested partitions.
- aiokafka and librdkafka (confluent-kafka) producers interoperate with the contract's JSON.

Consumers use manual partition assignment: Tansu forms consumer groups only after the rebalance
timeout, which these tests do not need to wait for.
"""

from __future__ import annotations

import asyncio
import os
import re
import select
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.partitioner import DefaultPartitioner
from confluent_kafka import Producer

from livecue.broker import EmbeddedBroker, wait_ready
from schemas import ALL_TOPICS, TOPIC_CHAT, Chat, decode_event, encode

URL_RE = re.compile(r"kafka://127\.0\.0\.1:(\d{2,5})")
TS = 1_718_000_000_000


def _livecue() -> list[str]:
    script = Path(sys.executable).with_name("livecue")
    return [str(script)] if script.exists() else [sys.executable, "-m", "livecue.cli"]


def _stat(pid: int) -> tuple[str, str, int] | None:
    """(comm, state, ppid) of a live process, None if it is gone."""
    try:
        data = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return None
    comm = data[data.index("(") + 1 : data.rindex(")")]
    state, ppid = data[data.rindex(")") + 2 :].split()[:2]
    return comm, state, int(ppid)


def _children(pid: int) -> list[int]:
    out = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            st = _stat(int(entry))
            if st is not None and st[2] == pid:
                out.append(int(entry))
    return out


def _tansu_alive(pid: int, comm: str) -> bool:
    st = _stat(pid)
    # A zombie has exited; a different comm means the pid was reused by something else.
    return st is not None and st[1] != "Z" and st[0] == comm


def _wait_gone(pid: int, comm: str, timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not _tansu_alive(pid, comm):
            return True
        time.sleep(0.05)
    return False


class CliBroker:
    """``livecue broker`` running as a subprocess."""

    def __init__(self, *args: str) -> None:
        self.proc = subprocess.Popen(
            [*_livecue(), "broker", *args, "--log-format", "text", "--log-level", "WARNING"],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL,
        )
        assert self.proc.stdout is not None
        ready, _, _ = select.select([self.proc.stdout], [], [], 30)
        if not ready:
            self.proc.kill()
            pytest.fail("livecue broker printed nothing on stdout within 30 s")
        self.first_line = self.proc.stdout.readline().decode().rstrip("\n")
        m = URL_RE.fullmatch(self.first_line)
        if not m:
            self.proc.kill()
            _, err = self.proc.communicate(timeout=10)
            pytest.fail(f"first stdout line {self.first_line!r} is not kafka://127.0.0.1:PORT; stderr: {err[-2000:]!r}")
        self.url = self.first_line
        self.bootstrap = self.url.removeprefix("kafka://")
        tansu = [p for p in _children(self.proc.pid) if (_stat(p) or ("",))[0].startswith("tansu")]
        assert len(tansu) == 1, f"expected one tansu child of {self.proc.pid}, found {tansu}"
        self.tansu_pid = tansu[0]
        self.tansu_comm = (_stat(self.tansu_pid) or ("?",))[0]

    def cleanup(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)
        for stream in (self.proc.stdout, self.proc.stderr):
            if stream is not None:
                stream.close()
        if _tansu_alive(self.tansu_pid, self.tansu_comm):  # never leave one behind, even on failure
            os.kill(self.tansu_pid, signal.SIGKILL)


@pytest.fixture
def cli_broker_factory() -> Iterator[type[CliBroker]]:
    started: list[CliBroker] = []

    class Tracked(CliBroker):
        def __init__(self, *args: str) -> None:
            super().__init__(*args)
            started.append(self)

    yield Tracked
    for b in started:
        b.cleanup()


async def _partitions(bootstrap: str, topics: list[str]) -> dict[str, int]:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        described = await admin.describe_topics(topics)
    finally:
        await admin.close()
    return {d["topic"]: len(d["partitions"]) for d in described if d.get("error_code", 0) == 0}


async def _list_topics(bootstrap: str) -> set[str]:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        return set(await admin.list_topics())
    finally:
        await admin.close()


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
async def test_broker_cli_serves_kafka_and_a_signal_leaves_no_tansu(
    cli_broker_factory: type[CliBroker], sig: signal.Signals
) -> None:
    b = cli_broker_factory("--partitions", "2")
    await wait_ready(b.bootstrap, timeout=10)
    # Without --no-topics it has created the contract's topics with --partitions.
    assert await _partitions(b.bootstrap, list(ALL_TOPICS)) == {t: 2 for t in ALL_TOPICS}

    b.proc.send_signal(sig)
    assert b.proc.wait(15) == 0
    assert _wait_gone(b.tansu_pid, b.tansu_comm), f"tansu pid {b.tansu_pid} still running after {sig.name}"


def test_broker_cli_sigkill_leaves_no_orphan_tansu(cli_broker_factory: type[CliBroker]) -> None:
    b = cli_broker_factory("--no-topics")
    assert _tansu_alive(b.tansu_pid, b.tansu_comm)
    b.proc.kill()  # SIGKILL: no handler, no cleanup in the parent; only PR_SET_PDEATHSIG can help
    b.proc.wait(10)
    assert _wait_gone(b.tansu_pid, b.tansu_comm, timeout=5), (
        f"tansu pid {b.tansu_pid} orphaned after its parent was SIGKILLed (PR_SET_PDEATHSIG not effective)"
    )


async def test_topics_cli_creates_the_ten_contract_topics(cli_broker_factory: type[CliBroker]) -> None:
    b = cli_broker_factory("--no-topics")
    # list, not describe: Tansu auto-creates a topic that a metadata request names.
    assert await _list_topics(b.bootstrap) == set()

    def topics_cli() -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [*_livecue(), "topics", "--broker", b.url, "--partitions", "3", "--log-format", "text"],
            capture_output=True, text=True, timeout=60,
        )

    first = await asyncio.to_thread(topics_cli)
    assert first.returncode == 0, first.stderr
    assert first.stdout.splitlines() == [f"{t}\tcreated" for t in ALL_TOPICS]
    assert len(ALL_TOPICS) == 10
    assert await _list_topics(b.bootstrap) == set(ALL_TOPICS)
    assert await _partitions(b.bootstrap, list(ALL_TOPICS)) == {t: 3 for t in ALL_TOPICS}

    again = await asyncio.to_thread(topics_cli)  # idempotent
    assert again.returncode == 0, again.stderr
    assert again.stdout.splitlines() == [f"{t}\texists" for t in ALL_TOPICS]


def test_topics_cli_rejects_a_bad_broker_url() -> None:
    r = subprocess.run([*_livecue(), "topics", "--broker", "127.0.0.1:9092"], capture_output=True, text=True, timeout=60)
    assert r.returncode == 2
    assert "broker" in r.stderr and "kafka://" in r.stderr


# --- clients against the session broker ------------------------------------------------------


def _consumer(broker: EmbeddedBroker) -> AIOKafkaConsumer:
    return AIOKafkaConsumer(
        bootstrap_servers=broker.bootstrap, group_id=None, enable_auto_commit=False,
        fetch_max_wait_ms=20, auto_offset_reset="earliest",
    )


async def test_aiokafka_produce_and_consume_back(broker: EmbeddedBroker, uid: str) -> None:
    topic = f"test.broker.{uid}"
    admin = AIOKafkaAdminClient(bootstrap_servers=broker.bootstrap)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(topic, num_partitions=3, replication_factor=1)])
    finally:
        await admin.close()

    producer = AIOKafkaProducer(bootstrap_servers=broker.bootstrap, linger_ms=5)
    await producer.start()
    sent: dict[bytes, list[tuple[int, bytes]]] = {}
    try:
        for i in range(30):
            key = f"room-{uid}-{i % 5}".encode()
            value = encode(Chat(f"e{i}", key.decode(), TS + i, "u1", f"第{i}条"))
            md = await producer.send_and_wait(topic, value, key=key)
            sent.setdefault(key, []).append((md.partition, value))
    finally:
        await producer.stop()
    for key, records in sent.items():  # key = room_id: one room, one partition
        assert len({p for p, _ in records}) == 1, key

    consumer = _consumer(broker)
    await consumer.start()
    got: dict[bytes, list[bytes]] = {}
    try:
        consumer.assign([TopicPartition(topic, p) for p in range(3)])
        await consumer.seek_to_beginning()
        deadline = time.monotonic() + 20
        while sum(map(len, got.values())) < 30 and time.monotonic() < deadline:
            batches = await consumer.getmany(timeout_ms=200)
            for records in batches.values():
                for r in records:
                    assert r.key is not None and r.value is not None
                    got.setdefault(r.key, []).append(r.value)
    finally:
        await consumer.stop()
    assert got == {k: [v for _, v in records] for k, records in sent.items()}  # per-key order kept
    for key, values in got.items():
        assert [decode_event(v, key=key).room_id for v in values] == [key.decode()] * len(values)


async def test_librdkafka_producer_interoperates_with_the_contract(broker: EmbeddedBroker, uid: str) -> None:
    room = f"直播间-{uid}"
    chat = Chat(f"evt-{uid}", room, TS, "u-9001", "链接在哪？怎么买 😀")
    delivered: list[tuple[int, int]] = []

    def on_delivery(err: object, msg: object) -> None:
        assert err is None, err
        delivered.append((msg.partition(), msg.offset()))  # type: ignore[attr-defined]

    # Java-compatible partitioning: the same room lands on the same partition whichever client
    # produced it (librdkafka's default, consistent_random, uses CRC32 and would not).
    producer = Producer({
        "bootstrap.servers": broker.bootstrap, "partitioner": "murmur2_random", "linger.ms": 0,
        "client.id": f"test-{uid}",
    })
    producer.produce(TOPIC_CHAT, value=encode(chat), key=room.encode(), on_delivery=on_delivery)
    remaining = await asyncio.to_thread(producer.flush, 20)
    assert remaining == 0 and len(delivered) == 1
    partition, offset = delivered[0]
    assert partition == DefaultPartitioner()(room.encode(), [0, 1, 2, 3], [0, 1, 2, 3])

    consumer = _consumer(broker)
    await consumer.start()
    try:
        tp = TopicPartition(TOPIC_CHAT, partition)
        consumer.assign([tp])
        consumer.seek(tp, offset)
        msg = await asyncio.wait_for(consumer.getone(), timeout=20)
    finally:
        await consumer.stop()
    assert msg.offset == offset and msg.key == room.encode()
    assert decode_event(msg.value, key=msg.key, topic=msg.topic) == chat  # type: ignore[arg-type]
