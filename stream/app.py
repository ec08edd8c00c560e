"""The Faust app: topics of the contract, the room-state table, one thin agent and a pump.

The agent only feeds raw records to :class:`~stream.processor.Processor`; the pump (a Faust
timer, every 20 ms) releases aligned events through the core and performs what
the processor asks for, in this order: send cues / room_stats / dead letters, write room states
to the table (changelog, explicit source partition), ack the records. Faust commits only acked,
contiguous offsets and flushes the producer before committing, so a committed offset never runs
ahead of the outputs and the state it caused (faust-streaming issue 606).

The agent drains its channel's queue in batches (no per-event Stream iteration): each record keeps
the reference the conductor gave it until the pump acks it, once processed and flushed.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import Any

import faust
import orjson
from faust.transport.drivers import aiokafka as faust_aiokafka
from faust.types import TP
from prometheus_client import CollectorRegistry

from livecue.config import Settings
from schemas.events import INPUT_TOPICS, TOPIC_CUES, TOPIC_DEADLETTER, TOPIC_ROOM_STATS
from stream.metrics import WorkerMetrics
from stream.playbook import PlaybookSet
from stream.processor import Outputs, Processor

__all__ = ["WorkerApp", "create_app", "TABLE_NAME"]

log = logging.getLogger(__name__)

TABLE_NAME = "room_state"
MAX_BATCH = 2000
PLAYBOOK_CHECK_S = 2.0

# Faust hard-codes fetch_max_wait_ms=1500 for its worker consumer, and Tansu does not wake a
# waiting fetch when data arrives: every fetch would wait the full 1.5 s. The value chosen per app
# id is applied right after Faust builds the aiokafka consumer (before it starts its fetcher).
_FETCH_WAIT_MS: dict[str, int] = {}
_orig_create_worker_consumer = faust_aiokafka.AIOKafkaConsumerThread._create_worker_consumer


def _create_worker_consumer(self: Any, transport: Any) -> Any:
    consumer = _orig_create_worker_consumer(self, transport)
    wait = _FETCH_WAIT_MS.get(self.app.conf.id)
    if wait is not None:
        consumer._fetch_max_wait_ms = wait
    return consumer


faust_aiokafka.AIOKafkaConsumerThread._create_worker_consumer = _create_worker_consumer  # type: ignore[method-assign]


@dataclass
class WorkerApp:
    """A worker: the Faust app plus the processor and metrics it drives."""

    app: faust.App
    settings: Settings
    processor: Processor
    metrics: WorkerMetrics
    playbooks: PlaybookSet
    table: Any
    topics: dict[str, Any] = field(default_factory=dict)
    last_pushed: dict[TP, int] = field(default_factory=dict)
    #: this worker's partitions, refreshed on every rebalance (the consumer builds a new set per call)
    assignment: frozenset[TP] = frozenset()
    last_flush: float = 0.0
    last_commit: float = field(default_factory=time.monotonic)
    last_playbook_check: float = 0.0

    # -- the pump ----------------------------------------------------------------------------

    def _update_caught_up(self) -> None:
        consumer = self.app.consumer
        committed = getattr(consumer, "_committed_offset", {})
        try:
            client = consumer._thread._ensure_consumer()  # the aiokafka consumer Faust drives
        except Exception:
            client = None
        for tp in self.assignment:
            if tp.topic not in INPUT_TOPICS:
                continue
            try:
                hw = consumer.highwater(tp)
                polled = client.last_poll_timestamp(tp) if client is not None else None
            except Exception:
                hw = polled = None
            at: int | None = None
            lag = 0
            if hw is not None:
                last = self.last_pushed.get(tp)
                pos = last + 1 if last is not None else committed.get(tp)
                if hw == 0 or (pos is not None and pos >= hw):
                    at = polled if polled is not None else None
                lag = max(0, hw - (pos or 0))
            self.processor.mark_caught_up(tp.topic, tp.partition, at)
            self.metrics.consumer_lag.labels(tp.topic, str(tp.partition)).set(lag)

    async def pump(self, force_flush: bool = False) -> None:
        """Release, process, send, flush and ack. Never raises (errors are logged)."""
        if self.app.rebalancing:
            return
        try:
            self._update_caught_up()
            now = time.monotonic()
            wall_ms = int(time.time() * 1000)
            out = self.processor.release(wall_ms, wall_ms)
            for topic, n in self.processor.take_forced().items():
                self.metrics.forced.labels(topic).inc(n)
                log.warning("aligner wait bound reached", extra={"waited_for": topic, "events": n})
            if out:
                await self._send(out)
            if force_flush or now - self.last_flush >= self.settings.commit_interval_s / 2:
                self.last_flush = now
                flushed = self.processor.flush()
                await self._write_and_ack(flushed)
            if now - self.last_playbook_check >= PLAYBOOK_CHECK_S:
                self.last_playbook_check = now
                self.metrics.cache_bytes.set(self.processor.cache_bytes())  # O(rooms): not per flush
                for msg in self.playbooks.reload_if_changed():
                    log.info("playbook reload", extra={"detail": msg})
            m = self.metrics
            m.pending.set(self.processor.pending())
            m.active_rooms.set(self.processor.active_rooms())
            m.since_commit.set(now - self.last_commit)
        except Exception:
            log.exception("pump failed; records stay unacked and will be retried")

    async def _send(self, out: Outputs) -> None:
        m = self.metrics
        cues_topic = self.topics[TOPIC_CUES]
        stats_topic = self.topics[TOPIC_ROOM_STATS]
        dl_topic = self.topics[TOPIC_DEADLETTER]
        now_wall = time.time()
        now_mono = time.monotonic()
        for cue, received in out.cues:
            await cues_topic.send(key=cue.room_id.encode(), value=orjson.dumps(cue))
            m.cues.labels(cue.kind).inc()
            m.processing_latency.observe(max(0.0, now_mono - received))
            m.event_time_lag.observe(max(0.0, now_wall - cue.ts / 1000.0))
            log.info("cue", extra={"cue_id": cue.cue_id, "room_id": cue.room_id, "kind": cue.kind, "ts": cue.ts})
        for st in out.stats:
            await stats_topic.send(key=st.room_id.encode(), value=orjson.dumps(st))
            m.room_stats.inc()
        for dl in out.deadletters:
            await dl_topic.send(key=dl.key.encode() if dl.key is not None else None, value=orjson.dumps(dl))

    async def _write_and_ack(self, out: Outputs) -> None:
        for partition, room_id, value in out.table_writes:
            key = room_id.encode()
            self.table.data[key] = value
            self.table.send_changelog(partition, key, value)
        for event in out.acks:
            event.ack()

    # -- the agent's side ---------------------------------------------------------------------

    async def ingest(self, events: list[Any]) -> None:
        assignment = self.assignment
        now = time.monotonic()
        wall_ms = now_ms = int(time.time() * 1000)
        dls = []
        for ev in events:
            msg = ev.message
            if msg.tp not in assignment:
                continue  # revoked while buffered: the new owner reads it again
            self.last_pushed[msg.tp] = msg.offset
            dl = self.processor.ingest(
                msg.topic, msg.partition, msg.offset, msg.key, msg.value, ev, now_ms, now, wall_ms
            )
            if dl is not None:
                dls.append(dl)
        if dls:
            await self._send(Outputs(deadletters=dls))

    def on_assigned(self, assigned: set[TP]) -> None:
        self.assignment = self.assignment | frozenset(assigned)

    def on_revoked(self, revoked: set[TP]) -> None:
        self.assignment = self.assignment - frozenset(revoked)
        parts = {tp.partition for tp in revoked if tp.topic in INPUT_TOPICS}
        for tp in revoked:
            self.last_pushed.pop(tp, None)
        dropped = self.processor.revoke(parts)
        log.info("partitions revoked", extra={"partitions": sorted(parts), "dropped": dropped})


def create_app(settings: Settings, registry: CollectorRegistry | None = None) -> WorkerApp:
    """Build a worker (not started). Each call builds a fresh, independent Faust app."""
    registry = registry if registry is not None else CollectorRegistry()
    metrics = WorkerMetrics(registry)
    playbooks = PlaybookSet(settings.playbook, settings.playbook_dir)
    worker_dir = settings.data_dir / (settings.worker_id or "worker")
    worker_dir.mkdir(parents=True, exist_ok=True)
    _FETCH_WAIT_MS[settings.app_id] = settings.fetch_max_wait_ms
    request_timeout = max(30.0, settings.session_timeout_s * 2, settings.rebalance_timeout_s * 2)
    app = faust.App(
        settings.app_id,
        broker=settings.broker_url,
        store="memory://",
        datadir=str(worker_dir),
        autodiscover=False,
        topic_partitions=settings.partitions,
        topic_replication_factor=1,
        topic_allow_declare=True,
        consumer_auto_offset_reset="earliest",
        broker_session_timeout=settings.session_timeout_s,
        broker_heartbeat_interval=settings.heartbeat_interval_s,
        broker_rebalance_timeout=settings.rebalance_timeout_s,
        broker_request_timeout=request_timeout,
        broker_commit_interval=settings.commit_interval_s,
        producer_linger=settings.linger_ms / 1000.0,
        table_standby_replicas=0,
        web_enabled=settings.web_port > 0,
        web_port=settings.web_port or 6066,
        web_bind=settings.web_host,
        web_host=settings.web_host,
        key_serializer="raw",
        value_serializer="raw",
    )
    raw = {"key_type": bytes, "value_type": bytes, "key_serializer": "raw", "value_serializer": "raw"}
    inputs = app.topic(*INPUT_TOPICS, allow_empty=True, **raw)
    topics = {
        name: app.topic(name, partitions=settings.partitions, **raw)
        for name in (TOPIC_CUES, TOPIC_ROOM_STATS, TOPIC_DEADLETTER)
    }
    table = app.Table(TABLE_NAME, default=None, partitions=settings.partitions,
                      key_type=bytes, value_type=bytes)

    def load_room(room_id: str) -> bytes | None:
        value = table.data.get(room_id.encode())
        return bytes(value) if value is not None else None

    processor = Processor(
        playbooks.for_room, load_room, settings.max_task_idle_ms,
        grace_ms=settings.align_grace_ms, metrics=metrics
    )
    worker = WorkerApp(app, settings, processor, metrics, playbooks, table, topics)

    @app.agent(inputs, concurrency=1, name="livecue.process")
    async def process(stream: Any) -> None:
        # Drain the agent's channel queue in batches instead of iterating the Stream: Faust's
        # per-event stream machinery (processors, sensors, take buffers) costs ~150 µs an event
        # here, and the processor does its own batching, ordering and acking. Each event keeps
        # the reference the conductor gave it until the pump acks it, so Faust commits its
        # offset only once its outputs and state are flushed.
        queue = stream.channel.queue
        while True:
            batch = [await queue.get()]
            while len(batch) < MAX_BATCH and not queue.empty():
                batch.append(queue.get_nowait())
            await worker.ingest(batch)

    @app.timer(0.02, on_leader=False)
    async def pump() -> None:
        await worker.pump()

    @app.on_partitions_assigned.connect
    async def on_assigned(sender: Any, assigned: set[TP], **_: Any) -> None:
        worker.on_assigned(set(assigned))

    @app.on_partitions_revoked.connect
    async def on_revoked(sender: Any, revoked: set[TP], **_: Any) -> None:
        worker.on_revoked(set(revoked))

    # Track commits for the seconds-since-last-commit gauge.
    consumer_commit = type(app.consumer)._commit

    async def _commit(self: Any, offsets: Any) -> bool:
        ok = bool(await consumer_commit(self, offsets))
        if ok:
            worker.last_commit = time.monotonic()
        return ok

    app.consumer._commit = _commit.__get__(app.consumer)  # type: ignore[method-assign]
    return worker


