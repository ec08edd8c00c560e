"""The worker: a Faust app whose input arrives as whole batches, and the pump that drives it.

Faust keeps group membership, co-partitioned assignment, the room-state table (changelog and
recovery) and the commit timer. The six input topics skip Faust's per-message path
(:mod:`stream.faust_batch`, the one module that touches Faust's internals): each fetched batch
goes to :meth:`WorkerApp.on_batch`, which decodes it into the processor's partition group
(Kafka Streams' merge by event time) and pauses fetching a topic-partition whose queue is full.

The pump (a task woken by every batch, and at least every 20 ms) then, in this order:

1. releases what the merge allows and runs it through the pure core (:class:`Processor`);
2. sends cues and dead letters (room_stats at most once a second per room: the latest);
3. every half commit interval, writes the changed room states to the table and its changelog;
4. acks the records of a flush only when the broker has acknowledged every send and changelog
   write the flush depends on (a failed send is retried; its records stay unacked meanwhile).

Faust commits, for each input topic-partition, the end of the longest prefix of fully acked
batches, so a committed offset never runs ahead of the cues, dead letters and state its records
caused (at-least-once; the state's per-room applied offsets make its effects exactly-once).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import faust
from faust.types import TP
from prometheus_client import CollectorRegistry

from livecue.config import Settings
from livecue.kafka_client import faust_credentials
from livecue.memory import TrimAfterBurst, malloc_trim, rss_mib
from schemas.decode import encode
from schemas.events import INPUT_TOPICS, TOPIC_CUES, TOPIC_DEADLETTER, TOPIC_ROOM_STATS
from schemas.outputs import DeadLetter, RoomStats
from stream.faust_batch import LiveCueApp
from stream.ingest import Batch
from stream.metrics import WorkerMetrics
from stream.playbook import PlaybookSet
from stream.processor import Outputs, Processor

__all__ = ["WorkerApp", "create_app", "TABLE_NAME"]

log = logging.getLogger(__name__)

TABLE_NAME = "room_state"
PUMP_INTERVAL_S = 0.02
PLAYBOOK_CHECK_S = 2.0
STATS_MIN_INTERVAL_S = 1.0
#: how often the gauges that count every cached room are recomputed (not on every pump: with
#: 1,000 rooms that count ran ~100 times a second during a catch-up)
ROOM_GAUGES_S = 1.0
SEND_RETRY_S = 1.0
#: a producer batch per partition (below Faust's 1,000,000-byte request limit)
PRODUCER_BATCH_BYTES = 512 * 1024


def _succeeded(fut: Any) -> bool:
    return fut is not None and fut.done() and not fut.cancelled() and fut.exception() is None


def _failed(fut: Any) -> bool:
    return fut.done() and (fut.cancelled() or fut.exception() is not None)


@dataclass(slots=True)
class _Send:
    """One output or changelog write in flight (kept to retry it if the broker refuses it)."""

    kind: str
    topic: str
    key: bytes | None
    value: bytes | None
    partition: int | None
    future: Any = None


@dataclass(slots=True)
class _AckGroup:
    """Handles to ack once every send in ``sends`` has been acknowledged by the broker."""

    sends: list[_Send]
    handles: list[Any]


@dataclass
class WorkerApp:
    """A worker: the Faust app plus the processor and metrics it drives."""

    app: Any
    settings: Settings
    processor: Processor
    metrics: WorkerMetrics
    playbooks: PlaybookSet
    table: Any
    changelog_topic: str = ""
    #: this worker's partitions, refreshed on every rebalance
    assignment: frozenset[TP] = frozenset()
    paused: set[TP] = field(default_factory=set)
    last_flush: float = 0.0
    last_commit: float = field(default_factory=time.monotonic)
    last_playbook_check: float = 0.0
    wake: asyncio.Event | None = None
    _sends: list[_Send] = field(default_factory=list)  # since the last flush
    _groups: list[_AckGroup] = field(default_factory=list)
    _retry_at: float = 0.0
    _pumping: bool = False
    _stats_out: list[tuple[bytes, bytes]] = field(default_factory=list)
    _fetch_state: dict[TP, tuple[int | None, int | None, int | None]] = field(default_factory=dict)
    _fetch_state_at: float = 0.0
    _room_gauges_at: float = 0.0
    #: per input topic-partition, its consumer-lag gauge child (``labels()`` is a lookup with
    #: string formatting and a lock: 48 of them on every pump were 0.6 % of a catching-up worker)
    _lag_gauges: dict[TP, Any] = field(default_factory=dict)
    _delivered_at: dict[TP, float] = field(default_factory=dict)
    _pending_peak: int = 0
    #: glibc's malloc_trim, run once a backlog's burst of queued events has been released
    _trim: Callable[[], int] | None = field(default_factory=malloc_trim)
    _trim_policy: TrimAfterBurst = field(default_factory=TrimAfterBurst)

    # -- input (called by the consumer's fetch loop, on the event loop) -------------------------

    def on_batch(self, tp: TP, records: Sequence[Any], batch: Batch) -> None:
        if tp not in self.assignment:
            return  # revoked while in flight: the new owner reads it again
        now = time.monotonic()
        self._delivered_at[tp] = now
        wall_ms = int(time.time() * 1000)
        dls = self.processor.ingest_batch(tp.topic, tp.partition, records, batch, wall_ms, now, wall_ms)
        pending = self.processor.pending()
        if pending > self._pending_peak:
            self._pending_peak = pending
            self.metrics.pending_peak.set(pending)
        for dl in dls:
            self._queue_deadletter(dl)
        if tp not in self.paused and \
                self.processor.queued(tp.topic, tp.partition) >= self.settings.max_queued_per_partition:
            self.app.consumer.pause_partitions([tp])
            self.paused.add(tp)
            self.metrics.partition_pauses.inc()
        if self.wake is not None:
            self.wake.set()

    def on_rewind(self, tp: TP, offset: int) -> None:
        dropped = self.processor.rewind(tp.topic, tp.partition, offset)
        log.info("input re-read from the committed offset",
                 extra={"topic": tp.topic, "partition": tp.partition, "offset": offset, "dropped": dropped})

    # -- the pump ----------------------------------------------------------------------------

    async def run_pump(self) -> None:
        self.wake = asyncio.Event()
        while True:
            try:
                await asyncio.wait_for(self.wake.wait(), PUMP_INTERVAL_S)
            except asyncio.TimeoutError:
                pass
            self.wake.clear()
            await self.pump()

    def on_fetch_state(self, states: dict[TP, tuple[int | None, int | None, int | None]]) -> None:
        self._fetch_state = states
        self._fetch_state_at = time.monotonic()
        # a round may confirm a quiet topic-partition caught up, which is what queued events wait
        # for: pump now rather than at the next 20 ms tick
        if self.wake is not None and self.processor.pending():
            self.wake.set()

    def _update_caught_up(self) -> None:
        states = self._fetch_state
        lag_gauges = self._lag_gauges
        for tp in self.assignment:
            if tp.topic not in INPUT_TOPICS:
                continue
            position, hw, polled = states.get(tp, (None, None, None))
            at: int | None = None
            lag = 0
            if hw is not None and position is not None:
                lag = max(0, hw - position)
                if lag == 0 and polled is not None:
                    at = polled
            self.processor.mark_caught_up(tp.topic, tp.partition, at)
            gauge = lag_gauges.get(tp)
            if gauge is None:
                gauge = lag_gauges[tp] = self.metrics.consumer_lag.labels(tp.topic, str(tp.partition))
            gauge.set(lag)

    async def pump(self, force_flush: bool = False) -> None:
        """Release, process, send, flush and ack. Never raises (errors are logged)."""
        if self.app.rebalancing or self._pumping:
            return
        self._pumping = True
        try:
            self._update_caught_up()
            now = time.monotonic()
            wall_ms = int(time.time() * 1000)
            out = self.processor.release(wall_ms, wall_ms)
            forced = self.processor.take_forced()
            for (topic, partition), n in forced.items():
                self.metrics.forced.labels(topic).inc(n)
                position, hw, polled = self._fetch_state.get(TP(topic, partition), (None, None, None))
                log.warning("merge wait bound reached", extra={
                    "waited_for": topic, "partition": partition, "events": n, "position": position,
                    "highwater": hw, "polled_ms_ago": None if polled is None else wall_ms - polled,
                    "delivered_ms_ago": round((now - self._delivered_at.get(TP(topic, partition), 0.0)) * 1000),
                    "fetch_report_ms_ago": round((now - self._fetch_state_at) * 1000)})
            if out:
                self._outputs(out, now)
            self._due_stats(now, wall_ms)
            self._resume_drained()
            if force_flush or now - self.last_flush >= self.settings.commit_interval_s / 2:
                self.last_flush = now
                flushed = self.processor.flush(now)
                self._write_table(flushed)
                if flushed.acks or self._sends:
                    self._groups.append(_AckGroup(self._sends, flushed.acks))
                    self._sends = []
            await self._start_sends()
            await self._send_stats()
            self._ack_done()
            if now - self.last_playbook_check >= PLAYBOOK_CHECK_S:
                self.last_playbook_check = now
                self.metrics.cache_bytes.set(self.processor.cache_bytes())  # O(rooms): not per flush
                for msg in self.playbooks.reload_if_changed():
                    log.info("playbook reload", extra={"detail": msg})
            m = self.metrics
            pending = self.processor.pending()
            m.pending.set(pending)
            burst = self._trim_policy.due(pending, now) if self._trim is not None else 0
            if burst:
                self._trim_now(burst)
            if now - self._room_gauges_at >= ROOM_GAUGES_S:
                self._room_gauges_at = now
                m.active_rooms.set(self.processor.active_rooms())
                for state, n in self.processor.rooms_by_state().items():
                    m.rooms.labels(state).set(n)
                m.rooms_evicted.labels("lru").set(self.processor.evicted)
                m.rooms_evicted.labels("ended").set(self.processor.expired)
            m.since_commit.set(now - self.last_commit)
            m.paused_partitions.set(len(self.paused))
        except Exception:
            log.exception("pump failed; records stay unacked and will be retried")
        finally:
            self._pumping = False

    def _trim_now(self, burst: int) -> None:
        """Give the allocator's free memory back after a burst (livecue.memory)."""
        assert self._trim is not None
        before, t0 = rss_mib(), time.perf_counter()
        self._trim()
        after = rss_mib()
        log.info("allocator trimmed after a burst", extra={
            "queued_peak": burst, "ms": round((time.perf_counter() - t0) * 1000, 1),
            "rss_mib_before": None if before is None else round(before, 1),
            "rss_mib_after": None if after is None else round(after, 1)})

    def _queue_send(self, kind: str, topic: str, key: bytes | None, value: bytes | None,
                    partition: int | None = None) -> None:
        self._sends.append(_Send(kind, topic, key, value, partition))

    def _queue_deadletter(self, dl: DeadLetter) -> None:
        self._queue_send("deadletter", TOPIC_DEADLETTER,
                         dl.key.encode() if dl.key is not None else None, encode(dl))

    def _outputs(self, out: Outputs, now: float) -> None:
        m = self.metrics
        now_wall = time.time()
        for cue, received in out.cues:
            self._queue_send("cue", TOPIC_CUES, cue.room_id.encode(), encode(cue))
            m.cues.labels(cue.kind).inc()
            m.processing_latency.observe(max(0.0, now - received))
            m.event_time_lag.observe(max(0.0, now_wall - cue.ts / 1000.0))
            log.info("cue", extra={"cue_id": cue.cue_id, "room_id": cue.room_id, "kind": cue.kind, "ts": cue.ts})
        for st in out.stats:
            self._queue_stats(st)
        for dl in out.deadletters:
            self._queue_deadletter(dl)

    def _due_stats(self, now: float, wall_ms: int) -> None:
        """Queue room_stats: screen refreshes, at most once a second per room, built only when
        sent; not tied to acks (a crash loses at most the newest, replaced a second later)."""
        for st in self.processor.take_snapshots(now, wall_ms):
            self._queue_stats(st)

    def _queue_stats(self, st: RoomStats) -> None:
        self._stats_out.append((st.room_id.encode(), encode(st)))
        self.metrics.room_stats.inc()

    async def _send_stats(self) -> None:
        out, self._stats_out = self._stats_out, []
        producer = self.app.producer
        for key, value in out:
            try:
                fut = await producer.send(TOPIC_ROOM_STATS, key, value, None, None, None)
            except Exception as exc:
                self._stats_failed(exc)
                continue
            fut.add_done_callback(self._stats_sent_cb)

    def _stats_sent_cb(self, fut: Any) -> None:
        if fut.cancelled() or fut.exception() is not None:
            self._stats_failed(fut.exception())

    def _stats_failed(self, exc: BaseException | None) -> None:
        self.metrics.send_failures.labels("room_stats").inc()
        log.warning("room_stats send failed", extra={"error": repr(exc)})

    def _write_table(self, out: Outputs) -> None:
        data = self.table.data
        for partition, room_id, value in out.table_writes:
            key = room_id.encode()
            data[key] = value
            self._queue_send("state", self.changelog_topic, key, value, partition)
        for partition, room_id in out.table_deletes:  # an ended session past its retention
            key = room_id.encode()
            data.pop(key, None)
            self._queue_send("state", self.changelog_topic, key, None, partition)  # tombstone

    async def _start_sends(self) -> None:
        """Hand every not-yet-started send (and failed ones, after a pause) to the producer."""
        producer = self.app.producer
        now = time.monotonic()
        retry = now >= self._retry_at
        for group in [*self._groups, _AckGroup(self._sends, [])]:
            for s in group.sends:
                fut = s.future
                if fut is not None:
                    if not _failed(fut) or not retry:
                        continue
                    self.metrics.send_failures.labels(s.kind).inc()
                    log.warning("send failed, retrying", extra={"kind": s.kind, "topic": s.topic,
                                                                "error": repr(fut.exception())})
                    self._retry_at = now + SEND_RETRY_S
                try:
                    s.future = await producer.send(s.topic, s.key, s.value, s.partition, None, None)
                except Exception as exc:  # refused before it was queued (too large, closed, ...)
                    failed: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
                    failed.set_exception(exc)
                    s.future = failed

    def _ack_done(self) -> None:
        """Ack the handles of every group whose sends have all been acknowledged."""
        if not self._groups:
            return
        keep: list[_AckGroup] = []
        for group in self._groups:
            if all(_succeeded(s.future) for s in group.sends):
                ack = self.app.batch_consumer().tracker.ack
                # one handle per record; a batch's records are acked together (a C-level tally,
                # not a call per record)
                for h, n in Counter(group.handles).items():
                    ack(h, n)
            else:
                keep.append(group)
        self._groups = keep

    def _resume_drained(self) -> None:
        if not self.paused:
            return
        limit = self.settings.max_queued_per_partition // 2
        drained = [tp for tp in self.paused if self.processor.queued(tp.topic, tp.partition) <= limit]
        if drained:
            self.app.consumer.resume_partitions(drained)
            self.paused.difference_update(drained)

    async def flush_all(self, timeout: float = 10.0) -> None:
        """Flush state and wait for the broker to acknowledge everything (clean shutdown)."""
        deadline = time.monotonic() + timeout
        while self._pumping and time.monotonic() < deadline:
            await asyncio.sleep(0.01)
        await self.pump(force_flush=True)
        while self._groups and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
            await self._start_sends()
            self._ack_done()

    async def stop(self) -> None:
        """Clean shutdown: flush, wait for the broker's acks, commit what they made safe."""
        await self.flush_all()
        await self.app.consumer.commit()
        log.info("worker stopped cleanly", extra={"pending": self.processor.pending()})

    # -- rebalancing -------------------------------------------------------------------------

    def on_assigned(self, assigned: set[TP]) -> None:
        self.assignment = self.assignment | frozenset(assigned)

    def on_revoked(self, revoked: set[TP]) -> None:
        self.assignment = self.assignment - frozenset(revoked)
        parts = {tp.partition for tp in revoked if tp.topic in INPUT_TOPICS}
        self.paused.difference_update(revoked)
        dropped = self.processor.revoke(parts)
        log.info("partitions revoked", extra={"partitions": sorted(parts), "dropped": dropped})


def create_app(settings: Settings, registry: CollectorRegistry | None = None) -> WorkerApp:
    """Build a worker (not started). Each call builds a fresh, independent Faust app."""
    registry = registry if registry is not None else CollectorRegistry()
    metrics = WorkerMetrics(registry)
    playbooks = PlaybookSet(settings.playbook, settings.playbook_dir)
    worker_dir = settings.data_dir / (settings.worker_id or "worker")
    worker_dir.mkdir(parents=True, exist_ok=True)
    request_timeout = max(30.0, settings.session_timeout_s * 2, settings.rebalance_timeout_s * 2)
    app = LiveCueApp(
        settings.app_id,
        broker=settings.broker_url,
        broker_credentials=faust_credentials(settings),  # secured clusters: livecue/kafka_client.py
        store="memory://",
        datadir=str(worker_dir),
        autodiscover=False,
        topic_partitions=settings.partitions,
        topic_replication_factor=settings.replication_factor,
        topic_allow_declare=True,
        consumer_auto_offset_reset="earliest",
        broker_session_timeout=settings.session_timeout_s,
        broker_heartbeat_interval=settings.heartbeat_interval_s,
        broker_rebalance_timeout=settings.rebalance_timeout_s,
        broker_request_timeout=request_timeout,
        broker_commit_interval=settings.commit_interval_s,
        producer_linger=settings.linger_ms / 1000.0,
        # aiokafka lets a send wait while its partition's batch is full until that batch leaves
        # (one request in flight per broker): with Faust's 16 KiB a flush's state writes (~4 KB a
        # room) or a second of room_stats stalled the pump one broker round trip per 16 KiB
        producer_max_batch_size=PRODUCER_BATCH_BYTES,
        # prefetch per input partition (Faust's default 4 MiB x 6 topics x partitions dominated a
        # catching-up worker's memory). Tansu ignores it; Apache Kafka honours it, and there
        # 256 KiB starved the worker (many-room catch-up 39-42k events/s, busy 0.69 of a core):
        # 512 KiB gave 64k (dense 53k -> 105k) at 196 MiB RSS, 1 MiB 65k at the same RSS
        consumer_max_fetch_size=512 * 1024,
        # What bounds what is decoded: records handed over per fetch round (all partitions); the
        # rest stays in aiokafka's fetch buffer as raw bytes, parsed when taken. A broker may
        # answer far beyond the fetch size (Tansu's first fetch of a backlog held ~180k records);
        # handed over at once they were all parsed, decoded and queued in the merge whatever its
        # bound (a 600k-event catch-up queued 130-155k events: 270 MiB RSS; with this, 35-80k and
        # ~190 MiB). A partition's queue thus holds at most about twice its bound before its
        # fetching pauses. The price: a dense catch-up (10 rooms) does ~10 % fewer events/s; its
        # worker waits on fetches more (busy 0.77 vs 0.86 of a core): aiokafka fetches a
        # partition again only once its buffer is empty, so less is fetched ahead (a bound per
        # partition instead of per round did not help: 0.72-0.75).
        broker_max_poll_records=settings.max_queued_per_partition,
        table_standby_replicas=0,
        web_enabled=settings.web_port > 0,
        web_port=settings.web_port or 6066,
        web_bind=settings.web_host,
        web_host=settings.web_host,
        key_serializer="raw",
        value_serializer="raw",
    )
    app.livecue_fetch_max_wait_ms = settings.fetch_max_wait_ms
    app.livecue_fetch_min_bytes = settings.fetch_min_bytes
    raw = {"key_type": bytes, "value_type": bytes, "key_serializer": "raw", "value_serializer": "raw"}
    inputs = app.topic(*INPUT_TOPICS, allow_empty=True, **raw)
    for name in (TOPIC_CUES, TOPIC_ROOM_STATS, TOPIC_DEADLETTER):
        app.topic(name, partitions=settings.partitions, **raw)
    table = app.Table(TABLE_NAME, default=None, partitions=settings.partitions,
                      key_type=bytes, value_type=bytes)

    def load_room(room_id: str) -> bytes | None:
        value = table.data.get(room_id.encode())
        return bytes(value) if value is not None else None

    processor = Processor(
        playbooks.for_room, load_room, settings.max_task_idle_ms,
        grace_ms=settings.align_grace_ms, metrics=metrics, max_future_ms=settings.max_future_ms,
        max_rooms=settings.max_cached_rooms, ended_retention_s=settings.ended_room_retention_s,
        stats_interval_s=STATS_MIN_INTERVAL_S,
    )
    worker = WorkerApp(app, settings, processor, metrics, playbooks, table,
                       changelog_topic=table.changelog_topic.get_topic_name())

    consumer = app.batch_consumer()
    consumer.attach(worker, INPUT_TOPICS)
    app.stop_hook = worker.stop

    @app.agent(inputs, concurrency=1, name="livecue.process")
    async def process(stream: Any) -> None:
        # Subscribes the input topics. Their records reach the worker as batches through
        # WorkerApp.on_batch (stream.faust_batch); one arriving here means that seam broke.
        async for event in stream.events():
            log.error("input record on Faust's per-message path (stream.faust_batch seam broken)",
                      extra={"topic": event.message.topic, "offset": event.message.offset})

    @app.task
    async def pump() -> None:
        await worker.run_pump()

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
