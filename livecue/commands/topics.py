"""``livecue topics``: create the contract's topics on a broker."""

from __future__ import annotations

import argparse
import asyncio

from livecue.broker import create_topics
from livecue.kafka_client import client_kwargs
from livecue.config import Settings
from schemas.events import ALL_TOPICS

NAME = "topics"
HELP = "create the wire contract's topics on the broker given by --broker"
SETTINGS = ("broker", "partitions", "log_format", "log_level")


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--timeout", type=float, default=30.0, help="seconds to wait for the broker")


def run(args: argparse.Namespace, settings: Settings) -> int:
    created = asyncio.run(create_topics(settings.broker, settings.partitions, ALL_TOPICS, args.timeout,
                                        security=client_kwargs(settings)))
    for t in ALL_TOPICS:
        print(f"{t}\t{'created' if t in created else 'exists'}")
    return 0
