"""``livecue broker``: run the embedded Tansu broker in the foreground."""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys
import threading

from livecue.broker import EmbeddedBroker, create_topics
from livecue.config import Settings

NAME = "broker"
HELP = "run the embedded Kafka-compatible broker (Tansu) in the foreground and print its address"
SETTINGS = ("partitions", "log_format", "log_level")


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--port", type=int, default=0, help="port on 127.0.0.1 (default: a free one)")
    p.add_argument("--no-topics", action="store_true", help="do not create the contract's topics")


def run(args: argparse.Namespace, settings: Settings) -> int:
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
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
