"""Test producers of contract-format records (importable by every test tier: tests/ is on sys.path)."""

from __future__ import annotations

from typing import Any

import orjson
from aiokafka import AIOKafkaProducer

from schemas.events import TOPIC_CUES, TOPIC_ROOM_STATS

__all__ = ["Kafka"]


class Kafka:
    """Produces contract-format outputs (key = room_id), as a worker would, for gateway tests."""

    def __init__(self, producer: AIOKafkaProducer) -> None:
        self.producer = producer

    async def cue(self, c: dict[str, Any]) -> int:
        md = await self.producer.send_and_wait(TOPIC_CUES, orjson.dumps(c), key=c["room_id"].encode())
        return int(md.offset)

    async def stats(self, s: dict[str, Any]) -> None:
        await self.producer.send_and_wait(TOPIC_ROOM_STATS, orjson.dumps(s), key=s["room_id"].encode())
