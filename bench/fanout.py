"""One cue fanned out to many connected screens: delivery latency at every screen.

``screens`` websocket clients (each with a token of its own: the gateway caps connections per
token) connect as controllers of one room. Then ``cues`` cues for that room are produced to
``live.cues``, each stamped ``emitted_at`` = the wall clock at send, a fraction of a second apart;
every screen notes ``now - emitted_at`` for each cue it receives. p50 / p99 over all (screen, cue)
pairs, in ms: Kafka's hop to the gateway, its fan-out, and the client's own reading (all the
clients share this one process, which the figure includes).
"""

from __future__ import annotations

import asyncio
import contextlib
import resource
import time
from typing import Any

import orjson
from aiokafka import AIOKafkaProducer
from websockets.asyncio.client import ClientConnection, connect

from consumers.tokens import mint
from schemas.events import TOPIC_CUES

from .common import progress, quantile

__all__ = ["fanout", "raise_nofile"]


def raise_nofile(wanted: int) -> int:
    """Raise this process's open-file limit toward ``wanted`` (up to the hard limit); the new soft limit."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
    if soft < target:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
        soft = target
    return soft


def _cue(room: str, n: int, run: str) -> dict[str, Any]:
    now = int(time.time() * 1000)
    return {
        "type": "cue", "cue_id": f"bench-{run}-{n}", "room_id": room, "session_id": f"{room}-s",
        "kind": "push_stock", "severity": "warn", "sku_id": "sku-1", "target_sku_id": None,
        "headline": f"上库存 #{n}", "detail": f"bench fan-out cue {n}", "evidence": {"n": n},
        "ts": now, "emitted_at": now,
    }


async def fanout(bootstrap: str, ws_url: str, secret: str, screens: int, cues: int, room: str) -> dict[str, Any]:
    """Connect ``screens`` screens to ``room``, send ``cues`` cues, return the latency figures."""
    raise_nofile(screens * 2 + 256)
    now = time.time()
    tokens = [mint(secret, "controller", [room], 3600, f"screen-{i}", now) for i in range(screens)]
    conns: list[ClientConnection] = []
    lat: list[float] = []
    per_screen = [0] * screens
    sem = asyncio.Semaphore(8)  # the gateway caps not-yet-authenticated sockets per address

    async def open_one(tok: str) -> ClientConnection:
        async with sem:
            ws = await connect(ws_url, open_timeout=30, max_size=None, ping_interval=None)
            await ws.send(orjson.dumps({"type": "auth", "token": tok}).decode())
            while True:
                m = orjson.loads(await asyncio.wait_for(ws.recv(), 30))
                if m.get("type") == "hello":
                    return ws
                if m.get("type") == "error":
                    raise RuntimeError(f"screen refused: {m}")

    t0 = time.perf_counter()
    results = await asyncio.gather(*(open_one(t) for t in tokens), return_exceptions=True)
    conns = [r for r in results if isinstance(r, ClientConnection)]
    errors = [r for r in results if not isinstance(r, ClientConnection)]
    progress(f"fanout: {len(conns)} screens connected in {time.perf_counter() - t0:.1f} s"
             + (f", {len(errors)} failed ({errors[0]!r})" if errors else ""))

    async def read(i: int, ws: ClientConnection) -> None:
        with contextlib.suppress(Exception):
            async for raw in ws:
                t = time.time() * 1000
                m = orjson.loads(raw)
                if m.get("type") == "cue" and m.get("room_id") == room:
                    lat.append(t - m["emitted_at"])
                    per_screen[i] += 1

    readers = [asyncio.create_task(read(i, ws)) for i, ws in enumerate(conns)]
    p = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=0)
    await p.start()
    run = f"{int(now)}"
    try:
        await asyncio.sleep(0.5)
        for n in range(cues):
            c = _cue(room, n, run)
            await (await p.send(TOPIC_CUES, orjson.dumps(c), key=room.encode()))
            await asyncio.sleep(0.3)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and len(lat) < len(conns) * cues:
            await asyncio.sleep(0.1)
    finally:
        await p.stop()
        for r in readers:
            r.cancel()
        await asyncio.gather(*readers, return_exceptions=True)
        await asyncio.gather(*(ws.close() for ws in conns), return_exceptions=True)
    return {
        "screens": len(conns), "screens_failed": len(errors), "cues": cues, "deliveries": len(lat),
        "expected_deliveries": len(conns) * cues,
        "p50_ms": quantile(lat, 0.50), "p99_ms": quantile(lat, 0.99), "max_ms": max(lat) if lat else None,
    }
