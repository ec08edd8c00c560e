"""Helpers for the tests on Apache Kafka itself (``test_kafka_*.py``).

A worker test gets a cluster of its own (:func:`fresh_kafka`, one KRaft node starts in about
4 s), as the Tansu worker tests get a fresh broker: a fresh consumer group then reads only that
test's show. Tests that only need the contract topics share the session ``kafka_broker``.
Settings for Kafka keep the worker's defaults where Tansu needed workarounds: Kafka forms a
group at once (``group.initial.rebalance.delay.ms`` = 0 here, as in docker-compose.yml).
"""

from __future__ import annotations

import asyncio
import shutil
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from brokers import TRAITS, BrokerUnderTest
from harness import changelog_last
from livecue.config import Settings
from livecue.kafka_cluster import KafkaCluster

__all__ = ["Pki", "changelog_last", "fresh_kafka", "kafka_settings", "make_pki", "secured_env"]


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
    default (4 s) applies (``brokers.TRAITS["kafka"]``).
    """
    return BrokerUnderTest("kafka", cluster.bootstrap, cluster.url, TRAITS["kafka"]).settings(tmp_path, uid, **env)


@dataclass(frozen=True)
class Pki:
    """Test certificates (PEM): a CA, the broker's keystore signed by it, a client certificate,
    and a second CA the broker's certificate was not signed by."""

    ca: Path
    broker_keystore: Path
    client_cert: Path
    client_key: Path
    other_ca: Path


def _openssl(*args: str, cwd: Path) -> None:
    if shutil.which("openssl") is None:
        raise AssertionError("openssl is needed to make test certificates (apt-get install openssl)")
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True, timeout=60)


def make_pki(d: Path) -> Pki:
    """A throwaway CA and certificates for 127.0.0.1, made with the openssl command."""
    d.mkdir(parents=True, exist_ok=True)
    for ca in ("ca", "other-ca"):
        _openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", f"{ca}.key", "-out", f"{ca}.pem",
                 "-days", "2", "-subj", f"/CN=livecue-test-{ca}", cwd=d)
    (d / "san.ext").write_text("subjectAltName=IP:127.0.0.1,DNS:localhost\n")
    for name in ("broker", "client"):
        _openssl("req", "-newkey", "rsa:2048", "-nodes", "-keyout", f"{name}.key", "-out", f"{name}.csr",
                 "-subj", f"/CN=livecue-{name}", cwd=d)
        _openssl("x509", "-req", "-in", f"{name}.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial",
                 "-out", f"{name}.pem", "-days", "2", "-extfile", "san.ext", cwd=d)
    # Kafka's PEM keystore: the PKCS#8 private key followed by the certificate.
    (d / "broker-keystore.pem").write_text((d / "broker.key").read_text() + (d / "broker.pem").read_text())
    return Pki(d / "ca.pem", d / "broker-keystore.pem", d / "client.pem", d / "client.key", d / "other-ca.pem")


def secured_env(pki: Pki, user: str, password_file: Path, mechanism: str = "SCRAM-SHA-512") -> dict[str, str]:
    """LIVECUE_* env for a SASL_SSL client with a client certificate (password from a file)."""
    return {
        "LIVECUE_KAFKA_SECURITY_PROTOCOL": "SASL_SSL",
        "LIVECUE_KAFKA_SASL_MECHANISM": mechanism,
        "LIVECUE_KAFKA_USERNAME": user,
        "LIVECUE_KAFKA_PASSWORD_FILE": str(password_file),
        "LIVECUE_KAFKA_CA_FILE": str(pki.ca),
        "LIVECUE_KAFKA_CERT_FILE": str(pki.client_cert),
        "LIVECUE_KAFKA_KEY_FILE": str(pki.client_key),
    }
