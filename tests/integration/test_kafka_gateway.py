"""The gateway on Apache Kafka itself, with real websocket clients: a cue reaches the controller
and host of its room and nobody else, stats skip the host, and a controller's ack goes through
``live.acks`` back to every screen of the room as ``cue_state``."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any

import orjson
import pytest
from aiokafka import AIOKafkaProducer
from prometheus_client import CollectorRegistry
from websockets.asyncio.client import ClientConnection, connect

from consumers.gateway import Gateway, Limits
from consumers.tokens import mint
from kafka_harness import kafka_settings
from livecue.config import Settings
from livecue.kafka_cluster import KafkaCluster
from schemas.events import TOPIC_CUES, TOPIC_ROOM_STATS

LIMITS = Limits(auth_timeout_s=2.0, send_queue=16, send_timeout_s=1.0, ready_timeout_s=20)


@pytest.fixture
def settings(kafka_broker: KafkaCluster, tmp_path: Any, uid: str) -> Settings:
    return kafka_settings(kafka_broker, tmp_path, uid)


@pytest.fixture
async def gateway(settings: Settings) -> AsyncIterator[Gateway]:
    gw = Gateway(settings, CollectorRegistry(), limits=LIMITS)
    t0 = time.monotonic()
    await gw.start()
    print(f"[kafka] gateway start (backlog read from the tail): {time.monotonic() - t0:.2f}s")
    try:
        yield gw
    finally:
        await gw.stop()


@pytest.fixture
async def producer(kafka_broker: KafkaCluster) -> AsyncIterator[AIOKafkaProducer]:
    p = AIOKafkaProducer(bootstrap_servers=kafka_broker.bootstrap, linger_ms=0)
    await p.start()
    try:
        yield p
    finally:
        await p.stop()


def _cue(room: str, n: int) -> dict[str, Any]:
    now = int(time.time() * 1000)
    return {
        "type": "cue", "cue_id": f"{room}-c{n}", "room_id": room, "session_id": f"{room}-s",
        "kind": "push_stock", "severity": "warn", "sku_id": "sku-1", "target_sku_id": None,
        "headline": f"上库存 #{n}", "detail": f"加购激增 {n}", "evidence": {"cart_adds_per_min": 40 + n},
        "ts": now, "emitted_at": now,
    }


def _stats(room: str, online: int) -> dict[str, Any]:
    now = int(time.time() * 1000)
    return {"type": "room_stats", "room_id": room, "session_id": f"{room}-s", "ts": now, "tier": "hot",
            "online": online, "skus": [], "emitted_at": now}


async def _send(p: AIOKafkaProducer, topic: str, value: dict[str, Any]) -> int:
    md = await p.send_and_wait(topic, orjson.dumps(value), key=value["room_id"].encode())
    return int(md.offset)


async def _screen(gw: Gateway, settings: Settings, role: str, room: str) -> ClientConnection:
    tok = mint(settings.token_secret, role, [room], 3600, "tester", time.time())
    ws = await connect(gw.ws_url)
    await ws.send(orjson.dumps({"type": "auth", "token": tok}).decode())
    hello = orjson.loads(await asyncio.wait_for(ws.recv(), 5))
    assert hello["type"] == "hello", hello
    return ws


async def _next(ws: ClientConnection, *types: str, timeout: float = 5.0) -> dict[str, Any]:
    async with asyncio.timeout(timeout):
        while True:
            m: dict[str, Any] = orjson.loads(await ws.recv())
            if m["type"] in types:
                return m


async def _none_of(ws: ClientConnection, types: tuple[str, ...], wait: float) -> None:
    try:
        async with asyncio.timeout(wait):
            while True:
                m = orjson.loads(await ws.recv())
                assert m["type"] not in types, m
    except TimeoutError:
        return


async def test_gateway_on_kafka_routes_cues_stats_and_acks_by_room(
    gateway: Gateway, producer: AIOKafkaProducer, settings: Settings, uid: str
) -> None:
    a, b = f"ka-{uid}", f"kb-{uid}"
    ctl_a = await _screen(gateway, settings, "controller", a)
    host_a = await _screen(gateway, settings, "host", a)
    ctl_b = await _screen(gateway, settings, "controller", b)

    offset = await _send(producer, TOPIC_CUES, _cue(a, 1))
    got = await _next(ctl_a, "cue")
    assert got["cue_id"] == f"{a}-c1" and got["seq"] == offset and got["evidence"]["cart_adds_per_min"] == 41
    h = await _next(host_a, "cue")
    assert h["cue_id"] == f"{a}-c1" and h["headline"] == "上库存 #1" and "evidence" not in h

    # Room b's controller gets room b's cue first: room a's never reached it.
    await _send(producer, TOPIC_CUES, _cue(b, 1))
    assert (await _next(ctl_b, "cue"))["cue_id"] == f"{b}-c1"
    await _none_of(ctl_a, ("cue",), 0.3)

    await _send(producer, TOPIC_ROOM_STATS, _stats(a, 777))
    st = await _next(ctl_a, "stats")
    assert st["room_id"] == a and st["online"] == 777
    await _none_of(host_a, ("stats",), 0.3)

    # An ack is produced to live.acks on Kafka and comes back to the room's screens.
    await ctl_a.send(orjson.dumps({"type": "ack", "cue_id": f"{a}-c1", "room_id": a}).decode())
    cs = await _next(ctl_a, "cue_state", "error", timeout=10)
    assert cs["type"] == "cue_state" and cs["cue_id"] == f"{a}-c1" and cs["state"] == "acked", cs
    await _none_of(ctl_b, ("cue_state",), 0.3)
    for ws in (ctl_a, host_a, ctl_b):
        await ws.close()
