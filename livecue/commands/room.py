"""``livecue room reset ROOM``: start a room over, without a redeploy.

Writes a ``room_reset`` event (wire contract: ``live.room``, key = room id) for each room named.
The worker that owns the room's partition applies it in order like any event: the room's state
becomes a fresh one (and is written to the table's changelog), whatever its clock said: the way
out when a wrong clock dated an event far in the future and every later event was refused as
too far behind. A backtest of the topics replays the reset at the same place.
"""

from __future__ import annotations

import argparse
import asyncio
import getpass
import time
import uuid

import orjson
from aiokafka import AIOKafkaProducer

from livecue.config import Settings
from livecue.kafka_client import client_kwargs
from schemas.events import TOPIC_ROOM, RoomReset

NAME = "room"
HELP = "operate on rooms: `livecue room reset ROOM [ROOM ...]` starts rooms over (a room_reset event)"
SETTINGS = ("broker", "log_format", "log_level")


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("action", choices=("reset",), help="what to do")
    p.add_argument("rooms", nargs="+", metavar="ROOM", help="room ids")
    p.add_argument("--by", default="", help="who asks (default: the local user name)")


async def _send(settings: Settings, events: list[RoomReset]) -> None:
    p = AIOKafkaProducer(bootstrap_servers=settings.broker, enable_idempotence=False, acks="all",
                         **client_kwargs(settings))
    await p.start()
    try:
        for ev in events:
            meta = await p.send_and_wait(TOPIC_ROOM, orjson.dumps(ev), key=ev.room_id.encode())
            print(f"{ev.room_id}\treset\t{TOPIC_ROOM}[{meta.partition}]@{meta.offset}", flush=True)
    finally:
        await p.stop()


def run(args: argparse.Namespace, settings: Settings) -> int:
    by = args.by or getpass.getuser() or "operator"
    now = int(time.time() * 1000)
    events = [RoomReset(f"reset-{uuid.uuid4().hex[:12]}", room, now, by[:128]) for room in args.rooms]
    asyncio.run(_send(settings, events))
    return 0
