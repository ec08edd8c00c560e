"""One cue fanned out to many connected screens: delivery latency at every screen.

``screens`` websocket clients (each with a token of its own: the gateway caps connections per
token) connect as controllers of one room. Then ``cues`` cues for that room are produced to
``live.cues``, each stamped ``emitted_at`` = the wall clock at send, a fraction of a second apart;
every screen notes ``now - emitted_at`` for each cue it receives. p50 / p99 over all (screen, cue)
pairs, in ms: Kafka's hop to the gateway, its fan-out, and the client's own reading.

The screens are :class:`_Screen`, a minimal websocket client (RFC 6455 handshake, a masked auth
frame, unmasked server frames read straight off the socket, pings answered), all in this one
process. With ``websockets``' own client each screen cost ~37 µs per frame here (py-spy: its
parser, frame assembler, message queue and the reading task's wake-up): 1,000 screens took
~37 ms of one core to read one fan-out, longer than the gateway took to write it (~14 ms), so
the figure was this process's queue, not the gateway. A real screen is a browser on its own
machine.

A frame's arrival is the **kernel's receive stamp** of the bytes that completed it
(``SO_TIMESTAMPING``, software RX stamps, which Linux gives TCP through ``recvmsg``): the moment
they reached the screen's socket, however long this one process then takes to get round to the
1,000th socket. The time at which this process read them is kept too (``read_p50_ms`` /
``read_p99_ms``); where the kernel gives no stamp, the read time is the arrival (``stamps`` says
which). On this host the two agree within a few ms (2026-12-03): the spread of a fan-out over
its 1,000 screens is the gateway's writing, not this reader. Measured per cue that day: the
first screen had the cue 7-17 ms after it was produced, the last 45-80 ms after, and the
gateway spent 26-52 ms of CPU writing it; that is what ``Gateway._broadcast`` then cut.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import os
import resource
import socket
import struct
import time
from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit

import orjson
from aiokafka import AIOKafkaProducer

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


_WS_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"


def _masked(opcode: int, payload: bytes) -> bytes:
    """One client frame (FIN set, masked as RFC 6455 requires of a client)."""
    n = len(payload)
    head = bytes([0x80 | opcode])
    if n < 126:
        head += bytes([0x80 | n])
    elif n < 65536:
        head += bytes([0x80 | 126]) + struct.pack("!H", n)
    else:
        head += bytes([0x80 | 127]) + struct.pack("!Q", n)
    mask = os.urandom(4)
    body = bytes(b ^ mask[i & 3] for i, b in enumerate(payload))
    return head + mask + body


SO_TIMESTAMPING: int = getattr(socket, "SO_TIMESTAMPING", 37)
_RX_SOFTWARE_STAMPS = 0x8 | 0x10  # SOF_TIMESTAMPING_RX_SOFTWARE | SOF_TIMESTAMPING_SOFTWARE
_STAMP_SPACE = socket.CMSG_SPACE(48)  # struct scm_timestamping: three timespecs


def kernel_stamp_ms(ancdata: list[tuple[int, int, bytes]]) -> float | None:
    """The software receive stamp (epoch ms) in ``recvmsg``'s ancillary data, if any."""
    for level, kind, data in ancdata:
        if level == socket.SOL_SOCKET and kind == SO_TIMESTAMPING and len(data) >= 16:
            sec, nsec = struct.unpack_from("qq", data)
            if sec:
                return sec * 1000 + nsec / 1e6
    return None


class _Screen(asyncio.Protocol):
    """A screen that reads the gateway's frames straight off its socket (module docstring).

    ``on_text(payload, t, read)`` gets each text message with ``t``, the wall time in ms at
    which the bytes that completed it reached the socket (the kernel's stamp once
    :meth:`stamp_reads` is on, else ``read``), and ``read``, when this process read them.
    ``hello`` resolves on the gateway's ``hello`` (authenticated) and fails on an ``error``
    frame, a refused handshake or a closed socket. Once authenticated, a screen on a real socket
    reads through :meth:`stamp_reads`."""

    def __init__(self, host: str, path: str, token: str,
                 on_text: Callable[[bytes, float, float], None]) -> None:
        self.host, self.path, self.token, self.on_text = host, path, token, on_text
        self.key = base64.b64encode(os.urandom(16))
        self.hello: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.transport: asyncio.Transport | None = None
        self._buf = b""
        self._upgraded = False
        self._fragments: list[bytes] = []
        self._sock: socket.socket | None = None  # its own handle on the socket, for recvmsg
        self.stamped = 0  # reads that carried a kernel stamp
        self._authenticated = False  # hello has just arrived: switch to stamped reads

    def stamp_reads(self) -> bool:
        """Read the socket with ``recvmsg`` and the kernel's receive stamps from now on (the
        transport stops reading; it still writes pongs). False where there is no socket."""
        sock = self.transport.get_extra_info("socket") if self.transport is not None else None
        if sock is None or self.transport is None or self.transport.is_closing():
            return False
        own = socket.socket(fileno=os.dup(sock.fileno()))
        own.setblocking(False)
        try:
            own.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPING, _RX_SOFTWARE_STAMPS)
        except OSError:
            own.close()
            return False
        self.transport.pause_reading()
        self._sock = own
        asyncio.get_running_loop().add_reader(own.fileno(), self._read_stamped)
        return True

    def _read_stamped(self) -> None:
        assert self._sock is not None
        try:
            data, anc, _, _ = self._sock.recvmsg(1 << 18, _STAMP_SPACE)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            data, anc = b"", []
        if not data:
            self.close()
            return
        stamp = kernel_stamp_ms(anc)
        self.stamped += stamp is not None
        self._feed(data, time.time() * 1000, stamp)

    def close(self) -> None:
        if self._sock is not None:
            asyncio.get_running_loop().remove_reader(self._sock.fileno())
            self._sock.close()
            self._sock = None
        if self.transport is not None:
            self.transport.close()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        transport.write(
            b"GET " + self.path.encode() + b" HTTP/1.1\r\nHost: " + self.host.encode()
            + b"\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: " + self.key
            + b"\r\nSec-WebSocket-Version: 13\r\n\r\n")

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.hello.done():
            self.hello.set_exception(RuntimeError(f"screen: connection closed before hello ({exc!r})"))

    def _fail(self, why: str) -> None:
        if not self.hello.done():
            self.hello.set_exception(RuntimeError(f"screen refused: {why}"))
        if self.transport is not None:
            self.transport.close()

    def data_received(self, data: bytes) -> None:
        self._feed(data, time.time() * 1000, None)

    def _feed(self, data: bytes, t: float, stamp: float | None) -> None:
        buf = self._buf + data if self._buf else data
        if not self._upgraded:
            end = buf.find(b"\r\n\r\n")
            if end < 0:
                self._buf = buf
                return
            head, buf = buf[:end].decode("latin-1"), buf[end + 4:]
            accept = base64.b64encode(hashlib.sha1(self.key + _WS_GUID).digest()).decode()
            if not head.startswith("HTTP/1.1 101") or accept not in head:
                self._fail(head.split("\r\n", 1)[0])
                return
            self._upgraded = True
            assert self.transport is not None
            self.transport.write(_masked(0x1, orjson.dumps({"type": "auth", "token": self.token})))
        pos, n = 0, len(buf)
        while n - pos >= 2:
            b0, b1 = buf[pos], buf[pos + 1]
            size, at = b1 & 0x7F, pos + 2
            if size == 126:
                if n - at < 2:
                    break
                size, at = struct.unpack_from("!H", buf, at)[0], at + 2
            elif size == 127:
                if n - at < 8:
                    break
                size, at = struct.unpack_from("!Q", buf, at)[0], at + 8
            if b1 & 0x80:  # a server never masks
                self._fail("masked frame from the server")
                return
            if n - at < size:
                break
            payload, pos = buf[at:at + size], at + size
            self._frame(b0 & 0x80, b0 & 0x0F, payload, t if stamp is None else stamp, t)
        self._buf = buf[pos:]
        if self._authenticated and self._sock is None:
            self._authenticated = False
            self.stamp_reads()  # later bytes come with the kernel's stamps

    def _frame(self, fin: int, opcode: int, payload: bytes, t: float, read: float) -> None:
        assert self.transport is not None
        if opcode == 0x9:
            self.transport.write(_masked(0xA, payload))
            return
        if opcode == 0x8:
            self._fail(f"closed by the gateway ({payload[2:]!r})")
            return
        if opcode in (0x0, 0x1):
            self._fragments.append(payload)
            if not fin:
                return
            msg = b"".join(self._fragments) if len(self._fragments) > 1 else payload
            self._fragments = []
            if not self.hello.done():
                m = orjson.loads(msg)
                if m.get("type") == "hello":
                    self.hello.set_result(None)
                    self._authenticated = True
                elif m.get("type") == "error":
                    self._fail(str(m))
                return
            self.on_text(msg, t, read)


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
    lat: list[float] = []  # at the socket (the kernel's stamp where there is one)
    read_lat: list[float] = []  # when this process read it
    sem = asyncio.Semaphore(8)  # the gateway caps not-yet-authenticated sockets per address
    url = urlsplit(ws_url)
    host, port, path = url.hostname or "127.0.0.1", url.port or 80, url.path or "/"
    loop = asyncio.get_running_loop()

    def on_text(msg: bytes, t: float, read: float) -> None:
        m = orjson.loads(msg)
        if m.get("type") == "cue" and m.get("room_id") == room:
            lat.append(t - m["emitted_at"])
            read_lat.append(read - m["emitted_at"])

    async def open_one(tok: str) -> _Screen:
        async with sem:
            _, screen = await loop.create_connection(
                lambda: _Screen(f"{host}:{port}", path, tok, on_text), host, port)
            try:
                await asyncio.wait_for(screen.hello, 30)
            except BaseException:
                if screen.transport is not None:
                    screen.transport.abort()
                raise
            return screen

    t0 = time.perf_counter()
    results = await asyncio.gather(*(open_one(t) for t in tokens), return_exceptions=True)
    conns = [r for r in results if isinstance(r, _Screen)]
    errors = [r for r in results if not isinstance(r, _Screen)]
    progress(f"fanout: {len(conns)} screens connected in {time.perf_counter() - t0:.1f} s"
             + (f", {len(errors)} failed ({errors[0]!r})" if errors else ""))

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
        for screen in conns:
            screen.close()
    stamped = sum(1 for screen in conns if screen.stamped)
    return {
        "screens": len(conns), "screens_failed": len(errors), "cues": cues, "deliveries": len(lat),
        "expected_deliveries": len(conns) * cues,
        "p50_ms": quantile(lat, 0.50), "p99_ms": quantile(lat, 0.99), "max_ms": max(lat) if lat else None,
        "stamps": "kernel" if conns and stamped == len(conns) else "process" if not stamped else "mixed",
        "screens_stamped": stamped,
        "read_p50_ms": quantile(read_lat, 0.50), "read_p99_ms": quantile(read_lat, 0.99),
    }
