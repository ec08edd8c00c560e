"""The fan-out bench's minimal screen (bench/fanout.py ``_Screen``): handshake, frames split
anywhere across reads, extended lengths, fragments, pings, and what it refuses."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import struct

import orjson
import pytest

from bench.fanout import _WS_GUID, _masked, _Screen


class _Transport(asyncio.Transport):
    def __init__(self) -> None:
        super().__init__()
        self.out: list[bytes] = []
        self.closed = False

    def write(self, data: bytes) -> None:  # type: ignore[override]
        self.out.append(bytes(data))

    def close(self) -> None:
        self.closed = True

    def abort(self) -> None:
        self.closed = True


def _frame(opcode: int, payload: bytes, fin: bool = True) -> bytes:
    n = len(payload)
    b0 = (0x80 if fin else 0) | opcode
    if n < 126:
        return bytes([b0, n]) + payload
    if n < 65536:
        return bytes([b0, 126]) + struct.pack("!H", n) + payload
    return bytes([b0, 127]) + struct.pack("!Q", n) + payload


def _unmask(frame: bytes) -> tuple[int, bytes]:
    assert frame[1] & 0x80, "a client frame must be masked"
    n, at = frame[1] & 0x7F, 2
    if n == 126:
        n, at = struct.unpack_from("!H", frame, 2)[0], 4
    mask, body = frame[at:at + 4], frame[at + 4:at + 4 + n]
    return frame[0] & 0x0F, bytes(b ^ mask[i & 3] for i, b in enumerate(body))


def _accepting(screen: _Screen) -> bytes:
    accept = base64.b64encode(hashlib.sha1(screen.key + _WS_GUID).digest())
    return b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nSec-WebSocket-Accept: " + accept + b"\r\n\r\n"


async def _opened() -> tuple[_Screen, _Transport, list[bytes]]:
    got: list[bytes] = []
    s = _Screen("127.0.0.1:1", "/ws", "tok", lambda m, t, r: got.append(m))
    tr = _Transport()
    s.connection_made(tr)
    assert tr.out[0].startswith(b"GET /ws HTTP/1.1\r\n") and b"Sec-WebSocket-Key: " + s.key in tr.out[0]
    return s, tr, got


async def test_reads_frames_split_at_every_byte_after_the_handshake() -> None:
    s, tr, got = await _opened()
    big = orjson.dumps({"type": "cue", "detail": "x" * 300})
    stream = (_accepting(s) + _frame(1, b'{"type":"hello"}') + _frame(1, b'{"type":"stats"}') + _frame(1, big)
              + _frame(1, b'{"type":"cue",', fin=False) + _frame(0, b'"n":1}'))
    for i in range(len(stream)):  # one byte at a time: every split point of every frame
        s.data_received(stream[i:i + 1])
    assert s.hello.done() and s.hello.exception() is None
    assert got == [b'{"type":"stats"}', big, b'{"type":"cue","n":1}']
    op, auth = _unmask(tr.out[1])
    assert op == 1 and orjson.loads(auth) == {"type": "auth", "token": "tok"}


async def test_answers_a_ping_with_a_masked_pong() -> None:
    s, tr, got = await _opened()
    s.data_received(_accepting(s) + _frame(1, b'{"type":"hello"}') + _frame(9, b"abc"))
    assert _unmask(tr.out[-1]) == (0xA, b"abc") and got == []


@pytest.mark.parametrize("answer", [b"HTTP/1.1 403 Forbidden\r\n\r\n", b"HTTP/1.1 101 OK\r\nSec-WebSocket-Accept: nope\r\n\r\n"])
async def test_a_refused_handshake_fails_hello(answer: bytes) -> None:
    s, tr, _ = await _opened()
    s.data_received(answer)
    with pytest.raises(RuntimeError, match="refused"):
        await asyncio.wait_for(s.hello, 5)
    assert tr.closed


async def test_an_error_frame_or_a_close_before_hello_fails_it() -> None:
    s, tr, _ = await _opened()
    s.data_received(_accepting(s) + _frame(1, b'{"type":"error","code":"bad_token"}'))
    with pytest.raises(RuntimeError, match="bad_token"):
        await asyncio.wait_for(s.hello, 5)
    s2, _, _ = await _opened()
    s2.data_received(_accepting(s2))
    s2.connection_lost(None)
    with pytest.raises(RuntimeError, match="closed before hello"):
        await asyncio.wait_for(s2.hello, 5)


async def test_a_masked_server_frame_is_refused() -> None:
    s, tr, got = await _opened()
    s.data_received(_accepting(s) + _frame(1, b'{"type":"hello"}'))
    s.data_received(_masked(1, b'{"type":"cue"}'))
    assert got == [] and tr.closed
