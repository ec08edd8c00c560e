"""Fuzzing every inbound websocket message type against a running gateway process (hypothesis).

A real ``livecue gateway`` child process on the session's Tansu broker. For each message type
(``auth``, ``ack``, ``done``, ``dismiss``, ``resume``, unknown types, raw text and binary) an
attacker sends generated frames, both as the first frame of a fresh socket and after
authenticating. What must hold:

* the gateway answers with the protocol's own error frames (known codes) or closes with a
  policy/size code, and never anything else; nothing escapes into its log (no traceback, no
  ERROR line), and it keeps serving (the process lives, ``/healthz`` is ok);
* a legitimate control room on the same gateway keeps getting its cues: the median delivery
  time during each attack stays within 2x (+ 25 ms of slack) of the same run's baseline. The
  figures are printed; the bound is loose on purpose (two shared cores).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import multiprocessing
import os
import re
import statistics
import subprocess
import sys
import time
import typing
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest
from aiokafka import AIOKafkaProducer
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from websockets.asyncio.client import connect as aconnect
from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.sync.client import ClientConnection as SyncConnection
from websockets.sync.client import connect

from consumers.protocol import ErrorCode
from consumers.tokens import mint
from livecue.broker import EmbeddedBroker, free_port
from livecue.config import load_settings, settings_env
from schemas.events import TOPIC_CUES

REPO = Path(__file__).resolve().parents[2]
SECRET = "hostile-suite-secret-" + "s" * 32
KNOWN_CODES = set(typing.get_args(ErrorCode)) | {"bad_token", "expired", "revoked", "too_many", "auth_timeout"}
SERVER_TYPES = {"hello", "cue", "cue_state", "resumed", "stats", "stats_history", "error"}
CLOSE_CODES = {1008, 1009, 1007, 1002}  # policy, too big, bad UTF-8, protocol error


class GatewayProc:
    def __init__(self, proc: subprocess.Popen[bytes], port: int, log_path: Path) -> None:
        self.proc, self.port, self.log_path = proc, port, log_path

    @property
    def ws_url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/ws"

    def healthy(self) -> bool:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/healthz", timeout=5) as r:
                return r.status == 200 and orjson.loads(r.read())["status"] == "ok"
        except OSError:
            return False

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")


@pytest.fixture(scope="module")
def gateway_proc(broker: EmbeddedBroker, tmp_path_factory: pytest.TempPathFactory) -> Iterator[GatewayProc]:
    port = free_port()
    log_path = tmp_path_factory.mktemp("hostile") / "gateway.log"
    env = {k: v for k, v in os.environ.items() if not k.startswith("LIVECUE_")}
    env.update(settings_env(load_settings({"LIVECUE_BROKER": broker.url})))
    env.update({
        "LIVECUE_GATEWAY_PORT": str(port), "LIVECUE_TOKEN_SECRET": SECRET, "LIVECUE_LOG_FORMAT": "json",
        # Generous rate and caps: the fuzz is meant to reach the parser, not the rate limiter.
        "LIVECUE_GATEWAY_RATE_PER_S": "10000", "LIVECUE_GATEWAY_BURST": "10000",
        "LIVECUE_MAX_CONNECTIONS_PER_TOKEN": "10000", "LIVECUE_GATEWAY_AUTH_TIMEOUT_S": "2",
    })
    with log_path.open("wb") as log:
        proc = subprocess.Popen([sys.executable, "-m", "livecue.cli", "gateway"], cwd=REPO, env=env,
                                stdout=log, stderr=subprocess.STDOUT)
    gp = GatewayProc(proc, port, log_path)
    try:
        deadline = time.monotonic() + 60
        while not gp.healthy():
            assert proc.poll() is None, gp.log()[-3000:]
            assert time.monotonic() < deadline, "gateway did not become healthy"
            time.sleep(0.2)
        yield gp
    finally:
        proc.terminate()
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)


async def _monitor_async(conn: Any, bootstrap: str, ws_url: str, room: str) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=0)
    await producer.start()
    tok = mint(SECRET, "controller", [room], 3600, "monitor", time.time())
    ws = await aconnect(ws_url)
    await ws.send(orjson.dumps({"type": "auth", "token": tok}).decode())
    assert orjson.loads(await ws.recv())["type"] == "hello"
    arrived: dict[str, float] = {}
    events: dict[str, asyncio.Event] = {}
    n = 0

    async def read() -> None:
        async for raw in ws:
            m = orjson.loads(raw)
            if m["type"] == "cue" and m["cue_id"] in events:
                arrived[m["cue_id"]] = time.monotonic()
                events[m["cue_id"]].set()

    async def one() -> float:
        nonlocal n
        n += 1
        cue_id = f"{room}-m{n}"
        ev = events[cue_id] = asyncio.Event()
        now = int(time.time() * 1000)
        c = {"type": "cue", "cue_id": cue_id, "room_id": room, "session_id": "s", "kind": "push_stock",
             "severity": "warn", "sku_id": "sku-1", "headline": "上库存", "detail": "d", "evidence": {},
             "ts": now, "emitted_at": now}
        t0 = time.monotonic()
        await producer.send_and_wait(TOPIC_CUES, orjson.dumps(c), key=room.encode())
        await asyncio.wait_for(ev.wait(), 30)
        return arrived[cue_id] - t0

    async def sample(stop: asyncio.Event, out: list[float]) -> None:
        while not stop.is_set():
            out.append(await one())
            await asyncio.sleep(GAP_S)

    reader = asyncio.create_task(read())
    conn.send("ready")
    sampling: tuple[asyncio.Event, list[float], asyncio.Task[None]] | None = None
    try:
        while True:
            cmd = await asyncio.to_thread(conn.recv)
            if cmd == "baseline":
                out = []
                for _ in range(BASELINE_CUES):
                    out.append(await one())
                    await asyncio.sleep(GAP_S)
                conn.send(out)
            elif cmd == "start":
                stop, samples = asyncio.Event(), []  # type: ignore[var-annotated]
                sampling = (stop, samples, asyncio.create_task(sample(stop, samples)))
                conn.send("started")
            elif cmd == "stop":
                assert sampling is not None
                sampling[0].set()
                await sampling[2]
                conn.send(sampling[1])
            else:
                break
    finally:
        reader.cancel()
        await ws.close()
        await producer.stop()


def _monitor_main(conn: Any, bootstrap: str, ws_url: str, room: str) -> None:
    asyncio.run(_monitor_async(conn, bootstrap, ws_url, room))


GAP_S = 0.04
BASELINE_CUES = 25


class Monitor:
    """A legitimate control room in a process of its own (so the attacker's CPU use in this
    process does not count against the gateway): produces a cue for its room every ``GAP_S``
    and records how long each takes to reach its screen."""

    def __init__(self, bootstrap: str, gw: GatewayProc, room: str) -> None:
        ctx = multiprocessing.get_context("spawn")
        self.conn, child = ctx.Pipe()
        self.proc = ctx.Process(target=_monitor_main, args=(child, bootstrap, gw.ws_url, room), daemon=True)
        self.proc.start()
        assert self._wait() == "ready"

    def _wait(self, timeout: float = 120) -> Any:
        assert self.conn.poll(timeout), "the monitor did not answer"
        return self.conn.recv()

    def baseline(self) -> list[float]:
        self.conn.send("baseline")
        return self._wait()  # type: ignore[no-any-return]

    def start_sampling(self) -> None:
        self.conn.send("start")
        assert self._wait() == "started"

    def stop_sampling(self) -> list[float]:
        self.conn.send("stop")
        return self._wait()  # type: ignore[no-any-return]

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.conn.send("close")
        self.proc.join(20)
        if self.proc.is_alive():
            self.proc.kill()


# -- what an attacker sends ------------------------------------------------------------------

json_scalars = st.one_of(
    st.none(), st.booleans(), st.integers(), st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=False), st.text(max_size=40), st.text(max_size=300),
    st.sampled_from(["", " ", "\u0000", "../../etc/passwd", "<script>alert(1)</script>", "null", "-1",
                     "\ud7ff\ue000", "直播间", "a" * 129, "a" * 5000]),
)
json_values = st.recursive(json_scalars, lambda inner: st.one_of(
    st.lists(inner, max_size=6), st.dictionaries(st.text(max_size=12), inner, max_size=5)), max_leaves=20)
FIELDS = ["type", "token", "rooms", "cue_id", "room_id", "action", "seq", "last_seq", "by"]


@st.composite
def message(draw: st.DrawFn, mtype: str, room: str, token: str) -> str | bytes:
    """One frame of ``mtype``: mostly the real field names with values of any JSON type, now
    and then a real token / room / cue id so that validation goes past the first check."""
    if mtype == "raw":
        return draw(st.one_of(st.text(max_size=200), st.binary(max_size=200),
                              st.sampled_from(["{", "[]", "null", "1e999", '{"type":', "\x00" * 10,
                                               '{"type":"resume","rooms":{' + '"r":1,' * 50 + '"x":1}}'])))
    obj: dict[str, Any] = draw(st.dictionaries(st.sampled_from(FIELDS), json_values, max_size=5))
    obj["type"] = draw(st.one_of(st.text(max_size=20), json_values)) if mtype == "unknown" else mtype
    real = st.one_of(json_values, st.just(room), st.just(f"{room}-m1"))
    if mtype == "auth" and draw(st.booleans()):
        obj["token"] = draw(st.one_of(st.just(token), st.just(token[:-1]), st.just(token + "x"),
                                      st.just(token.replace(".", "..", 1)), json_values))
    if mtype in ("ack", "done", "dismiss") and draw(st.booleans()):
        obj["room_id"], obj["cue_id"] = draw(real), draw(real)
    if mtype == "resume" and draw(st.booleans()):
        obj["rooms"] = draw(st.dictionaries(st.one_of(st.just(room), st.text(max_size=130)),
                                            st.one_of(st.integers(-5, 2**64), json_values), max_size=70))
    text = json.dumps(obj)  # stdlib: big integers and escaped lone surrogates go out as such
    return text.encode() if draw(st.integers(0, 15)) == 0 else text


_PROBE = '{"type":"resume","rooms":{"__probe__":-1}}'  # answered by one wrong_room error naming it


def _read_until(ws: SyncConnection, *, probe: bool) -> tuple[list[dict[str, Any]], int | None]:
    """Frames until the probe's answer (``probe``), a hello, or the server closing."""
    got: list[dict[str, Any]] = []
    try:
        while True:
            m = orjson.loads(ws.recv(timeout=15))
            got.append(m)
            if probe and m.get("type") == "error" and m.get("room_id") == "__probe__":
                return got, None
            if not probe and m.get("type") == "hello":
                return got, None
    except ConnectionClosed:
        return got, ws.close_code


class Attacker:
    """An authenticated attacker connection, reopened whenever the gateway closes it."""

    def __init__(self, gw: GatewayProc, token: str) -> None:
        self.gw, self.token, self.ws = gw, token, None  # type: SyncConnection | None  # type: ignore[assignment]
        self.reconnects = 0

    def conn(self) -> SyncConnection:
        if self.ws is None:
            ws = connect(self.gw.ws_url, open_timeout=15, max_size=None, legacy=True)
            ws.send(orjson.dumps({"type": "auth", "token": self.token}).decode())
            assert orjson.loads(ws.recv(timeout=15))["type"] == "hello"
            self.ws = ws
            self.reconnects += 1
        return self.ws

    def drop(self) -> None:
        if self.ws is not None:
            self.ws.close()
            self.ws = None


def _check(frames: list[dict[str, Any]], code: int | None, *, authenticated: bool) -> None:
    for m in frames:
        assert m.get("type") in SERVER_TYPES, m
        if m["type"] == "error":
            assert m["code"] in KNOWN_CODES and isinstance(m["message"], str), m
        if m["type"] == "hello":
            assert not authenticated
    if code is not None:
        assert code in CLOSE_CODES, (code, frames)


MESSAGE_TYPES = ["auth", "ack", "done", "dismiss", "resume", "unknown", "raw"]


@pytest.mark.parametrize("mtype", MESSAGE_TYPES)
def test_fuzzed_frames_get_protocol_errors_and_a_screen_keeps_its_cues(
        gateway_proc: GatewayProc, broker: EmbeddedBroker, uid: str, mtype: str) -> None:
    room = f"rh-{mtype}-{uid}"
    monitor = Monitor(broker.bootstrap, gateway_proc, room)
    tok = mint(SECRET, "controller", [room], 3600, "attacker", time.time())
    attacker = Attacker(gateway_proc, tok)
    counts = {"pre_auth": 0, "post_auth": 0, "closed": 0, "errors": 0}
    try:
        baseline = monitor.baseline()
        monitor.start_sampling()

        @settings(max_examples=60, deadline=None, derandomize=False, database=None,
                  suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
        @given(frame=message(mtype, room, tok), pre_auth=st.booleans(), oversize=st.integers(0, 30))
        def attack(frame: str | bytes, pre_auth: bool, oversize: int) -> None:
            if oversize == 0:  # now and then over the 64 KiB frame limit
                frame = frame + (b" " if isinstance(frame, bytes) else " ") * 70_000  # type: ignore[operator]
            if pre_auth:  # the first frame of a fresh socket
                counts["pre_auth"] += 1
                try:
                    ws = connect(gateway_proc.ws_url, open_timeout=15, max_size=None, legacy=True)
                except InvalidStatus as exc:
                    raise AssertionError(f"handshake refused: {exc}") from None
                try:
                    ws.send(frame)
                    frames, code = _read_until(ws, probe=False)
                finally:
                    ws.close()
                _check(frames, code, authenticated=False)
                counts["closed"] += code is not None
                counts["errors"] += sum(m["type"] == "error" for m in frames)
                return
            counts["post_auth"] += 1
            ws = attacker.conn()
            try:
                ws.send(frame)
                ws.send(_PROBE)
                frames, code = _read_until(ws, probe=True)
            except ConnectionClosed:
                frames, code = [], ws.close_code
            _check(frames, code, authenticated=True)
            counts["errors"] += sum(m["type"] == "error" for m in frames)
            if code is not None:
                counts["closed"] += 1
                attacker.ws = None

        attack()
        during = monitor.stop_sampling()
    finally:
        attacker.drop()
        monitor.close()

    b, d = statistics.median(baseline), statistics.median(during)
    print(f"\nfuzz {mtype}: {counts['pre_auth']} pre-auth + {counts['post_auth']} post-auth frames, "
          f"{counts['errors']} error frames, {counts['closed']} closes; screen delivery median "
          f"{b * 1000:.1f} ms baseline -> {d * 1000:.1f} ms during ({len(during)} cues, "
          f"max {max(during) * 1000:.1f} ms)")
    assert gateway_proc.proc.poll() is None, "the gateway process died"
    assert gateway_proc.healthy()
    log = gateway_proc.log()
    bad = [line for line in log.splitlines()
           if re.search(r'"level":\s*"(error|critical)"|Traceback|"exc":|handler failed', line)]
    assert not bad, bad[:5]
    assert counts["errors"] > 0, "the attack reached the gateway's validation"
    assert d <= 2 * b + 0.025, (baseline, during)

