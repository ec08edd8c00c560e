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
import os
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from aiokafka import AIOKafkaProducer

from livecue.broker import EmbeddedBroker, create_topics
from livecue.config import Settings, load_settings
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
    """Settings for a worker/gateway in a test: real broker, own group and data dir, fast groups."""
    env = {
        "LIVECUE_BROKER": broker.url,
        "LIVECUE_APP_ID": f"livecue-test-{uid}",
        "LIVECUE_DATA_DIR": str(tmp_path / "data"),
        "LIVECUE_METRICS_PORT": "0",
        "LIVECUE_GATEWAY_PORT": "0",
        "LIVECUE_REBALANCE_TIMEOUT_S": "3",
        "LIVECUE_SESSION_TIMEOUT_S": "6",
        "LIVECUE_HEARTBEAT_INTERVAL_S": "0.5",
        "LIVECUE_COMMIT_INTERVAL_S": "0.2",
        "LIVECUE_TOKEN_SECRET": "test-secret-" + uid * 4,  # >= 32 bytes, as the setting requires
        "LIVECUE_LOG_FORMAT": "text",
    }
    return load_settings(env)


@pytest.fixture
async def kafka(broker: EmbeddedBroker) -> AsyncIterator[Kafka]:
    p = AIOKafkaProducer(bootstrap_servers=broker.bootstrap, linger_ms=0)
    await p.start()
    try:
        yield Kafka(p)
    finally:
        await p.stop()


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
