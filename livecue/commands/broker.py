"""``livecue broker``: run a broker in the foreground and print its address.

By default the embedded Tansu broker; with ``--kafka`` Apache Kafka itself (1 or 3 KRaft nodes,
jars resolved with Maven from ``deploy/kafka/pom.xml``, see :mod:`livecue.kafka_cluster`).
Either way the address is printed alone on one line and every process started is stopped on
Ctrl-C / SIGTERM.
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys
import threading

from livecue.broker import EmbeddedBroker, create_topics
from livecue.config import Settings

NAME = "broker"
HELP = "run the embedded Kafka-compatible broker (Tansu, or Apache Kafka with --kafka) in the foreground and print its address"
SETTINGS = ("partitions", "log_format", "log_level")


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--port", type=int, default=0, help="port on 127.0.0.1 (default: a free one; Tansu only)")
    p.add_argument("--no-topics", action="store_true", help="do not create the contract's topics")
    p.add_argument(
        "--kafka", action="store_true",
        help="run Apache Kafka (KRaft, jars from Maven Central via deploy/kafka/pom.xml) instead of Tansu",
    )
    p.add_argument(
        "--nodes", type=int, choices=(1, 3), default=1,
        help="with --kafka: number of broker+controller nodes (3: replication 3, min.insync.replicas 2)",
    )
    p.add_argument("--data-dir", default=None, help="with --kafka: keep the nodes' data here (default: a temporary directory, removed on exit)")


def _stop_event() -> threading.Event:
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    return stop


def run(args: argparse.Namespace, settings: Settings) -> int:
    if args.kafka:
        return _run_kafka(args, settings)
    if args.nodes != 1:
        print("livecue broker: --nodes needs --kafka", file=sys.stderr)
        return 2
    stop = _stop_event()
    with EmbeddedBroker(port=args.port) as broker:
        if not args.no_topics:
            asyncio.run(create_topics(broker.bootstrap, settings.partitions))
        print(broker.url, flush=True)
        print("broker ready; Ctrl-C stops it", file=sys.stderr, flush=True)
        while not stop.wait(0.5):
            if not broker.alive():
                print("broker exited unexpectedly", file=sys.stderr)
                return 1
    return 0


def _run_kafka(args: argparse.Namespace, settings: Settings) -> int:
    from pathlib import Path

    from livecue.kafka_cluster import KafkaCluster

    if args.port:
        print("livecue broker: --port is for Tansu; Kafka nodes take free ports", file=sys.stderr)
        return 2
    stop = _stop_event()
    cluster = KafkaCluster(nodes=args.nodes, base_dir=Path(args.data_dir) if args.data_dir else None)
    try:
        cluster.start()
        if stop.is_set():
            return 0
        if not args.no_topics:
            asyncio.run(cluster.create_topics(settings.partitions))
        print(cluster.url, flush=True)
        print(f"kafka ready ({args.nodes} node(s)); Ctrl-C stops it", file=sys.stderr, flush=True)
        while not stop.wait(0.5):
            if not cluster.alive():
                dead = [n.node_id for n in cluster.nodes if not n.alive()]
                print(f"kafka node(s) {dead} exited unexpectedly", file=sys.stderr)
                return 1
        return 0
    finally:
        cluster.stop()
