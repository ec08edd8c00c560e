"""Helpers for the tests on Apache Kafka itself (``test_kafka_*.py``).

A worker test gets a cluster of its own (:func:`fresh_kafka`, one KRaft node starts in about
4 s), as the Tansu worker tests get a fresh broker: a fresh consumer group then reads only that
test's show. Tests that only need the contract topics share the session ``kafka_broker``.
Settings for Kafka keep the worker's defaults where Tansu needed workarounds: Kafka forms a
group at once (``group.initial.rebalance.delay.ms`` = 0 here, as in docker-compose.yml).
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from livecue.config import Settings, load_settings
from livecue.kafka_cluster import KafkaCluster

__all__ = ["fresh_kafka", "kafka_settings"]


@contextmanager
def fresh_kafka(tmp_path: Path, nodes: int = 1, partitions: int = 4, **kw: Any) -> Iterator[KafkaCluster]:
    """A cluster of a test's own with the contract's topics; every node is stopped afterwards."""
    c = KafkaCluster(nodes=nodes, base_dir=tmp_path / "kafka", **kw).start()
    try:
        asyncio.run(c.create_topics(partitions))
        yield c
    finally:
        c.stop()


def kafka_settings(cluster: KafkaCluster, tmp_path: Path, uid: str, **env: str) -> Settings:
    """Worker/gateway settings on ``cluster``: own group and data dir, fast commits.

    Unlike the Tansu ``test_settings`` there is no rebalance-timeout workaround: the worker's
    default (4 s) applies.
    """
    base = {
        "LIVECUE_BROKER": cluster.url,
        "LIVECUE_APP_ID": f"livecue-kafka-{uid}",
        "LIVECUE_DATA_DIR": str(tmp_path / "data"),
        "LIVECUE_METRICS_PORT": "0",
        "LIVECUE_GATEWAY_PORT": "0",
        "LIVECUE_HEARTBEAT_INTERVAL_S": "0.5",
        "LIVECUE_COMMIT_INTERVAL_S": "0.2",
        "LIVECUE_TOKEN_SECRET": "kafka-test-secret-" + uid * 4,  # >= 32 bytes
        "LIVECUE_LOG_FORMAT": "text",
    }
    base.update(env)
    return load_settings(base)
