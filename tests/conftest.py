"""Shared fixtures: one real Tansu broker and one Apache Kafka per test session, unique names per test.

Integration tests take ``broker`` (an :class:`~livecue.broker.EmbeddedBroker` with the contract's
topics created) and ``uid`` (a short unique suffix for room ids, topic names, group ids).
``test_settings`` gives worker/gateway settings tuned for Tansu: its consumer groups form only
after the rebalance timeout, so that is set low (3 s) with session/heartbeat to match.

A test that must hold on every broker takes ``any_broker`` instead: it runs once on Tansu (id
``tansu``) and once on Apache Kafka (id ``kafka``), each started once per session, and gets a
``brokers.BrokerUnderTest`` whose ``BrokerTraits`` name everything that differs between them.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from aiokafka import AIOKafkaProducer

from livecue.broker import EmbeddedBroker, create_topics
from livecue.config import Settings
from livecue.kafka_cluster import KafkaCluster

from brokers import TRAITS, BrokerUnderTest
from producers import Kafka

ARTIFACTS = Path(__file__).resolve().parent.parent / "artifacts"


@pytest.fixture(scope="session")
def tansu_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedBroker]:
    """The session's Tansu (the embedded default) with the contract's topics."""
    log_path = tmp_path_factory.mktemp("broker") / "tansu.log"
    b = EmbeddedBroker(log_path=log_path).start()
    try:
        asyncio.run(create_topics(b.bootstrap, partitions=4))
        yield b
    finally:
        b.stop()


@pytest.fixture(scope="session")
def broker(tansu_broker: EmbeddedBroker) -> EmbeddedBroker:
    return tansu_broker


@pytest.fixture(scope="session")
def kafka_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[KafkaCluster]:
    """Apache Kafka itself (one KRaft node, jars from Maven Central) with the contract's topics."""
    c = KafkaCluster(nodes=1, base_dir=tmp_path_factory.mktemp("kafka")).start()
    try:
        asyncio.run(c.create_topics(partitions=4))
        yield c
    finally:
        c.stop()


@pytest.fixture(scope="session", params=["tansu", "kafka"])
def any_broker(request: pytest.FixtureRequest) -> BrokerUnderTest:
    """Tansu, then Apache Kafka: the session's instance of each (started on first use).

    Topics are shared across the session; a worker test starts its group at the inputs' tail
    (``harness.group_at_tail``) so it reads only its own records."""
    b = request.getfixturevalue(f"{request.param}_broker")
    return BrokerUnderTest(request.param, b.bootstrap, b.url, TRAITS[request.param])


@pytest.fixture
def uid() -> str:
    return uuid.uuid4().hex[:10]


@pytest.fixture
def test_settings(broker: EmbeddedBroker, tmp_path: Path, uid: str) -> Settings:
    """Settings for a worker/gateway in a test on ``broker`` (Tansu: the session's or a module's
    own): own group and data dir, fast groups (BrokerTraits of Tansu)."""
    return BrokerUnderTest("tansu", broker.bootstrap, broker.url, TRAITS["tansu"]).settings(tmp_path, uid)


@contextlib.asynccontextmanager
async def _outputs(bootstrap: str) -> AsyncIterator[Kafka]:
    p = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=0)
    await p.start()
    try:
        yield Kafka(p)
    finally:
        await p.stop()


@pytest.fixture
async def kafka(broker: EmbeddedBroker) -> AsyncIterator[Kafka]:
    """Produces contract-format outputs (cues, stats) to ``broker``."""
    async with _outputs(broker.bootstrap) as k:
        yield k


@pytest.fixture
async def any_kafka(any_broker: BrokerUnderTest) -> AsyncIterator[Kafka]:
    """Produces contract-format outputs (cues, stats) to ``any_broker``."""
    async with _outputs(any_broker.bootstrap) as k:
        yield k


@pytest.fixture(scope="session")
def artifacts_dir() -> Path:
    ARTIFACTS.mkdir(exist_ok=True)
    return ARTIFACTS


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    # Tier markers follow the directory, so `-m "not e2e"` works without decorating every test.
    for item in items:
        parts = Path(str(item.fspath)).parts
        if "integration" in parts:
            item.add_marker(pytest.mark.integration)
        if "e2e" in parts:
            item.add_marker(pytest.mark.e2e)


os.environ.setdefault("PYTHONHASHSEED", "0")
