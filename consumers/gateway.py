"""The websocket gateway: ``live.cues`` / ``live.room_stats`` / ``live.acks`` in, screens out.

A thin adapter around the pure modules of this package:

* aiokafka, group-less: every instance assigns every partition of the three topics, reads back a
  bounded tail of ``live.cues`` and ``live.acks`` to fill the per-room backlog (and the last
  stats of each room), then follows. So any number of instances can run behind a load balancer.
* websockets (asyncio API): ``/ws`` for screens; ``/``, ``/host``, ``/static/*``, ``/healthz`` and
  ``/metrics`` as plain HTTP routes answered from ``process_request``.
* Backpressure: every screen has its own writer task fed from a bounded queue. The broadcaster
  only ever calls ``put_nowait``: it never awaits a screen. A screen whose queue fills up with
  cues, or whose socket does not take a frame within ``send_timeout_s``, is cut off (and counted);
  stats snapshots are simply skipped for a screen that is backing up. A ``resume`` is paged
  through the same queue: it only ever fills half of it and waits for the writer to drain, so
  a backlog of any size never trips the cut-off and live cues always find room.
* Hostile clients: a socket that has not authenticated is cheap to drop. Unauthenticated sockets
  are capped per remote address and overall, and a new one pushes out the oldest rather than
  being refused, so an idle flood never keeps a real screen (which authenticates within
  milliseconds) out; ``max_connections`` counts authenticated screens only. A screen is closed
  (1008) when its token expires or is revoked (``revoked_tokens[_file]``, re-read every second).

Use :class:`Gateway` as ``port = await gw.start()`` … ``await gw.stop()`` (or ``async with``).
"""

from __future__ import annotations

import asyncio
import contextlib
import email.utils
import itertools
import logging
import secrets
import time
from collections import OrderedDict, deque
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final
from urllib.parse import urlsplit

import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.errors import KafkaError
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.datastructures import Headers
from websockets.exceptions import ConnectionClosed
from websockets.frames import Frame, Opcode
from websockets.http11 import Request, Response
from websockets.protocol import State
from websockets.typing import Subprotocol

from livecue.config import Settings
from livecue.kafka_client import client_kwargs
from schemas.errors import ConfigError
from schemas.decode import decode_ack, encode
from schemas.errors import InvalidAck
from schemas.events import TOPIC_ACKS, TOPIC_CUES, TOPIC_ROOM_STATS
from schemas.outputs import Ack

from .backlog import Backlog
from .metrics import GatewayMetrics, observe_many
from .origins import allowed_origins, origin_matches_host, origin_ok
from .protocol import Action, Auth, ProtocolError, Resume, error_frame, frame, host_view, parse_client
from .report_access import answer as report_answer
from .wall import wall_config
from .ratelimit import LogThrottle, TokenBucket
from .subscriptions import ConnectionTable, TooMany
from .tokens import Claims, TokenError, check_secret, fingerprint, verify

__all__ = ["Gateway", "Limits"]

log = logging.getLogger(__name__)
#: a frame is written at once only while the screen's socket buffers less than this (websockets'
#: own high-water mark is 32 KiB); above it frames queue for the writer, which times out a stall
DIRECT_WRITE_LIMIT = 32 * 1024
# websockets logs request headers at DEBUG (an Authorization header must never reach a log) and
# every HTTP response at INFO; our own connection events carry the connection id instead.
_ws_log = logging.getLogger(__name__ + ".ws")
_ws_log.setLevel(logging.WARNING)

# connect-src 'self' covers the page's own ws:// and wss:// origin (CSP level 3), nothing else.
CSP: Final = (
    "default-src 'self'; connect-src 'self'; img-src 'self' data:; style-src 'self'; "
    "script-src 'self'; object-src 'none'; base-uri 'none'; frame-ancestors 'none'; form-action 'none'"
)
_TYPES: Final = {".html": "text/html; charset=utf-8", ".css": "text/css; charset=utf-8",
                 ".js": "text/javascript; charset=utf-8", ".svg": "image/svg+xml"}
_PAGES: Final = {"/": "control.html", "/host": "host.html", "/wall": "wall.html",
                  "/favicon.ico": "favicon.svg"}
_CHART_FIELDS: Final = ("online", "chat_per_min", "likes_per_min", "gmv_cents_per_min",
                        "cart_adds_per_min", "orders_per_min")


@dataclass(frozen=True)
class Limits:
    """Protocol and hardening limits (defaults suit production; tests shrink some).

    :meth:`from_settings` takes the ones that are settings (``LIVECUE_GATEWAY_*``)."""

    auth_timeout_s: float = 3.0
    max_message_bytes: int = 64 * 1024
    rate_per_s: float = 10.0
    burst: int = 30
    max_bad_messages: int = 20
    send_queue: int = 256
    send_timeout_s: float = 5.0
    ping_interval_s: float = 20.0
    ping_timeout_s: float = 20.0
    close_timeout_s: float = 2.0
    backlog_cues: int = 200
    backlog_age_s: float = 900.0
    tail_records: int = 5000
    stats_tail_records: int = 200
    history_points: int = 120
    history_step_ms: int = 5000
    ready_timeout_s: float = 15.0
    produce_timeout_s: float = 5.0
    max_unauthenticated: int = 256
    max_unauthenticated_per_address: int = 16
    housekeeping_s: float = 0.5  # expiry / revocation / stale-socket sweep period

    @classmethod
    def from_settings(cls, s: Settings) -> Limits:
        return cls(auth_timeout_s=s.gateway_auth_timeout_s, rate_per_s=s.gateway_rate_per_s,
                   burst=s.gateway_burst, send_queue=s.gateway_send_queue,
                   backlog_cues=s.gateway_backlog_cues,
                   max_unauthenticated=s.gateway_max_unauthenticated,
                   max_unauthenticated_per_address=s.gateway_max_unauthenticated_per_address)


class _Client:
    __slots__ = ("id", "ws", "claims", "fp", "rooms", "queue", "writer", "closed", "live_from",
                 "bucket", "bad", "drained", "closing", "expiry", "busy")

    def __init__(self, cid: str, ws: ServerConnection, queue_size: int) -> None:
        self.id = cid
        self.ws = ws
        self.claims: Claims | None = None
        self.fp = ""
        self.rooms: tuple[str, ...] = ()
        self.queue: asyncio.Queue[tuple[str, str, int]] = asyncio.Queue(queue_size)
        self.writer: asyncio.Task[None] | None = None
        self.closed = False
        self.live_from: dict[str, int] = {}  # room -> seq of the first cue sent live
        self.bucket: TokenBucket | None = None
        self.bad = 0
        self.drained = asyncio.Event()  # set by the writer when the queue is below half
        self.closing: asyncio.Task[None] | None = None
        self.expiry: asyncio.TimerHandle | None = None
        self.busy = False  # the writer holds a frame it has not finished sending


class Gateway:
    """One gateway instance. ``start()`` returns the bound port (``gateway_port`` 0 picks one)."""

    def __init__(self, settings: Settings, registry: CollectorRegistry | None = None, *,
                 limits: Limits | None = None, clock: Callable[[], float] = time.time) -> None:
        self.settings = settings
        self.limits = limits or Limits.from_settings(settings)
        self.registry = registry if registry is not None else CollectorRegistry()
        self.metrics = GatewayMetrics(self.registry)
        self.clock = clock
        self.backlog = Backlog(self.limits.backlog_cues, self.limits.backlog_age_s)
        self.table: ConnectionTable[_Client] = ConnectionTable(
            settings.max_connections, settings.max_connections_per_token)
        if settings.token_secret:
            check_secret(settings.token_secret)
            self._secret = settings.token_secret
        else:  # what the setting documents: a random secret per process, dev only
            self._secret = secrets.token_urlsafe(32)
            log.warning("token_secret is empty: using a random one for this process (dev only)")
        self._stats: OrderedDict[str, str] = OrderedDict()  # room -> last stats frame
        self._history: dict[str, deque[dict[str, Any]]] = {}
        self._ids = itertools.count(1)
        self._allowed: frozenset[str] = frozenset()
        self._server: Server | None = None
        self._consumer: AIOKafkaConsumer | None = None
        self._producer: AIOKafkaProducer | None = None
        self._consume_task: asyncio.Task[None] | None = None
        self._catchup: dict[TopicPartition, int] = {}
        self._ready = asyncio.Event()
        self._static = _load_static()
        self.port = 0
        self.metrics_port: int | None = None  # the separate /metrics listener, when configured
        self._metrics_server: Server | None = None
        self._clients: set[_Client] = set()  # authenticated
        # Sockets that have not authenticated yet, oldest first, with their remote address.
        self._unauth: OrderedDict[ServerConnection, str] = OrderedDict()
        self._unauth_per_addr: dict[str, int] = {}
        # Sockets whose upgrade carried their token (header or subprotocol), with it ("" when
        # malformed): authenticated by their handler at once, never waiting on the client, so
        # never in the pool above.
        self._credentialed: dict[ServerConnection, str] = {}
        self._revoked: frozenset[str] = frozenset(settings.revoked_tokens)
        self._revoked_stamp: tuple[float, int] | None = None
        self._housekeeping: asyncio.Task[None] | None = None
        self._log_throttle = LogThrottle()

    # -- lifecycle -------------------------------------------------------------------------

    async def start(self) -> int:
        """Connect to Kafka, fill the backlog from the tail, then listen. Returns the port."""
        s, lim = self.settings, self.limits
        if s.revoked_tokens_file is not None and not self._reload_revoked():
            raise ConfigError(f"setting revoked_tokens_file = {str(s.revoked_tokens_file)!r}: cannot read it")
        self._producer = AIOKafkaProducer(
            bootstrap_servers=s.broker, linger_ms=s.linger_ms, client_id="livecue-gateway", **client_kwargs(s))
        await self._producer.start()
        try:
            tps = [TopicPartition(t, p) for t in (TOPIC_CUES, TOPIC_ACKS, TOPIC_ROOM_STATS)
                   for p in sorted(await self._producer.partitions_for(t))]
            self._consumer = AIOKafkaConsumer(
                bootstrap_servers=s.broker, group_id=None, enable_auto_commit=False,
                fetch_max_wait_ms=s.fetch_max_wait_ms, client_id="livecue-gateway",
                auto_offset_reset="earliest", **client_kwargs(s))
            await self._consumer.start()
            self._consumer.assign(tps)
            begin = await self._consumer.beginning_offsets(tps)
            end = await self._consumer.end_offsets(tps)
            for tp in tps:
                tail = lim.stats_tail_records if tp.topic == TOPIC_ROOM_STATS else lim.tail_records
                self._consumer.seek(tp, max(begin[tp], end[tp] - tail))
                if tp.topic != TOPIC_ROOM_STATS and end[tp] > begin[tp]:
                    self._catchup[tp] = end[tp]
            if not self._catchup:
                self._ready.set()
            self._consume_task = asyncio.create_task(self._consume(), name="gateway-consume")
            try:
                await asyncio.wait_for(self._ready.wait(), lim.ready_timeout_s)
            except TimeoutError:
                log.warning("backlog not filled in time; serving anyway",
                            extra={"pending": len(self._catchup)})
                self._ready.set()
            self._server = await serve(
                self._handle, s.gateway_host, s.gateway_port,
                process_request=self._process_request, compression=None,
                select_subprotocol=_select_subprotocol,
                max_size=lim.max_message_bytes, max_queue=16,
                ping_interval=lim.ping_interval_s, ping_timeout=lim.ping_timeout_s,
                close_timeout=lim.close_timeout_s, open_timeout=max(2.0, lim.auth_timeout_s),
                logger=_ws_log, server_header="livecue-gateway")
            if s.gateway_metrics_port is not None:
                self._metrics_server = await serve(
                    self._handle_metrics_only, s.metrics_host, s.gateway_metrics_port,
                    process_request=self._process_metrics_request, logger=_ws_log,
                    server_header="livecue-gateway")
                self.metrics_port = int(next(iter(self._metrics_server.sockets)).getsockname()[1])
            self._housekeeping = asyncio.create_task(self._housekeep(), name="gateway-housekeeping")
        except BaseException:
            await self.stop()
            raise
        self.port = int(next(iter(self._server.sockets)).getsockname()[1])
        self._allowed = allowed_origins(s.allowed_origins, s.gateway_host, self.port)
        log.info("gateway listening", extra={
            "host": s.gateway_host, "port": self.port, "cues": len(self.backlog),
            "metrics_port": self.metrics_port or self.port,
            "origins": ",".join(sorted(self._allowed)) + ("" if s.allowed_origins else " + same as Host")})
        return self.port

    async def stop(self) -> None:
        """Close every screen (1001), stop following Kafka. Idempotent."""
        if self._housekeeping is not None:
            self._housekeeping.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._housekeeping
            self._housekeeping = None
        if self._metrics_server is not None:
            self._metrics_server.close()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._metrics_server.wait_closed(), 5)
            self._metrics_server = None
        if self._server is not None:
            self._server.close()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._server.wait_closed(), 5)
            self._server = None
        if self._consume_task is not None:
            self._consume_task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._consume_task
            self._consume_task = None
        for c in (self._consumer, self._producer):
            if c is not None:
                with contextlib.suppress(Exception):
                    await c.stop()
        self._consumer = self._producer = None

    async def __aenter__(self) -> Gateway:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    @property
    def token_secret(self) -> str:
        """The secret tokens must be signed with (random when the setting is empty)."""
        return self._secret

    @property
    def url(self) -> str:
        return f"http://{self.settings.gateway_host}:{self.port}"

    @property
    def ws_url(self) -> str:
        return f"ws://{self.settings.gateway_host}:{self.port}/ws"

    # -- Kafka side ------------------------------------------------------------------------

    async def _consume(self) -> None:
        assert self._consumer is not None
        consumer = self._consumer
        while True:
            try:
                batch = await consumer.getmany(timeout_ms=200, max_records=1000)
            except KafkaError as exc:
                log.warning("fetch failed; retrying", extra={"error": type(exc).__name__})
                await asyncio.sleep(0.5)
                continue
            now = self.clock()
            for tp, records in batch.items():
                counter = self.metrics.records_consumed.labels(tp.topic)
                for rec in records:
                    counter.inc()
                    try:
                        if tp.topic == TOPIC_CUES:
                            self._on_cue(rec.key, rec.value, rec.offset, rec.timestamp, now)
                        elif tp.topic == TOPIC_ACKS:
                            self._on_ack(rec.value)
                        else:
                            self._on_stats(rec.key, rec.value)
                    except (ValueError, KeyError, TypeError, InvalidAck) as exc:
                        self.metrics.bad_records.labels(tp.topic).inc()
                        log.warning("record skipped", extra={
                            "topic": tp.topic, "partition": tp.partition, "offset": rec.offset,
                            "reason": str(exc)[:200]})
            if self._catchup:
                for tp in list(self._catchup):
                    if await consumer.position(tp) >= self._catchup[tp]:
                        del self._catchup[tp]
                if not self._catchup:
                    log.info("backlog filled", extra={"cues": len(self.backlog)})
                    self._ready.set()

    def _on_cue(self, key: bytes | None, value: bytes | None, offset: int, rec_ts: int,
                now: float) -> None:
        cue = _json_object(value)
        room_id, cue_id = cue.get("room_id"), cue.get("cue_id")
        if cue.get("type") != "cue" or not isinstance(room_id, str) or not _is_id(room_id) or not _is_id(cue_id):
            raise ValueError("not a cue (type, room_id, cue_id)")
        if key is not None and key.decode("utf-8", "replace") != room_id:
            raise ValueError("key disagrees with room_id")
        emitted = cue.get("emitted_at")
        at = emitted / 1000 if type(emitted) is int and emitted > 0 else rec_ts / 1000
        entry = self.backlog.add(cue, offset, at, now)
        if entry is None:
            return
        latency_from = emitted if type(emitted) is int and emitted > 0 else 0
        screens: list[_Client] = []
        hosts: list[_Client] = []
        for c in self.table.members(room_id):
            if c.closed or c.claims is None:
                continue
            c.live_from.setdefault(room_id, offset)
            (hosts if c.claims.role == "host" else screens).append(c)
        if screens:
            self._broadcast(screens, "cue", frame(entry.cue), critical=True, emitted_at=latency_from)
        if hosts:
            self._broadcast(hosts, "cue", frame(host_view(entry.cue)), critical=True, emitted_at=latency_from)

    def _on_ack(self, value: bytes | None) -> None:
        ack = decode_ack(value if value is not None else b"")
        st = self.backlog.apply(ack.room_id, ack.cue_id, ack.action, ack.by, ack.ts)
        if st is None:
            return
        data = frame(st.message(self.backlog.seq_of(ack.room_id, ack.cue_id)))
        self._broadcast([c for c in self.table.members(ack.room_id) if not c.closed and c.claims is not None],
                        "cue_state", data, critical=True)

    def _on_stats(self, key: bytes | None, value: bytes | None) -> None:
        st = _json_object(value)
        room_id = st.get("room_id")
        if not isinstance(room_id, str) or not _is_id(room_id):
            raise ValueError("room_stats without room_id")
        st["type"] = "stats"
        data = frame(st)
        self._stats[room_id] = data
        self._stats.move_to_end(room_id)
        while len(self._stats) > 10_000:
            self._stats.popitem(last=False)
        self._record_history(room_id, st)
        self._broadcast([c for c in self.table.members(room_id)
                         if not c.closed and c.claims is not None and c.claims.role != "host"],
                        "stats", data, critical=False)

    def _record_history(self, room_id: str, st: dict[str, Any]) -> None:
        ts = st.get("ts")
        if not isinstance(ts, int):
            return
        h = self._history.get(room_id)
        if h is None:
            h = self._history[room_id] = deque(maxlen=self.limits.history_points)
        if h and ts - h[-1]["ts"] < self.limits.history_step_ms:
            return
        point: dict[str, Any] = {"ts": ts}
        for f in _CHART_FIELDS:
            v = st.get(f)
            if type(v) in (int, float):
                point[f] = v
        h.append(point)

    # -- websocket side ---------------------------------------------------------------------

    def _broadcast(self, clients: list[_Client], kind: str, data: str, *, critical: bool,
                   emitted_at: int = 0) -> None:
        """One frame to many screens. Its bytes on the wire are the same for every screen (a
        server does not mask, and no extension is negotiated), so they are built once and
        written at once to each screen that can take them (:meth:`_write_wire`); the rest go
        through :meth:`_enqueue`. The metrics of the direct writes are recorded once per call.
        py-spy, 1,000 screens: per-screen frame serialisation and metric calls were ~45 % of a
        fan-out's CPU, the socket writes themselves the rest."""
        wire: bytes | None = None
        direct = 0
        for c in clients:
            if c.closed:
                continue
            if not c.busy and c.queue.empty():
                if wire is None:
                    wire = Frame(Opcode.TEXT, data.encode()).serialize(mask=False, extensions=[])
                if self._write_wire(c, wire):
                    direct += 1
                    continue
            self._enqueue(c, kind, data, critical=critical, emitted_at=emitted_at)
        if direct:
            m = self.metrics
            m.messages_sent.labels(kind).inc(direct)
            observe_many(m.send_queue_depth, 0, direct)
            if emitted_at:
                observe_many(m.delivery_latency, max(0.0, self.clock() - emitted_at / 1000), direct)

    @staticmethod
    def _write_wire(c: _Client, wire: bytes) -> bool:
        """When :func:`_writable`, the frame's ready bytes straight to the socket:
        what ``protocol.send_text`` + ``send_data`` would write, without building them again.
        (The protocol keeps no state about data frames it sent, and its own output is always
        flushed by then: ``send_*`` and ``send_data`` run together. An uncompressed frame is valid
        even where permessage-deflate is negotiated; the gateway negotiates none.)"""
        if not _writable(c):
            return False
        try:
            c.ws.transport.write(wire)
        except Exception:  # closing under us: the connection's handler ends it
            pass
        return True

    def _enqueue(self, c: _Client, kind: str, data: str, *, critical: bool,
                 emitted_at: int = 0) -> None:
        """Queue a frame for one screen without ever waiting for it."""
        if c.closed:
            return
        depth = c.queue.qsize()
        self.metrics.send_queue_depth.observe(depth)
        if depth == 0 and not c.busy and self._write_now(c, kind, data, emitted_at):
            return
        if not critical and depth >= c.queue.maxsize // 2:
            self.metrics.stats_skipped.inc()
            return
        try:
            c.queue.put_nowait((kind, data, emitted_at))
        except asyncio.QueueFull:
            self._cut_off(c, "send queue full")

    def _write_now(self, c: _Client, kind: str, data: str, emitted_at: int) -> bool:
        """The common case, written at once (websockets' own ``broadcast`` path, for one
        connection): nothing queued or being sent for this screen and its socket's write buffer
        below ``DIRECT_WRITE_LIMIT``. Anything else goes through the queue and the writer task,
        which waits for a slow socket with a timeout. A fan-out to 1,000 screens then costs one
        frame write each, not a queue hand-off, a task wake-up and a ``wait_for`` task each."""
        if not _writable(c):
            return False
        ws = c.ws
        try:
            ws.protocol.send_text(data.encode())
            ws.send_data()
        except Exception:  # closing under us: the connection's handler ends it
            return True
        self.metrics.messages_sent.labels(kind).inc()
        if emitted_at:
            self.metrics.delivery_latency.observe(max(0.0, self.clock() - emitted_at / 1000))
        return True

    def _cut_off(self, c: _Client, why: str) -> None:
        if c.closed:
            return
        c.closed = True
        c.drained.set()
        self.metrics.slow_clients.inc()
        self._log_warning("slow screen cut off", "slow", {"conn": c.id, "why": why, "token": c.fp})
        if c.writer is not None and c.writer is not asyncio.current_task():
            c.writer.cancel()
        c.ws.transport.abort()  # a stalled peer would never complete a closing handshake

    async def _writer(self, c: _Client) -> None:
        send_timeout = self.limits.send_timeout_s
        half = c.queue.maxsize // 2
        while True:
            kind, data, emitted_at = await c.queue.get()
            c.busy = True  # until sent: a frame enqueued meanwhile must queue behind this one
            if c.queue.qsize() < half:
                c.drained.set()
            try:
                await asyncio.wait_for(c.ws.send(data), send_timeout)
            except TimeoutError:
                self._cut_off(c, "send stalled")
                return
            except ConnectionClosed:
                return
            finally:
                c.busy = False
            self.metrics.messages_sent.labels(kind).inc()
            if emitted_at:
                self.metrics.delivery_latency.observe(max(0.0, self.clock() - emitted_at / 1000))

    async def _process_request(self, conn: ServerConnection, request: Request) -> Response | None:
        path = urlsplit(request.path).path
        if path == "/ws":
            origin = request.headers.get("Origin")
            if not (origin_ok(origin, self._allowed) or (
                    not self.settings.allowed_origins
                    and origin_matches_host(origin, request.headers.get("Host")))):
                self.metrics.refused.labels("bad_origin").inc()
                self._log_warning("refused: origin not allowed", "bad_origin",
                                  {"origin": origin[:200] if origin else None})
                return conn.respond(403, "origin not allowed\n")
            if len(self.table) >= self.settings.max_connections:
                self.metrics.refused.labels("too_many").inc()
                self._log_warning("refused: too many connections", "too_many", {})
                return conn.respond(503, "too many connections\n")
            token = upgrade_token(request.headers)
            if token is None:
                self._admit_unauthenticated(conn)
            else:
                self._credentialed[conn] = token
            return None
        if "upgrade" in request.headers.get("Connection", "").lower():
            return conn.respond(404, "websocket endpoint is /ws\n")
        if path == "/healthz":
            ok = self._ready.is_set() and self._consume_task is not None and not self._consume_task.done()
            body = orjson.dumps({"status": "ok" if ok else "starting", "connections": len(self.table),
                                 "cues": len(self.backlog)})
            return _response(200 if ok else 503, body, "application/json")
        if path == "/metrics" and self._metrics_server is None:
            return _response(200, generate_latest(self.registry), CONTENT_TYPE_LATEST)
        if path.startswith("/reports/"):  # reviews, read-only, for the room's tokens (consumers/report_access.py)
            status, body, ctype, extra = await asyncio.to_thread(
                report_answer, Path(self.settings.reports_dir), path[len("/reports/"):],
                urlsplit(request.path).query, request.headers.get("Authorization"), self._secret,
                self._revoked, self.clock())
            resp = _response(status, body, ctype)
            for header, value in extra:
                resp.headers[header] = value
            return resp
        name = _PAGES.get(path) or (path[len("/static/"):] if path.startswith("/static/") else None)
        if name is not None and name in self._static:
            body, ctype = self._static[name]
            return _response(200, body, ctype, page=True)
        return conn.respond(404, "not found\n")

    async def _process_metrics_request(self, conn: ServerConnection, request: Request) -> Response:
        """The separate metrics listener: /metrics and /healthz, nothing else."""
        path = urlsplit(request.path).path
        if path == "/metrics":
            return _response(200, generate_latest(self.registry), CONTENT_TYPE_LATEST)
        if path == "/healthz":
            ok = self._ready.is_set() and self._consume_task is not None and not self._consume_task.done()
            return _response(200 if ok else 503, orjson.dumps({"status": "ok" if ok else "starting"}),
                             "application/json")
        return conn.respond(404, "not found\n")

    async def _handle_metrics_only(self, ws: ServerConnection) -> None:  # never reached: no upgrade
        await ws.close(1008, "no websocket here")

    # -- hostile clients -------------------------------------------------------------------

    def _log_warning(self, msg: str, key: str, extra: dict[str, Any]) -> None:
        """A warning, throttled per ``key`` so that a flood writes a few lines, not one per attempt."""
        suppressed = self._log_throttle.allow(key, time.monotonic())
        if suppressed is None:
            return
        if suppressed:
            extra = {**extra, "suppressed": suppressed}
        log.warning(msg, extra=extra)

    def _admit_unauthenticated(self, conn: ServerConnection) -> None:
        """Count a socket that has yet to authenticate; at a cap, drop the oldest such socket
        (of the same address first) instead of refusing the new one."""
        addr = _remote_addr(conn)
        lim = self.limits
        if self._unauth_per_addr.get(addr, 0) >= lim.max_unauthenticated_per_address:
            self._drop_unauthenticated(_oldest_silent(c for c, a in self._unauth.items() if a == addr))
        if len(self._unauth) >= lim.max_unauthenticated:
            self._drop_unauthenticated(_oldest_silent(iter(self._unauth)))
        self._unauth[conn] = addr
        self._unauth_per_addr[addr] = self._unauth_per_addr.get(addr, 0) + 1

    def _forget_unauthenticated(self, conn: ServerConnection) -> None:
        addr = self._unauth.pop(conn, None)
        if addr is not None:
            n = self._unauth_per_addr[addr] - 1
            if n:
                self._unauth_per_addr[addr] = n
            else:
                del self._unauth_per_addr[addr]

    def _drop_unauthenticated(self, conn: ServerConnection) -> None:
        self._forget_unauthenticated(conn)
        self.metrics.refused.labels("crowded_out").inc()
        self._log_warning("unauthenticated socket dropped for a newer one", "crowded_out",
                          {"remote": _remote_addr(conn)})
        conn.transport.abort()  # nothing to say to a socket that never authenticated

    def _end(self, c: _Client, reason: str, message: str) -> asyncio.Task[None]:
        """Close an authenticated screen with 1008 ``reason`` (after an error frame). Safe to
        call from a timer; the handler awaits ``c.closing`` before it returns."""
        if c.closing is not None:
            return c.closing
        c.closed = True
        c.drained.set()
        self.metrics.refused.labels(reason).inc()
        self._log_warning("screen closed", reason, {"conn": c.id, "reason": reason, "token": c.fp})
        if c.writer is not None and c.writer is not asyncio.current_task():
            c.writer.cancel()

        async def close() -> None:
            with contextlib.suppress(ConnectionClosed, TimeoutError):
                await asyncio.wait_for(c.ws.send(error_frame(reason, message)), self.limits.close_timeout_s)
            with contextlib.suppress(ConnectionClosed):
                await c.ws.close(1008, reason)

        c.closing = asyncio.create_task(close(), name=f"gateway-close-{c.id}")
        return c.closing

    def _reload_revoked(self) -> bool:
        """Re-read ``revoked_tokens_file`` when it changed. False when it cannot be read."""
        path = self.settings.revoked_tokens_file
        if path is None:
            return True
        try:
            st = path.stat()
            stamp = (st.st_mtime, st.st_size)
            if stamp == self._revoked_stamp:
                return True
            text = path.read_text(encoding="utf-8", errors="replace")
        except OSError as exc:
            self._log_warning("revocation list unreadable; keeping the last one", "revoked_file",
                              {"error": type(exc).__name__})
            return False
        ids = {line.split("#", 1)[0].strip() for line in text.splitlines()}
        self._revoked = frozenset(self.settings.revoked_tokens) | {i for i in ids if i}
        self._revoked_stamp = stamp
        log.info("revocation list loaded", extra={"revoked": len(self._revoked)})
        return True

    async def _housekeep(self) -> None:
        """Every ``housekeeping_s``: close expired and revoked screens, forget sockets that
        closed before their handler ran (a failed handshake)."""
        while True:
            await asyncio.sleep(self.limits.housekeeping_s)
            self._reload_revoked()
            now = self.clock()
            for c in list(self._clients):
                if c.closed or c.claims is None:
                    continue
                if c.claims.jti in self._revoked:
                    self._end(c, "revoked", "token revoked")
                elif c.claims.exp <= now:
                    self._end(c, "expired", "token expired")
            for conn in [k for k in self._unauth if k.state.name == "CLOSED"]:
                self._forget_unauthenticated(conn)
            for conn in [k for k in self._credentialed if k.state.name == "CLOSED"]:
                del self._credentialed[conn]

    def _expire_at_exp(self, c: _Client) -> None:
        if not c.closed and c.claims is not None and c.claims.exp <= self.clock():
            self._end(c, "expired", "token expired")
        elif not c.closed and c.claims is not None:  # the clock is behind the timer: look again
            c.expiry = asyncio.get_running_loop().call_later(0.05, self._expire_at_exp, c)

    # -- screens ---------------------------------------------------------------------------

    async def _handle(self, ws: ServerConnection) -> None:
        c = _Client(f"c{next(self._ids)}", ws, self.limits.send_queue)
        if ws not in self._unauth and ws not in self._credentialed:  # already pushed out
            return
        try:
            if not await self._authenticate(c):
                return
            assert c.claims is not None
            role = c.claims.role
            self.metrics.connections.labels(role).inc()
            try:
                c.writer = asyncio.create_task(self._writer(c), name=f"gateway-writer-{c.id}")
                self._greet(c)
                async for raw in ws:
                    if c.closed or not await self._on_message(c, raw):
                        break
            finally:
                self.metrics.connections.labels(role).dec()
        except ConnectionClosed:
            pass
        finally:
            self._forget_unauthenticated(ws)
            self._credentialed.pop(ws, None)
            self._clients.discard(c)
            self.table.close(c)
            c.closed = True
            c.drained.set()
            if c.expiry is not None:
                c.expiry.cancel()
            if c.writer is not None:
                c.writer.cancel()
            if c.closing is not None:
                with contextlib.suppress(Exception):
                    await c.closing
            if c.claims is not None:  # a refused socket was logged once already (throttled)
                log.info("screen disconnected", extra={"conn": c.id, "code": ws.close_code})

    async def _refuse(self, c: _Client, reason: str, message: str) -> None:
        self.metrics.refused.labels(reason).inc()
        self._log_warning("refused", reason, {"conn": c.id, "reason": reason, "token": c.fp or None})
        with contextlib.suppress(ConnectionClosed):
            await c.ws.send(error_frame(reason, message))
            await c.ws.close(1008, message[:120])

    async def _authenticate(self, c: _Client) -> bool:
        """The token of the upgrade (``Authorization: Bearer`` or the ``livecue.bearer.``
        subprotocol), else a first ``auth`` message within ``auth_timeout_s``; else close 1008."""
        upgraded = self._credentialed.get(c.ws)  # read from the upgrade by _process_request
        wanted: tuple[str, ...] | None = None
        if upgraded is not None:
            if not upgraded:
                await self._refuse(c, "bad_token", "malformed Authorization header")
                return False
            token = upgraded
        else:
            try:
                raw = await asyncio.wait_for(c.ws.recv(), self.limits.auth_timeout_s)
            except TimeoutError:
                await self._refuse(c, "auth_timeout", "no auth message in time")
                return False
            try:
                msg = parse_client(raw)
            except ProtocolError:
                msg = None
            if not isinstance(msg, Auth):
                await self._refuse(c, "auth_required", "first message must be auth")
                return False
            token, wanted = msg.token, msg.rooms
        c.fp = fingerprint(token)
        try:
            claims = verify(self._secret, token, self.clock())
            if claims.jti in self._revoked:
                raise TokenError("revoked", "token revoked")
        except TokenError as exc:
            await self._refuse(c, exc.reason, exc.detail)
            return False
        c.fp = claims.jti  # the token's id: caps, logs and revocation use it, not its spelling
        rooms = claims.rooms if wanted is None else wanted
        if not set(rooms) <= set(claims.rooms):
            await self._refuse(c, "wrong_room", "token does not grant that room")
            return False
        if c.ws not in self._unauth and c.ws not in self._credentialed:  # pushed out meanwhile
            return False
        try:
            self.table.open(c)
            self.table.authenticate(c, claims.jti, rooms)
        except TooMany as exc:
            self.table.close(c)
            await self._refuse(c, "too_many", f"too many connections ({exc.scope})")
            return False
        self._forget_unauthenticated(c.ws)
        self._clients.add(c)
        c.claims, c.rooms = claims, rooms
        c.expiry = asyncio.get_running_loop().call_later(
            max(0.0, claims.exp - self.clock()), self._expire_at_exp, c)
        c.bucket = TokenBucket(self.limits.rate_per_s, self.limits.burst, time.monotonic())
        log.info("screen connected", extra={
            "conn": c.id, "role": claims.role, "rooms": len(rooms), "token": c.fp, "by": claims.by,
            "auth": "message" if upgraded is None else "upgrade"})
        return True

    def _greet(self, c: _Client) -> None:
        assert c.claims is not None
        lim = self.limits
        self._enqueue(c, "hello", frame({
            "type": "hello", "role": c.claims.role, "rooms": list(c.rooms), "by": c.claims.by,
            "can_ack": c.claims.can_ack, "expires_at": c.claims.exp,
            "limits": {"max_message_bytes": lim.max_message_bytes, "rate_per_s": lim.rate_per_s,
                       "burst": lim.burst, "backlog_cues": lim.backlog_cues,
                       "backlog_age_s": lim.backlog_age_s},
            "wall": wall_config(self.settings, c.rooms),
        }), critical=True)
        if c.claims.role == "host":
            return
        for r in c.rooms:
            h = self._history.get(r)
            if h:
                self._enqueue(c, "stats_history", frame(
                    {"type": "stats_history", "room_id": r, "points": list(h)}), critical=False)
            st = self._stats.get(r)
            if st is not None:
                self._enqueue(c, "stats", st, critical=False)

    async def _on_message(self, c: _Client, raw: str | bytes) -> bool:
        """Handle one frame after auth. Returns False when the connection must end."""
        assert c.claims is not None and c.bucket is not None
        if c.claims.exp <= self.clock():  # nothing, an ack least of all, after exp
            await self._end(c, "expired", "token expired")
            return False
        if c.claims.jti in self._revoked:
            await self._end(c, "revoked", "token revoked")
            return False
        if not c.bucket.allow(time.monotonic()):
            self.metrics.refused.labels("rate_limited").inc()
            self._log_warning("rate limit exceeded; closing", "rate_limited", {"conn": c.id})
            with contextlib.suppress(ConnectionClosed):
                await c.ws.send(error_frame("rate_limited", "too many messages"))
                await c.ws.close(1008, "rate limit exceeded")
            return False
        try:
            msg = parse_client(raw)
            if isinstance(msg, Auth):
                raise ProtocolError("already_authenticated", "already authenticated")
            if isinstance(msg, Resume):
                await self._resume(c, msg)
            else:
                await self._action(c, msg)
        except ProtocolError as exc:
            c.bad += 1
            self._enqueue(c, "error", error_frame(exc.code, exc.message), critical=True)
            if c.bad >= self.limits.max_bad_messages:
                self.metrics.refused.labels("bad_messages").inc()
                self._log_warning("too many bad messages; closing", "bad_messages", {"conn": c.id})
                with contextlib.suppress(ConnectionClosed):
                    await c.ws.close(1008, "too many bad messages")
                return False
        return True

    async def _room_in_queue(self, c: _Client) -> bool:
        """Wait until the screen's queue is below half full (the other half stays free for live
        cues). False when the screen went away meanwhile."""
        half = c.queue.maxsize // 2
        while not c.closed and c.queue.qsize() >= half:
            c.drained.clear()
            await c.drained.wait()
        return not c.closed

    async def _resume(self, c: _Client, msg: Resume) -> None:
        """Send each room's missed cues and their states, paged through the writer: this screen's
        handler waits for its own queue to drain; nobody else waits."""
        assert c.claims is not None
        host = c.claims.role == "host"
        now = self.clock()
        for room, last_seq in msg.rooms.items():
            if room not in c.rooms:
                self.metrics.refused.labels("wrong_room").inc()
                self._enqueue(c, "error", error_frame("wrong_room", "not one of your rooms",
                                                      room_id=room), critical=True)
                continue
            rep = self.backlog.since(room, last_seq, now)
            sent = 0
            for e in rep.entries:
                upto = c.live_from.get(room)
                if upto is not None and e.seq >= upto:
                    break  # from here on this screen got it live
                if not await self._room_in_queue(c):
                    return
                self._enqueue(c, "cue", frame(host_view(e.cue) if host else e.cue), critical=True)
                sent += 1
            for st in rep.states:
                if not await self._room_in_queue(c):
                    return
                self._enqueue(c, "cue_state", frame(st.message(self.backlog.seq_of(room, st.cue_id))),
                              critical=True)
            if not await self._room_in_queue(c):
                return
            self._enqueue(c, "resumed", frame({"type": "resumed", "room_id": room, "after": last_seq,
                                               "cues": sent, "gap": rep.gap}), critical=True)
            log.info("resumed", extra={"conn": c.id, "after": last_seq, "cues": sent, "gap": rep.gap})

    async def _action(self, c: _Client, msg: Action) -> None:
        assert c.claims is not None and self._producer is not None
        if not c.claims.can_ack:
            raise ProtocolError("forbidden", f"a {c.claims.role} screen may not {msg.action}")
        if msg.room_id not in c.rooms:
            self.metrics.refused.labels("wrong_room").inc()
            raise ProtocolError("wrong_room", "not one of your rooms")
        if not self.backlog.knows(msg.room_id, msg.cue_id):
            raise ProtocolError("unknown_cue", "no such cue in this room's recent cues")
        ack = Ack(msg.cue_id, msg.room_id, msg.action, c.claims.by, int(self.clock() * 1000))
        try:
            await asyncio.wait_for(
                self._producer.send_and_wait(TOPIC_ACKS, encode(ack), key=msg.room_id.encode()),
                self.limits.produce_timeout_s)
        except (KafkaError, TimeoutError) as exc:
            log.warning("ack not produced", extra={"conn": c.id, "error": type(exc).__name__})
            raise ProtocolError("unavailable", "could not record the acknowledgement; retry") from None
        self.metrics.acks.labels(msg.action).inc()
        log.info("ack produced", extra={"conn": c.id, "action": msg.action, "cue_id": msg.cue_id})


def _json_object(value: bytes | None) -> dict[str, Any]:
    if value is None:
        raise ValueError("empty record")
    obj = orjson.loads(value)
    if type(obj) is not dict:
        raise ValueError("not a JSON object")
    return obj


SUBPROTOCOL: Final = "livecue.v1"
BEARER_SUBPROTOCOL: Final = "livecue.bearer."


def upgrade_token(headers: Headers) -> str | None:
    """The token an upgrade request carries, or None when it carries none.

    ``Authorization: Bearer <token>`` (tools), else a ``livecue.bearer.<token>`` entry of
    ``Sec-WebSocket-Protocol`` (browsers: a page cannot set headers on a WebSocket, only offer
    subprotocols; Kubernetes' API server takes its bearer token the same way). "" when an
    ``Authorization`` header is there but malformed. A socket that brings its token is checked at
    once and never waits in the pool of unauthenticated sockets, so a flood of idle sockets from
    its own address cannot push it out before it has spoken.
    """
    header = headers.get("Authorization")
    if header is not None:
        scheme, _, token = header.partition(" ")
        return token.strip() if scheme.lower() == "bearer" else ""
    for value in headers.get_all("Sec-WebSocket-Protocol"):
        for offered in value.split(","):
            offered = offered.strip()
            if offered.startswith(BEARER_SUBPROTOCOL) and len(offered) > len(BEARER_SUBPROTOCOL):
                return offered[len(BEARER_SUBPROTOCOL):]
    return None


def _select_subprotocol(conn: ServerConnection, offered: Sequence[str]) -> Subprotocol | None:
    """``livecue.v1`` when offered (a page offers it beside its bearer entry: a browser fails a
    socket whose reply names no subprotocol it offered; the token itself is never echoed),
    else none: tools offer nothing."""
    return Subprotocol(SUBPROTOCOL) if SUBPROTOCOL in offered else None


def _writable(c: _Client) -> bool:
    """A frame for ``c`` can be written at once: its socket is open, no fragmented send is in
    progress, and its write buffer is below ``DIRECT_WRITE_LIMIT``."""
    ws = c.ws
    transport = ws.transport
    return not (ws.protocol.state is not State.OPEN or ws.send_in_progress is not None or transport is None
                or transport.is_closing() or transport.get_write_buffer_size() > DIRECT_WRITE_LIMIT)


def _has_spoken(conn: ServerConnection) -> bool:
    """True when a frame from the peer is already buffered (its auth message, most likely) but
    not yet read by the handler.

    Reads websockets' internal ``recv_messages.frames`` (pinned: websockets 13-17; the canary
    ``test_gateway_breaks.test_canary_has_spoken_sees_a_buffered_frame`` fails the day it
    changes). When the attribute is missing this returns False: eviction is then by age only.
    """
    try:
        return len(conn.recv_messages.frames) > 0
    except (AttributeError, TypeError):
        return False


def _oldest_silent(conns: Iterator[ServerConnection]) -> ServerConnection:
    """The oldest socket that has sent nothing yet, else the oldest one. A screen whose auth
    frame has arrived is not pushed out while the event loop gets round to reading it."""
    first: ServerConnection | None = None
    for c in conns:
        if first is None:
            first = c
        if not _has_spoken(c):
            return c
    assert first is not None
    return first


def _remote_addr(conn: ServerConnection) -> str:
    try:
        return str(conn.remote_address[0])
    except (TypeError, IndexError, OSError):
        return "?"


def _is_id(v: object) -> bool:
    return type(v) is str and 0 < len(v) <= 128


def _response(status: int, body: bytes, ctype: str, *, page: bool = False) -> Response:
    headers = Headers([
        ("Date", email.utils.formatdate(usegmt=True)),
        ("Connection", "close"),
        ("Content-Length", str(len(body))),
        ("Content-Type", ctype),
        ("X-Content-Type-Options", "nosniff"),
        ("Referrer-Policy", "no-referrer"),
        ("Cache-Control", "no-store"),
    ])
    if page:
        headers["Content-Security-Policy"] = CSP
        headers["X-Frame-Options"] = "DENY"
    phrase = {200: "OK", 503: "Service Unavailable"}.get(status, "")
    return Response(status, phrase, headers, body)


def _load_static() -> dict[str, tuple[bytes, str]]:
    """The screens' files, read once (only these names are ever served)."""
    out: dict[str, tuple[bytes, str]] = {}
    root = Path(__file__).resolve().parent / "static"  # package data, installed beside this module
    if not root.is_dir():
        return out
    for f in root.iterdir():
        ext = "." + f.name.rsplit(".", 1)[-1] if "." in f.name else ""
        if f.is_file() and ext in _TYPES:
            out[f.name] = (f.read_bytes(), _TYPES[ext])
    return out

